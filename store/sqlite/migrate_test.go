package sqlite

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"
	"time"

	"github.com/crmsync/crmsync"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A store written at schema version 4 (open runs found by an index of runs)
// keeps its open runs at version 5 (open runs kept on the lease rows): each
// key resumes the run it had open, and a key whose run closed starts anew.
func TestMigrateOpenRunsToLeases(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "v4.db")
	db, err := sql.Open("sqlite", path)
	require.NoError(t, err)
	exec := func(q string, args ...any) {
		t.Helper()
		_, err := db.Exec(q, args...)
		require.NoError(t, err, q)
	}
	exec(`CREATE TABLE crmsync_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)`)
	for _, m := range migrations[:4] {
		exec(m)
	}
	exec(`INSERT INTO crmsync_meta (key, value) VALUES ('app', 'crmsync'), ('schema_version', '4')`)
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	run := func(id, key, status string, seq int) {
		exec(`INSERT INTO runs (id, key, workflow, status, started_at, attempts, seq) VALUES (?, ?, 'wf', ?, ?, 1, ?)`, id, key, status, t0.UnixNano(), seq)
	}
	lease := func(key, holder string, gen int, run string, expires int64) {
		exec(`INSERT INTO leases (key, holder, generation, run, expires) VALUES (?, ?, ?, ?, ?)`, key, holder, gen, run, expires)
	}
	run("ra", "a", "open", 1) // its process died holding the lease
	lease("a", "h-old", 2, "ra", t0.Add(time.Minute).UnixNano())
	run("rb", "b", "open", 2) // stopped on a transient error, lease released
	lease("b", "", 3, "", 0)
	run("rc", "c", "finished", 3) // done, its steps not yet pruned
	exec(`UPDATE runs SET finished_at = ? WHERE id = 'rc'`, t0.UnixNano())
	exec(`INSERT INTO steps (run, step, result, attempts, done) VALUES ('rc', 's1', '1', 1, ?)`, t0.UnixNano())
	lease("c", "", 5, "", 0)
	run("re", "e", "finished", 5) // done, its steps pruned
	exec(`UPDATE runs SET finished_at = ? WHERE id = 're'`, t0.UnixNano())
	run("rd", "d", "open", 4) // an open run without a lease row
	require.NoError(t, db.Close())

	s, err := Open(ctx, Config{Path: path})
	require.NoError(t, err)
	defer s.Close()
	var version string
	require.NoError(t, s.DB().QueryRow(`SELECT value FROM crmsync_meta WHERE key = 'schema_version'`).Scan(&version))
	assert.Equal(t, "5", version)

	ids := func(key string) []crmsync.RunID {
		t.Helper()
		runs, err := s.ListRuns(ctx, key, 10)
		require.NoError(t, err)
		var out []crmsync.RunID
		for _, r := range runs {
			out = append(out, r.ID)
		}
		return out
	}
	assert.Equal(t, []crmsync.RunID{"re", "rd", "rc", "rb", "ra"}, ids(""), "runs newest first, as before")
	rc, err := s.GetRun(ctx, "rc")
	require.NoError(t, err)
	assert.Equal(t, crmsync.RunFinished, rc.Status)
	assert.Equal(t, t0, rc.StartedAt)

	now := t0.Add(time.Hour)
	for _, c := range []struct {
		key     string
		run     crmsync.RunID
		gen     int64
		attempt int
	}{
		{"a", "ra", 3, 2},
		{"b", "rb", 4, 2},
		{"c", "new-c", 6, 1},
		{"d", "rd", 1, 2},
	} {
		rs, err := s.StartRun(ctx, crmsync.LeaseRequest{Key: c.key, Holder: "h", Workflow: "wf", NewRun: "new-" + crmsync.RunID(c.key), TTL: time.Minute, Now: now})
		require.NoError(t, err, "StartRun(%s)", c.key)
		assert.Equal(t, c.run, rs.Run.ID, "key %s", c.key)
		assert.Equal(t, c.gen, rs.Lease.Generation, "key %s", c.key)
		assert.Equal(t, c.attempt, rs.Run.Attempts, "key %s", c.key)
		assert.Equal(t, crmsync.RunOpen, rs.Run.Status, "key %s", c.key)
		_, _, err = s.EndRun(ctx, rs.Lease, crmsync.RunEnd{Status: crmsync.RunFinished, Now: now})
		require.NoError(t, err, "EndRun(%s)", c.key)
		next, err := s.StartRun(ctx, crmsync.LeaseRequest{Key: c.key, Holder: "h", Workflow: "wf", NewRun: "next-" + crmsync.RunID(c.key), TTL: time.Minute, Now: now})
		require.NoError(t, err, "StartRun(%s) after its run finished", c.key)
		assert.Equal(t, "next-"+crmsync.RunID(c.key), next.Run.ID, "key %s starts anew once its run finished", c.key)
	}
	assert.Equal(t, []crmsync.RunID{"next-c", "new-c", "rc"}, ids("c"), "new runs follow the migrated ones")
	n, err := s.PruneRuns(ctx, now.Add(time.Second))
	require.NoError(t, err)
	assert.Equal(t, 1, n, "the migrated run with steps is pruned")
	steps, err := s.LoadSteps(ctx, "rc")
	require.NoError(t, err)
	assert.Empty(t, steps)
}

// A lease row naming as open a run that is not (written by hand, say)
// does not block the key: its next start opens the new run.
func TestStartRunMendsStaleOpenRun(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, Config{Path: filepath.Join(t.TempDir(), "s.db")})
	require.NoError(t, err)
	defer s.Close()
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	req := crmsync.LeaseRequest{Key: "k", Holder: "h", Workflow: "wf", NewRun: "r1", TTL: time.Minute, Now: t0}
	rs, err := s.StartRun(ctx, req)
	require.NoError(t, err)
	_, _, err = s.EndRun(ctx, rs.Lease, crmsync.RunEnd{Status: crmsync.RunFinished, Now: t0})
	require.NoError(t, err)
	_, err = s.DB().Exec(`UPDATE leases SET open_run = 'r1' WHERE key = 'k'`)
	require.NoError(t, err)

	req.NewRun, req.Now = "r2", t0.Add(time.Second)
	rs, err = s.StartRun(ctx, req)
	require.NoError(t, err)
	assert.Equal(t, crmsync.RunID("r2"), rs.Run.ID)
	assert.Equal(t, crmsync.RunID("r2"), rs.Lease.Run)
	assert.Equal(t, 1, rs.Run.Attempts)
	l, err := s.GetLease(ctx, "k")
	require.NoError(t, err)
	assert.Equal(t, crmsync.RunID("r2"), l.Run)
	_, _, err = s.EndRun(ctx, rs.Lease, crmsync.RunEnd{Status: crmsync.RunFinished, Now: req.Now})
	require.NoError(t, err, "the run started is the lease's")
}
