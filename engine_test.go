package crmsync_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/internal/clocktest"
	"github.com/crmsync/crmsync/store/memory"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func newClock() *clocktest.Clock {
	return clocktest.New(time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC))
}

// sleeper records waits and advances the clock instead of sleeping.
type sleeper struct {
	c     *clocktest.Clock
	mu    sync.Mutex
	waits []time.Duration
}

func (s *sleeper) Sleep(ctx context.Context, d time.Duration) error {
	s.mu.Lock()
	s.waits = append(s.waits, d)
	s.mu.Unlock()
	s.c.Advance(d)
	return ctx.Err()
}

func newEngine(t *testing.T, st crmsync.Store, c *clocktest.Clock, mod func(*crmsync.Config)) *crmsync.Engine {
	t.Helper()
	cfg := crmsync.Config{Store: st, Now: c.Now, LeaseTTL: 10 * time.Second, Heartbeat: 9 * time.Second, Logger: quiet}
	if mod != nil {
		mod(&cfg)
	}
	e, err := crmsync.NewEngine(cfg)
	require.NoError(t, err, "NewEngine")
	return e
}

var errFlaky = errors.New("connection reset")

var quiet = slog.New(slog.DiscardHandler)

func TestNewEngineValidates(t *testing.T) {
	tests := []struct {
		name string
		cfg  crmsync.Config
		want string
	}{
		{"nil store", crmsync.Config{}, "Store"},
		{"negative ttl", crmsync.Config{Store: memory.New(), LeaseTTL: -1}, "LeaseTTL"},
		{"heartbeat too long", crmsync.Config{Store: memory.New(), LeaseTTL: time.Second, Heartbeat: 2 * time.Second}, "Heartbeat"},
		{"bad retry", crmsync.Config{Store: memory.New(), Retry: &crmsync.RetryPolicy{}}, "MaxAttempts"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := crmsync.NewEngine(tc.cfg)
			assert.ErrorContains(t, err, tc.want, "NewEngine(%s)", tc.name)
		})
	}
}

func TestResumeReplaysCompletedSteps(t *testing.T) {
	forEachStore(t, func(t *testing.T, st crmsync.Store) {
		c := newClock()
		eng := newEngine(t, st, c, func(cfg *crmsync.Config) { cfg.Retry = &crmsync.RetryPolicy{MaxAttempts: 1} })
		calls := map[string]int{}
		failB := true
		wf := crmsync.WorkflowFunc(func(ctx context.Context, run *crmsync.Run) error {
			a, err := crmsync.Step(ctx, run, "a", func(ctx context.Context, _ *crmsync.Attempt) (map[string]int, error) {
				calls["a"]++
				return map[string]int{"n": 41}, nil
			}, nil)
			if err != nil {
				return err
			}
			_, err = crmsync.Step(ctx, run, "b", func(ctx context.Context, _ *crmsync.Attempt) (int, error) {
				calls["b"]++
				if failB {
					return 0, errFlaky
				}
				return a["n"] + 1, nil
			}, nil)
			return err
		})
		first, err := eng.Run(context.Background(), "team-1", wf)
		require.ErrorIs(t, err, errFlaky, "first Run: want the step's error")
		assert.Equal(t, crmsync.RunOpen, first.Status, "failed run status")
		failB = false
		second, err := eng.Run(context.Background(), "team-1", wf)
		require.NoError(t, err)
		assert.Equal(t, first.ID, second.ID, "resumed run id")
		if calls["a"] != 1 || calls["b"] != 2 {
			t.Errorf("calls = %v, want a once and b twice", calls)
		}
		var rep crmsync.Report
		require.NoError(t, json.Unmarshal(second.Report, &rep))
		if rep.Counters.Replays != 1 || rep.Counters.StepRuns != 1 {
			t.Errorf("counters = %+v, want 1 replay and 1 step run", rep.Counters)
		}
		if second.Status != crmsync.RunFinished || second.Attempts != 2 {
			t.Errorf("run = %+v, want finished after 2 attempts", second)
		}
		third, err := eng.Run(context.Background(), "team-1", wf)
		require.NoError(t, err)
		if third.ID == first.ID || calls["a"] != 2 {
			t.Errorf("after finish: run %s (first %s), a called %d times; want a new run that runs a again", third.ID, first.ID, calls["a"])
		}
		rows, _ := st.QueryAudit(context.Background(), crmsync.AuditQuery{Run: first.ID, Kind: crmsync.AuditReplay})
		assert.Len(t, rows, 1, "replay audit rows")
	})
}

func TestStepBadInput(t *testing.T) {
	eng := newEngine(t, memory.New(), newClock(), nil)
	_, err := eng.Run(context.Background(), "k", crmsync.WorkflowFunc(func(ctx context.Context, run *crmsync.Run) error {
		ok := func(ctx context.Context, _ *crmsync.Attempt) (int, error) { return 1, nil }
		_, err := crmsync.Step(ctx, run, "", ok, nil)
		assert.ErrorContains(t, err, "empty step id", `Step("")`)
		_, err = crmsync.Step(ctx, run, "once", ok, nil)
		require.NoError(t, err)
		_, err = crmsync.Step(ctx, run, "once", ok, nil)
		if !errors.Is(err, crmsync.ErrDuplicateStep) || !strings.Contains(err.Error(), `"once"`) {
			t.Errorf("reused step id = %v, want ErrDuplicateStep naming the step", err)
		}
		_, err = crmsync.Step(ctx, run, "chan", func(ctx context.Context, _ *crmsync.Attempt) (chan int, error) { return make(chan int), nil }, nil)
		assert.ErrorContains(t, err, `"chan"`, "unencodable result: want an error naming the step")
		assert.ErrorContains(t, err, "encode result", "unencodable result")
		return nil
	}))
	require.NoError(t, err)
	_, err = eng.Run(context.Background(), "", crmsync.WorkflowFunc(func(context.Context, *crmsync.Run) error { return nil }))
	assert.Error(t, err, "Run with empty key")
}

func TestRetries(t *testing.T) {
	tests := []struct {
		name      string
		errs      []error // returned by successive attempts; then success
		max       int
		wantErr   func(error) bool
		wantCalls int
		wantWaits []time.Duration // exact waits; nil means only count them
		nWaits    int
	}{
		{"transient then ok", []error{errFlaky, errFlaky}, 5, nil, 3, nil, 2},
		{"retry-after waits exactly and is not a failure", []error{
			crmsync.RetryAfter(7*time.Second, errFlaky), crmsync.RetryAfter(7*time.Second, errFlaky), crmsync.RetryAfter(3*time.Second, errFlaky)},
			1, nil, 4, []time.Duration{7 * time.Second, 7 * time.Second, 3 * time.Second}, 3},
		{"gives up", []error{errFlaky, errFlaky, errFlaky, errFlaky}, 3,
			func(err error) bool {
				return errors.Is(err, errFlaky) && strings.Contains(err.Error(), "gave up after 3")
			}, 3, nil, 2},
		{"permanent stops at once", []error{crmsync.Permanent(errFlaky)}, 5,
			func(err error) bool { return crmsync.IsPermanent(err) && errors.Is(err, errFlaky) }, 1, nil, 0},
		{"daily limit stops at once", []error{fmt.Errorf("hubspot: %w", crmsync.ErrDailyLimit)}, 5,
			func(err error) bool { return errors.Is(err, crmsync.ErrDailyLimit) }, 1, nil, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := newClock()
			sl := &sleeper{c: c}
			st := memory.New()
			eng := newEngine(t, st, c, func(cfg *crmsync.Config) { cfg.Sleep = sl.Sleep })
			calls := 0
			var stepErr error
			info, _ := eng.Run(context.Background(), "k", crmsync.WorkflowFunc(func(ctx context.Context, run *crmsync.Run) error {
				_, stepErr = crmsync.Step(ctx, run, "s", func(ctx context.Context, a *crmsync.Attempt) (int, error) {
					calls++
					if a.N != calls {
						t.Errorf("Attempt.N = %d on call %d", a.N, calls)
					}
					if calls <= len(tc.errs) {
						return 0, tc.errs[calls-1]
					}
					return 1, nil
				}, &crmsync.StepOpts{Retry: &crmsync.RetryPolicy{MaxAttempts: tc.max, InitialInterval: time.Second, MaxInterval: 4 * time.Second, Multiplier: 2}})
				return stepErr
			}))
			if tc.wantErr == nil && stepErr != nil {
				t.Fatalf("Step = %v, want success", stepErr)
			}
			if tc.wantErr != nil && !tc.wantErr(stepErr) {
				t.Fatalf("Step = %v, not the error wanted", stepErr)
			}
			assert.Equal(t, tc.wantCalls, calls, "fn calls")
			assert.Len(t, sl.waits, tc.nWaits, "waits")
			if tc.wantWaits != nil && fmt.Sprint(sl.waits) != fmt.Sprint(tc.wantWaits) {
				t.Errorf("waits = %v, want %v", sl.waits, tc.wantWaits)
			}
			retryRows, _ := st.QueryAudit(context.Background(), crmsync.AuditQuery{Run: info.ID, Kind: crmsync.AuditRetry})
			if tc.wantErr == nil && len(retryRows) != tc.nWaits {
				t.Errorf("retry audit rows = %d, want %d", len(retryRows), tc.nWaits)
			}
		})
	}
}

func TestBackoffGrows(t *testing.T) {
	c := newClock()
	sl := &sleeper{c: c}
	eng := newEngine(t, memory.New(), c, func(cfg *crmsync.Config) { cfg.Sleep = sl.Sleep })
	eng.Run(context.Background(), "k", crmsync.WorkflowFunc(func(ctx context.Context, run *crmsync.Run) error {
		_, err := crmsync.Step(ctx, run, "s", func(context.Context, *crmsync.Attempt) (int, error) { return 0, errFlaky },
			&crmsync.StepOpts{Retry: &crmsync.RetryPolicy{MaxAttempts: 6, InitialInterval: 100 * time.Millisecond, MaxInterval: time.Second, Multiplier: 2, Jitter: 0.5}})
		return err
	}))
	require.Len(t, sl.waits, 5, "waits")
	for i, w := range sl.waits {
		base := min(100*time.Millisecond<<i, time.Second)
		if w < base/2 || w > base*3/2 {
			t.Errorf("wait %d = %v, want within ±50%% of %v", i, w, base)
		}
	}
}

func TestPermanentFailureIsMemoized(t *testing.T) {
	forEachStore(t, func(t *testing.T, st crmsync.Store) {
		c := newClock()
		eng := newEngine(t, st, c, nil)
		calls := 0
		wf := crmsync.WorkflowFunc(func(ctx context.Context, run *crmsync.Run) error {
			_, err := crmsync.Step(ctx, run, "validate", func(context.Context, *crmsync.Attempt) (int, error) {
				calls++
				return 0, crmsync.Permanent(errors.New("LastName is required"))
			}, nil)
			return err
		})
		first, err := eng.Run(context.Background(), "k", wf)
		require.True(t, crmsync.IsPermanent(err), "Run = %v, want a permanent error", err)
		// Resuming the run could only replay the stored failure: it is closed
		// with its error, and the key's next run starts afresh.
		info, _ := st.GetRun(context.Background(), first.ID)
		if info.Status != crmsync.RunFailed || !strings.Contains(info.Error, "LastName is required") {
			t.Fatalf("failed run = %s %q, want failed (closed) with its error", info.Status, info.Error)
		}
		steps, _ := st.LoadSteps(context.Background(), first.ID)
		assert.Contains(t, steps["validate"].Error, "LastName is required", "stored step %+v: want the failure memoized", steps["validate"])
		second, err := eng.Run(context.Background(), "k", wf)
		if second.ID == first.ID || !crmsync.IsPermanent(err) {
			t.Fatalf("next Run = %s, %v; want a new run", second.ID, err)
		}
		assert.Equal(t, 2, calls, "fn calls (once per run)")
	})
}

func TestDeadLetterAndReplay(t *testing.T) {
	forEachStore(t, func(t *testing.T, st crmsync.Store) {
		c := newClock()
		eng := newEngine(t, st, c, nil)
		type contact struct{ ID, LastName string }
		items := []contact{{"1", "Ada"}, {"2", ""}, {"3", "Grace"}}
		var written []string
		var replayed []crmsync.DeadLetter
		wf := crmsync.WorkflowFunc(func(ctx context.Context, run *crmsync.Run) error {
			replayed = run.Replays()
			for _, it := range items {
				_, err := crmsync.Step(ctx, run, "write:"+it.ID, func(context.Context, *crmsync.Attempt) (string, error) {
					if it.LastName == "" {
						return "", crmsync.Permanent(errors.New("REQUIRED_FIELD_MISSING: LastName"))
					}
					written = append(written, it.ID)
					return it.ID, nil
				}, &crmsync.StepOpts{DeadLetter: &crmsync.DeadLetterSpec{System: "salesforce", RecordID: it.ID, Payload: it}})
				if errors.Is(err, crmsync.ErrDeadLettered) {
					continue // one bad record never blocks the rest
				}
				if err != nil {
					return err
				}
			}
			return nil
		})
		info, err := eng.Run(context.Background(), "k", wf)
		require.NoError(t, err, "Run: a parked record must not fail the run")
		if fmt.Sprint(written) != "[1 3]" {
			t.Errorf("written = %v, want [1 3]", written)
		}
		ctx := context.Background()
		dls, _ := st.ListDeadLetters(ctx, crmsync.DeadLetterQuery{Key: "k"})
		if len(dls) != 1 || dls[0].RecordID != "2" || dls[0].Run != info.ID || dls[0].Step != "write:2" || !strings.Contains(dls[0].Error, "REQUIRED_FIELD_MISSING") {
			t.Fatalf("dead letters = %+v", dls)
		}
		var payload contact
		if err := json.Unmarshal(dls[0].Payload, &payload); err != nil || payload.ID != "2" {
			t.Errorf("payload = %s (%v), want the contact", dls[0].Payload, err)
		}
		rows, _ := st.QueryAudit(ctx, crmsync.AuditQuery{RecordID: "2", Kind: crmsync.AuditDeadLetter})
		assert.Len(t, rows, 1, "dead-letter audit rows for record 2")
		var rep crmsync.Report
		json.Unmarshal(info.Report, &rep)
		if rep.Counters.DeadLetters != 1 || rep.Counters.Failed != 1 {
			t.Errorf("counters = %+v", rep.Counters)
		}
		// A person fixes the cause and asks for a replay: the next run gets it.
		require.NoError(t, st.SetDeadLetterStatus(ctx, dls[0].ID, crmsync.DeadReplay, c.Now()))
		_, err = eng.Run(ctx, "k", wf)
		require.NoError(t, err)
		if len(replayed) != 1 || replayed[0].ID != dls[0].ID {
			t.Errorf("next run's Replays = %+v, want letter %d", replayed, dls[0].ID)
		}
	})
}

func TestAttemptBookkeepingCommitsWithStep(t *testing.T) {
	st, c := memory.New(), newClock()
	var hooked []crmsync.AuditEntry
	eng := newEngine(t, st, c, func(cfg *crmsync.Config) {
		cfg.Sleep = (&sleeper{c: c}).Sleep
		cfg.OnAudit = func(_ context.Context, rows []crmsync.AuditEntry) { hooked = append(hooked, rows...) }
	})
	ctx := context.Background()
	info, err := eng.Run(ctx, "k", crmsync.WorkflowFunc(func(ctx context.Context, run *crmsync.Run) error {
		_, err := crmsync.Step(ctx, run, "write", func(ctx context.Context, a *crmsync.Attempt) (int, error) {
			a.SetCursor("hubspot", fmt.Sprintf("attempt-%d", a.N))
			a.RecordWrite(crmsync.LedgerEntry{IdemKey: fmt.Sprintf("idem-%d", a.N), System: "hubspot", RecordID: "101"})
			a.Audit(crmsync.AuditEntry{Kind: crmsync.AuditWrite, System: "hubspot", RecordIDs: []string{"101"}})
			if a.N == 1 {
				return 0, errFlaky // this attempt's bookkeeping must be dropped
			}
			return 1, nil
		}, nil)
		return err
	}))
	require.NoError(t, err)
	v, _ := st.GetCursor(ctx, "k", "hubspot")
	assert.Equal(t, "attempt-2", v, "cursor")
	led, _ := st.LookupWrites(ctx, []string{"idem-1", "idem-2"})
	if _, ok := led["idem-1"]; ok || led["idem-2"].Run != info.ID || led["idem-2"].Step != "write" {
		t.Errorf("ledger = %+v, want only attempt 2's row, stamped with run and step", led)
	}
	writes, _ := st.QueryAudit(ctx, crmsync.AuditQuery{Kind: crmsync.AuditWrite})
	if len(writes) != 1 || writes[0].Run != info.ID || writes[0].Step != "write" || writes[0].Key != "k" {
		t.Errorf("write audit rows = %+v, want one stamped row", writes)
	}
	assert.Len(t, hooked, 2, "OnAudit rows (one retry row and one write row)")
}

func TestLeaseBusyAndWait(t *testing.T) {
	forEachStore(t, func(t *testing.T, st crmsync.Store) {
		a, err := crmsync.NewEngine(crmsync.Config{Store: st, Logger: quiet, Holder: "a", LeaseTTL: time.Minute})
		require.NoError(t, err)
		b, _ := crmsync.NewEngine(crmsync.Config{Store: st, Logger: quiet, Holder: "b", LeaseTTL: time.Minute})
		bw, _ := crmsync.NewEngine(crmsync.Config{Store: st, Logger: quiet, Holder: "bw", LeaseTTL: 400 * time.Millisecond, WaitForLease: true})
		started, release := make(chan struct{}), make(chan struct{})
		done := make(chan error)
		go func() {
			_, err := a.Run(context.Background(), "k", crmsync.WorkflowFunc(func(ctx context.Context, run *crmsync.Run) error {
				close(started)
				<-release
				return nil
			}))
			done <- err
		}()
		<-started
		if _, err := b.Run(context.Background(), "k", crmsync.WorkflowFunc(func(context.Context, *crmsync.Run) error { return nil })); !errors.Is(err, crmsync.ErrBusy) {
			t.Fatalf("second Run = %v, want ErrBusy", err)
		}
		var ran atomic.Bool
		waited := make(chan error)
		go func() {
			_, err := bw.Run(context.Background(), "k", crmsync.WorkflowFunc(func(context.Context, *crmsync.Run) error { ran.Store(true); return nil }))
			waited <- err
		}()
		require.False(t, ran.Load(), "waiting Run ran while the key was busy")
		close(release)
		require.NoError(t, <-done)
		if err := <-waited; err != nil || !ran.Load() {
			t.Fatalf("waiting Run = %v (ran %v), want it to run once the lease was free", err, ran.Load())
		}
	})
}

func TestTakeoverFencesTheOldProcess(t *testing.T) {
	forEachStore(t, func(t *testing.T, st crmsync.Store) {
		c := newClock()
		stalled, resume := make(chan struct{}), make(chan struct{})
		// The old process is paused whole (a long GC pause, say): its
		// heartbeat renews nothing until it resumes. Without this, a
		// heartbeat that first looked at the clock after the test moved
		// it renewed the lapsed lease, and the takeover found it busy.
		old := newEngine(t, pauseRenewals(st, "old", resume), c, func(cfg *crmsync.Config) { cfg.Holder = "old" })
		next := newEngine(t, st, c, func(cfg *crmsync.Config) { cfg.Holder = "new" })
		var oldErr error
		var oldRun crmsync.RunID
		done := make(chan struct{})
		go func() {
			defer close(done)
			_, oldErr = old.Run(context.Background(), "k", crmsync.WorkflowFunc(func(ctx context.Context, run *crmsync.Run) error {
				oldRun = run.ID
				if _, err := crmsync.Step(ctx, run, "one", func(context.Context, *crmsync.Attempt) (int, error) { return 1, nil }, nil); err != nil {
					return err
				}
				close(stalled) // a long GC pause, say: the lease expires meanwhile
				<-resume
				_, err := crmsync.Step(ctx, run, "two", func(context.Context, *crmsync.Attempt) (int, error) { return 2, nil }, nil)
				return err
			}))
		}()
		<-stalled
		c.Advance(11 * time.Second)
		var twoByNew int
		info, err := next.Run(context.Background(), "k", crmsync.WorkflowFunc(func(ctx context.Context, run *crmsync.Run) error {
			if _, err := crmsync.Step(ctx, run, "one", func(context.Context, *crmsync.Attempt) (int, error) { t.Error("step one ran again"); return 0, nil }, nil); err != nil {
				return err
			}
			_, err := crmsync.Step(ctx, run, "two", func(context.Context, *crmsync.Attempt) (int, error) { twoByNew++; return 22, nil }, nil)
			return err
		}))
		if err != nil || info.ID != oldRun {
			t.Fatalf("takeover Run = %+v, %v; want it to resume run %s", info, err, oldRun)
		}
		close(resume)
		<-done
		require.ErrorIs(t, oldErr, crmsync.ErrLeaseLost, "old process's Run: want ErrLeaseLost")
		steps, _ := st.LoadSteps(context.Background(), oldRun)
		if string(steps["two"].Result) != "22" || twoByNew != 1 {
			t.Errorf("step two = %s, want the new holder's result 22", steps["two"].Result)
		}
		got, _ := st.GetRun(context.Background(), oldRun)
		assert.Equal(t, crmsync.RunFinished, got.Status, "run status: the fenced process must not reopen it")
	})
}

func TestHeartbeatKeepsAndLosesLease(t *testing.T) {
	st := memory.New()
	c := newClock()
	eng, err := crmsync.NewEngine(crmsync.Config{Store: st, Logger: quiet, Holder: "a", Now: c.Now, LeaseTTL: 10 * time.Second, Heartbeat: 5 * time.Millisecond})
	require.NoError(t, err)
	ctx := context.Background()
	errc := make(chan error)
	go func() {
		_, err := eng.Run(ctx, "k", crmsync.WorkflowFunc(func(ctx context.Context, run *crmsync.Run) error {
			<-ctx.Done() // works until the engine stops it
			return context.Cause(ctx)
		}))
		errc <- err
	}()
	// The clock moves 8s at a time; the heartbeat keeps the lease ahead of it.
	var l crmsync.Lease
	for range 5 {
		before := c.Now()
		c.Advance(8 * time.Second)
		for {
			l, _ = st.GetLease(ctx, "k")
			if l.Expires.After(before.Add(10 * time.Second)) {
				break
			}
			time.Sleep(time.Millisecond)
		}
	}
	// Another process takes the lease (as after a network partition).
	_, _, err = st.AcquireLease(ctx, crmsync.LeaseRequest{Key: "k", Holder: "b", NewRun: "x", TTL: time.Hour, Now: l.Expires.Add(time.Second)})
	require.NoError(t, err)
	require.ErrorIs(t, <-errc, crmsync.ErrLeaseLost, "Run: want ErrLeaseLost after the heartbeat saw the takeover")
}

func TestPruneAfterRetention(t *testing.T) {
	forEachStore(t, func(t *testing.T, st crmsync.Store) {
		c := newClock()
		eng := newEngine(t, st, c, func(cfg *crmsync.Config) { cfg.Retention = 24 * time.Hour })
		ctx := context.Background()
		one := crmsync.WorkflowFunc(func(ctx context.Context, run *crmsync.Run) error {
			_, err := crmsync.Step(ctx, run, "s", func(context.Context, *crmsync.Attempt) (int, error) { return 1, nil }, nil)
			return err
		})
		first, _ := eng.Run(ctx, "k", one)
		c.Advance(25 * time.Hour)
		if _, err := eng.Run(ctx, "k", one); err != nil {
			t.Fatal(err)
		}
		steps, _ := st.LoadSteps(ctx, first.ID)
		assert.Empty(t, steps, "steps of a run finished 25h ago: want pruned")
		if _, err := st.GetRun(ctx, first.ID); err != nil {
			t.Errorf("pruned run's report is gone: %v", err)
		}
	})
}

func TestConcurrentStepsInOneRun(t *testing.T) {
	st, c := memory.New(), newClock()
	eng := newEngine(t, st, c, nil)
	info, err := eng.Run(context.Background(), "k", crmsync.WorkflowFunc(func(ctx context.Context, run *crmsync.Run) error {
		var wg sync.WaitGroup
		errs := make(chan error, 50)
		for i := range 50 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, err := crmsync.Step(ctx, run, fmt.Sprintf("batch:%d", i), func(context.Context, *crmsync.Attempt) (int, error) {
					run.AddAPICalls("hubspot", 1)
					return i, nil
				}, nil)
				errs <- err
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				return err
			}
		}
		return nil
	}))
	require.NoError(t, err)
	var rep crmsync.Report
	json.Unmarshal(info.Report, &rep)
	if rep.Counters.StepRuns != 50 || rep.Counters.APICalls["hubspot"] != 50 {
		t.Errorf("counters = %+v, want 50 step runs and 50 API calls", rep.Counters)
	}
}

func TestStepTimeoutPerAttempt(t *testing.T) {
	c := newClock()
	eng := newEngine(t, memory.New(), c, func(cfg *crmsync.Config) { cfg.Sleep = (&sleeper{c: c}).Sleep })
	calls := 0
	_, err := eng.Run(context.Background(), "k", crmsync.WorkflowFunc(func(ctx context.Context, run *crmsync.Run) error {
		_, err := crmsync.Step(ctx, run, "hangs", func(ctx context.Context, _ *crmsync.Attempt) (int, error) {
			calls++
			if calls < 3 {
				<-ctx.Done() // a hanging request, cut by the per-attempt timeout
				return 0, ctx.Err()
			}
			return 3, nil
		}, &crmsync.StepOpts{Timeout: 5 * time.Millisecond})
		return err
	}))
	if err != nil || calls != 3 {
		t.Fatalf("Run = %v after %d calls; want the timed-out attempts retried and the third to succeed", err, calls)
	}
}

func TestStepHonoursCancel(t *testing.T) {
	eng := newEngine(t, memory.New(), newClock(), nil)
	ctx, cancel := context.WithCancel(context.Background())
	calls := 0
	_, err := eng.Run(ctx, "k", crmsync.WorkflowFunc(func(ctx context.Context, run *crmsync.Run) error {
		_, err := crmsync.Step(ctx, run, "s", func(ctx context.Context, _ *crmsync.Attempt) (int, error) {
			calls++
			cancel()
			return 0, errFlaky
		}, nil)
		return err
	}))
	if !errors.Is(err, context.Canceled) || calls != 1 {
		t.Fatalf("Run = %v after %d calls, want context.Canceled after one call", err, calls)
	}
}

// plainStore hides the optional interfaces of the Store it wraps, so that
// the Engine takes its fallback path (one call per part).
type plainStore struct{ crmsync.Store }

// pauseRenewals returns st with holder's lease renewals held until
// paused is closed, as if its process were paused. It keeps the memory
// Store's one-call interfaces.
func pauseRenewals(st crmsync.Store, holder string, paused <-chan struct{}) crmsync.Store {
	p := renewPause{holder: holder, paused: paused}
	if ms, ok := st.(*memory.Store); ok {
		return pausedMemory{Store: ms, renewPause: p}
	}
	return pausedStore{Store: st, renewPause: p}
}

type renewPause struct {
	holder string
	paused <-chan struct{}
}

func (p renewPause) wait(ctx context.Context, l crmsync.Lease) error {
	if l.Holder != p.holder {
		return nil
	}
	select {
	case <-p.paused:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

type pausedStore struct {
	crmsync.Store
	renewPause
}

func (p pausedStore) RenewLease(ctx context.Context, l crmsync.Lease, ttl time.Duration, now time.Time) (crmsync.Lease, error) {
	if err := p.wait(ctx, l); err != nil {
		return crmsync.Lease{}, err
	}
	return p.Store.RenewLease(ctx, l, ttl, now)
}

type pausedMemory struct {
	*memory.Store
	renewPause
}

var _ interface {
	crmsync.RunStarter
	crmsync.RunEnder
} = pausedMemory{}

func (p pausedMemory) RenewLease(ctx context.Context, l crmsync.Lease, ttl time.Duration, now time.Time) (crmsync.Lease, error) {
	if err := p.wait(ctx, l); err != nil {
		return crmsync.Lease{}, err
	}
	return p.Store.RenewLease(ctx, l, ttl, now)
}

// forEachStore runs fn on a memory Store, which starts and ends runs in one
// call (RunStarter, RunEnder), and on one that does not.
func forEachStore(t *testing.T, fn func(t *testing.T, st crmsync.Store)) {
	t.Run("one-call", func(t *testing.T) { fn(t, memory.New()) })
	t.Run("fallback", func(t *testing.T) { fn(t, plainStore{memory.New()}) })
}
