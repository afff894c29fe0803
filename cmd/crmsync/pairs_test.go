package main

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/internal/clocktest"
	"github.com/crmsync/crmsync/store/sqlite"
)

// fillGraph makes a store as a graph run of key acme leaves it: a held
// conflict of the contacts pair (kept under acme/contacts) and a dead
// letter parked by the deals pair's step.
func fillGraph(t *testing.T) string {
	t.Helper()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "crmsync.db")
	st, err := sqlite.Open(ctx, sqlite.Config{Path: path})
	require.NoError(t, err)
	defer st.Close()
	clk := clocktest.New(t0)
	eng := newEngine(t, st, clk)
	_, err = eng.Run(ctx, "acme", workflow("graph", func(ctx context.Context, run *crmsync.Run) error {
		if err := holdPairConflict(ctx, run, clk); err != nil {
			return err
		}
		_, err := crmsync.Step(ctx, run, "deals:write:salesforce:0", func(ctx context.Context, a *crmsync.Attempt) (int, error) {
			clk.Advance(time.Second)
			a.DeadLetter(crmsync.DeadLetter{System: "salesforce", RecordID: "401",
				Payload: jsonOf(map[string]any{"op": "create"}), Error: "salesforce: create Opportunity: REQUIRED_FIELD_MISSING: CloseDate"})
			return 1, nil
		}, nil)
		return err
	}))
	require.NoError(t, err)
	return path
}

// The graph's pairs keep their conflicts under "<key>/<pair>": -key acme
// shows them (the pair named in the key column), status counts them, and
// a person resolves them by id.
func TestCLIShowsTheGraphPairs(t *testing.T) {
	ctx := context.Background()
	path := fillGraph(t)

	res := invoke(ctx, path, "conflicts", "list", "-key", "acme", "-format", "csv")
	require.Equal(t, 0, res.code, res.stderr)
	assert.Contains(t, res.stdout, conflictPair)
	assert.Contains(t, res.stdout, "acme/contacts")

	res = invoke(ctx, path, "conflicts", "list", "-key", "acme/contacts", "-format", "csv")
	require.Equal(t, 0, res.code, res.stderr)
	assert.Contains(t, res.stdout, conflictPair, "a pair's own key still selects it")

	res = invoke(ctx, path, "conflicts", "list", "-key", "acm", "-format", "csv")
	require.Equal(t, 0, res.code, res.stderr)
	assert.NotContains(t, res.stdout, conflictPair, "a key is not a prefix match")

	res = invoke(ctx, path, "status", "-key", "acme", "-format", "json")
	require.Equal(t, 0, res.code, res.stderr)
	assert.Contains(t, res.stdout, `"held_conflicts": 1`)
	assert.Contains(t, res.stdout, `"parked_dead_letters": 1`)
	assert.Contains(t, res.stdout, `"contacts"`, "status names the pair")

	res = invoke(ctx, path, "dlq", "list", "-key", "acme", "-format", "csv")
	require.Equal(t, 0, res.code, res.stderr)
	assert.Contains(t, res.stdout, "deals:write:salesforce:0", "the letter's step names its pair")

	res = invoke(ctx, path, "conflicts", "resolve", conflictPair, "-pick", "salesforce")
	require.Equal(t, 0, res.code, res.stderr)
	res = invoke(ctx, path, "conflicts", "list", "-key", "acme", "-state", "chosen", "-format", "csv")
	require.Equal(t, 0, res.code, res.stderr)
	assert.Contains(t, res.stdout, conflictPair)
	res = invoke(ctx, path, "dlq", "replay", "1")
	require.Equal(t, 0, res.code, res.stderr)
	assert.Contains(t, res.stdout, "key acme")
}
