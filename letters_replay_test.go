package crmsync_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/crmsync/crmsync"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// writeLetter is a dead letter for a write of field to Salesforce contact
// 001 (HubSpot contact 101's partner) with idempotency key key.
func writeLetter(t *testing.T, field, key string) crmsync.DeadLetter {
	t.Helper()
	payload, err := json.Marshal(map[string]any{"source_system": "hubspot", "source_id": "101",
		"target_system": "salesforce", "op": crmsync.WriteOp{Kind: crmsync.Update, ID: "001", Key: key,
			Fields: crmsync.Fields{field: "x"}}})
	require.NoError(t, err)
	return crmsync.DeadLetter{System: "salesforce", RecordID: "001", Payload: payload, Error: "refused: " + field}
}

// replayTwoLetters parks first in a key's run, has a person replay them
// all, and parks again in the next run (whose first attempt of the step,
// if flaky, parks them too and then fails transiently): it returns the
// letters parked by the first run, the second run's id and the letters
// after it.
func replayTwoLetters(t *testing.T, st crmsync.Store, flaky bool, first, again []crmsync.DeadLetter) (parked []crmsync.DeadLetter, second crmsync.RunID, after []crmsync.DeadLetter) {
	t.Helper()
	ctx := context.Background()
	c := newClock()
	eng := newEngine(t, st, c, func(cfg *crmsync.Config) { cfg.Sleep = (&sleeper{c: c}).Sleep })
	park, failing := first, false
	var replays []crmsync.DeadLetter
	wf := crmsync.WorkflowFunc(func(ctx context.Context, run *crmsync.Run) error {
		replays = run.Replays()
		_, err := crmsync.Step(ctx, run, "resolve", func(_ context.Context, a *crmsync.Attempt) (int, error) {
			for _, d := range park {
				a.DeadLetter(d)
			}
			if failing && a.N == 1 {
				return 0, errFlaky // this attempt's letters are dropped
			}
			return 0, nil
		}, nil)
		return err
	})
	_, err := eng.Run(ctx, "k", wf)
	require.NoError(t, err)
	parked, err = st.ListDeadLetters(ctx, crmsync.DeadLetterQuery{Key: "k"})
	require.NoError(t, err)
	require.Len(t, parked, len(first), "letters parked by the first run")
	for _, d := range parked {
		require.NoError(t, st.SetDeadLetterStatus(ctx, d.ID, crmsync.DeadReplay, c.Now()))
	}
	park, failing = again, flaky
	info, err := eng.Run(ctx, "k", wf)
	require.NoError(t, err)
	require.Len(t, replays, len(parked), "letters the second run claimed")
	after, err = st.ListDeadLetters(ctx, crmsync.DeadLetterQuery{Key: "k"})
	require.NoError(t, err)
	return parked, info.ID, after
}

// answeredLetters returns the claimed letters the run's dead-letter audit
// rows name as failed again.
func answeredLetters(t *testing.T, st crmsync.Store, run crmsync.RunID) []int64 {
	t.Helper()
	rows, err := st.QueryAudit(context.Background(), crmsync.AuditQuery{Run: run, Kind: crmsync.AuditDeadLetter})
	require.NoError(t, err)
	var ids []int64
	for _, r := range rows {
		var detail struct {
			DeadLetter int64 `json:"dead_letter"`
		}
		require.NoError(t, json.Unmarshal(r.Detail, &detail))
		ids = append(ids, detail.DeadLetter)
	}
	return ids
}

// TestReplayFailingAgainKeepsEachLetter parks two letters about one record
// (two writes to it, told apart by their idempotency keys), replays both,
// and has both fail again, in the other order: each letter must be updated
// by the failure of its own write, not the second folded into the first,
// so both stay for the next replay.
func TestReplayFailingAgainKeepsEachLetter(t *testing.T) {
	forEachStore(t, func(t *testing.T, st crmsync.Store) {
		email, first := writeLetter(t, "Email", "key-email"), writeLetter(t, "FirstName", "key-firstname")
		parked, second, after := replayTwoLetters(t, st, false, []crmsync.DeadLetter{email, first}, []crmsync.DeadLetter{first, email})
		require.Len(t, after, 2, "no letter is added for a replay that failed again")
		byID := map[int64]crmsync.DeadLetter{}
		for _, d := range after {
			byID[d.ID] = d
		}
		for _, d := range parked {
			got := byID[d.ID]
			assert.Equal(t, crmsync.DeadFailedAgain, got.Status, "letter %d status", d.ID)
			assert.Equal(t, second, got.ClaimedBy, "letter %d claimed by", d.ID)
			assert.Equal(t, d.Error, got.Error, "letter %d keeps its own failure", d.ID)
			assert.JSONEq(t, string(d.Payload), string(got.Payload), "letter %d keeps its own write", d.ID)
		}
		assert.ElementsMatch(t, []int64{parked[0].ID, parked[1].ID}, answeredLetters(t, st, second),
			"the second run's dead-letter audit rows name each letter once")
	})
}

// TestReplayFailingAgainWithNewWrites has two letters about one record fail
// again with writes the first run did not send (the record changed, so the
// writes' keys did): each claimed letter answers one of them, rather than
// the first answering both and the second being taken as done. When the
// step's first attempt parked them and failed, its answers are given back.
func TestReplayFailingAgainWithNewWrites(t *testing.T) {
	for _, flaky := range []bool{false, true} {
		t.Run(map[bool]string{false: "once", true: "after-a-failed-attempt"}[flaky], func(t *testing.T) {
			forEachStore(t, func(t *testing.T, st crmsync.Store) {
				parked, second, after := replayTwoLetters(t, st, flaky,
					[]crmsync.DeadLetter{writeLetter(t, "Email", "v1-email"), writeLetter(t, "FirstName", "v1-firstname")},
					[]crmsync.DeadLetter{writeLetter(t, "Email", "v2-email"), writeLetter(t, "FirstName", "v2-firstname")})
				require.Len(t, after, 2, "no letter is added for a replay that failed again")
				for _, d := range after {
					assert.Equal(t, crmsync.DeadFailedAgain, d.Status, "letter %d status", d.ID)
					assert.Equal(t, second, d.ClaimedBy, "letter %d claimed by", d.ID)
				}
				assert.ElementsMatch(t, []int64{parked[0].ID, parked[1].ID}, answeredLetters(t, st, second),
					"the second run's dead-letter audit rows name each letter once")
			})
		})
	}
}

// TestReplayFailingAgainTwiceForOneLetter has one claimed letter's record
// fail twice in the replaying run: the second failure updates the same
// letter rather than parking a second letter for the record.
func TestReplayFailingAgainTwiceForOneLetter(t *testing.T) {
	forEachStore(t, func(t *testing.T, st crmsync.Store) {
		parked, second, after := replayTwoLetters(t, st, false,
			[]crmsync.DeadLetter{writeLetter(t, "Email", "v1-email")},
			[]crmsync.DeadLetter{writeLetter(t, "Email", "v2-email"), writeLetter(t, "FirstName", "v2-firstname")})
		require.Len(t, after, 1, "no letter is added for a replay that failed again")
		assert.Equal(t, crmsync.DeadFailedAgain, after[0].Status, "letter status")
		assert.Equal(t, []int64{parked[0].ID, parked[0].ID}, answeredLetters(t, st, second),
			"the second run's dead-letter audit rows both name the claimed letter")
	})
}

// TestReplayFailingAgainAcrossResume has a replaying run answer one of two
// claimed letters about one record, stop, and be resumed: a failure after
// the resume answers the other letter, since the first was answered before.
func TestReplayFailingAgainAcrossResume(t *testing.T) {
	forEachStore(t, func(t *testing.T, st crmsync.Store) {
		ctx := context.Background()
		c := newClock()
		eng := newEngine(t, st, c, func(cfg *crmsync.Config) { cfg.Retry = &crmsync.RetryPolicy{MaxAttempts: 1} })
		replaying, failB := false, false
		wf := crmsync.WorkflowFunc(func(ctx context.Context, run *crmsync.Run) error {
			parkStep := func(id string, d crmsync.DeadLetter, fail bool) error {
				_, err := crmsync.Step(ctx, run, id, func(_ context.Context, a *crmsync.Attempt) (int, error) {
					if fail {
						return 0, errFlaky
					}
					a.DeadLetter(d)
					return 0, nil
				}, nil)
				return err
			}
			if !replaying {
				if err := parkStep("a", writeLetter(t, "Email", "v1-email"), false); err != nil {
					return err
				}
				return parkStep("b", writeLetter(t, "FirstName", "v1-firstname"), false)
			}
			if err := parkStep("a", writeLetter(t, "Email", "v2-email"), false); err != nil {
				return err
			}
			return parkStep("b", writeLetter(t, "FirstName", "v2-firstname"), failB)
		})
		_, err := eng.Run(ctx, "k", wf)
		require.NoError(t, err)
		parked, err := st.ListDeadLetters(ctx, crmsync.DeadLetterQuery{Key: "k"})
		require.NoError(t, err)
		require.Len(t, parked, 2, "letters parked by the first run")
		for _, d := range parked {
			require.NoError(t, st.SetDeadLetterStatus(ctx, d.ID, crmsync.DeadReplay, c.Now()))
		}
		replaying, failB = true, true
		stopped, err := eng.Run(ctx, "k", wf)
		require.ErrorIs(t, err, errFlaky, "the replaying run stops at step b")
		require.Equal(t, crmsync.RunOpen, stopped.Status, "stopped run status")
		failB = false
		resumed, err := eng.Run(ctx, "k", wf)
		require.NoError(t, err)
		require.Equal(t, stopped.ID, resumed.ID, "resumed run id")
		after, err := st.ListDeadLetters(ctx, crmsync.DeadLetterQuery{Key: "k"})
		require.NoError(t, err)
		require.Len(t, after, 2, "no letter is added for a replay that failed again")
		for _, d := range after {
			assert.Equal(t, crmsync.DeadFailedAgain, d.Status, "letter %d status", d.ID)
		}
		assert.ElementsMatch(t, []int64{parked[0].ID, parked[1].ID}, answeredLetters(t, st, resumed.ID),
			"the run's dead-letter audit rows name each letter once")
	})
}
