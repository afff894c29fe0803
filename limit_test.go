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
