package postgres

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/crmsync/crmsync"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var groupT0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// groupLeases takes the lease of n keys k0…, each with its own run r0….
func groupLeases(t *testing.T, s *Store, n int) []crmsync.Lease {
	t.Helper()
	out := make([]crmsync.Lease, n)
	for i := range out {
		l, _, err := s.AcquireLease(context.Background(), crmsync.LeaseRequest{Key: fmt.Sprint("k", i), Holder: "h1",
			NewRun: crmsync.RunID(fmt.Sprint("r", i)), TTL: time.Second, Now: groupT0})
		require.NoError(t, err)
		out[i] = l
	}
	return out
}

// commitHeld sends the checkpoints while the store's group committer is
// held busy, so that they queue, then lets them go as one group. It
// returns each commit's outcome.
func commitHeld(t *testing.T, s *Store, ls []crmsync.Lease, cps []crmsync.Checkpoint) []error {
	t.Helper()
	s.group.hold()
	errs := make([]error, len(cps))
	var wg sync.WaitGroup
	for i := range cps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = s.Commit(context.Background(), ls[i], cps[i])
		}()
	}
	require.Eventually(t, func() bool { return s.group.queued() == len(cps) }, 10*time.Second, time.Millisecond,
		"the checkpoints never queued behind the held committer")
	before := s.group.batches.Load()
	s.group.release()
	wg.Wait()
	assert.Equal(t, before+1, s.group.batches.Load(), "the queued checkpoints went as one group")
	return errs
}

func step(run, id string) crmsync.Checkpoint {
	return crmsync.Checkpoint{Run: crmsync.RunID(run), Step: crmsync.StepRecord{Step: id, Result: []byte(`"` + id + `"`), Attempts: 1, Done: groupT0}}
}

func landed(t *testing.T, s *Store, run, id string) bool {
	t.Helper()
	steps, err := s.LoadSteps(context.Background(), crmsync.RunID(run))
	require.NoError(t, err)
	_, ok := steps[id]
	return ok
}

// Checkpoints of many runs committed at once all land, each caller told
// nil, and at least the first of each run share a transaction.
func TestGroupCommitConcurrentRunsAllLand(t *testing.T) {
	s := openSchema(t, freshSchema(t))
	const runs, steps = 12, 25
	ls := groupLeases(t, s, runs)
	before := s.group.batches.Load()
	// Each run's first checkpoint queues behind the held committer, so that
	// at least those go as one group.
	s.group.hold()
	var wg sync.WaitGroup
	errs := make([][]error, runs)
	for i := range runs {
		errs[i] = make([]error, steps)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range steps {
				cp := step(fmt.Sprint("r", i), fmt.Sprint("s", j))
				if j%3 == 1 {
					cp.Cursors = map[string]string{"c": fmt.Sprint(j)}
				}
				errs[i][j] = s.Commit(context.Background(), ls[i], cp)
			}
		}()
	}
	require.Eventually(t, func() bool { return s.group.queued() == runs }, 10*time.Second, time.Millisecond,
		"the first checkpoints never queued behind the held committer")
	s.group.release()
	wg.Wait()
	for i := range runs {
		got, err := s.LoadSteps(context.Background(), crmsync.RunID(fmt.Sprint("r", i)))
		require.NoError(t, err)
		for j := range steps {
			assert.NoError(t, errs[i][j], "run %d step %d", i, j)
			assert.Contains(t, got, fmt.Sprint("s", j), "run %d step %d did not land", i, j)
		}
		cur, err := s.GetCursor(context.Background(), fmt.Sprint("k", i), "c")
		require.NoError(t, err)
		assert.Equal(t, fmt.Sprint(steps-1-(steps-2)%3), cur, "run %d's last cursor", i)
	}
	assert.Less(t, s.group.batches.Load()-before, int64(runs*steps), "no two checkpoints shared a transaction")
}

// A group with one checkpoint under a lease taken over: that caller alone
// gets ErrLeaseLost and its step does not land; the others land.
func TestGroupCommitFencesOnlyItsOwnCaller(t *testing.T) {
	for _, cursors := range []bool{false, true} {
		t.Run(fmt.Sprint("cursors=", cursors), func(t *testing.T) {
			s := openSchema(t, freshSchema(t))
			ls := groupLeases(t, s, 3)
			_, _, err := s.AcquireLease(context.Background(), crmsync.LeaseRequest{Key: "k1", Holder: "h2", NewRun: "other",
				TTL: time.Minute, Now: groupT0.Add(2 * time.Second)})
			require.NoError(t, err)
			cps := []crmsync.Checkpoint{step("r0", "a"), step("r1", "a"), step("r2", "a")}
			if cursors {
				for i := range cps {
					cps[i].Cursors = map[string]string{"c": "v"}
				}
			}
			errs := commitHeld(t, s, ls, cps)
			assert.NoError(t, errs[0])
			assert.ErrorIs(t, errs[1], crmsync.ErrLeaseLost)
			assert.NoError(t, errs[2])
			assert.True(t, landed(t, s, "r0", "a"))
			assert.False(t, landed(t, s, "r1", "a"), "a fenced step landed")
			assert.True(t, landed(t, s, "r2", "a"))
		})
	}
}

// A statement that fails in a group fails its own caller only: the others
// are retried alone and land.
func TestGroupCommitStatementErrorFailsOnlyItsCaller(t *testing.T) {
	s := openSchema(t, freshSchema(t))
	ls := groupLeases(t, s, 3)
	bad := step("r1", "a")
	bad.Step.Error = "not UTF-8: \xff\xfe" // the server refuses it
	cps := []crmsync.Checkpoint{step("r0", "a"), bad, step("r2", "a")}
	cps[2].Cursors = map[string]string{"c": "v"}
	errs := commitHeld(t, s, ls, cps)
	assert.NoError(t, errs[0])
	require.Error(t, errs[1])
	assert.False(t, errors.Is(errs[1], crmsync.ErrLeaseLost), "a statement error is not a lost lease: %v", errs[1])
	assert.NoError(t, errs[2])
	assert.True(t, landed(t, s, "r0", "a"))
	assert.False(t, landed(t, s, "r1", "a"))
	assert.True(t, landed(t, s, "r2", "a"))
}

// A caller that gives up while queued gets its context's error; the rest
// of its group lands.
func TestGroupCommitCancelledWaiter(t *testing.T) {
	s := openSchema(t, freshSchema(t))
	ls := groupLeases(t, s, 2)
	s.group.hold()
	ctx, cancel := context.WithCancel(context.Background())
	gaveUp, other := make(chan error, 1), make(chan error, 1)
	go func() { gaveUp <- s.Commit(ctx, ls[0], step("r0", "a")) }()
	go func() { other <- s.Commit(context.Background(), ls[1], step("r1", "a")) }()
	require.Eventually(t, func() bool { return s.group.queued() == 2 }, 10*time.Second, time.Millisecond)
	cancel()
	var errs [2]error
	select {
	case errs[0] = <-gaveUp:
	case <-time.After(10 * time.Second):
		t.Fatal("a queued caller whose context ended did not return")
	}
	s.group.release()
	errs[1] = <-other
	assert.ErrorIs(t, errs[0], context.Canceled)
	assert.NoError(t, errs[1])
	assert.False(t, landed(t, s, "r0", "a"), "a checkpoint whose caller gave up before it was sent landed")
	assert.True(t, landed(t, s, "r1", "a"))
}

// transactions is the number of transactions that wrote the runs' steps.
func transactions(t *testing.T, s *Store, runs ...string) int {
	t.Helper()
	var n int
	require.NoError(t, s.pool.QueryRow(context.Background(),
		s.q(`SELECT count(DISTINCT xmin::text) FROM {s}.steps WHERE run = ANY($1)`), runs).Scan(&n))
	return n
}

// A group is one transaction: the steps of its checkpoints, alone or with
// cursors, are written by one transaction, so they cost one WAL flush.
func TestGroupCommitIsOneTransaction(t *testing.T) {
	s := openSchema(t, freshSchema(t))
	ls := groupLeases(t, s, 4)
	cps := []crmsync.Checkpoint{step("r0", "a"), step("r1", "a"), step("r2", "a"), step("r3", "a")}
	cps[1].Cursors = map[string]string{"c": "v"}
	cps[3].Cursors = map[string]string{"c": "w"}
	for i, err := range commitHeld(t, s, ls, cps) {
		require.NoError(t, err, "checkpoint %d", i)
	}
	for i := range cps {
		assert.True(t, landed(t, s, fmt.Sprint("r", i), "a"), "run %d", i)
	}
	assert.Equal(t, 1, transactions(t, s, "r0", "r1", "r2", "r3"), "the group's checkpoints were not one transaction")
}

// lockLeases locks the keys' lease rows in a transaction of their own, so
// that checkpoints under them stay in flight until unlock is called.
func lockLeases(t *testing.T, schema string, keys ...string) (waiting func() int, unlock func()) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, testDSN(t))
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close(ctx) })
	tx, err := conn.Begin(ctx)
	require.NoError(t, err)
	_, err = tx.Exec(ctx, `SELECT 1 FROM `+schema+`.leases WHERE key = ANY($1) FOR UPDATE`, keys)
	require.NoError(t, err)
	// Another connection: within the locking transaction, pg_stat_activity
	// would not change.
	watch, err := pgx.Connect(ctx, testDSN(t))
	require.NoError(t, err)
	t.Cleanup(func() { watch.Close(ctx) })
	waiting = func() int {
		var n int
		require.NoError(t, watch.QueryRow(ctx, `SELECT count(DISTINCT pid)::int FROM pg_locks l JOIN pg_stat_activity a USING (pid)
			WHERE NOT l.granted AND a.query LIKE '%FOR KEY SHARE%' AND a.query LIKE '%' || $1 || '%'`, schema).Scan(&n))
		return n
	}
	var once sync.Once
	unlock = func() { once.Do(func() { require.NoError(t, tx.Rollback(ctx)) }) }
	t.Cleanup(unlock)
	return waiting, unlock
}

// A checkpoint that finds only a lone checkpoint in flight goes at once
// beside it instead of waiting for it: two runs in flight overlap their
// round trips and flushes as they would without grouping.
func TestGroupCommitSecondGoesBesideALoneOne(t *testing.T) {
	schema := freshSchema(t)
	s := openSchema(t, schema)
	ls := groupLeases(t, s, 2)
	ctx := context.Background()
	waiting, unlock := lockLeases(t, schema, "k0")
	blocked := make(chan error, 1)
	go func() { blocked <- s.Commit(ctx, ls[0], step("r0", "a")) }()
	require.Eventually(t, func() bool { return waiting() == 1 }, 10*time.Second, time.Millisecond,
		"the first checkpoint never waited on the locked lease")

	second := make(chan error, 1)
	go func() { second <- s.Commit(ctx, ls[1], step("r1", "a")) }()
	select {
	case err := <-second:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("the second checkpoint waited for the lone one in flight")
	}
	assert.True(t, landed(t, s, "r1", "a"))
	unlock()
	require.NoError(t, <-blocked)
	assert.True(t, landed(t, s, "r0", "a"))
}

// With two checkpoints in flight, later ones queue and then go as one
// group, in one transaction.
func TestGroupCommitThirdQueuesBehindTwo(t *testing.T) {
	schema := freshSchema(t)
	s := openSchema(t, schema)
	ls := groupLeases(t, s, 4)
	ctx := context.Background()
	waiting, unlock := lockLeases(t, schema, "k0", "k1")
	errs := make([]error, 4)
	var wg sync.WaitGroup
	commit := func(i int) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = s.Commit(ctx, ls[i], step(fmt.Sprint("r", i), "a"))
		}()
	}
	commit(0)
	commit(1)
	require.Eventually(t, func() bool { return waiting() == 2 }, 10*time.Second, time.Millisecond,
		"the first two checkpoints never waited on their locked leases")
	commit(2)
	commit(3)
	require.Eventually(t, func() bool { return s.group.queued() == 2 }, 10*time.Second, time.Millisecond,
		"the third and fourth checkpoints did not queue behind the two in flight")
	unlock()
	wg.Wait()
	for i, err := range errs {
		require.NoError(t, err, "checkpoint %d", i)
		assert.True(t, landed(t, s, fmt.Sprint("r", i), "a"), "run %d", i)
	}
	assert.Equal(t, 1, transactions(t, s, "r2", "r3"), "the queued checkpoints were not one group")
}
