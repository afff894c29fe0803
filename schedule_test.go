package crmsync_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/store/memory"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestEveryNeverOverlapsAndStops(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var running, overlaps, calls atomic.Int32
	done := make(chan error)
	go func() {
		done <- crmsync.Every(ctx, time.Millisecond, func(ctx context.Context) error {
			if running.Add(1) > 1 {
				overlaps.Add(1)
			}
			defer running.Add(-1)
			if calls.Add(1) == 5 {
				cancel()
			}
			time.Sleep(3 * time.Millisecond) // longer than the interval
			return nil
		})
	}()
	err := <-done
	require.NoError(t, err, "Every = %v, want nil after cancel", err)
	assert.Equal(t, int32(5), calls.Load(), "calls %d, overlaps %d; want 5 calls and no overlap", calls.Load(), overlaps.Load())
	assert.Equal(t, int32(0), overlaps.Load(), "calls %d, overlaps %d; want 5 calls and no overlap", calls.Load(), overlaps.Load())
	assert.Error(t, crmsync.Every(context.Background(), 0, nil), "Every with a zero interval = nil, want an error")
	boom := errors.New("boom")
	err = crmsync.Every(context.Background(), time.Hour, func(context.Context) error { return boom })
	assert.ErrorIs(t, err, boom, "Every = %v, want the func's error", err)
}

func TestScheduleStopsWhenNextIsZero(t *testing.T) {
	n := 0
	err := crmsync.Schedule(context.Background(), func(t time.Time) time.Time {
		if n >= 3 {
			return time.Time{}
		}
		return t
	}, func(context.Context) error { n++; return nil })
	assert.NoError(t, err, "Schedule = %v after %d calls, want nil after 3", err, n)
	assert.Equal(t, 3, n, "Schedule = %v after %d calls, want nil after 3", err, n)
}

func TestRunKeysBoundsConcurrency(t *testing.T) {
	eng := newEngine(t, memory.New(), newClock(), nil)
	var cur, peak atomic.Int32
	var mu sync.Mutex
	ran := map[string]int{}
	keys := make([]string, 12)
	for i := range keys {
		keys[i] = fmt.Sprintf("team-%d", i)
	}
	infos, errs := crmsync.RunKeys(context.Background(), eng, keys, 3, func(key string) crmsync.Workflow {
		return crmsync.WorkflowFunc(func(ctx context.Context, run *crmsync.Run) error {
			n := cur.Add(1)
			for {
				p := peak.Load()
				if n <= p || peak.CompareAndSwap(p, n) {
					break
				}
			}
			time.Sleep(2 * time.Millisecond)
			cur.Add(-1)
			mu.Lock()
			ran[key]++
			mu.Unlock()
			if key == "team-7" {
				return errors.New("team-7 failed")
			}
			return nil
		})
	})
	assert.LessOrEqual(t, peak.Load(), int32(3), "peak concurrency %d, want at most 3 (and some overlap)", peak.Load())
	assert.GreaterOrEqual(t, peak.Load(), int32(2), "peak concurrency %d, want at most 3 (and some overlap)", peak.Load())
	assert.Len(t, ran, 12, "ran %d keys, %d infos; want 12", len(ran), len(infos))
	assert.Len(t, infos, 12, "ran %d keys, %d infos; want 12", len(ran), len(infos))
	assert.Len(t, errs, 1, "errs = %v, want only team-7's", errs)
	assert.Error(t, errs["team-7"], "errs = %v, want only team-7's", errs)
}
