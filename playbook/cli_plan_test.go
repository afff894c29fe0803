package playbook

import (
	"context"
	"log/slog"
	"path/filepath"
	"testing"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/store/sqlite"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestPlanCountsMatchThePass: -plan's counts are what the pass then does
// on the same data, on a first sync and after users edited both sides.
// A plan writes nothing, so it must model its own writes: (1) the records
// it would write on the side read second would leave the window and must
// not be read and paired again; (2) the records Salesforce refuses
// (LastName missing, an address that is not one) are dead letters, not
// creates; (3) a refusal parked by an earlier pass (the write ledger) is
// not counted again.
func TestPlanCountsMatchThePass(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the reference workflow")
	}
	ctx := context.Background()
	w, st, s, eng, log := planSetup(t, 600)

	for _, stage := range []string{"first sync", "after edits"} {
		if stage == "after edits" {
			require.NoError(t, w.SimulateEdits())
		}
		plan, err := s.Plan(ctx, st, "default", log)
		require.NoError(t, err)
		rep, _, err := s.RunOnce(ctx, eng, "default")
		require.NoError(t, err)
		assertPlanMatchesPass(t, stage, plan, rep)
	}
}

// assertPlanMatchesPass checks that a plan counted what the pass then did.
func assertPlanMatchesPass(t *testing.T, stage string, plan, rep *crmsync.SyncReport) {
	t.Helper()
	require.True(t, plan.Plan)
	for dir, d := range rep.Directions {
		pd := plan.Directions[dir]
		require.NotNil(t, pd, dir)
		assert.Equal(t, *d, *pd, "%s %s", stage, dir)
	}
	assert.Equal(t, rep.Writes(), plan.Writes(), "%s: written", stage)
	assert.Equal(t, rep.DeadLetters(), plan.DeadLetters(), "%s: dead letters", stage)
	assert.Equal(t, rep.Read, plan.Read, "%s: read", stage)
	assert.Equal(t, rep.Conflicts, plan.Conflicts, "%s: conflicts", stage)
	assert.Equal(t, rep.Held, plan.Held, "%s: held", stage)
	// Every write counted is listed.
	created, updated, refused := 0, 0, 0
	for _, pw := range plan.Planned {
		switch {
		case pw.Refused != "":
			refused++
		case pw.Kind == crmsync.PlanCreate:
			created++
		case pw.Kind == crmsync.PlanUpdate || pw.Kind == crmsync.PlanArchive:
			updated++
		}
	}
	wantCreated, wantUpdated := 0, 0
	for _, d := range plan.Directions {
		wantCreated += d.Created
		wantUpdated += d.Updated
	}
	assert.Equal(t, wantCreated, created, "%s: creates listed", stage)
	assert.Equal(t, wantUpdated, updated, "%s: updates listed", stage)
	assert.LessOrEqual(t, refused, plan.DeadLetters(), "%s: refusals listed", stage)
}

// planSetup starts a world of n contacts a side with a SQLite store, its
// sync and an engine, all closed when the test ends.
func planSetup(t *testing.T, n int) (*World, *sqlite.Store, *crmsync.Sync, *crmsync.Engine, *slog.Logger) {
	t.Helper()
	w, err := NewWorld(n)
	require.NoError(t, err)
	t.Cleanup(w.Close)
	st, err := sqlite.Open(context.Background(), sqlite.Config{Path: filepath.Join(t.TempDir(), "plan.db")})
	require.NoError(t, err)
	t.Cleanup(func() { st.Close() })
	s, err := w.Sync()
	require.NoError(t, err)
	log := slog.New(slog.DiscardHandler)
	eng, err := crmsync.NewEngine(crmsync.Config{Store: st, Logger: log})
	require.NoError(t, err)
	return w, st, s, eng, log
}
