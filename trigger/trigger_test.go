package trigger_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/store/memory"
	"github.com/crmsync/crmsync/store/sqlite"
	"github.com/crmsync/crmsync/trigger"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// recorder is a Config.Run that records the passes it was asked for.
type recorder struct {
	mu     sync.Mutex
	passes []trigger.Pass
	starts []time.Time
	hold   time.Duration // how long each pass takes
	err    func(p trigger.Pass) error
}

func (r *recorder) run(ctx context.Context, p trigger.Pass) error {
	r.mu.Lock()
	r.passes = append(r.passes, p)
	r.starts = append(r.starts, time.Now())
	r.mu.Unlock()
	if r.hold > 0 {
		select {
		case <-time.After(r.hold):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if r.err != nil {
		return r.err(p)
	}
	return nil
}

func (r *recorder) got() ([]trigger.Pass, []time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]trigger.Pass(nil), r.passes...), append([]time.Time(nil), r.starts...)
}

// start runs a Coalescer until the test's bubble or test ends.
func start(t *testing.T, c trigger.Config) (*trigger.Coalescer, context.CancelFunc) {
	t.Helper()
	co, err := trigger.New(c)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); assert.NoError(t, co.Run(ctx)) }()
	t.Cleanup(func() { cancel(); <-done })
	return co, func() { cancel(); <-done }
}

func TestConfig(t *testing.T) {
	run := func(context.Context, trigger.Pass) error { return nil }
	for _, tc := range []struct {
		name string
		c    trigger.Config
		want string
	}{
		{"no run", trigger.Config{}, "Config.Run is nil"},
		{"negative", trigger.Config{Run: run, Quiet: -1}, "must not be negative"},
		{"max wait below quiet", trigger.Config{Run: run, Quiet: time.Second, MaxWait: time.Millisecond}, "MaxWait (1ms) is less than Config.Quiet (1s)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := trigger.New(tc.c)
			assert.ErrorContains(t, err, tc.want)
		})
	}
}

func TestSingleEventWaitsQuietPeriod(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := &recorder{}
		co, _ := start(t, trigger.Config{Run: r.run, Quiet: 2 * time.Second, MaxWait: 10 * time.Second})
		t0 := time.Now()
		co.Trigger(context.Background(), trigger.Event{Key: "k", System: "hubspot", Reason: "contact.propertyChange"})
		time.Sleep(time.Second)
		synctest.Wait()
		passes, _ := r.got()
		assert.Empty(t, passes, "no pass inside the quiet period")
		time.Sleep(2 * time.Second)
		synctest.Wait()
		passes, starts := r.got()
		require.Len(t, passes, 1)
		assert.Equal(t, trigger.Pass{Key: "k", Events: 1, Systems: []string{"hubspot"}}, passes[0])
		assert.Equal(t, 2*time.Second, starts[0].Sub(t0), "the pass starts when the key has been quiet for Quiet")
	})
}

func TestBurstIsFewPasses(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := &recorder{hold: 3 * time.Second} // a pass over a big import takes a while
		co, _ := start(t, trigger.Config{Run: r.run, Quiet: time.Second, MaxWait: 5 * time.Second})
		ctx := context.Background()
		// 10,000 events in 10 s, on two keys, some flagged as gaps.
		for i := range 10000 {
			co.Trigger(ctx, trigger.Event{Key: fmt.Sprintf("portal-%d", i%2), System: "hubspot", Full: i == 5000, Reason: "contact.creation"})
			time.Sleep(time.Millisecond)
		}
		last := time.Now()
		time.Sleep(time.Minute)
		synctest.Wait()
		passes, starts := r.got()
		perKey := map[string]int{}
		var events int64
		full := false
		for i, p := range passes {
			perKey[p.Key]++
			events += p.Events
			full = full || p.Full
			_ = starts[i]
		}
		assert.Equal(t, int64(10000), events, "every event is accounted for by a pass")
		assert.True(t, full, "the gap's Full flag reaches a pass")
		for key, n := range perKey {
			assert.LessOrEqual(t, n, 5, "passes of %s", key)
			assert.GreaterOrEqual(t, n, 2, "passes of %s: MaxWait makes a pass start during the burst", key)
		}
		// Nothing lost: each key's last pass started after its last event.
		lastStart := map[string]time.Time{}
		for i, p := range passes {
			lastStart[p.Key] = starts[i]
		}
		for key, s := range lastStart {
			assert.False(t, s.Before(last.Add(-time.Millisecond)), "last pass of %s starts after the burst", key)
		}
		assert.Equal(t, int64(len(passes)), co.Passes())
	})
}

func TestEventsDuringPassMakeOneMorePass(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		var mu sync.Mutex
		var passes []trigger.Pass
		run := func(ctx context.Context, p trigger.Pass) error {
			mu.Lock()
			passes = append(passes, p)
			n := len(passes)
			mu.Unlock()
			if n == 1 {
				<-release
			}
			return nil
		}
		co, _ := start(t, trigger.Config{Run: run, Quiet: 100 * time.Millisecond, MaxWait: time.Second})
		ctx := context.Background()
		co.Trigger(ctx, trigger.Event{Key: "k", System: "salesforce"})
		time.Sleep(200 * time.Millisecond)
		synctest.Wait()
		for range 500 { // while the first pass runs
			co.Trigger(ctx, trigger.Event{Key: "k", System: "hubspot"})
			time.Sleep(10 * time.Millisecond)
		}
		time.Sleep(time.Minute)
		synctest.Wait()
		mu.Lock()
		assert.Len(t, passes, 1, "no pass of a key starts while one runs")
		mu.Unlock()
		close(release)
		time.Sleep(time.Minute)
		synctest.Wait()
		mu.Lock()
		defer mu.Unlock()
		require.Len(t, passes, 2, "events during a pass make exactly one more pass, not a queue")
		assert.Equal(t, int64(500), passes[1].Events)
		assert.Equal(t, []string{"hubspot"}, passes[1].Systems)
	})
}

func TestFailedPassIsRetried(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := &recorder{}
		r.err = func(p trigger.Pass) error {
			if len(r.passes) == 1 {
				return errors.New("network down")
			}
			return nil
		}
		co, _ := start(t, trigger.Config{Run: r.run, Quiet: time.Second, RetryDelay: 30 * time.Second})
		co.Trigger(context.Background(), trigger.Event{Key: "k", System: "hubspot"})
		time.Sleep(10 * time.Second)
		synctest.Wait()
		passes, _ := r.got()
		require.Len(t, passes, 1, "not retried before RetryDelay")
		time.Sleep(30 * time.Second)
		synctest.Wait()
		passes, _ = r.got()
		require.Len(t, passes, 2, "retried after RetryDelay")
		assert.Equal(t, "k", passes[1].Key)
	})
}

func TestStoreKeepsTriggersAcrossRestart(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := memory.New()
		r1 := &recorder{}
		co1, stop1 := start(t, trigger.Config{Run: r1.run, Store: st, Quiet: time.Minute, MaxWait: time.Hour})
		for range 100 {
			co1.Trigger(context.Background(), trigger.Event{Key: "k", System: "hubspot", Reason: "contact.propertyChange"})
		}
		stop1() // the process dies inside the quiet period
		passes, _ := r1.got()
		require.Empty(t, passes)

		r2 := &recorder{}
		start(t, trigger.Config{Run: r2.run, Store: st, Quiet: time.Minute, MaxWait: time.Hour})
		time.Sleep(2 * time.Minute)
		synctest.Wait()
		passes, _ = r2.got()
		require.Len(t, passes, 1, "the next process runs the pass the events announced")
		assert.Equal(t, "k", passes[0].Key)
		assert.Equal(t, int64(100), passes[0].Events)
		left, err := st.PendingTriggers(context.Background(), "k", 0)
		require.NoError(t, err)
		assert.Empty(t, left, "a successful pass clears what it read")
	})
}

// TestTriggerReachesLeaseHolder runs two processes' Coalescers on one SQLite
// file: a trigger received by the one that cannot get the key's lease is run
// by the one that holds it, after its running pass.
func TestTriggerReachesLeaseHolder(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "crm.db")
	open := func() *sqlite.Store {
		s, err := sqlite.Open(ctx, sqlite.Config{Path: path})
		require.NoError(t, err)
		t.Cleanup(func() { s.Close() })
		return s
	}
	stA, stB := open(), open()

	// A shared lease stands in for the Store's: one holder per key.
	var mu sync.Mutex
	holder := ""
	release := make(chan struct{})
	var aPasses, bBusy int
	runA := func(ctx context.Context, p trigger.Pass) error {
		mu.Lock()
		if holder != "" {
			mu.Unlock()
			return fmt.Errorf("key %s: %w", p.Key, crmsync.ErrBusy)
		}
		holder = "A"
		aPasses++
		n := aPasses
		mu.Unlock()
		if n == 1 {
			<-release
		}
		mu.Lock()
		holder = ""
		mu.Unlock()
		return nil
	}
	runB := func(ctx context.Context, p trigger.Pass) error {
		mu.Lock()
		defer mu.Unlock()
		if holder != "" {
			bBusy++
			return fmt.Errorf("key %s: %w", p.Key, crmsync.ErrBusy)
		}
		t.Errorf("B ran a pass of %s; A should have", p.Key)
		return nil
	}
	fast := trigger.Config{Quiet: 10 * time.Millisecond, MaxWait: 50 * time.Millisecond, Poll: 20 * time.Millisecond, RetryDelay: time.Hour}
	cA, cB := fast, fast
	cA.Run, cA.Store = runA, stA
	// B polls too seldom to try again in this test: the pass must come
	// from A.
	cB.Run, cB.Store, cB.Poll = runB, stB, time.Hour
	coA, _ := start(t, cA)
	coA.Trigger(ctx, trigger.Event{Key: "k", System: "hubspot"})
	require.Eventually(t, func() bool { mu.Lock(); defer mu.Unlock(); return aPasses == 1 }, 10*time.Second, 5*time.Millisecond)
	// B starts while A's pass runs (before, it could have taken the lease
	// and run the key itself, which is as good).
	coB, _ := start(t, cB)
	// B receives a webhook while A's pass runs.
	coB.Trigger(ctx, trigger.Event{Key: "k", System: "salesforce", Reason: "UPDATE"})
	require.Eventually(t, func() bool { mu.Lock(); defer mu.Unlock(); return bBusy >= 1 }, 10*time.Second, 5*time.Millisecond)
	close(release)
	require.Eventually(t, func() bool { mu.Lock(); defer mu.Unlock(); return aPasses == 2 }, 10*time.Second, 5*time.Millisecond,
		"A, holding the lease, runs one more pass for B's trigger")
	require.Eventually(t, func() bool {
		left, err := stA.PendingTriggers(ctx, "k", 0)
		return err == nil && len(left) == 0
	}, 10*time.Second, 5*time.Millisecond, "A's pass clears B's trigger")
	mu.Lock()
	assert.Equal(t, 2, aPasses)
	mu.Unlock()
}
