package crmsync_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/pprof"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/store/memory"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// renewFails is a Store whose lease renewals fail while down is set, as
// when the process is cut off from its database.
type renewFails struct {
	*memory.Store
	down    atomic.Bool
	renewed atomic.Int32 // renewal attempts while down
}

func (s *renewFails) RenewLease(ctx context.Context, l crmsync.Lease, ttl time.Duration, now time.Time) (crmsync.Lease, error) {
	if s.down.Load() {
		s.renewed.Add(1)
		return crmsync.Lease{}, errors.New("dial tcp 10.0.0.5:5432: connect: connection refused")
	}
	return s.Store.RenewLease(ctx, l, ttl, now)
}

// TestRenewalFailureStopsRunBeforeLeaseExpires: a process that cannot renew
// its lease stops its run (cancelling in-flight work) a quarter heartbeat
// before the lease expires, before another process may take the key, and
// the run returns ErrLeaseLost. Until then it keeps working.
func TestRenewalFailureStopsRunBeforeLeaseExpires(t *testing.T) {
	st := &renewFails{Store: memory.New()}
	c := newClock()
	eng, err := crmsync.NewEngine(crmsync.Config{Store: st, Logger: quiet, Holder: "a", Now: c.Now,
		LeaseTTL: 10 * time.Second, Heartbeat: 2 * time.Second})
	require.NoError(t, err)
	ctx := context.Background()
	inStep := make(chan struct{})
	errc := make(chan error, 1)
	var stepErr error
	go func() {
		_, err := eng.Run(ctx, "k", crmsync.WorkflowFunc(func(ctx context.Context, run *crmsync.Run) error {
			_, stepErr = crmsync.Step(ctx, run, "call-crm", func(ctx context.Context, _ *crmsync.Attempt) (int, error) {
				close(inStep)
				<-ctx.Done() // an API call in flight until the engine cancels it
				return 0, ctx.Err()
			}, nil)
			return stepErr
		}))
		errc <- err
	}()
	<-inStep
	st.down.Store(true)
	c.Advance(8 * time.Second) // renewals fail, the lease still holds: keep working
	waitFor(t, func() bool { return st.renewed.Load() >= 2 })
	select {
	case err := <-errc:
		t.Fatalf("run stopped %v after 8s of a 10s lease without renewal; want it to keep working", err)
	default:
	}
	c.Advance(1600 * time.Millisecond) // 9.6s of the 10s lease: stop
	select {
	case err := <-errc:
		require.ErrorIs(t, err, crmsync.ErrLeaseLost)
		require.ErrorIs(t, stepErr, context.Canceled, "the in-flight step was not cancelled")
	case <-time.After(10 * time.Second):
		t.Fatal("run still calling the CRMs although its lease could not be renewed for 9.6s of a 10s TTL")
	}
	// The run stays open: the next start resumes it.
	st.down.Store(false)
	runs, err := st.ListRuns(ctx, "k", 1)
	require.NoError(t, err)
	require.Equal(t, crmsync.RunOpen, runs[0].Status)
}

// waitFor polls cond until it holds, failing the test after a long while.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for range 10000 {
		if cond() {
			return
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatal("condition never held")
}

// TestStoppedRunSaysWhetherItResumes: a run stopped by a permanent failure
// is closed as failed (not finished), and its log does not promise that it
// resumes; a run stopped by a transient failure stays open and says so.
func TestStoppedRunSaysWhetherItResumes(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name    string
		err     error
		resumes bool
	}{
		{"permanent", crmsync.Permanent(errors.New("INVALID_SESSION_ID")), false},
		{"transient", errors.New("connection reset"), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var logs lockedLog
			st := memory.New()
			eng, err := crmsync.NewEngine(crmsync.Config{Store: st, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
			require.NoError(t, err)
			info, err := eng.Run(ctx, "k", crmsync.WorkflowFunc(func(context.Context, *crmsync.Run) error { return tc.err }))
			require.Error(t, err)
			want := crmsync.RunFailed
			if tc.resumes {
				want = crmsync.RunOpen
			}
			require.Equal(t, want, info.Status, "a run stopped by a %s error", tc.name)
			require.Equal(t, tc.resumes, strings.Contains(logs.String(), "resumes on the next start"), "log:\n%s", logs.String())
		})
	}
}

type lockedLog struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestNoStepRunsOnceLeaseLost: once the run's context ends because the lease
// is lost, a step's function is not called at all (no CRM call is begun),
// and Step's error says why.
func TestNoStepRunsOnceLeaseLost(t *testing.T) {
	st, c := memory.New(), newClock()
	eng := newEngine(t, st, c, nil)
	ctx, cancel := context.WithCancelCause(context.Background())
	called := false
	var stepErr error
	_, err := eng.Run(ctx, "k", crmsync.WorkflowFunc(func(ctx context.Context, run *crmsync.Run) error {
		cancel(crmsync.ErrLeaseLost) // as the heartbeat does
		_, stepErr = crmsync.Step(ctx, run, "write", func(context.Context, *crmsync.Attempt) (int, error) {
			called = true
			return 1, nil
		}, nil)
		return stepErr
	}))
	require.Error(t, err)
	require.False(t, called, "a step function ran after the lease was lost")
	require.ErrorIs(t, stepErr, crmsync.ErrLeaseLost)
}

// skewClock is the wall clock moved forward by jumps: a jump is time the
// process lost (frozen, starved) while a call was in flight.
type skewClock struct{ skew atomic.Int64 }

func (c *skewClock) Now() time.Time       { return time.Now().Add(time.Duration(c.skew.Load())) }
func (c *skewClock) Jump(d time.Duration) { c.skew.Add(int64(d)) }

// slowRenewals is a Store whose first succeed lease renewals succeed but
// take took on the engine's clock, and whose later renewals hang until
// their deadline, as against a database that went slow and then away.
type slowRenewals struct {
	*memory.Store
	clk     *skewClock
	succeed int
	took    time.Duration

	mu       sync.Mutex
	attempts []renewal
}

// renewal is one RenewLease call: when, and the expiry of the lease it renewed.
type renewal struct{ now, expires time.Time }

func (s *slowRenewals) RenewLease(ctx context.Context, l crmsync.Lease, ttl time.Duration, now time.Time) (crmsync.Lease, error) {
	s.mu.Lock()
	n := len(s.attempts)
	s.attempts = append(s.attempts, renewal{now: now, expires: l.Expires})
	s.mu.Unlock()
	if n >= s.succeed {
		<-ctx.Done()
		return crmsync.Lease{}, fmt.Errorf("read tcp 10.0.0.5:5432: i/o timeout: %w", ctx.Err())
	}
	nl, err := s.Store.RenewLease(ctx, l, ttl, now)
	s.clk.Jump(s.took)
	return nl, err
}

// TestHeartbeatRenewsBeforeTheStopPoint: the heartbeat's next renewal comes
// early enough to end before the stop point (a quarter heartbeat before the
// lease as last renewed expires), however long the last renewal took and
// however long Heartbeat is next to LeaseTTL. A run that sleeps a full
// heartbeat after a renewal that took most of the TTL (its new expiry counts
// from before the call) wakes past the stop point with no failed renewal on
// record, and keeps calling the CRMs past the expiry, when another process
// may hold the key. Here the renewals after the slow ones hang until their
// deadline: the run must stop, with ErrLeaseLost, before its lease expires.
func TestHeartbeatRenewsBeforeTheStopPoint(t *testing.T) {
	for _, tc := range []struct {
		name     string
		ttl, hb  time.Duration
		succeed  int
		took     time.Duration
		attempts int // renewals tried before the run stops
	}{
		// The renewal at 0.8s succeeds 1.8s later (lease to 3.2s, stop at
		// 3.0s): the next one must start before 3.0s, not at 3.4s.
		{name: "renewal took most of the TTL", ttl: 2400 * time.Millisecond, hb: 800 * time.Millisecond, succeed: 1, took: 1800 * time.Millisecond, attempts: 2},
		// Stop point at 1.55s: a first renewal at 1.8s is too late.
		{name: "heartbeat near the TTL", ttl: 2 * time.Second, hb: 1800 * time.Millisecond, attempts: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clk := &skewClock{}
			st := &slowRenewals{Store: memory.New(), clk: clk, succeed: tc.succeed, took: tc.took}
			eng, err := crmsync.NewEngine(crmsync.Config{Store: st, Logger: quiet, Holder: "a", Now: clk.Now,
				LeaseTTL: tc.ttl, Heartbeat: tc.hb})
			require.NoError(t, err)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			var stopped time.Time
			_, err = eng.Run(ctx, "k", crmsync.WorkflowFunc(func(ctx context.Context, run *crmsync.Run) error {
				<-ctx.Done() // calling the CRMs until the engine stops the run
				stopped = clk.Now()
				return context.Cause(ctx)
			}))
			require.ErrorIs(t, err, crmsync.ErrLeaseLost)
			st.mu.Lock()
			defer st.mu.Unlock()
			require.Len(t, st.attempts, tc.attempts, "renewals tried")
			for i, a := range st.attempts {
				stopAt := a.expires.Add(-tc.hb / 4)
				assert.True(t, a.now.Before(stopAt), "renewal %d began %s past the stop point of the lease it renewed", i+1, a.now.Sub(stopAt))
			}
			// The lease as last renewed: the last renewal's lease, or the
			// one it returned if it succeeded.
			last := st.attempts[len(st.attempts)-1]
			assert.True(t, stopped.Before(last.expires), "the run stopped %s after its lease expired", stopped.Sub(last.expires))
		})
	}
}

// TestShortRunStartsNoHeartbeatGoroutine: a run that ends before its first
// renewal is due starts no goroutine for its heartbeat (starting one and
// waking it to stop woke other threads twice a run); one that lasts past a
// renewal still renews.
func TestShortRunStartsNoHeartbeatGoroutine(t *testing.T) {
	st := memory.New()
	eng, err := crmsync.NewEngine(crmsync.Config{Store: st, Logger: quiet, LeaseTTL: time.Minute})
	require.NoError(t, err)
	ctx := context.Background()
	var stacks string
	_, err = eng.Run(ctx, "short", crmsync.WorkflowFunc(func(ctx context.Context, run *crmsync.Run) error {
		var b strings.Builder
		if err := pprof.Lookup("goroutine").WriteTo(&b, 2); err != nil {
			return err
		}
		stacks = b.String()
		return nil
	}))
	require.NoError(t, err)
	require.Contains(t, stacks, "crmsync_test.TestShortRunStartsNoHeartbeatGoroutine", "the dump holds the workflow's own goroutine")
	assert.False(t, strings.Contains(stacks, "created by github.com/crmsync/crmsync.(*Run)"),
		"a run shorter than a heartbeat starts no goroutine")

	// A run that outlasts a heartbeat renews its lease.
	eng, err = crmsync.NewEngine(crmsync.Config{Store: st, Logger: quiet, LeaseTTL: time.Minute, Heartbeat: 5 * time.Millisecond})
	require.NoError(t, err)
	_, err = eng.Run(ctx, "long", crmsync.WorkflowFunc(func(ctx context.Context, run *crmsync.Run) error {
		first := run.Lease().Expires
		for run.Lease().Expires.Equal(first) {
			if err := ctx.Err(); err != nil {
				return err
			}
			time.Sleep(time.Millisecond)
		}
		return nil
	}))
	require.NoError(t, err, "the lease was renewed while the run lasted")
}
