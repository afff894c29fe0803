package postgres

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/crmsync/crmsync"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// pruneCost is what one prune statement read: tuples of runs fetched or
// scanned, scans of steps (a probe or a delete per run it looked at) and
// tuples of steps fetched or scanned.
type pruneCost struct {
	RunsRead   int64
	StepsScans int64
	StepsRead  int64
}

// pruneCounters reads the transaction's own table counters
// (pg_stat_xact_user_tables), which count work, not time. They also hold
// the connection's earlier work not yet reported: a statement's work is the
// difference of two readings.
func pruneCounters(tb testing.TB, tx pgx.Tx, schema string) (c pruneCost) {
	tb.Helper()
	err := tx.QueryRow(context.Background(), `
SELECT
	coalesce(sum(coalesce(seq_tup_read, 0) + coalesce(idx_tup_fetch, 0)) FILTER (WHERE relname = 'runs'), 0)::bigint,
	coalesce(sum(coalesce(seq_scan, 0) + coalesce(idx_scan, 0)) FILTER (WHERE relname = 'steps'), 0)::bigint,
	coalesce(sum(coalesce(seq_tup_read, 0) + coalesce(idx_tup_fetch, 0)) FILTER (WHERE relname = 'steps'), 0)::bigint
FROM pg_stat_xact_user_tables WHERE schemaname = $1`, schema).Scan(&c.RunsRead, &c.StepsScans, &c.StepsRead)
	require.NoError(tb, err)
	return c
}

func (c pruneCost) minus(d pruneCost) pruneCost {
	return pruneCost{RunsRead: c.RunsRead - d.RunsRead, StepsScans: c.StepsScans - d.StepsScans, StepsRead: c.StepsRead - d.StepsRead}
}

// measurePrune runs the prune statement (the one EndRun and PruneRuns send)
// in a transaction that is rolled back, and returns what it read. With
// forceIndex, sequential scans are turned off for that transaction: at a
// small test's size the planner would read the whole small runs table,
// while a store with a year of history uses the index, which is what is
// measured.
func measurePrune(t *testing.T, s *Store, schema string, before int64, forceIndex bool) (pruned int, cost pruneCost) {
	t.Helper()
	ctx := context.Background()
	tx, err := s.pool.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = tx.Rollback(ctx) }()
	if forceIndex {
		_, err = tx.Exec(ctx, `SET LOCAL enable_seqscan = off`)
		require.NoError(t, err)
	}
	start := pruneCounters(t, tx, schema)
	require.NoError(t, tx.QueryRow(ctx, s.sqlPrune, before).Scan(&pruned))
	return pruned, pruneCounters(t, tx, schema).minus(start)
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

	n, cost := measurePrune(t, s, schema, ns(t0.Add(time.Minute)), true)
	assert.Equal(t, old, n, "runs due (rolled back)")
	// The counters see the runs a prune reads (so the zeros below mean
	// something): each run due is found in the queue of closed runs, then read
	// by id to mark it pruned.
	assert.GreaterOrEqual(t, cost.RunsRead, int64(old), "runs read by a prune with %d runs due", old)
	assert.LessOrEqual(t, cost.RunsRead, int64(2*old), "runs read by a prune with %d runs due", old)
	assert.Positive(t, cost.StepsScans, "scans of steps by a prune with %d runs due", old)

	assert.Equal(t, old, run("k0", "r1", t0.Add(time.Hour), t0.Add(time.Minute)), "runs pruned at r1's end")
	steps, err := s.LoadSteps(ctx, "old-0")
	require.NoError(t, err)
	assert.Empty(t, steps, "steps of a pruned run")

	n, cost = measurePrune(t, s, schema, ns(t0.Add(2*time.Minute)), true)
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
	n, cost = measurePrune(t, s, schema, ns(t0.Add(3*time.Hour)), true)
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
	require.GreaterOrEqual(t, len(saved), 4, "this test migrates from version 3")
	ctx := context.Background()
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	schema := freshSchema(t)

	migrations = saved[:3]
	old := openSchema(t, schema)
	run := func(key string, id crmsync.RunID, status crmsync.RunStatus, steps int) {
		t.Helper()
		writeRun(t, schema, key, id, status, steps, t0)
	}
	run("a", "ra", crmsync.RunFinished, 2) // closed, its steps not yet pruned
	run("b", "rb", crmsync.RunFinished, 2) // closed, its steps pruned below
	run("c", "rc", crmsync.RunOpen, 1)     // stopped, to be resumed
	run("d", "rd", crmsync.RunFailed, 1)   // closed, its steps not yet pruned
	run("e", "re", crmsync.RunFinished, 0) // closed, no steps ever
	run("f", "rf", crmsync.RunOpen, 0)     // stopped before its first step
	// Version 3's prune of rb alone, as an earlier pass with another
	// cutoff would have left it.
	admin(t, `DELETE FROM `+schema+`.steps WHERE run = 'rb'`)
	require.NoError(t, old.Close())
	require.Equal(t, "3", adminQuery[string](t, `SELECT value FROM `+schema+`.crmsync_meta WHERE key = 'schema_version'`))

	migrations = saved
	s := openSchema(t, schema)
	assert.Equal(t, fmt.Sprint(len(saved)), adminQuery[string](t, `SELECT value FROM `+schema+`.crmsync_meta WHERE key = 'schema_version'`))
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
	assert.Equal(t, map[string]bool{"ra": true, "rb": false, "rc": true, "rd": true, "re": false, "rf": true}, kept, "runs kept after the migration")

	n, cost := measurePrune(t, s, schema, ns(t0.Add(time.Hour)), true)
	assert.Equal(t, 2, n, "runs due after the migration (rolled back)")
	assert.GreaterOrEqual(t, cost.RunsRead, int64(2), "runs read: ra and rd")
	assert.LessOrEqual(t, cost.RunsRead, int64(4), "runs read: ra and rd, not rb or re")
	n, err = s.PruneRuns(ctx, t0.Add(time.Hour))
	require.NoError(t, err)
	assert.Equal(t, 2, n, "ra and rd pruned")
	n, cost = measurePrune(t, s, schema, ns(t0.Add(time.Hour)), true)
	assert.Equal(t, 0, n)
	assert.Equal(t, pruneCost{}, cost, "a prune with nothing due after the migration")
	for _, id := range []crmsync.RunID{"ra", "rd"} {
		steps, err := s.LoadSteps(ctx, id)
		require.NoError(t, err)
		assert.Empty(t, steps, "steps of %s", id)
	}

	for key, id := range map[string]crmsync.RunID{"c": "rc", "f": "rf"} {
		rs, err := s.StartRun(ctx, crmsync.LeaseRequest{Key: key, Holder: "h", Workflow: "wf", NewRun: "new-" + id, TTL: time.Minute, Now: t0.Add(time.Hour)})
		require.NoError(t, err)
		assert.Equal(t, id, rs.Run.ID, "the open run resumes")
		assert.Len(t, rs.Steps, map[crmsync.RunID]int{"rc": 1, "rf": 0}[id], "%s's steps survive the migration and the prune", id)
		require.NoError(t, s.Commit(ctx, rs.Lease, crmsync.Checkpoint{Run: id, Step: crmsync.StepRecord{Step: "after", Result: json.RawMessage(`1`), Attempts: 1, Done: t0}}))
		_, _, err = s.EndRun(ctx, rs.Lease, crmsync.RunEnd{Status: crmsync.RunFinished, Now: t0.Add(time.Hour)})
		require.NoError(t, err)
	}
	n, err = s.PruneRuns(ctx, t0.Add(2*time.Hour))
	require.NoError(t, err)
	assert.Equal(t, 2, n, "rc and rf pruned once closed")
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

// sqlPruneV3 is the prune statement of schema version 3, which read every
// closed run older than the cutoff and probed its steps; kept to measure
// against.
const sqlPruneV3 = `
WITH pruned AS (
	SELECT id FROM {s}.runs WHERE status IN ('finished', 'failed') AND finished_at < $1
	AND EXISTS (SELECT 1 FROM {s}.steps WHERE steps.run = runs.id)
), gone AS (
	DELETE FROM {s}.steps WHERE run IN (SELECT id FROM pruned)
)
SELECT count(*) FROM pruned`

// yearOfHistory is a store with a year of history: 100,000 runs closed one
// every five minutes, the last week's (2,016) with their 4 steps each, the
// older ones pruned. The rows are written at schema version 3 and the store
// is then migrated to version (3 or 4). cutoffs are two retention cutoffs: a
// week before the last run (nothing due) and one run later (one due, as at
// a run's end in the steady state).
func yearOfHistory(tb testing.TB, version int) (s *Store, schema string, cutoffs []int64) {
	tb.Helper()
	const history, week, steps = 100_000, 2016, 4
	const every = int64(5 * time.Minute)
	saved := migrations
	defer func() { migrations = saved }()
	schema = freshSchema(tb)
	migrations = saved[:3]
	s = openSchema(tb, schema)
	admin(tb, fmt.Sprintf(`INSERT INTO %[1]s.runs (id, key, workflow, status, started_at, finished_at, attempts)
		SELECT 'h-' || i, 'k' || (i %% 100), 'wf', 'finished', i * %[2]d, i * %[2]d + 1000000000, 1 FROM generate_series(1, %[3]d) i;
		INSERT INTO %[1]s.steps (run, step, result, attempts, done)
		SELECT 'h-' || i, 's' || j, '1', 1, i * %[2]d FROM generate_series(%[3]d - %[4]d + 1, %[3]d) i, generate_series(1, %[5]d) j`,
		schema, every, history, week, steps))
	if version == 4 {
		s.Close()
		migrations = saved
		s = openSchema(tb, schema)
	}
	admin(tb, `VACUUM ANALYZE `+schema+`.runs`)
	admin(tb, `VACUUM ANALYZE `+schema+`.steps`)
	return s, schema, []int64{int64(history-week) * every, int64(history-week+1)*every + 2e9}
}

// In a store with a year of history, left to the planner: a prune with
// nothing due reads no run, and one with one run due reads that run alone
// (its index entry, then its row to mark it), not the history.
func TestPruneYearOfHistory(t *testing.T) {
	s, schema, cutoffs := yearOfHistory(t, 4)
	n, cost := measurePrune(t, s, schema, cutoffs[0], false)
	assert.Equal(t, 0, n, "runs due")
	assert.Zero(t, cost.RunsRead, "runs read with nothing due")
	n, cost = measurePrune(t, s, schema, cutoffs[1], false)
	assert.Equal(t, 1, n, "runs due")
	assert.Positive(t, cost.RunsRead, "runs read with one due")
	assert.LessOrEqual(t, cost.RunsRead, int64(2), "runs read with one due")
	assert.Equal(t, int64(4), cost.StepsRead, "steps read with one due: its own")
}

// BenchmarkPrune measures a run's end's prune in yearOfHistory: due=0 with
// nothing due, due=1 with one run due; each is rolled back. Version 3 runs
// its own statement, version 4 (migrated on to the latest) the store's. runs-read/op is the tuples of
// runs the statement read; ns/op is the statement's alone.
func BenchmarkPrune(b *testing.B) {
	ctx := context.Background()
	for _, v := range []struct {
		version int
		sql     func(s *Store) string
	}{
		{3, func(s *Store) string { return s.q(sqlPruneV3) }},
		{4, func(s *Store) string { return s.sqlPrune }},
	} {
		s, schema, cutoffs := yearOfHistory(b, v.version)
		stmt := v.sql(s)
		for due, cutoff := range cutoffs {
			b.Run(fmt.Sprintf("schema%d/due=%d", v.version, due), func(b *testing.B) {
				var cost pruneCost
				for b.Loop() {
					b.StopTimer()
					tx, err := s.pool.Begin(ctx)
					require.NoError(b, err)
					start := pruneCounters(b, tx, schema)
					b.StartTimer()
					var n int
					require.NoError(b, tx.QueryRow(ctx, stmt, cutoff).Scan(&n))
					b.StopTimer()
					c := pruneCounters(b, tx, schema).minus(start)
					cost.RunsRead += c.RunsRead
					require.NoError(b, tx.Rollback(ctx))
					require.Equal(b, due, n, "runs pruned")
					b.StartTimer()
				}
				b.ReportMetric(float64(cost.RunsRead)/float64(b.N), "runs-read/op")
			})
		}
	}
}
