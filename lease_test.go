package crmsync_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/store/memory"
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
