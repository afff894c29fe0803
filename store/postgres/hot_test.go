package postgres

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/crmsync/crmsync"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A run's close changes its status, finish time, report and error: no
// index of runs may hold one of them (as a key or in its predicate), so
// that the close is a HOT update and writes no index entry.
func TestRunCloseTouchesNoIndex(t *testing.T) {
	schema := freshSchema(t)
	openSchema(t, schema)
	defs := adminQuery[[]string](t, `SELECT coalesce(array_agg(pg_get_indexdef(indexrelid)), '{}') FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid
		JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname = 'runs'`, schema)
	require.NotEmpty(t, defs)
	for _, d := range defs {
		for _, col := range []string{"status", "finished_at", "report", "error"} {
			assert.NotContains(t, d, col, "index of runs")
		}
	}
}

// A store at schema version 4 with an open run and closed runs not yet
// pruned migrates: the open run is resumed by the next start (and no
// second run opened), the closed runs are pruned when due.
func TestMigrateFromVersion4(t *testing.T) {
	saved := migrations
	t.Cleanup(func() { migrations = saved })
	schema := freshSchema(t)
	migrations = saved[:4]
	s := openSchema(t, schema)
	ctx := context.Background()
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	start := func(s *Store, key string, id crmsync.RunID, now time.Time) crmsync.RunStart {
		t.Helper()
		rs, err := s.StartRun(ctx, crmsync.LeaseRequest{Key: key, Holder: "h", Workflow: "w", NewRun: id, TTL: time.Minute, Now: now})
		require.NoError(t, err)
		require.NoError(t, s.Commit(ctx, rs.Lease, crmsync.Checkpoint{Run: rs.Run.ID,
			Step: crmsync.StepRecord{Step: string(id), Result: json.RawMessage(`1`), Attempts: 1, Done: now}}))
		return rs
	}
	writeRun(t, schema, "a", "r1", crmsync.RunFinished, 1, t0)
	writeRun(t, schema, "b", "r2", crmsync.RunOpen, 1, t0)
	s.Close()

	migrations = saved
	s = openSchema(t, schema)
	resumed := start(s, "b", "r3", t0.Add(time.Second))
	assert.Equal(t, crmsync.RunID("r2"), resumed.Run.ID, "the open run is resumed")
	assert.Equal(t, 2, resumed.Run.Attempts)
	assert.Contains(t, resumed.Steps, "s0")
	_, _, err := s.EndRun(ctx, resumed.Lease, crmsync.RunEnd{Status: crmsync.RunFinished, Now: t0.Add(2 * time.Second)})
	require.NoError(t, err)
	again := start(s, "b", "r4", t0.Add(3*time.Second))
	assert.Equal(t, crmsync.RunID("r4"), again.Run.ID, "a closed run is not resumed")

	n, err := s.PruneRuns(ctx, t0.Add(time.Second))
	require.NoError(t, err)
	assert.Equal(t, 1, n, "r1, closed before the migration")
	n, err = s.PruneRuns(ctx, t0.Add(time.Minute))
	require.NoError(t, err)
	assert.Equal(t, 1, n, "r2, closed after")
}

// writeRun writes a run as the version before wrote it, in SQL (the code
// of this version does not run on an older schema): the run, its steps and
// its key's released lease.
func writeRun(t *testing.T, schema, key string, id crmsync.RunID, status crmsync.RunStatus, steps int, at time.Time) {
	t.Helper()
	finished := int64(0)
	if status.Closed() {
		finished = ns(at)
	}
	admin(t, `INSERT INTO `+schema+`.runs (id, key, workflow, status, started_at, finished_at, attempts) VALUES ($1, $2, 'wf', $3, $4, $5, 1)`,
		string(id), key, string(status), ns(at), finished)
	admin(t, `INSERT INTO `+schema+`.steps (run, step, result, attempts, done) SELECT $1, 's' || i, '1', 1, $2 FROM generate_series(0, $3 - 1) i`,
		string(id), ns(at), steps)
	admin(t, `INSERT INTO `+schema+`.leases (key, holder, generation, run, expires) VALUES ($1, '', 1, '', 0) ON CONFLICT (key) DO NOTHING`, key)
}
