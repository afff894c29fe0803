package crmsync_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/store/memory"
)

// recObserver records what the engine tells it.
type recObserver struct {
	mu     sync.Mutex
	events []string
	ctxOK  []bool
	runs   []crmsync.RunInfo
	errs   []error
}

type ctxMark struct{}

func (o *recObserver) add(e string) {
	o.mu.Lock()
	o.events = append(o.events, e)
	o.mu.Unlock()
}

func (o *recObserver) RunStarted(ctx context.Context, ri crmsync.RunInfo) (context.Context, func(crmsync.RunInfo, error)) {
	o.add(fmt.Sprintf("run start %s attempts=%d", ri.Key, ri.Attempts))
	return context.WithValue(ctx, ctxMark{}, ri.ID), func(end crmsync.RunInfo, err error) {
		o.mu.Lock()
		o.runs = append(o.runs, end)
		o.errs = append(o.errs, err)
		o.mu.Unlock()
		o.add(fmt.Sprintf("run end %s", end.Status))
	}
}

func (o *recObserver) StepStarted(ctx context.Context, run crmsync.RunInfo, step string, attempt int) (context.Context, func(error)) {
	o.mu.Lock()
	o.ctxOK = append(o.ctxOK, ctx.Value(ctxMark{}) == run.ID)
	o.mu.Unlock()
	o.add(fmt.Sprintf("step start %s #%d", step, attempt))
	return ctx, func(err error) { o.add(fmt.Sprintf("step end %s #%d err=%t", step, attempt, err != nil)) }
}

func (o *recObserver) RateLimited(ctx context.Context, run crmsync.RunInfo, step string, wait time.Duration) {
	o.add(fmt.Sprintf("rate limited %s %s", step, wait))
}

func (o *recObserver) Audited(ctx context.Context, rows []crmsync.AuditEntry) {
	for _, r := range rows {
		o.add("audit " + r.Kind)
	}
}

// TestObserverSeesRunsStepsAndWaits: the Observer is told of the run, of
// each attempt of each step (in the run's context), of rate-limit waits and
// of audit rows; replayed steps are not attempts.
func TestObserverSeesRunsStepsAndWaits(t *testing.T) {
	c := newClock()
	sl := &sleeper{c: c}
	obs := &recObserver{}
	st := memory.New()
	eng := newEngine(t, st, c, func(cfg *crmsync.Config) {
		cfg.Observer = obs
		cfg.Sleep = sl.Sleep
	})
	ctx := context.Background()
	calls := 0
	_, err := eng.Run(ctx, "k", crmsync.WorkflowFunc(func(ctx context.Context, run *crmsync.Run) error {
		_, err := crmsync.Step(ctx, run, "fetch", func(ctx context.Context, a *crmsync.Attempt) (int, error) {
			calls++
			if calls == 1 {
				return 0, &crmsync.RateLimitError{RetryAfter: 2 * time.Second, Err: errors.New("429")}
			}
			a.Audit(crmsync.AuditEntry{Kind: crmsync.AuditWrite, System: "hubspot", RecordIDs: []string{"1"}})
			return 1, nil
		}, nil)
		return err
	}))
	require.NoError(t, err)
	assert.Equal(t, []string{
		"run start k attempts=1",
		"step start fetch #1",
		"step end fetch #1 err=true",
		"rate limited fetch 2s",
		"step start fetch #2",
		"step end fetch #2 err=false",
		"audit retry", // the wait's row, committed with the step
		"audit write",
		"run end finished",
	}, obs.events)
	assert.Equal(t, []bool{true, true}, obs.ctxOK, "steps run in the context RunStarted returned")
	require.Len(t, obs.runs, 1)
	assert.Equal(t, crmsync.RunFinished, obs.runs[0].Status)
	assert.NoError(t, obs.errs[0])
}
