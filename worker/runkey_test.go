package worker

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/store/memory"
	"github.com/crmsync/crmsync/store/postgres"
	"github.com/crmsync/crmsync/trigger"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestRunKeyRunsAKeyThatIsNotDue(t *testing.T) {
	ctx := context.Background()
	st, clk := memory.New(), newClock()
	c := newCounter()
	w := newWorker(t, Config{Engine: newEngine(t, st, clk, "w"), Keys: []string{"k"}, Workflow: c.workflow, Interval: time.Hour})
	tickWait(w)
	require.Equal(t, 1, c.count("k"))
	due, err := w.Due(ctx, "k")
	require.NoError(t, err)
	require.False(t, due)
	tickWait(w)
	require.Equal(t, 1, c.count("k"), "a tick leaves a key that is not due")

	info, err := w.RunKey(ctx, "k")
	require.NoError(t, err)
	assert.Equal(t, 2, c.count("k"), "a trigger runs the key although it is not due")
	assert.Equal(t, crmsync.RunFinished, info.Status)
	assert.False(t, IsSkip(info))
}

func TestRunKeyInFlight(t *testing.T) {
	ctx := context.Background()
	st, clk := memory.New(), newClock()
	release := make(chan struct{})
	started := make(chan struct{}, 1)
	wf := func(string) crmsync.Workflow {
		return crmsync.WorkflowFunc(func(ctx context.Context, run *crmsync.Run) error {
			started <- struct{}{}
			<-release
			return nil
		})
	}
	w := newWorker(t, Config{Engine: newEngine(t, st, clk, "w"), Keys: []string{"k"}, Workflow: wf, Interval: time.Hour})
	w.tick(ctx, ctx)
	<-started
	_, err := w.RunKey(ctx, "k")
	assert.ErrorIs(t, err, ErrInFlight)
	assert.ErrorIs(t, err, crmsync.ErrBusy, "the trigger package sees a busy key")
	close(release)
	w.wg.Wait()
}

// TestTriggersAcrossWorkersOnPostgres runs two workers on one PostgreSQL
// schema, each with its own trigger.Coalescer: a webhook received by the
// worker that cannot get the key's lease is run by the worker that holds
// it, right after its pass, through the Store.
func TestTriggersAcrossWorkersOnPostgres(t *testing.T) {
	dsn := os.Getenv("CRMSYNC_TEST_POSTGRES_DSN")
	if dsn == "" {
		t.Skip("CRMSYNC_TEST_POSTGRES_DSN is unset")
	}
	ctx := context.Background()
	schema := fmt.Sprintf("worker_trigger_%d", time.Now().UnixNano())
	open := func() *postgres.Store {
		st, err := postgres.Open(ctx, postgres.Config{DSN: dsn, Schema: schema})
		require.NoError(t, err)
		t.Cleanup(func() { st.Close() })
		return st
	}
	stA, stB := open(), open()
	t.Cleanup(func() {
		if _, err := stA.Pool().Exec(ctx, "DROP SCHEMA "+schema+" CASCADE"); err != nil {
			t.Logf("drop schema: %v", err)
		}
	})

	var mu sync.Mutex
	runsBy := map[string]int{}
	release := make(chan struct{})
	first := make(chan struct{})
	workflow := func(holder string) func(string) crmsync.Workflow {
		return func(key string) crmsync.Workflow {
			return crmsync.WorkflowFunc(func(ctx context.Context, run *crmsync.Run) error {
				mu.Lock()
				runsBy[holder]++
				n := runsBy["A"] + runsBy["B"]
				mu.Unlock()
				if n == 1 {
					close(first)
					<-release
				}
				return nil
			})
		}
	}
	newW := func(st crmsync.Store, holder string) *Worker {
		eng, err := crmsync.NewEngine(crmsync.Config{Store: st, Holder: holder, LeaseTTL: 30 * time.Second, Logger: quiet})
		require.NoError(t, err)
		return newWorker(t, Config{Engine: eng, Keys: []string{"team"}, Workflow: workflow(holder), Interval: time.Hour})
	}
	wA, wB := newW(stA, "A"), newW(stB, "B")
	busy := map[*Worker]int{}
	start := func(w *Worker, st crmsync.TriggerStore, poll time.Duration) *trigger.Coalescer {
		co, err := trigger.New(trigger.Config{
			Run: func(ctx context.Context, p trigger.Pass) error {
				_, err := w.RunKey(ctx, p.Key)
				if errors.Is(err, crmsync.ErrBusy) {
					mu.Lock()
					busy[w]++
					mu.Unlock()
				}
				return err
			},
			Store: st, Quiet: 10 * time.Millisecond, MaxWait: 100 * time.Millisecond, Poll: poll, Logger: quiet,
		})
		require.NoError(t, err)
		cctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { defer close(done); co.Run(cctx) }()
		t.Cleanup(func() { cancel(); <-done })
		return co
	}
	coA := start(wA, stA, 20*time.Millisecond)

	coA.Trigger(ctx, trigger.Event{Key: "team", System: "hubspot", Reason: "contact.propertyChange"})
	<-first // A holds the lease, its pass running
	// B starts and gets a change event for the key; it polls too seldom
	// to try again by itself here.
	coB := start(wB, stB, time.Hour)
	coB.Trigger(ctx, trigger.Event{Key: "team", System: "salesforce", Reason: "UPDATE"})
	require.Eventually(t, func() bool {
		mu.Lock()
		b := busy[wB]
		mu.Unlock()
		pend, err := stB.PendingTriggers(ctx, "team", 0)
		return err == nil && len(pend) > 0 && b >= 1
	}, 10*time.Second, 10*time.Millisecond, "B tried, found the key busy, and left the trigger in the store")
	// B's Coalescer now waits a Poll (an hour here) before it tries again.
	mu.Lock()
	assert.Equal(t, 0, runsBy["B"])
	mu.Unlock()
	close(release)
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return runsBy["A"] == 2
	}, 10*time.Second, 10*time.Millisecond, "A runs one more pass for B's trigger")
	require.Eventually(t, func() bool {
		pend, err := stA.PendingTriggers(ctx, "team", 0)
		return err == nil && len(pend) == 0
	}, 10*time.Second, 10*time.Millisecond, "the pass clears the trigger")
	mu.Lock()
	defer mu.Unlock()
	assert.Equal(t, map[string]int{"A": 2}, runsBy)
}

func TestRunKeyAfterResumeRunsAFreshPass(t *testing.T) {
	ctx := context.Background()
	st, clk := memory.New(), newClock()
	c := newCounter()
	c.fail["k"] = fmt.Errorf("connection reset")
	w := newWorker(t, Config{Engine: newEngine(t, st, clk, "w"), Keys: []string{"k"}, Workflow: c.workflow, Interval: time.Hour})
	_, err := w.RunKey(ctx, "k")
	require.Error(t, err)
	runs, err := st.ListRuns(ctx, "k", 10)
	require.NoError(t, err)
	require.Len(t, runs, 1)
	require.Equal(t, crmsync.RunOpen, runs[0].Status, "the failed run stays open to resume")
	delete(c.fail, "k")

	info, err := w.RunKey(ctx, "k")
	require.NoError(t, err)
	assert.Equal(t, 3, c.count("k"), "the failed run, its resumption, then a fresh run")
	assert.Equal(t, 1, info.Attempts, "RunKey reports the fresh run")
	runs, err = st.ListRuns(ctx, "k", 10)
	require.NoError(t, err)
	assert.Len(t, runs, 2)
}
