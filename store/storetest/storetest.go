// Package storetest checks that a [crmsync.Store] keeps the contract the engine
// relies on. Every backend runs it, and so can a user's own:
//
//	func TestStore(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) crmsync.Store { return mystore.New(...) })
//	}
//
// newStore must return an empty store each time it is called.
package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/crmsync/crmsync"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

const ttl = 10 * time.Second

func acquire(t *testing.T, s crmsync.Store, key, holder string, run crmsync.RunID, now time.Time) (crmsync.Lease, crmsync.RunInfo) {
	t.Helper()
	l, ri, err := s.AcquireLease(context.Background(), crmsync.LeaseRequest{Key: key, Holder: holder, Workflow: "wf", NewRun: run, TTL: ttl, Now: now})
	require.NoError(t, err, "AcquireLease(%s, %s)", key, holder)
	return l, ri
}

func step(id, result string) crmsync.StepRecord {
	return crmsync.StepRecord{Step: id, Result: json.RawMessage(result), Attempts: 1, Done: t0}
}

// Run runs the conformance suite, one subtest per behaviour.
func Run(t *testing.T, newStore func(t *testing.T) crmsync.Store) {
	ctx := context.Background()
	tests := []struct {
		name string
		fn   func(t *testing.T, s crmsync.Store)
	}{
		{"LeaseNewRun", func(t *testing.T, s crmsync.Store) {
			l, ri := acquire(t, s, "k", "h1", "r1", t0)
			if l.Generation != 1 || l.Run != "r1" || ri.ID != "r1" || ri.Attempts != 1 || ri.Status != crmsync.RunOpen {
				t.Fatalf("AcquireLease = %+v, %+v; want generation 1 of new open run r1, attempt 1", l, ri)
			}
			if !l.Expires.Equal(t0.Add(ttl)) {
				t.Errorf("Expires = %v, want %v", l.Expires, t0.Add(ttl))
			}
			got, err := s.GetLease(ctx, "k")
			if err != nil || got.Generation != 1 || got.Holder != "h1" {
				t.Errorf("GetLease = %+v, %v", got, err)
			}
		}},
		{"LeaseBusy", func(t *testing.T, s crmsync.Store) {
			acquire(t, s, "k", "h1", "r1", t0)
			_, _, err := s.AcquireLease(ctx, crmsync.LeaseRequest{Key: "k", Holder: "h2", NewRun: "r2", TTL: ttl, Now: t0.Add(ttl - time.Millisecond)})
			require.ErrorIs(t, err, crmsync.ErrBusy, "second AcquireLease")
			// Another key is independent.
			acquire(t, s, "other", "h2", "r3", t0)
		}},
		{"LeaseTakeoverFences", func(t *testing.T, s crmsync.Store) {
			old, _ := acquire(t, s, "k", "h1", "r1", t0)
			require.NoError(t, s.Commit(ctx, old, crmsync.Checkpoint{Run: "r1", Step: step("s1", `1`)}))
			l2, ri := acquire(t, s, "k", "h2", "r2", t0.Add(ttl+time.Millisecond))
			if l2.Generation != 2 || ri.ID != "r1" || ri.Attempts != 2 {
				t.Fatalf("takeover = %+v, %+v; want generation 2 resuming r1 (attempt 2)", l2, ri)
			}
			err := s.Commit(ctx, old, crmsync.Checkpoint{Run: "r1", Step: step("s2", `2`), Cursors: map[string]string{"c": "x"}})
			require.ErrorIs(t, err, crmsync.ErrLeaseLost, "Commit with old lease")
			if _, err := s.RenewLease(ctx, old, ttl, t0.Add(ttl+2*time.Millisecond)); !errors.Is(err, crmsync.ErrLeaseLost) {
				t.Errorf("RenewLease old = %v, want ErrLeaseLost", err)
			}
			assert.ErrorIs(t, s.FinishRun(ctx, old, crmsync.RunFinished, nil, "", t0), crmsync.ErrLeaseLost, "FinishRun old")
			assert.ErrorIs(t, s.ReleaseLease(ctx, old), crmsync.ErrLeaseLost, "ReleaseLease old")
			if _, err := s.ClaimReplays(ctx, old, t0); !errors.Is(err, crmsync.ErrLeaseLost) {
				t.Errorf("ClaimReplays old = %v, want ErrLeaseLost", err)
			}
			steps, err := s.LoadSteps(ctx, "r1")
			require.NoError(t, err)
			if _, ok := steps["s2"]; ok || len(steps) != 1 {
				t.Errorf("LoadSteps = %v; the fenced commit must not land", keys(steps))
			}
			if _, err := s.GetCursor(ctx, "k", "c"); !errors.Is(err, crmsync.ErrNotFound) {
				t.Errorf("GetCursor after fenced commit = %v, want ErrNotFound", err)
			}
			assert.NoError(t, s.Commit(ctx, l2, crmsync.Checkpoint{Run: "r1", Step: step("s2", `2`)}), "Commit with new lease")
		}},
		{"LeaseRenew", func(t *testing.T, s crmsync.Store) {
			l, _ := acquire(t, s, "k", "h1", "r1", t0)
			l, err := s.RenewLease(ctx, l, ttl, t0.Add(8*time.Second))
			require.NoError(t, err)
			assert.True(t, l.Expires.Equal(t0.Add(18*time.Second)), "renewed Expires = %v", l.Expires)
			_, _, err = s.AcquireLease(ctx, crmsync.LeaseRequest{Key: "k", Holder: "h2", NewRun: "r2", TTL: ttl, Now: t0.Add(15 * time.Second)})
			assert.ErrorIs(t, err, crmsync.ErrBusy, "AcquireLease before renewed expiry")
			assert.NoError(t, s.Commit(ctx, l, crmsync.Checkpoint{Run: "r1", Step: step("s", `0`)}), "Commit with renewed lease")
		}},
		{"ReleaseThenResume", func(t *testing.T, s crmsync.Store) {
			l, _ := acquire(t, s, "k", "h1", "r1", t0)
			require.NoError(t, s.FinishRun(ctx, l, crmsync.RunOpen, json.RawMessage(`{"n":1}`), "boom", t0))
			require.NoError(t, s.ReleaseLease(ctx, l))
			assert.ErrorIs(t, s.Commit(ctx, l, crmsync.Checkpoint{Run: "r1", Step: step("late", `0`)}), crmsync.ErrLeaseLost, "Commit after release")
			l2, ri := acquire(t, s, "k", "h2", "r2", t0.Add(time.Second))
			if ri.ID != "r1" || ri.Error != "boom" || l2.Generation != 2 {
				t.Fatalf("after release: %+v %+v; want open run r1 resumed with its error, generation 2", ri, l2)
			}
		}},
		{"FinishClosesRun", func(t *testing.T, s crmsync.Store) {
			l, _ := acquire(t, s, "k", "h1", "r1", t0)
			rep := json.RawMessage(`{"written":3}`)
			require.NoError(t, s.FinishRun(ctx, l, crmsync.RunFinished, rep, "", t0.Add(time.Second)))
			require.NoError(t, s.ReleaseLease(ctx, l))
			ri, err := s.GetRun(ctx, "r1")
			require.NoError(t, err)
			if ri.Status != crmsync.RunFinished || !ri.FinishedAt.Equal(t0.Add(time.Second)) || !jsonEqual(ri.Report, rep) || ri.Key != "k" || ri.Workflow != "wf" {
				t.Errorf("GetRun = %+v", ri)
			}
			_, ri2 := acquire(t, s, "k", "h1", "r2", t0.Add(2*time.Second))
			if ri2.ID != "r2" || ri2.Attempts != 1 {
				t.Errorf("after finish AcquireLease run = %+v, want new run r2", ri2)
			}
		}},
		{"GetRunUnknown", func(t *testing.T, s crmsync.Store) {
			if _, err := s.GetRun(ctx, "nope"); !errors.Is(err, crmsync.ErrNotFound) {
				t.Errorf("GetRun(nope) = %v, want ErrNotFound", err)
			}
			if _, err := s.GetLease(ctx, "nope"); !errors.Is(err, crmsync.ErrNotFound) {
				t.Errorf("GetLease(nope) = %v, want ErrNotFound", err)
			}
		}},
		{"ListRuns", func(t *testing.T, s crmsync.Store) {
			for i := range 3 {
				now := t0.Add(time.Duration(i) * time.Minute)
				l, _ := acquire(t, s, "a", "h", crmsync.RunID(fmt.Sprintf("a%d", i)), now)
				require.NoError(t, s.FinishRun(ctx, l, crmsync.RunFinished, nil, "", now))
				require.NoError(t, s.ReleaseLease(ctx, l))
			}
			acquire(t, s, "b", "h", "b0", t0.Add(time.Hour))
			runs, err := s.ListRuns(ctx, "a", 2)
			require.NoError(t, err)
			if len(runs) != 2 || runs[0].ID != "a2" || runs[1].ID != "a1" {
				t.Errorf("ListRuns(a, 2) = %v, want a2, a1", runIDs(runs))
			}
			all, _ := s.ListRuns(ctx, "", 0)
			if len(all) != 4 || all[0].ID != "b0" {
				t.Errorf("ListRuns(all) = %v, want 4 runs, b0 first", runIDs(all))
			}
		}},
		{"StepsCommitAndLoad", func(t *testing.T, s crmsync.Store) {
			l, _ := acquire(t, s, "k", "h", "r1", t0)
			if got, err := s.LoadSteps(ctx, "r1"); err != nil || len(got) != 0 {
				t.Fatalf("LoadSteps(new run) = %v, %v", got, err)
			}
			failed := crmsync.StepRecord{Step: "bad", Error: "validation failed", Attempts: 3, Done: t0}
			for _, cp := range []crmsync.Checkpoint{{Run: "r1", Step: step("a", `{"x":1}`)}, {Run: "r1", Step: failed}} {
				require.NoError(t, s.Commit(ctx, l, cp))
			}
			// A second commit of a stored step is a no-op that keeps the first result.
			require.NoError(t, s.Commit(ctx, l, crmsync.Checkpoint{Run: "r1", Step: step("a", `{"x":2}`), Cursors: map[string]string{"c": "v"}}), "re-Commit")
			got, err := s.LoadSteps(ctx, "r1")
			require.NoError(t, err)
			if len(got) != 2 || !jsonEqual(got["a"].Result, json.RawMessage(`{"x":1}`)) || got["bad"].Error != "validation failed" || got["bad"].Attempts != 3 {
				t.Errorf("LoadSteps = %+v", got)
			}
			if _, err := s.GetCursor(ctx, "k", "c"); !errors.Is(err, crmsync.ErrNotFound) {
				t.Errorf("cursor of a no-op commit = %v, want ErrNotFound", err)
			}
			if other, _ := s.LoadSteps(ctx, "unknown"); len(other) != 0 {
				t.Errorf("LoadSteps(unknown) = %v", other)
			}
		}},
		{"CheckpointAtomic", func(t *testing.T, s crmsync.Store) {
			l, _ := acquire(t, s, "k", "h", "r1", t0)
			cp := crmsync.Checkpoint{
				Run:     "r1",
				Step:    step("write-1", `[1]`),
				Cursors: map[string]string{"hubspot": "2026-03-01T12:00:00Z", "salesforce": "x"},
				Ledger:  []crmsync.LedgerEntry{{IdemKey: "idem-1", Run: "r1", Step: "write-1", System: "hubspot", RecordID: "101", Result: json.RawMessage(`{"id":"101"}`), At: t0}},
				Audit:   []crmsync.AuditEntry{{Time: t0, Key: "k", Run: "r1", Step: "write-1", Kind: crmsync.AuditWrite, System: "hubspot", RecordIDs: []string{"101", "003A"}, IdemKey: "idem-1", Detail: json.RawMessage(`{"fields":["phone"]}`)}},
				DeadLetters: []crmsync.DeadLetter{{Key: "k", Run: "r1", Step: "write-1", System: "salesforce", RecordID: "003B",
					Payload: json.RawMessage(`{"LastName":null}`), Error: "REQUIRED_FIELD_MISSING", Status: crmsync.DeadParked, Created: t0, Updated: t0}},
			}
			require.NoError(t, s.Commit(ctx, l, cp))
			cur, err := s.ListCursors(ctx, "k")
			if err != nil || len(cur) != 2 || cur["salesforce"] != "x" {
				t.Errorf("ListCursors = %v, %v", cur, err)
			}
			if v, err := s.GetCursor(ctx, "k", "hubspot"); err != nil || v != "2026-03-01T12:00:00Z" {
				t.Errorf("GetCursor = %q, %v", v, err)
			}
			led, err := s.LookupWrites(ctx, []string{"idem-1", "idem-2"})
			if err != nil || len(led) != 1 || led["idem-1"].RecordID != "101" || !jsonEqual(led["idem-1"].Result, json.RawMessage(`{"id":"101"}`)) {
				t.Errorf("LookupWrites = %+v, %v", led, err)
			}
			rows, err := s.QueryAudit(ctx, crmsync.AuditQuery{Run: "r1"})
			if err != nil || len(rows) != 1 || rows[0].ID == 0 || rows[0].IdemKey != "idem-1" || len(rows[0].RecordIDs) != 2 || !rows[0].Time.Equal(t0) {
				t.Errorf("QueryAudit = %+v, %v", rows, err)
			}
			dl, err := s.ListDeadLetters(ctx, crmsync.DeadLetterQuery{Key: "k"})
			if err != nil || len(dl) != 1 || dl[0].ID == 0 || dl[0].RecordID != "003B" || dl[0].Status != crmsync.DeadParked || !jsonEqual(dl[0].Payload, json.RawMessage(`{"LastName":null}`)) {
				t.Errorf("ListDeadLetters = %+v, %v", dl, err)
			}
			// A later cursor value replaces the earlier one.
			require.NoError(t, s.Commit(ctx, l, crmsync.Checkpoint{Run: "r1", Step: step("adv", `0`), Cursors: map[string]string{"salesforce": "y"}}))
			if v, _ := s.GetCursor(ctx, "k", "salesforce"); v != "y" {
				t.Errorf("cursor after advance = %q, want y", v)
			}
		}},
		{"LedgerFirstWriteWins", func(t *testing.T, s crmsync.Store) {
			l, _ := acquire(t, s, "k", "h", "r1", t0)
			for i, id := range []string{"A", "B"} {
				cp := crmsync.Checkpoint{Run: "r1", Step: step(fmt.Sprintf("s%d", i), `0`),
					Ledger: []crmsync.LedgerEntry{{IdemKey: "same", Run: "r1", System: "hubspot", RecordID: id, At: t0}}}
				require.NoError(t, s.Commit(ctx, l, cp))
			}
			led, _ := s.LookupWrites(ctx, []string{"same"})
			if led["same"].RecordID != "A" {
				t.Errorf("ledger row = %+v, want the first write's", led["same"])
			}
			if none, err := s.LookupWrites(ctx, nil); err != nil || len(none) != 0 {
				t.Errorf("LookupWrites(nil) = %v, %v", none, err)
			}
		}},
		{"AuditQuery", func(t *testing.T, s crmsync.Store) {
			var rows []crmsync.AuditEntry
			for i := range 10 {
				kind := crmsync.AuditWrite
				if i%3 == 0 {
					kind = crmsync.AuditSkip
				}
				rows = append(rows, crmsync.AuditEntry{Time: t0.Add(time.Duration(i) * time.Minute), Key: "k",
					Run: crmsync.RunID(fmt.Sprintf("r%d", i%2)), Kind: kind, System: "hubspot",
					RecordIDs: []string{fmt.Sprintf("rec%d", i), "shared"}})
			}
			require.NoError(t, s.AppendAudit(ctx, rows))
			check := func(name string, q crmsync.AuditQuery, want int) []crmsync.AuditEntry {
				t.Helper()
				got, err := s.QueryAudit(ctx, q)
				require.NoError(t, err, "%s", name)
				if len(got) != want {
					t.Errorf("QueryAudit(%s) returned %d rows, want %d", name, len(got), want)
				}
				for i := 1; i < len(got); i++ {
					if got[i].ID <= got[i-1].ID {
						t.Errorf("QueryAudit(%s) not in ID order", name)
					}
				}
				return got
			}
			check("all", crmsync.AuditQuery{}, 10)
			check("run", crmsync.AuditQuery{Run: "r1"}, 5)
			if got := check("record", crmsync.AuditQuery{RecordID: "rec4"}, 1); len(got) == 1 && got[0].RecordIDs[0] != "rec4" {
				t.Errorf("record filter returned %v", got[0].RecordIDs)
			}
			check("record shared", crmsync.AuditQuery{RecordID: "shared"}, 10)
			check("record prefix is not a match", crmsync.AuditQuery{RecordID: "rec"}, 0)
			check("kind", crmsync.AuditQuery{Kind: crmsync.AuditSkip}, 4)
			check("time", crmsync.AuditQuery{Since: t0.Add(2 * time.Minute), Until: t0.Add(5 * time.Minute)}, 3)
			check("key", crmsync.AuditQuery{Key: "other"}, 0)
			page1 := check("page1", crmsync.AuditQuery{Limit: 4}, 4)
			page2 := check("page2", crmsync.AuditQuery{Limit: 4, After: page1[3].ID}, 4)
			check("page3", crmsync.AuditQuery{Limit: 4, After: page2[3].ID}, 2)
		}},
		{"DeadLetterLifecycle", func(t *testing.T, s crmsync.Store) {
			l, _ := acquire(t, s, "k", "h", "r1", t0)
			var dls []crmsync.DeadLetter
			for i := range 3 {
				dls = append(dls, crmsync.DeadLetter{Key: "k", Run: "r1", Step: "w", RecordID: fmt.Sprintf("rec%d", i),
					Payload: json.RawMessage(`{}`), Error: "bad", Status: crmsync.DeadParked, Created: t0, Updated: t0})
			}
			require.NoError(t, s.Commit(ctx, l, crmsync.Checkpoint{Run: "r1", Step: step("w", `0`), DeadLetters: dls}))
			list, _ := s.ListDeadLetters(ctx, crmsync.DeadLetterQuery{Status: crmsync.DeadParked})
			if len(list) != 3 {
				t.Fatalf("parked letters = %d, want 3", len(list))
			}
			if _, err := s.GetDeadLetter(ctx, 999999); !errors.Is(err, crmsync.ErrNotFound) {
				t.Errorf("GetDeadLetter(999999) = %v, want ErrNotFound", err)
			}
			assert.ErrorIs(t, s.SetDeadLetterStatus(ctx, 999999, crmsync.DeadReplay, t0), crmsync.ErrNotFound, "SetDeadLetterStatus(999999)")
			if err := s.SetDeadLetterStatus(ctx, list[0].ID, crmsync.DeadReplayed, t0); err == nil {
				t.Errorf("SetDeadLetterStatus(replayed) = nil, want an error: only replay or discard may be set")
			}
			require.NoError(t, s.SetDeadLetterStatus(ctx, list[0].ID, crmsync.DeadReplay, t0.Add(time.Second)))
			require.NoError(t, s.SetDeadLetterStatus(ctx, list[1].ID, crmsync.DeadDiscarded, t0.Add(time.Second)))
			if err := s.SetDeadLetterStatus(ctx, list[1].ID, crmsync.DeadReplay, t0.Add(time.Second)); err == nil {
				t.Errorf("replaying a discarded letter = nil, want an error")
			}
			require.NoError(t, s.FinishRun(ctx, l, crmsync.RunFinished, nil, "", t0))
			require.NoError(t, s.ReleaseLease(ctx, l))
			l2, _ := acquire(t, s, "k", "h", "r2", t0.Add(time.Minute))
			got, err := s.ClaimReplays(ctx, l2, t0.Add(time.Minute))
			if err != nil || len(got) != 1 || got[0].ID != list[0].ID || got[0].Status != crmsync.DeadReplayed || got[0].ClaimedBy != "r2" {
				t.Fatalf("ClaimReplays = %+v, %v; want letter %d claimed by r2", got, err, list[0].ID)
			}
			// The same run, resumed, gets its claimed letters again.
			require.NoError(t, s.ReleaseLease(ctx, l2))
			l3, ri := acquire(t, s, "k", "h2", "r3", t0.Add(2*time.Minute))
			if ri.ID != "r2" {
				t.Fatalf("resume got run %s, want r2", ri.ID)
			}
			again, err := s.ClaimReplays(ctx, l3, t0.Add(2*time.Minute))
			if err != nil || len(again) != 1 || again[0].ID != list[0].ID {
				t.Errorf("ClaimReplays on resume = %+v, %v", again, err)
			}
			d, err := s.GetDeadLetter(ctx, list[1].ID)
			if err != nil || d.Status != crmsync.DeadDiscarded || d.RecordID != "rec1" {
				t.Errorf("GetDeadLetter(discarded) = %+v, %v", d, err)
			}
		}},
		{"ReplayClaimedAtFirstStartAndFailedAgain", func(t *testing.T, s crmsync.Store) {
			park := func(l crmsync.Lease, run crmsync.RunID, stepID string, d crmsync.DeadLetter) {
				t.Helper()
				d.Key, d.Run, d.Step, d.Created, d.Updated = "k", run, stepID, t0, t0
				require.NoError(t, s.Commit(ctx, l, crmsync.Checkpoint{Run: run, Step: step(stepID, `0`), DeadLetters: []crmsync.DeadLetter{d}}))
			}
			l1, _ := acquire(t, s, "k", "h", "r1", t0)
			park(l1, "r1", "w1", crmsync.DeadLetter{RecordID: "a", Payload: json.RawMessage(`{"v":1}`), Error: "bad a", Status: crmsync.DeadParked})
			park(l1, "r1", "w2", crmsync.DeadLetter{RecordID: "b", Payload: json.RawMessage(`{"v":1}`), Error: "bad b", Status: crmsync.DeadParked})
			list, _ := s.ListDeadLetters(ctx, crmsync.DeadLetterQuery{Key: "k"})
			if len(list) != 2 {
				t.Fatalf("letters = %d, want 2", len(list))
			}
			a, b := list[0], list[1]
			require.NoError(t, s.FinishRun(ctx, l1, crmsync.RunFinished, nil, "", t0))
			require.NoError(t, s.ReleaseLease(ctx, l1))
			require.NoError(t, s.SetDeadLetterStatus(ctx, a.ID, crmsync.DeadReplay, t0))
			l2, _ := acquire(t, s, "k", "h", "r2", t0.Add(time.Minute))
			got, err := s.ClaimReplays(ctx, l2, t0.Add(time.Minute))
			if err != nil || len(got) != 1 || got[0].ID != a.ID {
				t.Fatalf("ClaimReplays at first start = %+v, %v; want letter %d", got, err, a.ID)
			}
			// r2 tries a again in vain: the letter is updated, not doubled.
			park(l2, "r2", "w3", crmsync.DeadLetter{ID: a.ID, RecordID: "a", Payload: json.RawMessage(`{"v":2}`), Error: "bad a again",
				Status: crmsync.DeadFailedAgain})
			d, err := s.GetDeadLetter(ctx, a.ID)
			if err != nil || d.Status != crmsync.DeadFailedAgain || d.Error != "bad a again" || d.ClaimedBy != "r2" || !jsonEqual(d.Payload, json.RawMessage(`{"v":2}`)) || d.Run != "r1" {
				t.Errorf("letter after a failed replay = %+v, %v; want failed-again with the new error and payload", d, err)
			}
			if all, _ := s.ListDeadLetters(ctx, crmsync.DeadLetterQuery{Key: "k"}); len(all) != 2 {
				t.Errorf("letters after a failed replay = %d, want still 2", len(all))
			}
			// b is marked while r2 is open; r2, resumed, does not claim it.
			require.NoError(t, s.SetDeadLetterStatus(ctx, b.ID, crmsync.DeadReplay, t0.Add(2*time.Minute)))
			require.NoError(t, s.ReleaseLease(ctx, l2))
			l3, ri := acquire(t, s, "k", "h", "r3", t0.Add(3*time.Minute))
			if ri.ID != "r2" {
				t.Fatalf("resume got run %s, want r2", ri.ID)
			}
			again, err := s.ClaimReplays(ctx, l3, t0.Add(3*time.Minute))
			if err != nil || len(again) != 1 || again[0].ID != a.ID || again[0].Status != crmsync.DeadFailedAgain {
				t.Errorf("ClaimReplays on resume = %+v, %v; want only letter %d, failed again", again, err, a.ID)
			}
			if d, _ := s.GetDeadLetter(ctx, b.ID); d.Status != crmsync.DeadReplay || d.ClaimedBy != "" {
				t.Errorf("letter marked while the run was open = %s claimed by %q; want it left for the next run", d.Status, d.ClaimedBy)
			}
			// A person marks a again while r2 holds it; r2's next failure is
			// then a new letter, not lost.
			require.NoError(t, s.SetDeadLetterStatus(ctx, a.ID, crmsync.DeadReplay, t0.Add(4*time.Minute)), "replaying a failed-again letter")
			park(l3, "r2", "w4", crmsync.DeadLetter{ID: a.ID, RecordID: "a", Payload: json.RawMessage(`{"v":3}`), Error: "bad a thrice",
				Status: crmsync.DeadFailedAgain})
			all, _ := s.ListDeadLetters(ctx, crmsync.DeadLetterQuery{Key: "k"})
			if len(all) != 3 || all[2].Status != crmsync.DeadParked || all[2].Error != "bad a thrice" || all[2].ID == a.ID {
				t.Errorf("letters = %+v; want a third, parked letter for the failure after the claim was withdrawn", all)
			}
			if d, _ := s.GetDeadLetter(ctx, a.ID); d.Status != crmsync.DeadReplay {
				t.Errorf("letter %d = %s, want replay as the person set it", a.ID, d.Status)
			}
		}},
		{"FailedRunIsClosed", func(t *testing.T, s crmsync.Store) {
			l, _ := acquire(t, s, "k", "h", "r1", t0)
			require.NoError(t, s.Commit(ctx, l, crmsync.Checkpoint{Run: "r1", Step: step("s", `1`)}))
			if err := s.FinishRun(ctx, l, crmsync.RunStatus("lost"), nil, "", t0); err == nil {
				t.Errorf("FinishRun with an unknown status = nil, want an error")
			}
			require.NoError(t, s.FinishRun(ctx, l, crmsync.RunFailed, json.RawMessage(`{}`), "INVALID_SESSION_ID", t0.Add(time.Second)))
			ri, err := s.GetRun(ctx, "r1")
			if err != nil || ri.Status != crmsync.RunFailed || ri.Error != "INVALID_SESSION_ID" || !ri.FinishedAt.Equal(t0.Add(time.Second)) {
				t.Errorf("failed run = %+v, %v", ri, err)
			}
			require.NoError(t, s.ReleaseLease(ctx, l))
			if _, next := acquire(t, s, "k", "h", "r2", t0.Add(time.Minute)); next.ID != "r2" {
				t.Errorf("the start after a failed run resumed %s, want a new run r2", next.ID)
			}
			if n, err := s.PruneRuns(ctx, t0.Add(time.Hour)); err != nil || n != 1 {
				t.Errorf("PruneRuns = %d, %v; want the failed run's steps pruned", n, err)
			}
		}},
		{"PruneRuns", func(t *testing.T, s crmsync.Store) {
			l, _ := acquire(t, s, "old", "h", "r-old", t0)
			require.NoError(t, s.Commit(ctx, l, crmsync.Checkpoint{Run: "r-old", Step: step("s", `1`)}))
			require.NoError(t, s.FinishRun(ctx, l, crmsync.RunFinished, json.RawMessage(`{}`), "", t0))
			lo, _ := acquire(t, s, "open", "h", "r-open", t0)
			require.NoError(t, s.Commit(ctx, lo, crmsync.Checkpoint{Run: "r-open", Step: step("s", `1`)}))
			n, err := s.PruneRuns(ctx, t0.Add(time.Hour))
			if err != nil || n != 1 {
				t.Errorf("PruneRuns = %d, %v; want 1", n, err)
			}
			if st, _ := s.LoadSteps(ctx, "r-old"); len(st) != 0 {
				t.Errorf("steps of pruned run remain: %v", keys(st))
			}
			if st, _ := s.LoadSteps(ctx, "r-open"); len(st) != 1 {
				t.Errorf("open run's steps were pruned")
			}
			if _, err := s.GetRun(ctx, "r-old"); err != nil {
				t.Errorf("pruned run's record is gone: %v", err)
			}
		}},
		{"ConcurrentCommits", func(t *testing.T, s crmsync.Store) {
			l, _ := acquire(t, s, "k", "h", "r1", t0)
			var wg sync.WaitGroup
			errs := make(chan error, 40)
			for i := range 40 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					errs <- s.Commit(ctx, l, crmsync.Checkpoint{Run: "r1", Step: step(fmt.Sprintf("s%d", i), `0`),
						Audit: []crmsync.AuditEntry{{Time: t0, Key: "k", Run: "r1", Kind: crmsync.AuditWrite}}})
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				require.NoError(t, err)
			}
			st, _ := s.LoadSteps(ctx, "r1")
			rows, _ := s.QueryAudit(ctx, crmsync.AuditQuery{Run: "r1", Limit: 1000})
			if len(st) != 40 || len(rows) != 40 {
				t.Errorf("after 40 concurrent commits: %d steps, %d audit rows; want 40 each", len(st), len(rows))
			}
		}},
		{"Links", func(t *testing.T, s crmsync.Store) {
			base := crmsync.Fields{"email": "ada@example.com", "score": 42.0, "vip": true, "phone": nil}
			if err := s.PutLinks(ctx, []crmsync.Link{
				{Key: "k", AID: "101", BID: "003A", Base: base, UpdatedAt: t0},
				{Key: "k", AID: "102", BID: "003B", UpdatedAt: t0},
				{Key: "other", AID: "101", BID: "003Z", UpdatedAt: t0},
			}); err != nil {
				t.Fatal(err)
			}
			byA, err := s.LinksByA(ctx, "k", []string{"101", "102", "999"})
			if err != nil || len(byA) != 2 || byA["101"].BID != "003A" || byA["101"].Key != "k" || !byA["101"].UpdatedAt.Equal(t0) {
				t.Fatalf("LinksByA = %+v, %v", byA, err)
			}
			if got := byA["101"].Base; fmt.Sprint(got) != fmt.Sprint(base) {
				t.Errorf("base snapshot = %v, want %v (types kept through the store)", got, base)
			}
			byB, err := s.LinksByB(ctx, "k", []string{"003B", "003Z"})
			if err != nil || len(byB) != 1 || byB["003B"].AID != "102" {
				t.Errorf("LinksByB = %+v, %v; want only 003B (003Z is another key's)", byB, err)
			}
			// Relinking 101 to a new counterpart drops its old link both ways.
			require.NoError(t, s.PutLinks(ctx, []crmsync.Link{{Key: "k", AID: "101", BID: "003C", Base: crmsync.Fields{"email": "x"}, UpdatedAt: t0}}))
			if old, _ := s.LinksByB(ctx, "k", []string{"003A"}); len(old) != 0 {
				t.Errorf("old counterpart 003A still linked: %+v", old)
			}
			// Linking 103 to 003B (held by 102) moves 003B.
			require.NoError(t, s.PutLinks(ctx, []crmsync.Link{{Key: "k", AID: "103", BID: "003B", UpdatedAt: t0}}))
			if gone, _ := s.LinksByA(ctx, "k", []string{"102"}); len(gone) != 0 {
				t.Errorf("102 still linked after 003B moved to 103: %+v", gone)
			}
			if err := s.PutLinks(ctx, []crmsync.Link{{Key: "k", AID: "", BID: "x"}}); err == nil {
				t.Error("PutLinks with an empty id = nil, want an error")
			}
		}},
		{"LinksCommitWithStep", func(t *testing.T, s crmsync.Store) {
			l, _ := acquire(t, s, "k", "h", "r1", t0)
			link := crmsync.Link{Key: "k", AID: "101", BID: "003A", Base: crmsync.Fields{"phone": "555"}, UpdatedAt: t0}
			c := crmsync.Conflict{ID: "c1", Key: "k", SystemA: "hubspot", SystemB: "salesforce", RecordA: "101", RecordB: "003A",
				Field: "phone", State: crmsync.ConflictHeld, Held: true, A: "1", B: "2", DetectedAt: t0}
			require.NoError(t, s.Commit(ctx, l, crmsync.Checkpoint{Run: "r1", Step: step("w", `0`), Links: []crmsync.Link{link}, Conflicts: []crmsync.Conflict{c}}))
			if got, _ := s.LinksByA(ctx, "k", []string{"101"}); got["101"].BID != "003A" {
				t.Errorf("link not committed with the step: %+v", got)
			}
			if got, err := s.GetConflict(ctx, "c1"); err != nil || got.State != crmsync.ConflictHeld || got.RecordB != "003A" {
				t.Errorf("conflict not committed with the step: %+v, %v", got, err)
			}
			// A fenced commit writes no link.
			acquire(t, s, "k", "h2", "r2", t0.Add(time.Hour))
			err := s.Commit(ctx, l, crmsync.Checkpoint{Run: "r1", Step: step("w2", `0`), Links: []crmsync.Link{{Key: "k", AID: "102", BID: "003B"}}})
			if !errors.Is(err, crmsync.ErrLeaseLost) {
				t.Fatalf("fenced Commit = %v", err)
			}
			if got, _ := s.LinksByA(ctx, "k", []string{"102"}); len(got) != 0 {
				t.Errorf("fenced commit wrote a link: %+v", got)
			}
		}},
		{"Conflicts", func(t *testing.T, s crmsync.Store) {
			mk := func(id, key, field string, st crmsync.ConflictState) crmsync.Conflict {
				return crmsync.Conflict{ID: id, Key: key, SystemA: "hubspot", SystemB: "salesforce", RecordA: "a-" + id, RecordB: "b-" + id,
					Field: field, State: st, Held: st == crmsync.ConflictHeld, Base: "x", A: 1.5, B: true, DetectedAt: t0}
			}
			if err := s.SaveConflicts(ctx, []crmsync.Conflict{mk("c1", "k", "phone", crmsync.ConflictHeld), mk("c2", "k", "lifecyclestage", crmsync.ConflictResolved),
				mk("c3", "k", "phone", crmsync.ConflictHeld), mk("c4", "other", "phone", crmsync.ConflictHeld)}); err != nil {
				t.Fatal(err)
			}
			held, _ := s.ListConflicts(ctx, crmsync.ConflictFilter{Key: "k", State: crmsync.ConflictHeld})
			if len(held) != 2 || held[0].ID != "c1" || held[1].ID != "c3" {
				t.Errorf("held conflicts of k = %v, want c1, c3 oldest first", conflictIDs(held))
			}
			if f, _ := s.ListConflicts(ctx, crmsync.ConflictFilter{Field: "phone", Limit: 2}); len(f) != 2 {
				t.Errorf("phone conflicts with limit 2 = %d", len(f))
			}
			got, err := s.GetConflict(ctx, "c1")
			if err != nil || got.A != 1.5 || got.B != true || got.Base != "x" || !got.DetectedAt.Equal(t0) {
				t.Errorf("GetConflict = %+v, %v", got, err)
			}
			if _, err := s.GetConflict(ctx, "nope"); !errors.Is(err, crmsync.ErrNotFound) {
				t.Errorf("GetConflict(nope) = %v, want ErrNotFound", err)
			}
			assert.ErrorIs(t, s.ResolveConflict(ctx, "nope", crmsync.Resolution{Pick: "hubspot"}, t0), crmsync.ErrNotFound, "ResolveConflict(nope)")
			if err := s.ResolveConflict(ctx, "c2", crmsync.Resolution{Pick: "hubspot"}, t0); err == nil {
				t.Errorf("ResolveConflict of a conflict the rule resolved = nil, want an error")
			}
			require.NoError(t, s.ResolveConflict(ctx, "c1", crmsync.Resolution{Pick: "salesforce"}, t0.Add(time.Hour)))
			// The next pass sees the same conflict again: the choice is kept.
			require.NoError(t, s.SaveConflicts(ctx, []crmsync.Conflict{mk("c1", "k", "phone", crmsync.ConflictHeld)}))
			pend, err := s.PendingResolutions(ctx, "k")
			if err != nil || len(pend) != 1 || pend[0].ID != "c1" || pend[0].Resolution == nil || pend[0].Resolution.Pick != "salesforce" || !pend[0].ResolvedAt.Equal(t0.Add(time.Hour)) {
				t.Fatalf("PendingResolutions = %+v, %v", pend, err)
			}
			applied := pend[0]
			applied.State = crmsync.ConflictApplied
			require.NoError(t, s.SaveConflicts(ctx, []crmsync.Conflict{applied}))
			if pend, _ := s.PendingResolutions(ctx, "k"); len(pend) != 0 {
				t.Errorf("PendingResolutions after apply = %v", conflictIDs(pend))
			}
		}},
		{"BadInput", func(t *testing.T, s crmsync.Store) {
			if _, _, err := s.AcquireLease(ctx, crmsync.LeaseRequest{Key: "", Holder: "h", NewRun: "r", TTL: ttl, Now: t0}); err == nil {
				t.Errorf("AcquireLease with empty key = nil, want an error")
			}
			l, _ := acquire(t, s, "k", "h", "r1", t0)
			if err := s.Commit(ctx, l, crmsync.Checkpoint{Run: "r1"}); err == nil {
				t.Errorf("Commit with empty step id = nil, want an error")
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, newStore(t)) })
	}
	t.Run("CheckpointRows", func(t *testing.T) { exerciseCheckpointRows(t, newStore(t)) })
	t.Run("RunStartEnd", func(t *testing.T) { exerciseRunStartEnd(t, newStore) })
	t.Run("Triggers", func(t *testing.T) { exerciseTriggers(t, newStore) })
	t.Run("Positions", func(t *testing.T) { exercisePositions(t, newStore) })
}

func keys(m map[string]crmsync.StepRecord) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func conflictIDs(cs []crmsync.Conflict) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.ID)
	}
	return out
}

func runIDs(runs []crmsync.RunInfo) []crmsync.RunID {
	var out []crmsync.RunID
	for _, r := range runs {
		out = append(out, r.ID)
	}
	return out
}

func jsonEqual(a, b json.RawMessage) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	xa, _ := json.Marshal(x)
	ya, _ := json.Marshal(y)
	return string(xa) == string(ya)
}
