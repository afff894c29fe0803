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

// StartRun commits without waiting for the WAL flush, so a server crash may
// undo it and the next start hand out the same generation of the same run
// again. The lease token tells the two holders apart: the one whose start
// was undone is fenced. The crash is simulated by putting the lease and the
// run back as they were before the undone start.
func TestUndoneStartIsFencedByToken(t *testing.T) {
	schema := freshSchema(t)
	s := openSchema(t, schema)
	ctx := context.Background()
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	req := func(run crmsync.RunID, now time.Time) crmsync.LeaseRequest {
		return crmsync.LeaseRequest{Key: "k", Holder: "worker-1", Workflow: "wf", NewRun: run, TTL: time.Minute, Now: now}
	}
	first, err := s.StartRun(ctx, req("r1", t0))
	require.NoError(t, err)
	require.NoError(t, s.Commit(ctx, first.Lease, crmsync.Checkpoint{Run: "r1", Step: crmsync.StepRecord{Step: "s1", Result: json.RawMessage(`1`), Attempts: 1, Done: t0}}))
	_, _, err = s.EndRun(ctx, first.Lease, crmsync.RunEnd{Status: crmsync.RunOpen, Error: "stopped", Now: t0})
	require.NoError(t, err)

	undone, err := s.StartRun(ctx, req("r2", t0.Add(time.Second)))
	require.NoError(t, err)
	require.Equal(t, crmsync.RunID("r1"), undone.Run.ID)
	// The server crashes before anything flushed the start: it is undone.
	admin(t, `UPDATE `+schema+`.leases SET holder = '', run = '', expires = 0, generation = $1, token = $2 WHERE key = 'k'`,
		first.Lease.Generation, first.Lease.Token)
	admin(t, `UPDATE `+schema+`.runs SET attempts = 1 WHERE id = 'r1'`)

	// The same holder name starts the key again and gets the same
	// generation of the same run.
	again, err := s.StartRun(ctx, req("r3", t0.Add(2*time.Second)))
	require.NoError(t, err)
	require.Equal(t, undone.Lease.Generation, again.Lease.Generation)
	require.Equal(t, undone.Run.ID, again.Run.ID)
	assert.NotEqual(t, undone.Lease.Token, again.Lease.Token)

	step2 := crmsync.Checkpoint{Run: "r1", Step: crmsync.StepRecord{Step: "s2", Result: json.RawMessage(`2`), Attempts: 1, Done: t0}}
	require.ErrorIs(t, s.Commit(ctx, undone.Lease, step2), crmsync.ErrLeaseLost)
	withAudit := step2
	withAudit.Audit = []crmsync.AuditEntry{{Time: t0, Key: "k", Run: "r1", Kind: crmsync.AuditWrite}}
	require.ErrorIs(t, s.Commit(ctx, undone.Lease, withAudit), crmsync.ErrLeaseLost)
	_, err = s.RenewLease(ctx, undone.Lease, time.Minute, t0.Add(3*time.Second))
	require.ErrorIs(t, err, crmsync.ErrLeaseLost)
	_, _, err = s.EndRun(ctx, undone.Lease, crmsync.RunEnd{Status: crmsync.RunFinished, Now: t0})
	require.ErrorIs(t, err, crmsync.ErrLeaseLost)
	require.ErrorIs(t, s.FinishRun(ctx, undone.Lease, crmsync.RunFinished, nil, "", t0), crmsync.ErrLeaseLost)
	require.ErrorIs(t, s.ReleaseLease(ctx, undone.Lease), crmsync.ErrLeaseLost)

	require.NoError(t, s.Commit(ctx, again.Lease, step2))
	steps, err := s.LoadSteps(ctx, "r1")
	require.NoError(t, err)
	assert.Len(t, steps, 2)
	ri, _, err := s.EndRun(ctx, again.Lease, crmsync.RunEnd{Status: crmsync.RunFinished, Now: t0.Add(4 * time.Second)})
	require.NoError(t, err)
	assert.Equal(t, crmsync.RunFinished, ri.Status)
}

// A StartRun that takes over an expired lease waits for a checkpoint under
// the old lease that is in flight (it holds the lease row FOR KEY SHARE),
// then answers that step from the store: the step is never run twice
// because the takeover read the steps before it committed. It is also told
// who holds a live lease.
func TestStartRunWaitsForCheckpointInFlight(t *testing.T) {
	schema := freshSchema(t)
	s := openSchema(t, schema)
	ctx := context.Background()
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	req := func(holder string, run crmsync.RunID, now time.Time) crmsync.LeaseRequest {
		return crmsync.LeaseRequest{Key: "k", Holder: holder, Workflow: "wf", NewRun: run, TTL: time.Minute, Now: now}
	}
	first, err := s.StartRun(ctx, req("worker-1", "r1", t0))
	require.NoError(t, err)
	_, err = s.StartRun(ctx, req("worker-2", "r2", t0.Add(time.Second)))
	require.ErrorIs(t, err, crmsync.ErrBusy)
	assert.Contains(t, err.Error(), "held by worker-1 until "+t0.Add(time.Minute).Format(time.RFC3339))

	// A checkpoint under the first lease, in flight: lease checked, step
	// written, not committed.
	conn, err := pgx.Connect(ctx, testDSN(t))
	require.NoError(t, err)
	defer conn.Close(ctx)
	tx, err := conn.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = tx.Rollback(ctx) }()
	_, err = tx.Exec(ctx, `INSERT INTO `+schema+`.steps (run, step, result, attempts, done)
		SELECT 'r1', 's1', '1', 1, 0 WHERE EXISTS (SELECT 1 FROM `+schema+`.leases WHERE key = 'k' AND token = $1 FOR KEY SHARE)`, first.Lease.Token)
	require.NoError(t, err)

	type result struct {
		rs  crmsync.RunStart
		err error
	}
	done := make(chan result, 1)
	go func() {
		rs, err := s.StartRun(ctx, req("worker-2", "r2", t0.Add(2*time.Minute)))
		done <- result{rs, err}
	}()
	for {
		select {
		case r := <-done:
			t.Fatalf("StartRun returned (%v) while a checkpoint under the old lease was in flight; want it to wait", r.err)
		default:
		}
		waiting := adminQuery[int](t, `SELECT count(*)::int FROM pg_stat_activity WHERE application_name = 'crmsync' AND wait_event_type = 'Lock' AND strpos(query, $1) > 0`, schema)
		if waiting > 0 {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	require.NoError(t, tx.Commit(ctx))
	r := <-done
	require.NoError(t, r.err)
	assert.Equal(t, crmsync.RunID("r1"), r.rs.Run.ID, "resumed")
	assert.Equal(t, 2, r.rs.Run.Attempts)
	assert.Contains(t, r.rs.Steps, "s1", "the step committed under the old lease is answered from the store")
	require.ErrorIs(t, s.Commit(ctx, first.Lease, crmsync.Checkpoint{Run: "r1", Step: crmsync.StepRecord{Step: "s2", Attempts: 1, Done: t0}}), crmsync.ErrLeaseLost)
}

// Starters racing for one key, on its first run or after a closed run (the
// quick start's two cases): exactly one takes the lease and opens its run;
// the others are told the key is busy and open nothing.
func TestStartRaceHasOneWinner(t *testing.T) {
	schema := freshSchema(t)
	s := openSchema(t, schema)
	ctx := context.Background()
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	const racers = 8
	race := func(key string, round int) crmsync.RunStart {
		t.Helper()
		var wg sync.WaitGroup
		gate := make(chan struct{})
		starts := make([]crmsync.RunStart, racers)
		errs := make([]error, racers)
		for i := range racers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-gate
				starts[i], errs[i] = s.StartRun(ctx, crmsync.LeaseRequest{Key: key, Holder: fmt.Sprint("worker-", i), Workflow: "wf",
					NewRun: crmsync.RunID(fmt.Sprintf("%s-%d-%d", key, round, i)), TTL: time.Minute, Now: t0})
			}()
		}
		close(gate)
		wg.Wait()
		won := -1
		for i, err := range errs {
			if err == nil {
				require.Equal(t, -1, won, "%s round %d: two starters won (%d and %d)", key, round, won, i)
				won = i
				continue
			}
			require.ErrorIs(t, err, crmsync.ErrBusy, "%s round %d, starter %d", key, round, i)
		}
		require.NotEqual(t, -1, won, "%s round %d: no starter won", key, round)
		rs := starts[won]
		l, err := s.GetLease(ctx, key)
		require.NoError(t, err)
		assert.Equal(t, rs.Lease.Holder, l.Holder)
		assert.Equal(t, rs.Lease.Token, l.Token)
		assert.Equal(t, int64(round+1), l.Generation, "%s round %d", key, round)
		runs, err := s.ListRuns(ctx, key, 0)
		require.NoError(t, err)
		assert.Len(t, runs, round+1, "%s round %d: one run per round", key, round)
		return rs
	}
	for k := range 10 {
		key := fmt.Sprint("key-", k)
		for round := range 3 {
			rs := race(key, round)
			_, _, err := s.EndRun(ctx, rs.Lease, crmsync.RunEnd{Status: crmsync.RunFinished, Now: t0})
			require.NoError(t, err)
		}
	}
}
