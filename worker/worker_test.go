package worker

import (
	"context"
	"errors"
	"io"
	"log/slog"
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
	return clocktest.New(time.Date(2026, 11, 1, 9, 0, 0, 0, time.UTC))
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func newEngine(t *testing.T, st crmsync.Store, clk *clocktest.Clock, holder string) *crmsync.Engine {
	t.Helper()
	eng, err := crmsync.NewEngine(crmsync.Config{Store: st, Now: clk.Now, Holder: holder, LeaseTTL: 2 * time.Second, Logger: quiet})
	require.NoError(t, err)
	return eng
}

// counter is a workflow per key that counts its runs.
type counter struct {
	mu   sync.Mutex
	runs map[string]int
	fail map[string]error
}

func newCounter() *counter { return &counter{runs: map[string]int{}, fail: map[string]error{}} }

func (c *counter) workflow(key string) crmsync.Workflow {
	return crmsync.WorkflowFunc(func(ctx context.Context, run *crmsync.Run) error {
		c.mu.Lock()
		defer c.mu.Unlock()
		c.runs[key]++
		return c.fail[key]
	})
}

func (c *counter) count(key string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.runs[key]
}

func newWorker(t *testing.T, c Config) *Worker {
	t.Helper()
	w, err := New(c)
	require.NoError(t, err)
	return w
}

// tickWait runs one tick and waits for the runs it started.
func tickWait(w *Worker) {
	ctx := context.Background()
	w.tick(ctx, ctx)
	w.wg.Wait()
}

func TestNewValidates(t *testing.T) {
	clk := newClock()
	eng := newEngine(t, memory.New(), clk, "h")
	wf := func(string) crmsync.Workflow { return nil }
	for name, c := range map[string]Config{
		"no engine":         {Keys: []string{"a"}, Workflow: wf, Interval: time.Second},
		"no workflow":       {Engine: eng, Keys: []string{"a"}, Interval: time.Second},
		"no keys":           {Engine: eng, Workflow: wf, Interval: time.Second},
		"no interval":       {Engine: eng, Keys: []string{"a"}, Workflow: wf},
		"negative tick":     {Engine: eng, Keys: []string{"a"}, Workflow: wf, Interval: time.Second, Tick: -1},
		"negative capacity": {Engine: eng, Keys: []string{"a"}, Workflow: wf, Interval: time.Second, Concurrency: -1},
	} {
		_, err := New(c)
		assert.Error(t, err, "New(%s) = nil error", name)
	}
}

func TestDue(t *testing.T) {
	st, clk, wfs := memory.New(), newClock(), newCounter()
	eng := newEngine(t, st, clk, "w1")
	var ran atomic.Int64
	w := newWorker(t, Config{Engine: eng, Keys: []string{"a", "b"}, Workflow: wfs.workflow, Interval: time.Minute,
		OnRun: func(string, crmsync.RunInfo, error) { ran.Add(1) }})

	tickWait(w)
	require.Equal(t, 1, wfs.count("a"), "after the first tick runs = %v, want one per key (never ran means due)", wfs.runs)
	require.Equal(t, 1, wfs.count("b"), "after the first tick runs = %v, want one per key (never ran means due)", wfs.runs)
	tickWait(w)
	clk.Advance(time.Minute - time.Millisecond)
	tickWait(w)
	require.Equal(t, 1, wfs.count("a"), "within the interval runs = %v, want still one per key", wfs.runs)
	require.Equal(t, 1, wfs.count("b"), "within the interval runs = %v, want still one per key", wfs.runs)
	clk.Advance(time.Millisecond)
	tickWait(w)
	require.Equal(t, 2, wfs.count("a"), "one interval after the last run finished runs = %v, want two per key", wfs.runs)
	require.Equal(t, 2, wfs.count("b"), "one interval after the last run finished runs = %v, want two per key", wfs.runs)
	assert.Equal(t, int64(4), ran.Load(), "OnRun called %d times, want 4", ran.Load())

	t.Run("failed run retried after RetryDelay here, at once elsewhere", func(t *testing.T) {
		wfs.mu.Lock()
		wfs.fail["a"] = errors.New("boom")
		wfs.mu.Unlock()
		clk.Advance(time.Minute)
		w.cfg.RetryDelay = 10 * time.Second
		tickWait(w)
		n := wfs.count("a")
		require.Equal(t, 3, n, "runs of a = %d, want 3", n)
		tickWait(w)
		n = wfs.count("a")
		assert.Equal(t, 3, n, "a failed run was retried here before RetryDelay: runs = %d", n)
		other := newWorker(t, Config{Engine: newEngine(t, st, clk, "w2"), Keys: []string{"a"}, Workflow: wfs.workflow, Interval: time.Minute})
		due, err := other.Due(context.Background(), "a")
		assert.NoError(t, err, "another worker: Due(a) = %v, %v; want true (an open run with no lease)", due, err)
		assert.True(t, due, "another worker: Due(a) = %v, %v; want true (an open run with no lease)", due, err)
		wfs.mu.Lock()
		delete(wfs.fail, "a")
		wfs.mu.Unlock()
		clk.Advance(10 * time.Second)
		tickWait(w)
		n = wfs.count("a")
		require.Equal(t, 4, n, "runs of a after RetryDelay = %d, want 4", n)
		runs, _ := st.ListRuns(context.Background(), "a", 1)
		if runs[0].Status != crmsync.RunFinished || runs[0].Attempts != 2 {
			t.Errorf("the failed run = %+v, want it resumed (attempt 2) and finished", runs[0])
		}
	})

	t.Run("expired lease of a dead process is taken over", func(t *testing.T) {
		ctx := context.Background()
		clk.Advance(time.Hour)
		// A process took the lease on b, opened a run and died.
		dead, _, err := st.AcquireLease(ctx, crmsync.LeaseRequest{Key: "b", Holder: "dead", Workflow: "x",
			NewRun: crmsync.NewRunID(clk.Now()), TTL: 2 * time.Second, Now: clk.Now()})
		require.NoError(t, err)
		before := wfs.count("b")
		tickWait(w)
		require.Equal(t, before, wfs.count("b"), "b ran while a live lease held it")
		clk.Advance(2 * time.Second)
		tickWait(w)
		require.Equal(t, before+1, wfs.count("b"), "b not taken over after the lease expired")
		info, err := st.GetRun(ctx, dead.Run)
		assert.NoError(t, err, "the dead process's run = %+v, %v; want it resumed and finished", info, err)
		assert.Equal(t, crmsync.RunFinished, info.Status, "the dead process's run = %+v, %v; want it resumed and finished", info, err)
		assert.Equal(t, 2, info.Attempts, "the dead process's run = %+v, %v; want it resumed and finished", info, err)
	})
}

func TestBusyAndRacingClaims(t *testing.T) {
	ctx := context.Background()
	st, clk := memory.New(), newClock()
	release := make(chan struct{})
	started := make(chan string, 10)
	var calls atomic.Int64
	blocking := func(key string) crmsync.Workflow {
		return crmsync.WorkflowFunc(func(ctx context.Context, run *crmsync.Run) error {
			calls.Add(1)
			started <- key
			select {
			case <-release:
			case <-ctx.Done():
				return ctx.Err()
			}
			return nil
		})
	}
	w1 := newWorker(t, Config{Engine: newEngine(t, st, clk, "w1"), Keys: []string{"k"}, Workflow: blocking, Interval: time.Minute})
	w2 := newWorker(t, Config{Engine: newEngine(t, st, clk, "w2"), Keys: []string{"k"}, Workflow: blocking, Interval: time.Minute})

	// Both find k due.
	for _, w := range []*Worker{w1, w2} {
		if due, err := w.Due(ctx, "k"); err != nil || !due {
			t.Fatalf("Due(k) = %v, %v; want true", due, err)
		}
	}
	w1.tick(ctx, ctx)
	<-started
	// While w1 runs k, w2 does not see it due, and a claim anyway is busy.
	due, _ := w2.Due(ctx, "k")
	assert.False(t, due, "Due(k) = true while another worker holds its lease")
	var reported atomic.Int64
	w2.cfg.OnRun = func(string, crmsync.RunInfo, error) { reported.Add(1) }
	w2.runKey(ctx, "k")
	require.Equal(t, int64(1), calls.Load(), "busy claim: workflow calls = %d, OnRun calls = %d; want 1 and 0", calls.Load(), reported.Load())
	require.Equal(t, int64(0), reported.Load(), "busy claim: workflow calls = %d, OnRun calls = %d; want 1 and 0", calls.Load(), reported.Load())
	close(release)
	w1.wg.Wait()

	// w2 had found k due before w1 ran it; its late claim gets the lease
	// but must not run k again in the same interval.
	w2.runKey(ctx, "k")
	require.Equal(t, int64(1), calls.Load(), "late claim ran the workflow again: calls = %d", calls.Load())
	runs, err := st.ListRuns(ctx, "k", 10)
	require.NoError(t, err, "runs = %+v, %v; want the real run and a skipped claim", runs, err)
	require.Len(t, runs, 2, "runs = %+v, %v; want the real run and a skipped claim", runs, err)
	require.True(t, IsSkip(runs[0]), "runs = %+v, %v; want the real run and a skipped claim", runs, err)
	require.False(t, IsSkip(runs[1]), "runs = %+v, %v; want the real run and a skipped claim", runs, err)
	// More late claims: each is skipped, none pushes the schedule: k is due
	// one interval after the real run finished, not after the skips.
	for range firstLook + 1 {
		clk.Advance(time.Second)
		w2.runKey(ctx, "k")
	}
	require.Equal(t, int64(1), calls.Load(), "late claims ran the workflow again: calls = %d", calls.Load())
	clk.Advance(time.Minute - time.Duration(firstLook+2)*time.Second)
	due, _ = w2.Due(ctx, "k")
	assert.False(t, due, "Due(k) = true within the interval of the real run, past %d skipped claims", firstLook+1)
	clk.Advance(time.Second)
	due, _ = w2.Due(ctx, "k")
	assert.True(t, due, "Due(k) = false one interval after the real run, past %d skipped claims", firstLook+1)
}

func TestConcurrencyBound(t *testing.T) {
	ctx := context.Background()
	st, clk := memory.New(), newClock()
	release := make(chan struct{})
	var cur, peak, total atomic.Int64
	wf := func(key string) crmsync.Workflow {
		return crmsync.WorkflowFunc(func(ctx context.Context, run *crmsync.Run) error {
			n := cur.Add(1)
			for {
				p := peak.Load()
				if n <= p || peak.CompareAndSwap(p, n) {
					break
				}
			}
			total.Add(1)
			<-release
			cur.Add(-1)
			return nil
		})
	}
	keys := []string{"a", "b", "c", "d", "e"}
	w := newWorker(t, Config{Engine: newEngine(t, st, clk, "w"), Keys: keys, Workflow: wf, Interval: time.Minute, Concurrency: 2})
	w.tick(ctx, ctx)
	w.tick(ctx, ctx)
	require.Eventually(t, func() bool { return total.Load() == 2 }, 10*time.Second, time.Millisecond, "condition not met within 10s")
	time.Sleep(20 * time.Millisecond)
	require.Equal(t, int64(2), total.Load(), "%d runs started with Concurrency 2", total.Load())
	close(release)
	for total.Load() < int64(len(keys)) {
		w.tick(ctx, ctx)
		time.Sleep(time.Millisecond)
	}
	w.wg.Wait()
	assert.Equal(t, int64(2), peak.Load(), "peak concurrency = %d, want 2", peak.Load())
	assert.Equal(t, int64(len(keys)), total.Load(), "runs = %d, want %d (each key once)", total.Load(), len(keys))
}

func TestCleanStop(t *testing.T) {
	st, clk := memory.New(), newClock()
	started := make(chan struct{}, 4)
	wf := func(key string) crmsync.Workflow {
		return crmsync.WorkflowFunc(func(ctx context.Context, run *crmsync.Run) error {
			if _, err := crmsync.Step(ctx, run, "first", func(context.Context, *crmsync.Attempt) (int, error) { return 1, nil }, nil); err != nil {
				return err
			}
			started <- struct{}{}
			<-ctx.Done()
			return ctx.Err()
		})
	}
	w := newWorker(t, Config{Engine: newEngine(t, st, clk, "w"), Keys: []string{"a", "b"}, Workflow: wf, Interval: time.Minute, Tick: 5 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	<-started
	<-started
	assert.Error(t, w.Run(ctx), "second concurrent Run = nil error")
	cancel()
	select {
	case err := <-done:
		require.NoError(t, err, "Run = %v, want nil", err)
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after ctx ended")
	}
	// The runs were cancelled, not lost: they are open and resume.
	bg := context.Background()
	for _, k := range []string{"a", "b"} {
		runs, err := st.ListRuns(bg, k, 10)
		require.NoError(t, err, "runs of %s = %+v, %v; want one open run", k, runs, err)
		require.Len(t, runs, 1, "runs of %s = %+v, %v; want one open run", k, runs, err)
		require.Equal(t, crmsync.RunOpen, runs[0].Status, "runs of %s = %+v, %v; want one open run", k, runs, err)
		l, _ := st.GetLease(bg, k)
		assert.Empty(t, l.Run, "lease of %s still held after stop: %+v", k, l)
		info, err := newEngine(t, st, clk, "x").Run(bg, k, crmsync.WorkflowFunc(func(ctx context.Context, run *crmsync.Run) error {
			_, err := crmsync.Step(ctx, run, "first", func(context.Context, *crmsync.Attempt) (int, error) {
				return 0, errors.New("a completed step ran again")
			}, nil)
			return err
		}))
		if err != nil || info.ID != runs[0].ID || info.Status != crmsync.RunFinished {
			t.Errorf("resume %s = %+v, %v; want run %s finished", k, info, err, runs[0].ID)
		}
	}

	t.Run("grace period lets runs finish", func(t *testing.T) {
		st := memory.New()
		finish := make(chan struct{})
		started := make(chan struct{}, 1)
		wf := func(key string) crmsync.Workflow {
			return crmsync.WorkflowFunc(func(ctx context.Context, run *crmsync.Run) error {
				started <- struct{}{}
				select {
				case <-finish:
					return nil
				case <-ctx.Done():
					return ctx.Err()
				}
			})
		}
		w := newWorker(t, Config{Engine: newEngine(t, st, clk, "w"), Keys: []string{"a"}, Workflow: wf, Interval: time.Minute,
			Tick: 5 * time.Millisecond, GracePeriod: time.Minute})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- w.Run(ctx) }()
		<-started
		cancel()
		select {
		case <-done:
			t.Fatal("Run returned before the in-flight run ended, within the grace period")
		case <-time.After(20 * time.Millisecond):
		}
		close(finish)
		require.NoError(t, <-done)
		runs, _ := st.ListRuns(context.Background(), "a", 10)
		if assert.Len(t, runs, 1, "runs = %+v, want one finished", runs) {
			assert.Equal(t, crmsync.RunFinished, runs[0].Status, "runs = %+v, want one finished", runs)
		}
	})
}
