package sqlite_test

import (
	"context"
	"database/sql"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/internal/sqlcount"
	"github.com/crmsync/crmsync/store/sqlite"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	msqlite "modernc.org/sqlite"
)

var (
	tallies      sync.Map // DSN path -> *sqlcount.Counts: its transactions and statements
	registerOnce sync.Once
)

// tallyFor is the tally of the file a DSN names.
func tallyFor(name string) *sqlcount.Counts {
	path := strings.TrimPrefix(name, "file:")
	if i := strings.IndexByte(path, '?'); i >= 0 {
		path = path[:i]
	}
	t, _ := tallies.LoadOrStore(path, &sqlcount.Counts{})
	return t.(*sqlcount.Counts)
}

// openCounting opens a Store whose SQLite work is tallied.
func openCounting(t *testing.T) (*sqlite.Store, *sqlcount.Counts, string) {
	t.Helper()
	registerOnce.Do(func() { sql.Register("sqlite-tally", sqlcount.Driver{Driver: &msqlite.Driver{}, Counts: tallyFor}) })
	path := filepath.Join(t.TempDir(), "count.db")
	s, err := sqlite.Open(context.Background(), sqlite.Config{Path: path, Driver: "sqlite-tally"})
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	tl, ok := tallies.Load(path)
	require.True(t, ok, "no connection of %s was counted", path)
	return s, tl.(*sqlcount.Counts), path
}

// A short workflow's run (4 steps, a new run, no dead letters to replay,
// nothing old to prune) costs one transaction to start, one per step and one
// to end, with two statements to start, one per step and two to end. It
// writes four pages to start (the lease, the run and two indexes of runs),
// one per step and three to end (the lease, the run and the index of closed
// runs).
func TestRunCost(t *testing.T) {
	ctx := context.Background()
	s, tl, path := openCounting(t)
	eng, err := crmsync.NewEngine(crmsync.Config{Store: s, Logger: slog.New(slog.DiscardHandler), LeaseTTL: time.Minute})
	require.NoError(t, err)
	wf := crmsync.WorkflowFunc(func(ctx context.Context, run *crmsync.Run) error {
		for _, name := range []string{"find", "merge", "write", "audit"} {
			if _, err := crmsync.Step(ctx, run, name, func(context.Context, *crmsync.Attempt) (string, error) {
				return name + " done", nil
			}, nil); err != nil {
				return err
			}
		}
		return nil
	})
	_, err = eng.Run(ctx, "warm-up", wf) // statements are prepared once
	require.NoError(t, err)

	walSize := func() int64 {
		fi, err := os.Stat(path + "-wal")
		require.NoError(t, err)
		return fi.Size()
	}
	tl.Txs.Store(0)
	tl.Stmts.Store(0)
	wal := walSize()
	ri, err := eng.Run(ctx, "k", wf)
	require.NoError(t, err)
	// Pages written: each is one WAL frame (a 24-byte header and the page).
	frames := (walSize() - wal) / (24 + 4096)
	t.Logf("a 4-step run wrote %d pages", frames)
	assert.LessOrEqual(t, frames, int64(11), "pages written by a 4-step run")
	assert.Equal(t, crmsync.RunFinished, ri.Status)
	t.Logf("a 4-step run: %d transactions, %d statements", tl.Txs.Load(), tl.Stmts.Load())
	assert.Equal(t, int64(6), tl.Txs.Load(), "transactions of a 4-step run")
	assert.LessOrEqual(t, tl.Stmts.Load(), int64(8), "statements of a 4-step run")
	steps, err := s.LoadSteps(ctx, ri.ID)
	require.NoError(t, err)
	assert.Len(t, steps, 4)
}

// A write waiting for another process's write lock gives up when its
// context ends, and goes through once the lock is let go.
func TestWriteWaitsForOtherProcess(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "two.db")
	s, err := sqlite.Open(ctx, sqlite.Config{Path: path, BusyTimeout: time.Minute})
	require.NoError(t, err)
	defer s.Close()
	other, err := sqlite.Open(ctx, sqlite.Config{Path: path, BusyTimeout: time.Minute})
	require.NoError(t, err)
	defer other.Close()

	rs, err := s.StartRun(ctx, crmsync.LeaseRequest{Key: "k", Holder: "h", Workflow: "wf", NewRun: "r1", TTL: time.Minute, Now: time.Now()})
	require.NoError(t, err)
	commit := func(ctx context.Context, step string) error {
		return s.Commit(ctx, rs.Lease, crmsync.Checkpoint{Run: "r1", Step: crmsync.StepRecord{Step: step, Result: []byte(`1`), Attempts: 1, Done: time.Now()}})
	}

	// The other "process" holds SQLite's write lock.
	conn, err := other.DB().Conn(ctx)
	require.NoError(t, err)
	defer conn.Close()
	_, err = conn.ExecContext(ctx, `BEGIN IMMEDIATE`)
	require.NoError(t, err)

	// Each call must end with its context, long before BusyTimeout.
	ended := func(name string, fn func(context.Context) error) {
		t.Helper()
		wctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
		defer cancel()
		done := make(chan error, 1)
		go func() { done <- fn(wctx) }()
		select {
		case err := <-done:
			assert.True(t, errors.Is(err, context.DeadlineExceeded), "%s while another process writes: %v", name, err)
		case <-time.After(30 * time.Second):
			t.Fatalf("%s still waits for the other process's lock, its context long over", name)
		}
	}
	for _, call := range []struct {
		name string
		fn   func(context.Context) error
	}{
		{"Commit", func(ctx context.Context) error { return commit(ctx, "s1") }},
		{"StartRun", func(ctx context.Context) error {
			_, err := s.StartRun(ctx, crmsync.LeaseRequest{Key: "k2", Holder: "h", Workflow: "wf", NewRun: "r2", TTL: time.Minute, Now: time.Now()})
			return err
		}},
		{"EndRun", func(ctx context.Context) error {
			_, _, err := s.EndRun(ctx, rs.Lease, crmsync.RunEnd{Status: crmsync.RunFinished, Now: time.Now()})
			return err
		}},
		{"RenewLease", func(ctx context.Context) error {
			_, err := s.RenewLease(ctx, rs.Lease, time.Minute, time.Now())
			return err
		}},
	} {
		ended(call.name, call.fn)
	}

	released := make(chan error, 1)
	go func() {
		time.Sleep(100 * time.Millisecond)
		_, err := conn.ExecContext(ctx, `COMMIT`)
		released <- err
	}()
	require.NoError(t, commit(ctx, "s1"), "the write goes through once the lock is let go")
	require.NoError(t, <-released)
	steps, err := s.LoadSteps(ctx, "r1")
	require.NoError(t, err)
	assert.Equal(t, []string{"s1"}, keys(steps))
}

func keys(m map[string]crmsync.StepRecord) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// Pruning reads each closed run once: after a run's steps are pruned, a
// run's end with nothing new to prune costs no pruning statement.
func TestPruneOnce(t *testing.T) {
	ctx := context.Background()
	s, tl, _ := openCounting(t)
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	run := func(id crmsync.RunID, at, pruneBefore time.Time) (pruned int, stmts int64) {
		t.Helper()
		rs, err := s.StartRun(ctx, crmsync.LeaseRequest{Key: "k", Holder: "h", Workflow: "wf", NewRun: id, TTL: time.Minute, Now: at})
		require.NoError(t, err)
		require.NoError(t, s.Commit(ctx, rs.Lease, crmsync.Checkpoint{Run: id, Step: crmsync.StepRecord{Step: "s1", Result: []byte(`1`), Attempts: 1, Done: at}}))
		before := tl.Stmts.Load()
		_, pruned, err = s.EndRun(ctx, rs.Lease, crmsync.RunEnd{Status: crmsync.RunFinished, Now: at, PruneBefore: pruneBefore})
		require.NoError(t, err)
		return pruned, tl.Stmts.Load() - before
	}
	n, _ := run("r1", t0, time.Time{})
	assert.Equal(t, 0, n)
	n, _ = run("r2", t0.Add(time.Hour), t0.Add(time.Minute))
	assert.Equal(t, 1, n, "r1 pruned")
	n, stmts := run("r3", t0.Add(2*time.Hour), t0.Add(2*time.Minute))
	assert.Equal(t, 0, n, "nothing new to prune")
	assert.Equal(t, int64(2), stmts, "statements of an end with nothing to prune")
	for id, want := range map[crmsync.RunID]int{"r1": 0, "r2": 1, "r3": 1} {
		steps, err := s.LoadSteps(ctx, id)
		require.NoError(t, err)
		assert.Len(t, steps, want, "steps of %s", id)
	}
	n, err := s.PruneRuns(ctx, t0.Add(3*time.Hour))
	require.NoError(t, err)
	assert.Equal(t, 2, n, "r2 and r3 pruned")
}
