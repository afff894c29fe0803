package postgres

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/crmsync/crmsync"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// pruneCost is what one prune statement read: tuples of runs fetched or
// scanned, and scans of steps (a probe or a delete per run it looked at).
type pruneCost struct {
	RunsRead   int64
	StepsScans int64
}

// measurePrune runs the prune statement (the one EndRun and PruneRuns send)
// in a transaction that is rolled back, and reads what it did from the
// transaction's own table counters (pg_stat_xact_user_tables), which count
// work, not time. Sequential scans are turned off for that transaction: at
// a test's size the planner would read the whole small runs table, while a
// store with a year of history uses the index, which is what is measured.
func measurePrune(t *testing.T, s *Store, schema string, before time.Time) (pruned int, cost pruneCost) {
	t.Helper()
	ctx := context.Background()
	tx, err := s.pool.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = tx.Rollback(ctx) }()
	_, err = tx.Exec(ctx, `SET LOCAL enable_seqscan = off`)
	require.NoError(t, err)
	counters := func() (c pruneCost) {
		err := tx.QueryRow(ctx, `
SELECT
	coalesce(sum(coalesce(seq_tup_read, 0) + coalesce(idx_tup_fetch, 0)) FILTER (WHERE relname = 'runs'), 0)::bigint,
	coalesce(sum(coalesce(seq_scan, 0) + coalesce(idx_scan, 0)) FILTER (WHERE relname = 'steps'), 0)::bigint
FROM pg_stat_xact_user_tables WHERE schemaname = $1`, schema).Scan(&c.RunsRead, &c.StepsScans)
		require.NoError(t, err)
		return c
	}
	// The counters also hold the connection's earlier work not yet
	// reported: the prune's is the difference.
	start := counters()
	require.NoError(t, tx.QueryRow(ctx, s.sqlPrune, ns(before)).Scan(&pruned))
	end := counters()
	cost = pruneCost{RunsRead: end.RunsRead - start.RunsRead, StepsScans: end.StepsScans - start.StepsScans}
	return pruned, cost
}

// Pruning reads each closed run once: once a run's steps are pruned, a
// later prune (a run's end with PruneBefore, or PruneRuns) with nothing new
// due neither reads that run nor probes its steps, however many such runs
// the store keeps.
func TestPruneOnce(t *testing.T) {
	schema := freshSchema(t)
	s := openSchema(t, schema)
	ctx := context.Background()
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	run := func(key string, id crmsync.RunID, at, pruneBefore time.Time) int {
		t.Helper()
		rs, err := s.StartRun(ctx, crmsync.LeaseRequest{Key: key, Holder: "h", Workflow: "wf", NewRun: id, TTL: time.Minute, Now: at})
		require.NoError(t, err)
		for _, step := range []string{"s1", "s2"} {
			require.NoError(t, s.Commit(ctx, rs.Lease, crmsync.Checkpoint{Run: id, Step: crmsync.StepRecord{Step: step, Result: json.RawMessage(`1`), Attempts: 1, Done: at}}))
		}
		_, n, err := s.EndRun(ctx, rs.Lease, crmsync.RunEnd{Status: crmsync.RunFinished, Now: at, PruneBefore: pruneBefore})
		require.NoError(t, err)
		return n
	}
	const old = 30
	for i := range old {
		assert.Equal(t, 0, run(fmt.Sprintf("k%d", i), crmsync.RunID(fmt.Sprintf("old-%d", i)), t0, time.Time{}))
	}

	n, cost := measurePrune(t, s, schema, t0.Add(time.Minute))
	assert.Equal(t, old, n, "runs due (rolled back)")
	// The counters see the runs a prune reads (so the zeros below mean
	// something): each run due is read from the index of closed runs, then
	// by id to mark it pruned.
	assert.GreaterOrEqual(t, cost.RunsRead, int64(old), "runs read by a prune with %d runs due", old)
	assert.LessOrEqual(t, cost.RunsRead, int64(2*old), "runs read by a prune with %d runs due", old)
	assert.Positive(t, cost.StepsScans, "scans of steps by a prune with %d runs due", old)

	assert.Equal(t, old, run("k0", "r1", t0.Add(time.Hour), t0.Add(time.Minute)), "runs pruned at r1's end")
	steps, err := s.LoadSteps(ctx, "old-0")
	require.NoError(t, err)
	assert.Empty(t, steps, "steps of a pruned run")

	n, cost = measurePrune(t, s, schema, t0.Add(2*time.Minute))
	assert.Equal(t, 0, n, "nothing new due")
	assert.Equal(t, pruneCost{}, cost, "a prune with nothing due after %d runs were pruned", old)

	assert.Equal(t, 0, run("k1", "r2", t0.Add(2*time.Hour), t0.Add(2*time.Minute)), "runs pruned at r2's end")
	for id, want := range map[crmsync.RunID]int{"r1": 2, "r2": 2} {
		steps, err := s.LoadSteps(ctx, id)
		require.NoError(t, err)
		assert.Len(t, steps, want, "steps of %s", id)
	}

	n, err = s.PruneRuns(ctx, t0.Add(3*time.Hour))
	require.NoError(t, err)
	assert.Equal(t, 2, n, "r1 and r2 pruned")
	n, cost = measurePrune(t, s, schema, t0.Add(3*time.Hour))
	assert.Equal(t, 0, n, "nothing new due")
	assert.Equal(t, pruneCost{}, cost, "a prune with nothing due after %d runs were pruned", old+2)
	for _, id := range []crmsync.RunID{"old-1", "r1", "r2"} {
		ri, err := s.GetRun(ctx, id)
		require.NoError(t, err, "a pruned run's record is kept")
		assert.Equal(t, crmsync.RunFinished, ri.Status, "status of %s", id)
	}
}

// A store at schema version 3 keeps its runs at version 4: a closed run
// with steps is pruned by the next prune, a closed run without steps (its
// steps pruned before, or none ever) is not read again, and an open run
// resumes with its steps.
func TestMigrateKeptFromVersion3(t *testing.T) {
	saved := migrations
	t.Cleanup(func() { migrations = saved })
	require.Len(t, saved, 4, "this test migrates from version 3 to 4")
	ctx := context.Background()
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	schema := freshSchema(t)

	migrations = saved[:3]
	old := openSchema(t, schema)
	run := func(key string, id crmsync.RunID, status crmsync.RunStatus, steps int) {
		t.Helper()
		rs, err := old.StartRun(ctx, crmsync.LeaseRequest{Key: key, Holder: "h", Workflow: "wf", NewRun: id, TTL: time.Minute, Now: t0})
		require.NoError(t, err)
		for i := range steps {
			require.NoError(t, old.Commit(ctx, rs.Lease, crmsync.Checkpoint{Run: id, Step: crmsync.StepRecord{Step: fmt.Sprintf("s%d", i), Result: json.RawMessage(`1`), Attempts: 1, Done: t0}}))
		}
		_, _, err = old.EndRun(ctx, rs.Lease, crmsync.RunEnd{Status: status, Now: t0})
		require.NoError(t, err)
	}
	run("a", "ra", crmsync.RunFinished, 2) // closed, its steps not yet pruned
	run("b", "rb", crmsync.RunFinished, 2) // closed, its steps pruned below
	run("c", "rc", crmsync.RunOpen, 1)     // stopped, to be resumed
	run("d", "rd", crmsync.RunFailed, 1)   // closed, its steps not yet pruned
	run("e", "re", crmsync.RunFinished, 0) // closed, no steps ever
	// Version 3's prune of rb alone, as an earlier pass with another
	// cutoff would have left it.
	admin(t, `DELETE FROM `+schema+`.steps WHERE run = 'rb'`)
	require.NoError(t, old.Close())
	require.Equal(t, "3", adminQuery[string](t, `SELECT value FROM `+schema+`.crmsync_meta WHERE key = 'schema_version'`))

	migrations = saved
	s := openSchema(t, schema)
	assert.Equal(t, "4", adminQuery[string](t, `SELECT value FROM `+schema+`.crmsync_meta WHERE key = 'schema_version'`))
	kept := map[string]bool{}
	rows, err := s.pool.Query(ctx, s.q(`SELECT id, kept FROM {s}.runs`))
	require.NoError(t, err)
	for rows.Next() {
		var id string
		var k bool
		require.NoError(t, rows.Scan(&id, &k))
		kept[id] = k
	}
	require.NoError(t, rows.Err())
	assert.Equal(t, map[string]bool{"ra": true, "rb": false, "rc": true, "rd": true, "re": false}, kept, "runs kept after the migration")

	n, cost := measurePrune(t, s, schema, t0.Add(time.Hour))
	assert.Equal(t, 2, n, "runs due after the migration (rolled back)")
	assert.GreaterOrEqual(t, cost.RunsRead, int64(2), "runs read: ra and rd")
	assert.LessOrEqual(t, cost.RunsRead, int64(4), "runs read: ra and rd, not rb or re")
	n, err = s.PruneRuns(ctx, t0.Add(time.Hour))
	require.NoError(t, err)
	assert.Equal(t, 2, n, "ra and rd pruned")
	n, cost = measurePrune(t, s, schema, t0.Add(time.Hour))
	assert.Equal(t, 0, n)
	assert.Equal(t, pruneCost{}, cost, "a prune with nothing due after the migration")
	for _, id := range []crmsync.RunID{"ra", "rd"} {
		steps, err := s.LoadSteps(ctx, id)
		require.NoError(t, err)
		assert.Empty(t, steps, "steps of %s", id)
	}

	rs, err := s.StartRun(ctx, crmsync.LeaseRequest{Key: "c", Holder: "h", Workflow: "wf", NewRun: "rc2", TTL: time.Minute, Now: t0.Add(time.Hour)})
	require.NoError(t, err)
	assert.Equal(t, crmsync.RunID("rc"), rs.Run.ID, "the open run resumes")
	assert.Len(t, rs.Steps, 1, "the open run's steps survive the migration and the prune")
	_, _, err = s.EndRun(ctx, rs.Lease, crmsync.RunEnd{Status: crmsync.RunFinished, Now: t0.Add(time.Hour)})
	require.NoError(t, err)
	n, err = s.PruneRuns(ctx, t0.Add(2*time.Hour))
	require.NoError(t, err)
	assert.Equal(t, 1, n, "rc pruned once closed")
}

// Runs' ends that prune at once, on different keys, prune each run due
// once: no error (no deadlock between them), every due run's steps gone,
// and the counts add up to the runs due.
func TestConcurrentPrunesCountEachRunOnce(t *testing.T) {
	schema := freshSchema(t)
	s := openSchema(t, schema)
	ctx := context.Background()
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	start := func(key string, id crmsync.RunID, at time.Time) crmsync.Lease {
		t.Helper()
		rs, err := s.StartRun(ctx, crmsync.LeaseRequest{Key: key, Holder: "h", Workflow: "wf", NewRun: id, TTL: time.Minute, Now: at})
		require.NoError(t, err)
		require.NoError(t, s.Commit(ctx, rs.Lease, crmsync.Checkpoint{Run: id, Step: crmsync.StepRecord{Step: "s1", Result: json.RawMessage(`1`), Attempts: 1, Done: at}}))
		return rs.Lease
	}
	const due, enders = 60, 8
	for i := range due {
		l := start(fmt.Sprintf("old-%d", i), crmsync.RunID(fmt.Sprintf("old-%d", i)), t0)
		_, _, err := s.EndRun(ctx, l, crmsync.RunEnd{Status: crmsync.RunFinished, Now: t0})
		require.NoError(t, err)
	}
	leases := make([]crmsync.Lease, enders)
	for i := range enders {
		leases[i] = start(fmt.Sprintf("k%d", i), crmsync.RunID(fmt.Sprintf("new-%d", i)), t0.Add(time.Hour))
	}
	counts := make([]int, enders)
	errs := make([]error, enders)
	var wg sync.WaitGroup
	for i := range enders {
		wg.Go(func() {
			_, counts[i], errs[i] = s.EndRun(ctx, leases[i], crmsync.RunEnd{Status: crmsync.RunFinished, Now: t0.Add(time.Hour), PruneBefore: t0.Add(time.Minute)})
		})
	}
	wg.Wait()
	sum := 0
	for i := range enders {
		require.NoError(t, errs[i], "end of new-%d", i)
		sum += counts[i]
	}
	assert.Equal(t, due, sum, "runs pruned by %d concurrent ends", enders)
	left := adminQuery[int](t, `SELECT count(*)::int FROM `+schema+`.steps WHERE run LIKE 'old-%'`)
	assert.Zero(t, left, "steps of due runs left")
	n, err := s.PruneRuns(ctx, t0.Add(time.Minute))
	require.NoError(t, err)
	assert.Zero(t, n, "runs left to prune")
}
