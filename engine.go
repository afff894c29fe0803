package crmsync

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"time"
)

// Workflow is the work an Engine runs under a key's lease. Its Run makes its
// API calls inside Steps so that a resumed run repeats none that completed.
type Workflow interface {
	Run(ctx context.Context, run *Run) error
}

// WorkflowFunc adapts a func to Workflow.
type WorkflowFunc func(ctx context.Context, run *Run) error

// Run implements Workflow.
func (f WorkflowFunc) Run(ctx context.Context, run *Run) error { return f(ctx, run) }

// Config configures an Engine. Only Store is required.
type Config struct {
	// Store keeps runs, steps and the rest. Required.
	Store Store
	// Logger receives run and retry logs; nil means none (a library logs
	// only where its user asks it to).
	Logger *slog.Logger
	// Holder names this process in leases; "" means host:pid:random.
	Holder string
	// LeaseTTL is how long a lease lives without a heartbeat; zero means 30s.
	// A run whose process dies is resumed by the first start after it expires.
	LeaseTTL time.Duration
	// Heartbeat is how often a live run renews its lease; zero means LeaseTTL/3.
	// A renewal comes sooner when the lease as last renewed would otherwise
	// reach its stop point first (a renewal that took long, or a Heartbeat
	// near LeaseTTL): each renewal starts at least a quarter heartbeat
	// before the stop point.
	// A run whose lease cannot be renewed stops (its context cancelled, Run
	// returning an error matching ErrLeaseLost) a quarter heartbeat before
	// the lease as last renewed expires, so that it makes no CRM call once
	// another process may hold the key.
	Heartbeat time.Duration
	// WaitForLease makes Run wait while another run holds the key; false
	// means Run returns ErrBusy at once.
	WaitForLease bool
	// Retention is how long step results of finished runs are kept; zero
	// means 7 days, negative means forever.
	Retention time.Duration
	// Retry is the default retry policy of steps; nil means DefaultRetry.
	Retry *RetryPolicy
	// OnAudit, if set, is called with every batch of audit rows after the
	// Store has kept them, to mirror them elsewhere. It must not block long.
	OnAudit func(ctx context.Context, rows []AuditEntry)
	// Observer, if set, follows runs, steps, rate-limit waits and audit
	// rows (traces and metrics: see package telemetry); nil means none.
	Observer Observer
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Sleep waits d or until ctx ends, between step retries and lease polls;
	// nil means a timer. Tests may replace it. Heartbeats always use a timer.
	Sleep func(ctx context.Context, d time.Duration) error
}

// Engine runs workflows with leases and durable steps. It is safe for
// concurrent use; each Run call is one run of one key.
type Engine struct {
	cfg Config
	log *slog.Logger
}

// NewEngine validates c and returns an Engine.
func NewEngine(c Config) (*Engine, error) {
	if c.Store == nil {
		return nil, errors.New("crmsync: Config.Store is nil")
	}
	if c.LeaseTTL < 0 {
		return nil, fmt.Errorf("crmsync: Config.LeaseTTL is negative (%s)", c.LeaseTTL)
	}
	if c.Heartbeat < 0 {
		return nil, fmt.Errorf("crmsync: Config.Heartbeat is negative (%s)", c.Heartbeat)
	}
	if c.LeaseTTL == 0 {
		c.LeaseTTL = 30 * time.Second
	}
	if c.Heartbeat == 0 {
		c.Heartbeat = c.LeaseTTL / 3
	}
	if c.Heartbeat >= c.LeaseTTL {
		return nil, fmt.Errorf("crmsync: Config.Heartbeat (%s) must be shorter than LeaseTTL (%s)", c.Heartbeat, c.LeaseTTL)
	}
	if c.Retention == 0 {
		c.Retention = 7 * 24 * time.Hour
	}
	if c.Retry == nil {
		r := DefaultRetry
		c.Retry = &r
	} else if err := c.Retry.validate(); err != nil {
		return nil, fmt.Errorf("crmsync: Config.Retry: %w", err)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Sleep == nil {
		c.Sleep = sleepCtx
	}
	if c.Holder == "" {
		host, _ := os.Hostname()
		c.Holder = host + ":" + strconv.Itoa(os.Getpid()) + ":" + randomHex(4)
	}
	log := c.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Engine{cfg: c, log: log}, nil
}

// Store returns the engine's Store.
func (e *Engine) Store() Store { return e.cfg.Store }

// Logger returns the engine's logger.
func (e *Engine) Logger() *slog.Logger { return e.log }

// Now returns the engine clock's time.
func (e *Engine) Now() time.Time { return e.cfg.Now() }

func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// NewRunID returns a fresh, time-ordered run id.
func NewRunID(now time.Time) RunID {
	return RunID(fmt.Sprintf("run_%013d_%s", now.UnixMilli(), randomHex(6)))
}

// workflowName is the name stored with a run.
func workflowName(wf Workflow) string {
	if n, ok := wf.(interface{ Name() string }); ok {
		return n.Name()
	}
	return fmt.Sprintf("%T", wf)
}

// Run runs wf for key under the key's lease and returns the run as stored.
// If the key has an unfinished run (its process died or it returned a
// transient error), Run resumes it: same run id, completed steps replayed
// from the Store. A run whose workflow returns nil or a permanent error is
// finished; the next Run of the key starts a new one. Run returns ErrBusy
// (or waits, with WaitForLease) while another live run holds the key.
func (e *Engine) Run(ctx context.Context, key string, wf Workflow) (RunInfo, error) {
	if key == "" {
		return RunInfo{}, errors.New("crmsync: Run: empty key")
	}
	if wf == nil {
		return RunInfo{}, fmt.Errorf("crmsync: Run %s: nil workflow", key)
	}
	run, err := e.start(ctx, key, workflowName(wf))
	if err != nil {
		return RunInfo{}, err
	}
	if obs := e.cfg.Observer; obs != nil {
		octx, done := obs.RunStarted(ctx, run.info)
		info, err := run.execute(octx, wf)
		done(info, err)
		return info, err
	}
	return run.execute(ctx, wf)
}

func (e *Engine) start(ctx context.Context, key, workflow string) (*Run, error) {
	st := e.cfg.Store
	starter, oneTrip := st.(RunStarter)
	var (
		rs  RunStart
		err error
	)
	for {
		now := e.cfg.Now()
		req := LeaseRequest{
			Key: key, Holder: e.cfg.Holder, Workflow: workflow,
			NewRun: NewRunID(now), TTL: e.cfg.LeaseTTL, Now: now,
		}
		if oneTrip {
			rs, err = starter.StartRun(ctx, req)
		} else {
			rs.Lease, rs.Run, err = st.AcquireLease(ctx, req)
		}
		if err == nil {
			break
		}
		if !errors.Is(err, ErrBusy) || !e.cfg.WaitForLease {
			return nil, fmt.Errorf("crmsync: start run for key %s: %w", key, err)
		}
		wait := min(e.cfg.LeaseTTL/4, time.Second)
		if err := e.cfg.Sleep(ctx, wait); err != nil {
			return nil, fmt.Errorf("crmsync: waiting for lease on key %s: %w", key, err)
		}
	}
	if !oneTrip {
		if rs, err = e.loadRun(ctx, rs); err != nil {
			return nil, err
		}
	}
	lease, info, steps, replays := rs.Lease, rs.Run, rs.Steps, rs.Replays
	if steps == nil {
		steps = map[string]StepRecord{}
	}
	r := &Run{
		ID: info.ID, Key: key, Resumed: info.Attempts > 1,
		eng: e, lease: lease, info: info, steps: steps, seen: map[string]bool{},
		replays: replays, answers: map[int64]int{},
	}
	for _, d := range replays {
		if d.Status == DeadFailedAgain {
			r.answers[d.ID]++ // answered before this run was resumed
		}
	}
	r.counters.APICalls = map[string]int{}
	r.log = e.log.With("run", string(info.ID), "key", key)
	if r.Resumed {
		r.log.Info("resuming run", "completed_steps", len(steps), "attempt", info.Attempts)
	} else {
		r.log.Info("starting run")
	}
	return r, nil
}

// loadRun completes a start through a Store without RunStarter: the run's
// steps, then its replays; the lease is given back if either fails.
func (e *Engine) loadRun(ctx context.Context, rs RunStart) (RunStart, error) {
	st := e.cfg.Store
	var err error
	rs.Steps, err = st.LoadSteps(ctx, rs.Run.ID)
	if err != nil {
		_ = st.ReleaseLease(context.WithoutCancel(ctx), rs.Lease)
		return rs, fmt.Errorf("crmsync: load steps of run %s: %w", rs.Run.ID, err)
	}
	rs.Replays, err = st.ClaimReplays(ctx, rs.Lease, e.cfg.Now())
	if err != nil {
		_ = st.ReleaseLease(context.WithoutCancel(ctx), rs.Lease)
		return rs, fmt.Errorf("crmsync: claim dead-letter replays for run %s: %w", rs.Run.ID, err)
	}
	return rs, nil
}

// Counters are a run's step and API counts.
type Counters struct {
	// StepRuns counts steps whose function completed in this execution.
	StepRuns int `json:"step_runs"`
	// Retries counts attempts repeated after a transient failure or rate limit.
	Retries int `json:"retries"`
	// Replays counts steps answered from the Store without running.
	Replays int `json:"replays"`
	// Failed counts steps that failed permanently.
	Failed int `json:"failed"`
	// DeadLetters counts payloads parked.
	DeadLetters int `json:"dead_letters"`
	// APICalls counts calls per system, as reported by the workflow.
	APICalls map[string]int `json:"api_calls,omitempty"`
}

// Report is what a run stores when it ends: its counters and the workflow's
// own result (see Run.SetResult).
type Report struct {
	Counters Counters        `json:"counters"`
	Result   json.RawMessage `json:"result,omitempty"`
}

// Run is one execution of a workflow for one key. Its methods are safe for
// concurrent use by the workflow's goroutines.
type Run struct {
	ID      RunID
	Key     string
	Resumed bool

	eng  *Engine
	log  *slog.Logger
	info RunInfo

	mu       sync.Mutex
	lease    Lease
	steps    map[string]StepRecord
	seen     map[string]bool
	counters Counters
	replays  []DeadLetter
	// answers counts, per claimed letter id, the letters of this run's
	// attempts that update it (its replay failed again); see claimFor.
	answers map[int64]int
	result  any
	closed  bool
	// renewing is open while the heartbeat renews the lease: new commits
	// wait for it, so that a busy Store serves the renewal first.
	renewing chan struct{}
}

// waitRenewal waits for a lease renewal in flight, if any.
func (r *Run) waitRenewal(ctx context.Context) error {
	r.mu.Lock()
	ch := r.renewing
	r.mu.Unlock()
	if ch == nil {
		return nil
	}
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// Logger returns the run's logger (with run and key attributes).
func (r *Run) Logger() *slog.Logger { return r.log }

// Store returns the engine's Store.
func (r *Run) Store() Store { return r.eng.cfg.Store }

// Now returns the engine clock's time.
func (r *Run) Now() time.Time { return r.eng.cfg.Now() }

// Lease returns the run's current lease.
func (r *Run) Lease() Lease {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.lease
}

// Counters returns a copy of the run's counters so far.
func (r *Run) Counters() Counters {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := r.counters
	c.APICalls = make(map[string]int, len(r.counters.APICalls))
	for k, v := range r.counters.APICalls {
		c.APICalls[k] = v
	}
	return c
}

// AddAPICalls adds n to the run's count of API calls to system.
func (r *Run) AddAPICalls(system string, n int) {
	r.mu.Lock()
	r.counters.APICalls[system] += n
	r.mu.Unlock()
}

// Replays returns the dead letters marked for replay that this run claimed
// at its first start (a resumed run gets the same ones back; letters marked
// later wait for the key's next run). The workflow tries them again; a
// letter the run parks again for the same subject (system and source record,
// or record id) updates a claimed letter to DeadFailedAgain instead of
// parking a second one. Each claimed letter answers one such letter: the
// one for the same write (system and the payload's op key) first, else one
// about the same subject that no letter of the run updated yet; only when
// all of them were, a letter updates one of them again.
func (r *Run) Replays() []DeadLetter {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]DeadLetter(nil), r.replays...)
}

// SetResult sets the workflow's own result, stored in the run's Report as JSON.
func (r *Run) SetResult(v any) {
	r.mu.Lock()
	r.result = v
	r.mu.Unlock()
}

// Cursor returns the key's cursor name, or ok false if it was never set.
func (r *Run) Cursor(ctx context.Context, name string) (value string, ok bool, err error) {
	v, err := r.eng.cfg.Store.GetCursor(ctx, r.Key, name)
	if errors.Is(err, ErrNotFound) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("crmsync: run %s: cursor %q: %w", r.ID, name, err)
	}
	return v, true, nil
}

// Audit appends rows to the audit log now, stamped with the run.
func (r *Run) Audit(ctx context.Context, rows ...AuditEntry) error {
	for i := range rows {
		r.stamp(&rows[i], "")
	}
	if err := r.eng.cfg.Store.AppendAudit(ctx, rows); err != nil {
		return fmt.Errorf("crmsync: run %s: append audit: %w", r.ID, err)
	}
	r.eng.hookAudit(ctx, rows)
	return nil
}

func (r *Run) stamp(a *AuditEntry, step string) {
	if a.Time.IsZero() {
		a.Time = r.eng.cfg.Now()
	}
	a.Key, a.Run = r.Key, r.ID
	if a.Step == "" {
		a.Step = step
	}
}

func (e *Engine) hookAudit(ctx context.Context, rows []AuditEntry) {
	if e.cfg.OnAudit != nil && len(rows) > 0 {
		e.cfg.OnAudit(ctx, rows)
	}
	if e.cfg.Observer != nil && len(rows) > 0 {
		e.cfg.Observer.Audited(ctx, rows)
	}
}

func (r *Run) execute(parent context.Context, wf Workflow) (RunInfo, error) {
	ctx, cancel := context.WithCancelCause(parent)
	defer cancel(nil)
	stopHeartbeat := r.startHeartbeat(ctx, cancel)

	werr := func() (err error) {
		defer func() {
			if p := recover(); p != nil {
				err = fmt.Errorf("crmsync: run %s: workflow panicked: %v", r.ID, p)
			}
		}()
		return wf.Run(ctx, r)
	}()
	cancel(nil)
	stopHeartbeat()
	if cause := context.Cause(ctx); errors.Is(cause, ErrLeaseLost) {
		if werr == nil {
			// The workflow ignored the cancel; its work is not proven.
			werr = cause
		} else if !errors.Is(werr, ErrLeaseLost) {
			werr = fmt.Errorf("%w (%w)", werr, cause)
		}
	}

	r.mu.Lock()
	r.closed = true
	rep := Report{Counters: r.counters}
	result := r.result
	r.mu.Unlock()
	var pending []AuditEntry
	if rep.Counters.Replays > 0 {
		detail, _ := json.Marshal(map[string]int{"replayed_steps": rep.Counters.Replays})
		pending = append(pending, AuditEntry{Time: r.eng.cfg.Now(), Key: r.Key, Run: r.ID, Kind: AuditReplay, Detail: detail})
	}
	if result != nil {
		b, err := json.Marshal(result)
		if err != nil {
			werr = errors.Join(werr, fmt.Errorf("crmsync: run %s: encode result: %w", r.ID, err))
		} else {
			rep.Result = b
		}
	}
	repJSON, _ := json.Marshal(rep)

	// The run's outcome is recorded even when ctx was cancelled.
	fctx, fcancel := context.WithTimeout(context.WithoutCancel(parent), 30*time.Second)
	defer fcancel()
	status, msg := RunFinished, ""
	if werr != nil {
		status, msg = RunOpen, werr.Error()
		// A run that stopped on a permanent failure would only replay it
		// if resumed: close it, so that the key's next run starts afresh.
		if IsPermanent(werr) && parent.Err() == nil && !errors.Is(context.Cause(ctx), ErrLeaseLost) {
			status = RunFailed
		}
	}
	end := RunEnd{Status: status, Report: repJSON, Error: msg, Now: r.eng.cfg.Now(), Audit: pending}
	if werr == nil && r.eng.cfg.Retention > 0 {
		end.PruneBefore = end.Now.Add(-r.eng.cfg.Retention)
	}
	info, pruned, err := r.end(fctx, end)
	if err != nil {
		return r.info, errors.Join(werr, fmt.Errorf("crmsync: finish run %s: %w", r.ID, err))
	}
	if pruned > 0 {
		r.log.Debug("pruned old runs", "runs", pruned)
	}
	if werr != nil {
		if status == RunOpen {
			r.log.Warn("run stopped; it resumes on the next start", "err", werr)
		} else {
			r.log.Error("run failed permanently and is closed; the next start begins a new run", "err", werr)
		}
		return info, fmt.Errorf("crmsync: run %s (key %s): %w", r.ID, r.Key, werr)
	}
	r.log.Info("run finished", "step_runs", rep.Counters.StepRuns, "replays", rep.Counters.Replays,
		"retries", rep.Counters.Retries, "dead_letters", rep.Counters.DeadLetters)
	return info, nil
}

// end records the run's outcome, releases its lease and prunes old runs:
// in one call if the Store is a RunEnder, else one call each. It returns
// the run as stored (the run as started if that read fails) and how many
// runs were pruned.
func (r *Run) end(ctx context.Context, end RunEnd) (RunInfo, int, error) {
	st := r.eng.cfg.Store
	lease := r.Lease()
	if ender, ok := st.(RunEnder); ok {
		info, pruned, err := ender.EndRun(ctx, lease, end)
		if err == nil || errors.Is(err, ErrLeaseLost) {
			r.eng.hookAudit(ctx, end.Audit)
		}
		if err != nil {
			return r.info, 0, err
		}
		return info, pruned, nil
	}
	if len(end.Audit) > 0 {
		if err := st.AppendAudit(ctx, end.Audit); err == nil {
			r.eng.hookAudit(ctx, end.Audit)
		}
	}
	if err := st.FinishRun(ctx, lease, end.Status, end.Report, end.Error, end.Now); err != nil {
		return r.info, 0, err
	}
	if err := st.ReleaseLease(ctx, lease); err != nil && !errors.Is(err, ErrLeaseLost) {
		r.log.Warn("release lease", "err", err)
	}
	info, err := st.GetRun(ctx, r.ID)
	if err != nil {
		info = r.info
	}
	pruned := 0
	if !end.PruneBefore.IsZero() {
		if pruned, err = st.PruneRuns(ctx, end.PruneBefore); err != nil {
			r.log.Warn("prune old runs", "err", err)
		}
	}
	return info, pruned, nil
}

// startHeartbeat starts the run's lease renewals (heartbeat). The first
// renewal waits on a timer, not on a goroutine of its own: the renewals'
// goroutine starts when the first is due, so a run shorter than a
// heartbeat starts none (starting one, and waking it to stop, woke other
// threads on every run). The func returned stops the renewals and returns
// once none is in progress; the caller cancels ctx first.
func (r *Run) startHeartbeat(ctx context.Context, cancel context.CancelCauseFunc) (stop func()) {
	done := make(chan struct{})
	t := time.AfterFunc(r.renewalWait(r.Lease().Expires.Add(-r.eng.cfg.Heartbeat/4), nil), func() {
		defer close(done)
		r.heartbeat(ctx, cancel)
	})
	return func() {
		if !t.Stop() {
			<-done
		}
	}
}

// renewalWait is how long the heartbeat sleeps before the next renewal,
// given the run's stop point (a quarter heartbeat before its lease
// expires) and the last renewal's error. The next renewal starts early
// enough to end, taking its quarter heartbeat, by the stop point: after a
// renewal that took long (its new expiry counts from before the call), or
// with a Heartbeat near LeaseTTL, a full heartbeat's sleep would wake past
// it with no failure on record, the run still calling the CRMs.
func (r *Run) renewalWait(stopAt time.Time, lastErr error) time.Duration {
	hb := r.eng.cfg.Heartbeat
	if lastErr != nil {
		return min(hb/4, stopAt.Sub(r.eng.cfg.Now()))
	}
	return min(hb, stopAt.Sub(r.eng.cfg.Now())-hb/4)
}

// heartbeat renews the run's lease every Config.Heartbeat, or sooner so that
// a renewal has a quarter heartbeat before the stop point. A run that can no
// longer prove its lease must stop calling the CRMs before another process
// may take the key: heartbeat cancels the run's context, with a
// cause wrapping ErrLeaseLost, when the lease changed hands, or when the
// lease as last renewed is a quarter heartbeat from expiring and the
// renewals tried since failed (a renewal call may take until then; a failed
// one is tried again sooner).
// A late renewal that succeeds proves the lease: nobody took it meanwhile.
//
// The first renewal goes at once (startHeartbeat waited for it).
func (r *Run) heartbeat(ctx context.Context, cancel context.CancelCauseFunc) {
	ttl, hb := r.eng.cfg.LeaseTTL, r.eng.cfg.Heartbeat
	// The run stops a quarter heartbeat before its lease expires: the margin
	// lets in-flight calls end before another process may take the key.
	margin := hb / 4
	stopAt := r.Lease().Expires.Add(-margin)
	var lastErr error
	for first := true; ; first = false {
		wait := r.renewalWait(stopAt, lastErr)
		if first {
			wait = 0
		}
		if err := sleepCtx(ctx, wait); err != nil {
			return
		}
		now := r.eng.cfg.Now()
		left := stopAt.Sub(now)
		if left <= 0 && lastErr != nil {
			r.log.Error("lease not renewed in time; stopping run", "ttl", ttl, "err", lastErr)
			cancel(fmt.Errorf("crmsync: run %s: lease on key %s not renewed before it expires at %s: %w (last renewal error: %v)",
				r.ID, r.Key, stopAt.Add(margin).Format(time.RFC3339Nano), ErrLeaseLost, lastErr))
			return
		}
		// A renewal may take until the stop point, no longer: one that
		// hangs (a partitioned database) must not outlive it. A heartbeat
		// that woke late (a starved process) still tries once.
		rctx, rcancel := context.WithTimeout(ctx, max(left, hb/4))
		gate := make(chan struct{})
		r.mu.Lock()
		r.renewing = gate
		r.mu.Unlock()
		l, err := r.eng.cfg.Store.RenewLease(rctx, r.Lease(), ttl, now)
		r.mu.Lock()
		r.renewing = nil
		r.mu.Unlock()
		close(gate)
		rcancel()
		switch {
		case err == nil:
			r.mu.Lock()
			r.lease = l
			r.mu.Unlock()
			stopAt, lastErr = l.Expires.Add(-margin), nil
		case errors.Is(err, ErrLeaseLost):
			r.log.Error("lease taken over by another process; stopping run", "err", err)
			cancel(fmt.Errorf("crmsync: run %s: %w", r.ID, err))
			return
		case ctx.Err() != nil:
			return
		default:
			lastErr = err
			r.log.Warn("renew lease", "err", err, "expires_in", stopAt.Sub(r.eng.cfg.Now()))
		}
	}
}
