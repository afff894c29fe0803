package storetest

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/crmsync/crmsync"
)

// benchResult is a typical small step result: a page of ids and a cursor.
type benchResult struct {
	IDs    []string  `json:"ids"`
	Cursor time.Time `json:"cursor"`
	Next   string    `json:"next"`
}

// Bench measures durable steps per second (one run at a time; each step is
// committed to the Store before Step returns) and replays per second (a
// resumed run answering completed steps from the Store).
func Bench(b *testing.B, newStore func(b *testing.B) crmsync.Store) {
	res := benchResult{IDs: []string{"100451", "100452", "100453"}, Cursor: time.Unix(1772355600, 0).UTC(), Next: "200"}
	newEngine := func(b *testing.B, st crmsync.Store) *crmsync.Engine {
		eng, err := crmsync.NewEngine(crmsync.Config{Store: st, Logger: slog.New(slog.DiscardHandler), LeaseTTL: time.Minute})
		if err != nil {
			b.Fatal(err)
		}
		return eng
	}
	steps := func(n int, fail bool) crmsync.WorkflowFunc {
		return func(ctx context.Context, run *crmsync.Run) error {
			for i := range n {
				if _, err := crmsync.Step(ctx, run, fmt.Sprintf("page:%d", i), func(context.Context, *crmsync.Attempt) (benchResult, error) {
					return res, nil
				}, nil); err != nil {
					return err
				}
			}
			if fail {
				return fmt.Errorf("stop so that the run stays open")
			}
			return nil
		}
	}
	b.Run("durable", func(b *testing.B) {
		eng := newEngine(b, newStore(b))
		b.ReportAllocs()
		b.ResetTimer()
		start := time.Now()
		if _, err := eng.Run(context.Background(), "bench", steps(b.N, false)); err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "steps/s")
	})
	b.Run("replay", func(b *testing.B) {
		eng := newEngine(b, newStore(b))
		eng.Run(context.Background(), "bench", steps(b.N, true))
		b.ReportAllocs()
		b.ResetTimer()
		start := time.Now()
		if _, err := eng.Run(context.Background(), "bench", steps(b.N, false)); err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "steps/s")
	})
}

// BenchParallel measures durable steps per second with runs runs in flight
// at once, each on its own key, sharing one Store and one Engine: b.N steps
// in all, split evenly over the runs. It reports the total steps/s.
func BenchParallel(b *testing.B, newStore func(b *testing.B) crmsync.Store, runs int) {
	if runs < 1 {
		b.Fatalf("BenchParallel: runs = %d, want at least 1", runs)
	}
	res := benchResult{IDs: []string{"100451", "100452", "100453"}, Cursor: time.Unix(1772355600, 0).UTC(), Next: "200"}
	eng, err := crmsync.NewEngine(crmsync.Config{Store: newStore(b), Logger: slog.New(slog.DiscardHandler), LeaseTTL: time.Minute})
	if err != nil {
		b.Fatal(err)
	}
	steps := func(n int) crmsync.WorkflowFunc {
		return func(ctx context.Context, run *crmsync.Run) error {
			for i := range n {
				if _, err := crmsync.Step(ctx, run, fmt.Sprintf("page:%d", i), func(context.Context, *crmsync.Attempt) (benchResult, error) {
					return res, nil
				}, nil); err != nil {
					return err
				}
			}
			return nil
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	errs := make(chan error, runs)
	for i := range runs {
		n := b.N / runs
		if i < b.N%runs {
			n++
		}
		go func() {
			_, err := eng.Run(context.Background(), fmt.Sprintf("bench-%d", i), steps(n))
			errs <- err
		}()
	}
	for range runs {
		if err := <-errs; err != nil {
			b.Error(err)
		}
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "steps/s")
}

// BenchRuns measures short workflows the way DBOS Transact's benchmark
// does: b.N runs of 4 steps, each step returning a 128-byte result, a new
// run each time, inFlight runs at once (each in-flight slot runs its runs
// one after another on its own key). It reports steps/s. A run's own cost
// (starting and ending it) weighs here, where Bench's one long run hides it.
func BenchRuns(b *testing.B, newStore func(b *testing.B) crmsync.Store, inFlight int) {
	if inFlight < 1 {
		b.Fatalf("BenchRuns: inFlight = %d, want at least 1", inFlight)
	}
	type out struct {
		Contact int    `json:"contact"`
		Step    string `json:"step"`
		Data    string `json:"data"`
	}
	data := fmt.Sprintf("%0128d", 0)
	names := []string{"find", "merge", "write", "audit"}
	eng, err := crmsync.NewEngine(crmsync.Config{Store: newStore(b), Logger: slog.New(slog.DiscardHandler), LeaseTTL: time.Minute})
	if err != nil {
		b.Fatal(err)
	}
	wf := func(contact int) crmsync.WorkflowFunc {
		return func(ctx context.Context, run *crmsync.Run) error {
			for _, name := range names {
				if _, err := crmsync.Step(ctx, run, name, func(context.Context, *crmsync.Attempt) (out, error) {
					return out{Contact: contact, Step: name, Data: data}, nil
				}, nil); err != nil {
					return err
				}
			}
			return nil
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	var next atomic.Int64
	errs := make(chan error, inFlight)
	for w := range inFlight {
		go func() {
			key := fmt.Sprintf("bench-%d", w)
			for {
				i := int(next.Add(1)) - 1
				if i >= b.N {
					errs <- nil
					return
				}
				if _, err := eng.Run(context.Background(), key, wf(i)); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	for range inFlight {
		if err := <-errs; err != nil {
			b.Error(err)
		}
	}
	b.ReportMetric(float64(b.N*len(names))/time.Since(start).Seconds(), "steps/s")
}
