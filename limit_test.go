package crmsync_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/crmsync/crmsync"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestNewThrottleValidates(t *testing.T) {
	tests := []struct {
		name string
		cfg  crmsync.ThrottleConfig
		want string
	}{
		{"negative rate", crmsync.ThrottleConfig{Rate: -1, Every: time.Second}, "negative"},
		{"rate without interval", crmsync.ThrottleConfig{Rate: 10}, "Every"},
		{"interval without rate", crmsync.ThrottleConfig{Every: time.Second}, "Rate"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := crmsync.NewThrottle(tc.cfg)
			if assert.Error(t, err, "NewThrottle(%+v) = %v, want an error mentioning %s", tc.cfg, err, tc.want) {
				assert.Contains(t, err.Error(), tc.want, "NewThrottle(%+v) = %v, want an error mentioning %s", tc.cfg, err, tc.want)
			}
		})
	}
}

func TestThrottleInFlightCap(t *testing.T) {
	th, err := crmsync.NewThrottle(crmsync.ThrottleConfig{InFlight: 3})
	require.NoError(t, err)
	var cur, peak atomic.Int32
	var wg sync.WaitGroup
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			release, err := th.Acquire(context.Background())
			if err != nil {
				t.Error(err)
				return
			}
			n := cur.Add(1)
			for {
				p := peak.Load()
				if n <= p || peak.CompareAndSwap(p, n) {
					break
				}
			}
			time.Sleep(2 * time.Millisecond)
			cur.Add(-1)
			release()
			release() // a second release is harmless
		}()
	}
	wg.Wait()
	p := peak.Load()
	assert.Equal(t, int32(3), p, "peak in flight = %d, want 3", p)
}

func TestThrottleRateRefusesWaitPastDeadline(t *testing.T) {
	// 1 call per hour, burst 1: the first call goes at once, the second would
	// wait an hour, which outlasts the deadline, so it fails at once.
	th, _ := crmsync.NewThrottle(crmsync.ThrottleConfig{Rate: 1, Every: time.Hour})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	release, err := th.Acquire(ctx)
	require.NoError(t, err)
	release()
	_, err = th.Acquire(ctx)
	require.Error(t, err, "second Acquire = nil, want an error: the wait outlasts the deadline")
}

func TestThrottlePause(t *testing.T) {
	c := newClock()
	th, _ := crmsync.NewThrottle(crmsync.ThrottleConfig{Now: c.Now})
	th.Pause(c.Now().Add(10 * time.Second))
	th.Pause(c.Now().Add(time.Second)) // an earlier pause does not shorten it
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_, err := th.Acquire(ctx)
	require.ErrorIs(t, err, context.DeadlineExceeded, "Acquire during a 10s pause with a 1s deadline = %v, want DeadlineExceeded at once", err)
	c.Advance(10 * time.Second)
	_, err = th.Acquire(ctx)
	require.NoError(t, err, "Acquire after the pause")
}

func TestWindowLimiterKeepsToTheWindow(t *testing.T) {
	if _, err := crmsync.NewWindowLimiter(crmsync.WindowConfig{N: 0, Window: time.Second}); err == nil {
		t.Error("NewWindowLimiter with N 0 = nil error")
	}
	l, err := crmsync.NewWindowLimiter(crmsync.WindowConfig{N: 5, Window: 40 * time.Millisecond, InFlight: 3})
	require.NoError(t, err)
	var mu sync.Mutex
	var starts []time.Time
	var wg sync.WaitGroup
	for range 23 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			release, err := l.Acquire(context.Background())
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			starts = append(starts, time.Now())
			mu.Unlock()
			release()
		}()
	}
	wg.Wait()
	// No window of 40ms holds more than 5 starts.
	for i := range starts {
		n := 0
		for j := range starts {
			if !starts[j].Before(starts[i]) && starts[j].Sub(starts[i]) < 40*time.Millisecond {
				n++
			}
		}
		require.LessOrEqual(t, n, 5, "%d calls started within 40ms of each other, limit 5", n)
	}
	// A deadline shorter than the wait fails at once.
	ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
	defer cancel()
	l.Pause(time.Now().Add(time.Hour))
	_, err = l.Acquire(ctx)
	assert.ErrorIs(t, err, context.DeadlineExceeded, "Acquire during a long pause = %v, want DeadlineExceeded", err)
}

// TestWindowLimiterCountsACallUntilItEnds: the server counts a call when the
// request reaches it, at any moment between the limiter's grant and the
// response (a starved process, a slow network). The limiter holds each
// call's place in the window from its start until a window after it ended,
// so no placement of the server's counts puts n+1 calls in one window.
func TestWindowLimiterCountsACallUntilItEnds(t *testing.T) {
	clk := newClock()
	const window = 100 * time.Millisecond
	l, err := crmsync.NewWindowLimiter(crmsync.WindowConfig{N: 2, Window: window, Now: clk.Now})
	require.NoError(t, err)
	// blocked reports whether Acquire would wait now (a deadline shorter
	// than the wait fails at once); an admitted call is released at once.
	blocked := func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		defer cancel()
		release, err := l.Acquire(ctx)
		if err != nil {
			require.ErrorIs(t, err, context.DeadlineExceeded)
			return true
		}
		release()
		return false
	}
	relA, err := l.Acquire(context.Background()) // A starts at 0 ...
	require.NoError(t, err)
	relB, err := l.Acquire(context.Background()) // ... B too, and ends at once:
	require.NoError(t, err)
	relB() // the server counted B at 0.
	clk.Advance(window / 2)
	relA() // A's request reached the server late: counted at 50.
	clk.Advance(window / 2)
	// At 100 B's count has left the window, A's has not: one call may start
	// (C, counted at 100), a second (D) would make A, C and D in (0, 100].
	relC, err := l.Acquire(context.Background())
	require.NoError(t, err)
	relC()
	require.True(t, blocked(), "a third call within a window of A's count (at 50) was admitted")
	clk.Advance(window/2 - time.Millisecond)
	require.True(t, blocked(), "a call 149ms in was admitted while A (50) and C (100) are in its window")
	clk.Advance(time.Millisecond)
	require.False(t, blocked(), "a call at 150, a window after A ended, was refused")

	// A call still in flight holds its place however long it runs: the
	// server may count it at any moment until its response.
	one, err := crmsync.NewWindowLimiter(crmsync.WindowConfig{N: 1, Window: window, Now: clk.Now})
	require.NoError(t, err)
	relE, err := one.Acquire(context.Background())
	require.NoError(t, err)
	clk.Advance(10 * window)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	_, err = one.Acquire(ctx)
	require.ErrorIs(t, err, context.DeadlineExceeded, "a call started while the only place is in flight = %v, want a wait", err)
	relE()
	clk.Advance(window)
	relF, err := one.Acquire(context.Background())
	require.NoError(t, err, "a call a window after the previous one ended")
	relF()
}

// TestThrottleRefillsACallsTokenFromItsEnd: a server that paces by a token
// bucket counts a call when its request arrives, at any moment between the
// Throttle's grant and the response (a starved process, a slow network).
// The Throttle keeps each call's token taken while it is in flight and
// refills it from when the call ended, so no placement of the server's
// counts runs past the bucket. Refilling from the grant let a call start
// while the one before, granted a whole interval earlier, might still be
// about to arrive.
func TestThrottleRefillsACallsTokenFromItsEnd(t *testing.T) {
	clk := newClock()
	const every = time.Millisecond
	th, err := crmsync.NewThrottle(crmsync.ThrottleConfig{Rate: 1, Every: every, Burst: 2, Now: clk.Now})
	require.NoError(t, err)
	// blocked reports whether Acquire admits no call before the clock
	// moves; an admitted call is released at once.
	blocked := func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		release, err := th.Acquire(ctx)
		if err != nil {
			require.ErrorIs(t, err, context.DeadlineExceeded)
			return true
		}
		release()
		return false
	}
	relA, err := th.Acquire(context.Background()) // the burst: A and B at once
	require.NoError(t, err)
	relB, err := th.Acquire(context.Background())
	require.NoError(t, err)
	clk.Advance(time.Second)
	require.True(t, blocked(), "a third call was granted while both calls of a burst of 2 are in flight")
	relB() // the server counted B now at the latest
	require.True(t, blocked(), "a call was granted as B ended, with A in flight: the server may count A, B and it within one interval")
	clk.Advance(every)
	require.False(t, blocked(), "a call an interval after B ended (C), with A in flight, was refused")
	require.True(t, blocked(), "a call was granted right after C ended, with A in flight")
	relA()
	clk.Advance(every)
	require.False(t, blocked(), "a call an interval after A and C ended was refused")
	// Idle for long, the bucket is full again: a burst of 2 passes.
	clk.Advance(time.Second)
	relD, err := th.Acquire(context.Background())
	require.NoError(t, err)
	relE, err := th.Acquire(context.Background())
	require.NoError(t, err)
	relD()
	relE()
}
