// Package worker runs a workflow for many keys (teams, portals) on a
// schedule, in as many processes as you like, with no coordinator of its own.
//
// Every process runs a Worker on the same Store (store/postgres when the
// processes live on several machines). Each Tick a Worker asks the Store which
// of its keys are due and claims them by taking their lease through
// Engine.Run; a key whose lease another process holds is skipped (ErrBusy).
// A key is due when its last run finished at least Interval ago, when it never
// ran, or when it has an open run whose lease is free or expired: the run of a
// process that died, or of one whose run failed. The engine resumes such a
// run where it stopped, so a dead worker's keys are taken over once its lease
// TTL has passed.
//
// # Claiming due keys
//
// Two workers can both see a key as due and claim it one after the other:
// the first runs and finishes, releases the lease, and the second then takes
// it. To keep a key from running twice in one Interval, a Worker checks
// again once it holds the lease, before the workflow does any work: under
// the lease no other process can finish a run of the key, so the check is
// exact. A claim found not due ends at once as a finished run whose report
// holds only a skip marker (see IsSkip); the Worker ignores such runs when it
// decides what is due. Runs the Worker resumes are never skipped: an open
// run always runs to its end.
package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"sync"
	"time"

	"github.com/crmsync/crmsync"
)

// Config configures a Worker.
type Config struct {
	// Engine runs the workflows under the keys' leases. Required.
	Engine *crmsync.Engine
	// Store is where due keys are looked up; nil means Engine.Store(). It
	// must be the Engine's Store.
	Store crmsync.Store
	// Keys are the keys this Worker serves. Either Keys or ListKeys is
	// required; ListKeys wins when both are set.
	Keys []string
	// ListKeys, if set, returns the keys each Tick (a team table, say).
	ListKeys func(ctx context.Context) ([]string, error)
	// Workflow returns the workflow of a key. Required.
	Workflow func(key string) crmsync.Workflow
	// Interval is how often each key is due: a key runs again once its last
	// run finished Interval ago. Required (positive).
	Interval time.Duration
	// Concurrency caps the keys running at once in this process; zero means 4.
	Concurrency int
	// Tick is how often the Worker looks for due keys; zero means
	// Interval/10, at least 100ms and at most 10s.
	Tick time.Duration
	// RetryDelay is how long this process waits before it tries again a key
	// whose run failed here (the run stays open and resumable, so other
	// processes may try sooner); zero means Interval.
	RetryDelay time.Duration
	// GracePeriod is how long in-flight runs may go on after Run's ctx ends
	// before their ctx is cancelled too; zero means they are cancelled at
	// once. Either way the engine keeps an unfinished run resumable.
	GracePeriod time.Duration
	// OnRun, if set, is called after each claim that ran, with the key, the
	// run as stored and Engine.Run's error. Busy keys and skipped claims are
	// not reported.
	OnRun func(key string, info crmsync.RunInfo, err error)
	// Logger receives the worker's logs; nil means the Engine's logger.
	Logger *slog.Logger
	// Now is the clock of due decisions; nil means the Engine's clock. It
	// should match the clock the Engine stamps runs with.
	Now func() time.Time
	// Metrics, if set, is served at /metrics by Handler (the handler
	// telemetry.NewPrometheus returns, say).
	Metrics http.Handler
}

// Worker runs due keys. Create it with New and start it with Run.
type Worker struct {
	cfg   Config
	store crmsync.Store
	log   *slog.Logger
	sem   chan struct{}

	mu       sync.Mutex
	inFlight map[string]bool
	retryAt  map[string]time.Time // keys that failed here, not retried before
	running  bool
	wg       sync.WaitGroup
}

// New validates c and returns a Worker.
func New(c Config) (*Worker, error) {
	switch {
	case c.Engine == nil:
		return nil, errors.New("worker: Config.Engine is nil")
	case c.Workflow == nil:
		return nil, errors.New("worker: Config.Workflow is nil")
	case c.Keys == nil && c.ListKeys == nil:
		return nil, errors.New("worker: Config.Keys or Config.ListKeys is required")
	case c.Interval <= 0:
		return nil, fmt.Errorf("worker: Config.Interval must be positive (got %s)", c.Interval)
	case c.Concurrency < 0 || c.Tick < 0 || c.RetryDelay < 0 || c.GracePeriod < 0:
		return nil, errors.New("worker: Config.Concurrency, Tick, RetryDelay and GracePeriod must not be negative")
	}
	if c.Store == nil {
		c.Store = c.Engine.Store()
	}
	if c.Concurrency == 0 {
		c.Concurrency = 4
	}
	if c.Tick == 0 {
		c.Tick = min(max(c.Interval/10, 100*time.Millisecond), 10*time.Second)
	}
	if c.RetryDelay == 0 {
		c.RetryDelay = c.Interval
	}
	if c.Logger == nil {
		c.Logger = c.Engine.Logger()
	}
	if c.Now == nil {
		c.Now = c.Engine.Now
	}
	return &Worker{
		cfg: c, store: c.Store, log: c.Logger.With("component", "worker"),
		sem:      make(chan struct{}, c.Concurrency),
		inFlight: map[string]bool{}, retryAt: map[string]time.Time{},
	}, nil
}

// Run looks for due keys every Tick and runs them, at most Concurrency at a
// time, until ctx ends. Then it claims no more keys, lets in-flight runs go
// on for GracePeriod, cancels them, waits for them and returns nil. Store
// errors are logged and the key is tried again on a later Tick. Run returns
// an error only if the Worker is already running.
func (w *Worker) Run(ctx context.Context) error {
	w.mu.Lock()
	if w.running {
		w.mu.Unlock()
		return errors.New("worker: Run called while the worker is running")
	}
	w.running = true
	w.mu.Unlock()
	defer func() {
		w.mu.Lock()
		w.running = false
		w.mu.Unlock()
	}()

	// Runs get a context that outlives ctx by the grace period.
	runCtx, cancelRuns := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelRuns()
	stop := context.AfterFunc(ctx, func() {
		if w.cfg.GracePeriod <= 0 {
			cancelRuns()
			return
		}
		t := time.AfterFunc(w.cfg.GracePeriod, cancelRuns)
		context.AfterFunc(runCtx, func() { t.Stop() })
	})
	defer stop()

	w.log.Info("worker started", "interval", w.cfg.Interval, "concurrency", w.cfg.Concurrency, "tick", w.cfg.Tick)
	t := time.NewTicker(w.cfg.Tick)
	defer t.Stop()
	for {
		w.tick(ctx, runCtx)
		select {
		case <-ctx.Done():
			w.wg.Wait()
			w.log.Info("worker stopped")
			return nil
		case <-t.C:
		}
	}
}

// tick claims the due keys that fit in the free slots. Runs go on in their
// own goroutines under runCtx.
func (w *Worker) tick(ctx, runCtx context.Context) {
	keys := w.cfg.Keys
	if w.cfg.ListKeys != nil {
		var err error
		if keys, err = w.cfg.ListKeys(ctx); err != nil {
			if ctx.Err() == nil {
				w.log.Warn("list keys", "err", err)
			}
			return
		}
	}
	// A random order spreads the workers of several processes over the keys
	// instead of having them all race for the first one.
	keys = append([]string(nil), keys...)
	rand.Shuffle(len(keys), func(i, j int) { keys[i], keys[j] = keys[j], keys[i] })
	for _, key := range keys {
		if ctx.Err() != nil {
			return
		}
		now := w.cfg.Now()
		w.mu.Lock()
		skip := w.inFlight[key] || now.Before(w.retryAt[key])
		w.mu.Unlock()
		if skip {
			continue
		}
		due, err := w.due(ctx, key, now)
		if err != nil {
			if ctx.Err() == nil {
				w.log.Warn("check due key", "key", key, "err", err)
			}
			continue
		}
		if !due {
			continue
		}
		select {
		case w.sem <- struct{}{}:
		default:
			return // every slot is taken; the next tick goes on
		}
		w.mu.Lock()
		w.inFlight[key] = true
		w.mu.Unlock()
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			defer func() {
				w.mu.Lock()
				delete(w.inFlight, key)
				w.mu.Unlock()
				<-w.sem
			}()
			w.runKey(runCtx, key)
		}()
	}
}

// runKey claims key and runs its workflow.
func (w *Worker) runKey(ctx context.Context, key string) {
	wf := w.cfg.Workflow(key)
	if wf == nil {
		w.log.Error("Config.Workflow returned nil", "key", key)
		return
	}
	g := &guard{w: w, wf: wf}
	info, err := w.cfg.Engine.Run(ctx, key, g)
	switch {
	case errors.Is(err, crmsync.ErrBusy):
		w.log.Debug("key busy in another process", "key", key)
		return
	case g.skipped:
		w.log.Debug("claim skipped: the key ran since it was found due", "key", key, "run", string(info.ID))
		return
	case err != nil:
		w.mu.Lock()
		w.retryAt[key] = w.cfg.Now().Add(w.cfg.RetryDelay)
		w.mu.Unlock()
		if ctx.Err() == nil {
			w.log.Warn("run failed; it stays open and resumes later", "key", key, "run", string(info.ID), "err", err)
		}
	default:
		w.mu.Lock()
		delete(w.retryAt, key)
		w.mu.Unlock()
	}
	if w.cfg.OnRun != nil {
		w.cfg.OnRun(key, info, err)
	}
}

// guard is the workflow a Worker hands the Engine: it checks under the lease
// that the key is still due before it runs the key's workflow.
type guard struct {
	w       *Worker
	wf      crmsync.Workflow
	skipped bool
}

// Name reports the wrapped workflow's name, so runs keep it.
func (g *guard) Name() string {
	if n, ok := g.wf.(interface{ Name() string }); ok {
		return n.Name()
	}
	return fmt.Sprintf("%T", g.wf)
}

// Run implements crmsync.Workflow.
func (g *guard) Run(ctx context.Context, run *crmsync.Run) error {
	if !run.Resumed {
		last, ok, err := g.w.lastRun(ctx, run.Key, run.ID)
		if err != nil {
			return fmt.Errorf("worker: key %s: check due under lease: %w", run.Key, err)
		}
		if ok && last.Status.Closed() && g.w.cfg.Now().Before(last.FinishedAt.Add(g.w.cfg.Interval)) {
			g.skipped = true
			run.SetResult(skipMarker{Skipped: true, After: last.ID})
			return nil
		}
	}
	return g.wf.Run(ctx, run)
}

// skipMarker is the whole result of a claim that found its key not due.
type skipMarker struct {
	Skipped bool          `json:"worker_skipped"`
	After   crmsync.RunID `json:"after_run"`
}

// IsSkip reports whether info is a claim a Worker ended without work
// because the key had run since it was found due.
func IsSkip(info crmsync.RunInfo) bool {
	if info.Status != crmsync.RunFinished || len(info.Report) == 0 {
		return false
	}
	var rep struct {
		Result json.RawMessage `json:"result"`
	}
	if json.Unmarshal(info.Report, &rep) != nil || len(rep.Result) == 0 {
		return false
	}
	var m skipMarker
	return json.Unmarshal(rep.Result, &m) == nil && m.Skipped
}

// lookback is how many of a key's newest runs are read to find its last
// real run past skipped claims; a first look reads only a few.
const (
	firstLook = 3
	lookback  = 20
)

// lastRun returns the key's newest run that is not a skipped claim and not
// except, or ok false if it has none.
func (w *Worker) lastRun(ctx context.Context, key string, except crmsync.RunID) (crmsync.RunInfo, bool, error) {
	for _, n := range []int{firstLook, lookback} {
		runs, err := w.store.ListRuns(ctx, key, n)
		if err != nil {
			return crmsync.RunInfo{}, false, err
		}
		for _, r := range runs {
			if r.ID == except || IsSkip(r) {
				continue
			}
			return r, true, nil
		}
		if len(runs) < n {
			break // the key has no more runs
		}
	}
	return crmsync.RunInfo{}, false, nil
}

// due reports whether key should run now: no live lease, and either an
// open run to resume, no run yet, or a last run finished Interval ago.
func (w *Worker) due(ctx context.Context, key string, now time.Time) (bool, error) {
	l, err := w.store.GetLease(ctx, key)
	switch {
	case errors.Is(err, crmsync.ErrNotFound):
	case err != nil:
		return false, fmt.Errorf("worker: lease of key %s: %w", key, err)
	case l.Run != "" && l.Expires.After(now):
		return false, nil // live elsewhere
	}
	last, ok, err := w.lastRun(ctx, key, "")
	if err != nil {
		return false, fmt.Errorf("worker: runs of key %s: %w", key, err)
	}
	if !ok || !last.Status.Closed() {
		return true, nil
	}
	return !now.Before(last.FinishedAt.Add(w.cfg.Interval)), nil
}

// Due reports whether key is due now, as a Worker's Tick would decide it.
func (w *Worker) Due(ctx context.Context, key string) (bool, error) {
	return w.due(ctx, key, w.cfg.Now())
}
