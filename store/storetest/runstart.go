package storetest

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/crmsync/crmsync"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// startEnd is a Store with both optional run interfaces.
type startEnd interface {
	crmsync.Store
	crmsync.RunStarter
	crmsync.RunEnder
}

func startRun(t *testing.T, s startEnd, key, holder string, run crmsync.RunID, now time.Time) crmsync.RunStart {
	t.Helper()
	rs, err := s.StartRun(context.Background(), crmsync.LeaseRequest{Key: key, Holder: holder, Workflow: "wf", NewRun: run, TTL: ttl, Now: now})
	require.NoError(t, err, "StartRun(%s, %s)", key, holder)
	return rs
}

// exerciseRunStartEnd checks crmsync.RunStarter and crmsync.RunEnder, for a
// Store that has them: each must keep every guarantee of the calls it
// stands for (fencing, takeover, resume, the replay-claim rule).
func exerciseRunStartEnd(t *testing.T, newStore func(t *testing.T) crmsync.Store) {
	ctx := context.Background()
	open := func(t *testing.T) startEnd {
		s, ok := newStore(t).(startEnd)
		if !ok {
			t.Skip("the store has no RunStarter and RunEnder")
		}
		return s
	}
	finished := crmsync.RunEnd{Status: crmsync.RunFinished, Report: json.RawMessage(`{"ok":true}`), Now: t0.Add(time.Second)}

	t.Run("NewRun", func(t *testing.T) {
		s := open(t)
		rs := startRun(t, s, "k", "h1", "r1", t0)
		lease := rs.Lease
		lease.Token = 0 // a store's own
		assert.Equal(t, crmsync.Lease{Key: "k", Holder: "h1", Generation: 1, Run: "r1", Expires: t0.Add(ttl)}, lease)
		assert.Equal(t, crmsync.RunID("r1"), rs.Run.ID)
		assert.Equal(t, 1, rs.Run.Attempts)
		assert.Equal(t, crmsync.RunOpen, rs.Run.Status)
		assert.Equal(t, "wf", rs.Run.Workflow)
		assert.Empty(t, rs.Steps)
		assert.Empty(t, rs.Replays)
		got, err := s.GetLease(ctx, "k")
		require.NoError(t, err)
		assert.Equal(t, "h1", got.Holder)
		assert.Equal(t, crmsync.RunID("r1"), got.Run)
		assert.Equal(t, rs.Lease.Token, got.Token)
	})
	t.Run("Busy", func(t *testing.T) {
		s := open(t)
		startRun(t, s, "k", "h1", "r1", t0)
		_, err := s.StartRun(ctx, crmsync.LeaseRequest{Key: "k", Holder: "h2", NewRun: "r2", TTL: ttl, Now: t0.Add(ttl - time.Millisecond)})
		require.ErrorIs(t, err, crmsync.ErrBusy)
		got, err := s.GetLease(ctx, "k")
		require.NoError(t, err)
		assert.Equal(t, int64(1), got.Generation, "a refused start changes nothing")
		assert.Equal(t, "h1", got.Holder)
		runs, err := s.ListRuns(ctx, "k", 0)
		require.NoError(t, err)
		assert.Len(t, runs, 1)
		_, err = s.StartRun(ctx, crmsync.LeaseRequest{Key: "", Holder: "h", NewRun: "r", TTL: ttl, Now: t0})
		assert.Error(t, err, "StartRun with an empty key")
	})
	t.Run("ResumeWithSteps", func(t *testing.T) {
		s := open(t)
		rs := startRun(t, s, "k", "h1", "r1", t0)
		require.NoError(t, s.Commit(ctx, rs.Lease, crmsync.Checkpoint{Run: "r1", Step: step("s1", `1`)}))
		require.NoError(t, s.Commit(ctx, rs.Lease, crmsync.Checkpoint{Run: "r1", Step: step("s2", `"two"`)}))
		ri, _, err := s.EndRun(ctx, rs.Lease, crmsync.RunEnd{Status: crmsync.RunOpen, Error: "stopped", Now: t0.Add(time.Second)})
		require.NoError(t, err)
		assert.Equal(t, crmsync.RunOpen, ri.Status)
		assert.Equal(t, "stopped", ri.Error)
		got, err := s.GetLease(ctx, "k")
		require.NoError(t, err)
		assert.Empty(t, got.Run, "EndRun releases the lease")

		again := startRun(t, s, "k", "h2", "r2", t0.Add(2*time.Second))
		assert.Equal(t, crmsync.RunID("r1"), again.Run.ID, "an open run resumes with the same id")
		assert.Equal(t, 2, again.Run.Attempts)
		assert.Equal(t, int64(2), again.Lease.Generation)
		assert.ElementsMatch(t, []string{"s1", "s2"}, keys(again.Steps))
		assert.JSONEq(t, `"two"`, string(again.Steps["s2"].Result))
	})
	t.Run("TakeoverFences", func(t *testing.T) {
		s := open(t)
		old := startRun(t, s, "k", "h1", "r1", t0)
		require.NoError(t, s.Commit(ctx, old.Lease, crmsync.Checkpoint{Run: "r1", Step: step("s1", `1`)}))
		// h1's lease expires; h2 takes the key over and resumes the run.
		cur := startRun(t, s, "k", "h2", "r2", t0.Add(ttl+time.Millisecond))
		assert.Equal(t, crmsync.RunID("r1"), cur.Run.ID)
		assert.Equal(t, int64(2), cur.Lease.Generation)
		assert.Equal(t, []string{"s1"}, keys(cur.Steps))

		_, _, err := s.EndRun(ctx, old.Lease, finished)
		require.ErrorIs(t, err, crmsync.ErrLeaseLost)
		ri, err := s.GetRun(ctx, "r1")
		require.NoError(t, err)
		assert.Equal(t, crmsync.RunOpen, ri.Status, "a fenced EndRun must not close the run")
		got, err := s.GetLease(ctx, "k")
		require.NoError(t, err)
		assert.Equal(t, "h2", got.Holder, "a fenced EndRun must not release the new holder's lease")
		require.ErrorIs(t, s.Commit(ctx, old.Lease, crmsync.Checkpoint{Run: "r1", Step: step("s2", `2`)}), crmsync.ErrLeaseLost)

		ri, _, err = s.EndRun(ctx, cur.Lease, finished)
		require.NoError(t, err)
		assert.Equal(t, crmsync.RunFinished, ri.Status)
	})
	t.Run("FinishAuditAndNextRun", func(t *testing.T) {
		s := open(t)
		rs := startRun(t, s, "k", "h1", "r1", t0)
		end := finished
		end.Audit = []crmsync.AuditEntry{{Time: t0, Key: "k", Run: "r1", Kind: crmsync.AuditReplay, Detail: json.RawMessage(`{"replayed_steps":2}`)}}
		ri, _, err := s.EndRun(ctx, rs.Lease, end)
		require.NoError(t, err)
		assert.Equal(t, crmsync.RunFinished, ri.Status)
		assert.True(t, ri.FinishedAt.Equal(end.Now), "FinishedAt = %v", ri.FinishedAt)
		assert.JSONEq(t, `{"ok":true}`, string(ri.Report))
		stored, err := s.GetRun(ctx, "r1")
		require.NoError(t, err)
		assert.Equal(t, ri.Status, stored.Status)
		rows, err := s.QueryAudit(ctx, crmsync.AuditQuery{Run: "r1"})
		require.NoError(t, err)
		require.Len(t, rows, 1)
		assert.Equal(t, crmsync.AuditReplay, rows[0].Kind)

		next := startRun(t, s, "k", "h1", "r2", t0.Add(2*time.Second))
		assert.Equal(t, crmsync.RunID("r2"), next.Run.ID, "a finished run is closed: the next start opens a new run")
		assert.Equal(t, int64(2), next.Lease.Generation)
		ri, _, err = s.EndRun(ctx, next.Lease, crmsync.RunEnd{Status: crmsync.RunFailed, Error: "refused", Now: t0.Add(3 * time.Second)})
		require.NoError(t, err)
		assert.Equal(t, crmsync.RunFailed, ri.Status)
		third := startRun(t, s, "k", "h1", "r3", t0.Add(4*time.Second))
		assert.Equal(t, crmsync.RunID("r3"), third.Run.ID, "a failed run is closed too")
	})
	t.Run("Prune", func(t *testing.T) {
		s := open(t)
		rs := startRun(t, s, "k", "h1", "r1", t0)
		require.NoError(t, s.Commit(ctx, rs.Lease, crmsync.Checkpoint{Run: "r1", Step: step("s1", `1`)}))
		_, n, err := s.EndRun(ctx, rs.Lease, finished)
		require.NoError(t, err)
		assert.Equal(t, 0, n)
		rs = startRun(t, s, "other", "h1", "r2", t0.Add(time.Hour))
		require.NoError(t, s.Commit(ctx, rs.Lease, crmsync.Checkpoint{Run: "r2", Step: step("s1", `1`)}))
		end := finished
		end.Now, end.PruneBefore = t0.Add(2*time.Hour), t0.Add(time.Minute)
		_, n, err = s.EndRun(ctx, rs.Lease, end)
		require.NoError(t, err)
		assert.Equal(t, 1, n, "runs pruned")
		steps, err := s.LoadSteps(ctx, "r1")
		require.NoError(t, err)
		assert.Empty(t, steps, "the old run's steps are pruned")
		steps, err = s.LoadSteps(ctx, "r2")
		require.NoError(t, err)
		assert.Len(t, steps, 1, "the run just finished keeps its steps")
		_, err = s.GetRun(ctx, "r1")
		assert.NoError(t, err, "a pruned run's record is kept")
	})
	t.Run("ReplayClaimAtFirstStartOnly", func(t *testing.T) {
		s := open(t)
		park := func(rs crmsync.RunStart, stepID, rec string) int64 {
			t.Helper()
			require.NoError(t, s.Commit(ctx, rs.Lease, crmsync.Checkpoint{Run: rs.Run.ID, Step: step(stepID, `0`),
				DeadLetters: []crmsync.DeadLetter{{Key: "k", Run: rs.Run.ID, Step: stepID, System: "salesforce", RecordID: rec,
					Payload: json.RawMessage(`{"id":"` + rec + `"}`), Error: "refused", Status: crmsync.DeadParked, Created: t0, Updated: t0}}}))
			list, err := s.ListDeadLetters(ctx, crmsync.DeadLetterQuery{Key: "k"})
			require.NoError(t, err)
			id := list[len(list)-1].ID
			require.NoError(t, s.SetDeadLetterStatus(ctx, id, crmsync.DeadReplay, t0))
			return id
		}
		first := startRun(t, s, "k", "h1", "r1", t0)
		a := park(first, "w1", "A")
		_, _, err := s.EndRun(ctx, first.Lease, finished)
		require.NoError(t, err)

		second := startRun(t, s, "k", "h1", "r2", t0.Add(time.Minute))
		require.Len(t, second.Replays, 1, "a run's first start claims the letters marked for replay")
		assert.Equal(t, a, second.Replays[0].ID)
		assert.Equal(t, crmsync.DeadReplayed, second.Replays[0].Status)
		assert.Equal(t, crmsync.RunID("r2"), second.Replays[0].ClaimedBy)
		b := park(second, "w2", "B") // marked while r2 runs
		_, _, err = s.EndRun(ctx, second.Lease, crmsync.RunEnd{Status: crmsync.RunOpen, Error: "stopped", Now: t0.Add(2 * time.Minute)})
		require.NoError(t, err)

		resumed := startRun(t, s, "k", "h2", "r9", t0.Add(3*time.Minute))
		assert.Equal(t, crmsync.RunID("r2"), resumed.Run.ID)
		require.Len(t, resumed.Replays, 1, "a resumed run gets back its own letters and claims no new ones")
		assert.Equal(t, a, resumed.Replays[0].ID)
		got, err := s.GetDeadLetter(ctx, b)
		require.NoError(t, err)
		assert.Equal(t, crmsync.DeadReplay, got.Status, "a letter marked after the run's first start waits for the next run")
		_, _, err = s.EndRun(ctx, resumed.Lease, finished)
		require.NoError(t, err)

		third := startRun(t, s, "k", "h2", "r3", t0.Add(4*time.Minute))
		require.Len(t, third.Replays, 1)
		assert.Equal(t, b, third.Replays[0].ID)
	})
}
