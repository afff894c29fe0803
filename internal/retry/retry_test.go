package retry_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/crmsync/crmsync/internal/retry"
)

var errBoom = errors.New("boom")

// recorder is a sleep that records the waits and returns at once.
type recorder struct{ waits []time.Duration }

func (r *recorder) sleep(ctx context.Context, d time.Duration) error {
	r.waits = append(r.waits, d)
	return ctx.Err()
}

func TestDo(t *testing.T) {
	stopErr := errors.New("replaced")
	tests := []struct {
		name       string
		policy     retry.Policy
		fails      int // op fails this many times, then succeeds
		classify   func(error) retry.Verdict
		wantCalls  int
		wantErr    error
		exhausted  bool
		wantWaits  []time.Duration // nil: not checked
		minWait    time.Duration   // every wait at least this
		wantNotify int
	}{
		{name: "success at once", policy: retry.Policy{MaxAttempts: 3}, fails: 0, wantCalls: 1},
		{name: "retries then succeeds", policy: retry.Policy{MaxAttempts: 3, InitialInterval: time.Millisecond}, fails: 2, wantCalls: 3, wantNotify: 2},
		{name: "max attempts", policy: retry.Policy{MaxAttempts: 3, InitialInterval: time.Millisecond}, fails: 10,
			wantCalls: 3, wantErr: errBoom, exhausted: true, wantNotify: 2},
		{name: "stop is at once", policy: retry.Policy{MaxAttempts: 5}, fails: 10,
			classify: func(error) retry.Verdict { return retry.Stop(nil) }, wantCalls: 1, wantErr: errBoom},
		{name: "stop replaces the error", policy: retry.Policy{MaxAttempts: 5}, fails: 10,
			classify: func(error) retry.Verdict { return retry.Stop(stopErr) }, wantCalls: 1, wantErr: stopErr},
		{name: "retry-after honoured", policy: retry.Policy{MaxAttempts: 3, InitialInterval: time.Millisecond, MaxInterval: time.Millisecond}, fails: 2,
			classify: func(error) retry.Verdict { return retry.Retry(7 * time.Second) }, wantCalls: 3, minWait: 7 * time.Second, wantNotify: 2},
		{name: "waits are exact and not attempts", policy: retry.Policy{MaxAttempts: 2}, fails: 4,
			classify:  func(error) retry.Verdict { return retry.Wait(3 * time.Second) },
			wantCalls: 5, wantWaits: []time.Duration{3 * time.Second, 3 * time.Second, 3 * time.Second, 3 * time.Second}, wantNotify: 4},
		{name: "no bound without max attempts", policy: retry.Policy{InitialInterval: time.Millisecond}, fails: 20, wantCalls: 21, wantNotify: 20},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := &recorder{}
			tt.policy.Sleep = rec.sleep
			calls, notified := 0, 0
			err := retry.Do(context.Background(), tt.policy, func(n int) error {
				calls++
				assert.Equal(t, calls, n, "attempt number")
				if calls <= tt.fails {
					return errBoom
				}
				return nil
			}, tt.classify, func(n int, err error, d time.Duration) {
				notified++
				assert.Equal(t, calls, n)
				assert.ErrorIs(t, err, errBoom)
			})
			assert.Equal(t, tt.wantCalls, calls, "calls")
			assert.Equal(t, tt.wantNotify, notified, "notify calls")
			assert.Len(t, rec.waits, tt.wantNotify, "waits")
			if tt.wantErr == nil {
				require.NoError(t, err)
			} else {
				require.ErrorIs(t, err, tt.wantErr)
			}
			var ex *retry.ExhaustedError
			assert.Equal(t, tt.exhausted, errors.As(err, &ex), "exhausted")
			if tt.wantWaits != nil {
				assert.Equal(t, tt.wantWaits, rec.waits)
			}
			for _, w := range rec.waits {
				assert.GreaterOrEqual(t, w, tt.minWait)
			}
		})
	}
}

func TestDoBackoffPermanent(t *testing.T) {
	calls := 0
	err := retry.Do(context.Background(), retry.Policy{MaxAttempts: 5}, func(int) error {
		calls++
		return backoff.Permanent(errBoom)
	}, nil, nil)
	assert.Equal(t, 1, calls)
	assert.Equal(t, errBoom, err, "the permanent wrapper is removed")
}

func TestDoExponentialGrows(t *testing.T) {
	rec := &recorder{}
	_ = retry.Do(context.Background(), retry.Policy{MaxAttempts: 5, InitialInterval: time.Second, MaxInterval: 4 * time.Second, Sleep: rec.sleep},
		func(int) error { return errBoom }, nil, nil)
	assert.Equal(t, []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 4 * time.Second}, rec.waits)
}

func TestDoContextCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	calls := 0
	err := retry.Do(ctx, retry.Policy{InitialInterval: time.Hour}, func(int) error {
		calls++
		return errBoom
	}, nil, func(int, error, time.Duration) { cancel() })
	assert.Equal(t, 1, calls, "no run after the context ended")
	assert.ErrorIs(t, err, context.Canceled)
	assert.ErrorIs(t, err, errBoom)
}

func TestDoContextEndedDuringOp(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	calls := 0
	err := retry.Do(ctx, retry.Policy{}, func(int) error {
		calls++
		cancel()
		return errBoom
	}, func(error) retry.Verdict { t.Error("classify called after the context ended"); return retry.Retry(0) }, nil)
	assert.Equal(t, 1, calls)
	assert.ErrorIs(t, err, context.Canceled)
}

func TestDoSleepError(t *testing.T) {
	sleepErr := errors.New("sleep refused")
	calls := 0
	err := retry.Do(context.Background(), retry.Policy{Sleep: func(context.Context, time.Duration) error { return sleepErr }},
		func(int) error { calls++; return errBoom }, nil, nil)
	assert.Equal(t, 1, calls)
	assert.ErrorIs(t, err, sleepErr)
	assert.ErrorIs(t, err, errBoom)
}

func TestDoMaxElapsed(t *testing.T) {
	calls := 0
	err := retry.Do(context.Background(), retry.Policy{MaxElapsed: time.Nanosecond, InitialInterval: time.Millisecond},
		func(int) error { calls++; time.Sleep(time.Millisecond); return errBoom }, nil, nil)
	var ex *retry.ExhaustedError
	require.ErrorAs(t, err, &ex)
	assert.Equal(t, calls, ex.Attempts)
	assert.ErrorIs(t, err, errBoom)
}
