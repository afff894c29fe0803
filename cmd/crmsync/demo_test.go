package main

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"path/filepath"
	"testing"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/playbook"
	"github.com/crmsync/crmsync/store/sqlite"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestDemoKeepsItsStore(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the reference workflow")
	}
	path := filepath.Join(t.TempDir(), "demo.db")
	var out, errOut bytes.Buffer
	if code := run(context.Background(), []string{"-store", "sqlite:" + path, "demo", "-seed", "60"}, &out, &errOut, nil); code != 0 {
		t.Fatalf("demo exit %d:\n%s\n%s", code, out.String(), errOut.String())
	}
	assert.Contains(t, out.String(), "third pass (converged): 0 written", "demo output:\n%s", out.String())
	out.Reset()
	if code := run(context.Background(), []string{"-store", "sqlite:" + path, "runs", "-format", "json"}, &out, &errOut, nil); code != 0 {
		t.Fatalf("runs after demo: exit %d: %s", code, errOut.String())
	}
	var runs []map[string]any
	err := json.Unmarshal(out.Bytes(), &runs)
	assert.NoError(t, err, "runs after the demo = %d (%v), want 3 passes", len(runs), err)
	assert.Len(t, runs, 3, "runs after the demo = %d (%v), want 3 passes", len(runs), err)
	// A second demo on the same store is refused: its fakes start empty.
	errOut.Reset()
	code := run(context.Background(), []string{"-store", "sqlite:" + path, "demo", "-seed", "60"}, &out, &errOut, nil)
	assert.Equal(t, exitUsage, code)
	assert.Contains(t, errOut.String(), "already holds runs")
	// The demo takes a PostgreSQL store too; an unreachable one is a runtime error.
	errOut.Reset()
	code = run(context.Background(), []string{"-store", "postgres://x@127.0.0.1:1/db", "demo"}, &out, &errOut, nil)
	assert.Equal(t, exitRuntime, code, errOut.String())
	assert.Contains(t, errOut.String(), "cannot connect")
}

// The operator's commands against a store filled by real sync passes:
// resolving a held conflict and replaying a dead letter take effect on the
// next pass.
func TestResolveAndReplayTakeEffectOnNextPass(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the reference workflow")
	}
	ctx := context.Background()
	w, err := playbook.NewWorld(300)
	require.NoError(t, err)
	defer w.Close()
	path := filepath.Join(t.TempDir(), "crmsync.db")
	st, err := sqlite.Open(ctx, sqlite.Config{Path: path})
	require.NoError(t, err)
	defer st.Close()
	s, err := w.Sync()
	require.NoError(t, err)
	eng, err := crmsync.NewEngine(crmsync.Config{Store: st, Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	pass := func() *crmsync.SyncReport {
		t.Helper()
		rep, _, err := s.RunOnce(ctx, eng, "default")
		require.NoError(t, err)
		return rep
	}
	pass()
	require.NoError(t, w.SimulateEdits())
	pass()
	cli := func(args ...string) string {
		t.Helper()
		var out, errOut bytes.Buffer
		code := run(ctx, append([]string{"-store", "sqlite:" + path}, args...), &out, &errOut, nil)
		require.Equal(t, 0, code, "crmsync %v: exit %d: %s", args, code, errOut.String())
		return out.String()
	}
	var held []crmsync.Conflict
	if err := json.Unmarshal([]byte(cli("conflicts", "list", "-state", "held", "-format", "json")), &held); err != nil || len(held) == 0 {
		t.Fatalf("held conflicts after the passes: %d (%v)", len(held), err)
	}
	c := held[0]
	cli("conflicts", "resolve", c.ID, "-pick", "salesforce")
	var dead []crmsync.DeadLetter
	if err := json.Unmarshal([]byte(cli("dlq", "list", "-status", "parked", "-format", "json")), &dead); err != nil || len(dead) == 0 {
		t.Fatalf("parked dead letters: %d (%v)", len(dead), err)
	}
	cli("dlq", "replay", itoa(dead[0].ID))

	rep := pass()
	if rep.Resolved != 1 || rep.Replayed != 1 {
		t.Errorf("next pass: resolved %d, replayed %d; want 1 and 1", rep.Resolved, rep.Replayed)
	}
	got, err := st.GetConflict(ctx, c.ID)
	assert.NoError(t, err, "conflict after the pass: %+v, %v; want applied", got.State, err)
	assert.Equal(t, crmsync.ConflictApplied, got.State, "conflict after the pass: %+v, %v; want applied", got.State, err)
	hs, _ := w.HubSpot().Get("contacts", c.RecordA)
	sf, _ := w.Salesforce().Get(c.RecordB)
	if hs.Properties[c.FieldA] != sf.Fields[c.FieldB] {
		t.Errorf("after applying the choice the sides differ on %s", c.Field)
	}
	// Nobody fixed the record, so the CRM refuses it again: the CLI shows
	// the same letter failed again, claimed by the pass, and no second
	// letter for the record.
	var after []crmsync.DeadLetter
	require.NoError(t, json.Unmarshal([]byte(cli("dlq", "list", "-status", "failed-again", "-format", "json")), &after))
	if len(after) != 1 || after[0].ID != dead[0].ID || after[0].ClaimedBy == "" {
		t.Errorf("failed-again letters after the replay = %+v, want letter %d claimed by the pass", after, dead[0].ID)
	}
	var all []crmsync.DeadLetter
	require.NoError(t, json.Unmarshal([]byte(cli("dlq", "list", "-format", "json")), &all))
	for _, d := range all {
		if d.ID != dead[0].ID && d.RecordID == dead[0].RecordID && d.System == dead[0].System {
			t.Errorf("letter %d parked for record %s again, beside the replayed letter %d", d.ID, d.RecordID, dead[0].ID)
		}
	}
	// A failed-again letter can be replayed once more.
	out := cli("dlq", "replay", itoa(dead[0].ID))
	assert.Contains(t, out, "failed-again -> replay", "dlq replay of a failed-again letter: %q", out)
}

func itoa(n int64) string {
	b, _ := json.Marshal(n)
	return string(b)
}
