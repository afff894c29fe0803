package crmsync

import (
	"context"
	"fmt"
	"time"

	"golang.org/x/sync/errgroup"
)

// Every calls fn now and then every interval until ctx ends, never two at
// once: a call that outlasts the interval delays the next. It returns nil
// when ctx ends, or the first error fn returns.
func Every(ctx context.Context, interval time.Duration, fn func(ctx context.Context) error) error {
	if interval <= 0 {
		return fmt.Errorf("crmsync: Every: interval must be positive (got %s)", interval)
	}
	return Schedule(ctx, func(now time.Time) time.Time { return now.Add(interval) }, fn)
}

// Schedule calls fn now and then at each time next returns (given the end of
// the previous call), until ctx ends; calls never overlap. A cron schedule
// plugs in as next (robfig/cron's Schedule.Next has this shape).
func Schedule(ctx context.Context, next func(time.Time) time.Time, fn func(ctx context.Context) error) error {
	for {
		if err := fn(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		at := next(time.Now())
		if at.IsZero() {
			return nil
		}
		t := time.NewTimer(time.Until(at))
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// RunKeys runs wf once for each key on eng, at most limit at a time (zero
// means 4), and returns each key's run and error. A key that is busy (its
// run is live elsewhere) reports ErrBusy; the others go on.
func RunKeys(ctx context.Context, eng *Engine, keys []string, limit int, wf func(key string) Workflow) (map[string]RunInfo, map[string]error) {
	if limit <= 0 {
		limit = 4
	}
	infos, errs := make([]RunInfo, len(keys)), make([]error, len(keys))
	var g errgroup.Group
	g.SetLimit(limit)
	for i, k := range keys {
		g.Go(func() error {
			if ctx.Err() != nil {
				errs[i] = ctx.Err()
				return nil
			}
			infos[i], errs[i] = eng.Run(ctx, k, wf(k))
			return nil
		})
	}
	_ = g.Wait()
	outInfo, outErr := map[string]RunInfo{}, map[string]error{}
	for i, k := range keys {
		outInfo[k] = infos[i]
		if errs[i] != nil {
			outErr[k] = errs[i]
		}
	}
	return outInfo, outErr
}
