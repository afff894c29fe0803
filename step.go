package crmsync

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/cenkalti/backoff/v4"

	"github.com/crmsync/crmsync/internal/retry"
)

// RetryPolicy says how a step retries transient failures: exponential
// backoff with jitter (cenkalti/backoff/v4).
type RetryPolicy struct {
	// MaxAttempts is the most times the step function runs for transient
	// failures; 1 means no retry. Waits for a RetryAfter do not count.
	MaxAttempts int
	// InitialInterval is the first wait; later waits grow by Multiplier up to MaxInterval.
	InitialInterval time.Duration
	MaxInterval     time.Duration
	Multiplier      float64
	// Jitter spreads each wait by ± this fraction (0 to 1).
	Jitter float64
	// MaxRateLimitWaits bounds the waits for rate limits in one step; zero means 100.
	MaxRateLimitWaits int
}

// DefaultRetry is the retry policy of steps when none is configured: up to 6
// attempts, waits from 250ms doubling to 30s, ±50% jitter.
var DefaultRetry = RetryPolicy{
	MaxAttempts:     6,
	InitialInterval: 250 * time.Millisecond,
	MaxInterval:     30 * time.Second,
	Multiplier:      2,
	Jitter:          0.5,
}

func (p *RetryPolicy) validate() error {
	switch {
	case p.MaxAttempts < 1:
		return fmt.Errorf("MaxAttempts must be at least 1 (got %d)", p.MaxAttempts)
	case p.InitialInterval < 0 || p.MaxInterval < 0:
		return errors.New("intervals must not be negative")
	case p.Multiplier != 0 && p.Multiplier < 1:
		return fmt.Errorf("the multiplier must be at least 1 (got %g)", p.Multiplier)
	case p.Jitter < 0 || p.Jitter > 1:
		return fmt.Errorf("the jitter must be between 0 and 1 (got %g)", p.Jitter)
	case p.MaxRateLimitWaits < 0:
		return errors.New("MaxRateLimitWaits must not be negative")
	}
	return nil
}

// retryPolicy is p for the retry helper, sleeping with sleep.
func (p *RetryPolicy) retryPolicy(sleep func(context.Context, time.Duration) error) retry.Policy {
	mult := p.Multiplier
	if mult == 0 {
		mult = backoff.DefaultMultiplier
	}
	return retry.Policy{
		InitialInterval: p.InitialInterval,
		MaxInterval:     p.MaxInterval,
		Multiplier:      mult,
		Jitter:          p.Jitter,
		MaxAttempts:     p.MaxAttempts,
		Sleep:           sleep,
	}
}

// DeadLetterSpec says what to park when a step fails permanently.
type DeadLetterSpec struct {
	System   string
	RecordID string
	// Payload is JSON-encoded into the letter, so a person can see and replay it.
	Payload any
}

// StepOpts are per-step options; a nil *StepOpts means the defaults.
type StepOpts struct {
	// Retry overrides the engine's retry policy for this step.
	Retry *RetryPolicy
	// Timeout bounds each attempt; zero means none beyond ctx.
	Timeout time.Duration
	// DeadLetter, if set, parks its payload in the dead-letter queue when the
	// step fails permanently; Step then returns an error matching
	// ErrDeadLettered and the caller goes on with the next item.
	DeadLetter *DeadLetterSpec
}

// Attempt is one try of a step. Bookkeeping added through it is committed
// with the step's result, atomically and fenced by the run's lease, and is
// dropped if the attempt fails.
type Attempt struct {
	// N is the attempt number, from 1.
	N int

	cursors   map[string]string
	ledger    []LedgerEntry
	audit     []AuditEntry
	dead      []DeadLetter
	links     []Link
	conflicts []Conflict

	// run is the run the attempt belongs to; nil outside a run.
	run *Run
	// answering holds, for each letter of dead, the letter the run claimed
	// for replay that it updates (its replay failed again), or a zero
	// letter for a new one.
	answering []DeadLetter
}

// SetCursor sets the run key's cursor name to value when the step commits.
func (a *Attempt) SetCursor(name, value string) {
	if a.cursors == nil {
		a.cursors = map[string]string{}
	}
	a.cursors[name] = value
}

// RecordWrite adds a ledger row for a write the step applied.
func (a *Attempt) RecordWrite(e LedgerEntry) { a.ledger = append(a.ledger, e) }

// Audit adds audit rows.
func (a *Attempt) Audit(rows ...AuditEntry) { a.audit = append(a.audit, rows...) }

// DeadLetter parks a payload that the step could not handle (one record of a
// batch, say) while the step itself succeeds. A letter for a subject whose
// replay the run claimed updates that letter instead (see [Run.Replays]).
func (a *Attempt) DeadLetter(d DeadLetter) {
	a.dead = append(a.dead, d)
	var prev DeadLetter
	if a.run != nil {
		prev, _ = a.run.claimFor(d)
	}
	a.answering = append(a.answering, prev)
}

// failedAgain reports whether the attempt's last letter updates a letter
// the run claimed for replay rather than parking a new one.
func (a *Attempt) failedAgain() bool {
	return len(a.answering) > 0 && a.answering[len(a.answering)-1].ID != 0
}

// Link creates or replaces links (with their base snapshots) when the step commits.
func (a *Attempt) Link(links ...Link) { a.links = append(a.links, links...) }

// SaveConflicts saves conflicts when the step commits.
func (a *Attempt) SaveConflicts(cs ...Conflict) { a.conflicts = append(a.conflicts, cs...) }

// Step runs fn as the durable step id of run and returns its result.
//
// If run already completed the step (a resumed run), Step returns the stored
// result without calling fn. Otherwise it calls fn, retrying transient errors
// under the retry policy, waiting out RetryAfter errors, and stopping at
// Permanent ones; the JSON-encoded result is committed to the Store before
// Step returns. A permanent failure is committed too: a resumed run gets the
// stored *StepError back without calling fn. Errors wrapping ErrDailyLimit
// and ctx's end stop at once and are not stored, so the step runs again.
//
// Step ids must be unique within a run (ErrDuplicateStep); a loop puts the
// item's key in the id. T must survive a JSON round trip.
func Step[T any](ctx context.Context, run *Run, id string, fn func(ctx context.Context, a *Attempt) (T, error), opts *StepOpts) (T, error) {
	var zero T
	if run == nil {
		return zero, fmt.Errorf("crmsync: step %q: nil run", id)
	}
	if id == "" {
		return zero, fmt.Errorf("crmsync: run %s: empty step id", run.ID)
	}
	if fn == nil {
		return zero, fmt.Errorf("crmsync: run %s step %q: nil function", run.ID, id)
	}
	if opts == nil {
		opts = &StepOpts{}
	}
	// A run whose context ended (stopped, or its lease lost) begins no call.
	if ctx.Err() != nil {
		return zero, fmt.Errorf("crmsync: run %s step %q: %w", run.ID, id, context.Cause(ctx))
	}
	rec, done, err := run.claim(id)
	if err != nil {
		return zero, err
	}
	if done {
		run.mu.Lock()
		run.counters.Replays++
		run.mu.Unlock()
		run.log.Debug("step replayed", "step", id)
		if rec.Error != "" {
			return zero, &StepError{Run: run.ID, Step: id, Message: rec.Error, Permanent: true}
		}
		var v T
		if err := json.Unmarshal(rec.Result, &v); err != nil {
			return zero, fmt.Errorf("crmsync: run %s step %q: decode stored result: %w", run.ID, id, err)
		}
		return v, nil
	}

	policy := run.eng.cfg.Retry
	if opts.Retry != nil {
		if err := opts.Retry.validate(); err != nil {
			return zero, fmt.Errorf("crmsync: run %s step %q: StepOpts.Retry: %w", run.ID, id, err)
		}
		policy = opts.Retry
	}
	maxWaits := policy.MaxRateLimitWaits
	if maxWaits == 0 {
		maxWaits = 100
	}
	var (
		retryAudit        []AuditEntry
		failures, waits   int
		last              *Attempt
		result            T
		permanent, failed bool
	)
	err = retry.Do(ctx, policy.retryPolicy(run.eng.cfg.Sleep), func(n int) error {
		last = &Attempt{N: n, run: run}
		actx, done := run.observeStep(ctx, id, n)
		v, ferr := attempt(actx, fn, last, opts.Timeout)
		done(ferr)
		if ferr != nil {
			run.release(last) // its letters are dropped
		}
		result = v
		return ferr
	}, func(ferr error) retry.Verdict {
		switch {
		case errors.Is(ferr, ErrDailyLimit):
			return retry.Stop(nil)
		case IsPermanent(ferr):
			permanent = true
			return retry.Stop(nil)
		}
		var rl *RateLimitError
		if errors.As(ferr, &rl) {
			waits++
			if waits > maxWaits {
				return retry.Stop(fmt.Errorf("still rate limited after %d waits: %w", maxWaits, ferr))
			}
			if obs := run.eng.cfg.Observer; obs != nil {
				obs.RateLimited(ctx, run.info, id, rl.RetryAfter)
			}
			return retry.Wait(rl.RetryAfter)
		}
		failures++
		return retry.Retry(0)
	}, func(n int, ferr error, wait time.Duration) {
		run.mu.Lock()
		run.counters.Retries++
		run.mu.Unlock()
		run.log.Warn("step failed, retrying", "step", id, "attempt", n, "wait", wait, "err", ferr)
		detail, _ := json.Marshal(map[string]any{"attempt": n, "wait_ms": wait.Milliseconds(), "error": ferr.Error()})
		retryAudit = append(retryAudit, AuditEntry{Kind: AuditRetry, Detail: detail})
	})
	failed = err != nil
	switch {
	case failed && permanent && ctx.Err() == nil:
		return zero, run.fail(ctx, id, last.N, err, opts.DeadLetter, retryAudit)
	case failed:
		var ex *retry.ExhaustedError
		if errors.As(err, &ex) {
			err = fmt.Errorf("gave up after %d attempts: %w", failures, ex.Err)
		}
		return zero, fmt.Errorf("crmsync: run %s step %q: %w", run.ID, id, err)
	}
	encoded, err := json.Marshal(result)
	if err != nil {
		return zero, Permanent(fmt.Errorf("crmsync: run %s step %q: encode result: %w", run.ID, id, err))
	}
	cp := run.checkpoint(id, StepRecord{Step: id, Result: encoded, Attempts: last.N}, last, retryAudit)
	if err := run.commit(ctx, cp); err != nil {
		run.release(last)
		return zero, err
	}
	run.mu.Lock()
	run.counters.StepRuns++
	run.counters.DeadLetters += len(last.dead)
	run.mu.Unlock()
	return result, nil
}

// observeStep tells the Observer, if any, of an attempt of step id.
func (r *Run) observeStep(ctx context.Context, id string, n int) (context.Context, func(error)) {
	if obs := r.eng.cfg.Observer; obs != nil {
		return obs.StepStarted(ctx, r.info, id, n)
	}
	return ctx, func(error) {}
}

// stored reports whether step id has a stored result this execution has
// not claimed yet: the step will be replayed, not run.
func (r *Run) stored(id string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, ok := r.steps[id]
	return ok && !r.seen[id]
}

// claim marks id as used in this execution and reports a completed record.
func (r *Run) claim(id string) (StepRecord, bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return StepRecord{}, false, fmt.Errorf("crmsync: run %s step %q: %w", r.ID, id, ErrRunClosed)
	}
	if r.seen[id] {
		return StepRecord{}, false, fmt.Errorf("crmsync: run %s step %q: %w", r.ID, id, ErrDuplicateStep)
	}
	r.seen[id] = true
	rec, ok := r.steps[id]
	if ok {
		delete(r.steps, id) // replayed once; free the stored result
	}
	return rec, ok, nil
}

// attempt calls fn once, under the per-attempt timeout, turning a panic into
// a permanent error.
func attempt[T any](ctx context.Context, fn func(context.Context, *Attempt) (T, error), a *Attempt, timeout time.Duration) (v T, err error) {
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	defer func() {
		if p := recover(); p != nil {
			err = Permanent(fmt.Errorf("step panicked: %v", p))
		}
	}()
	return fn(ctx, a)
}

func (r *Run) checkpoint(id string, rec StepRecord, a *Attempt, retries []AuditEntry) Checkpoint {
	rec.Done = r.eng.cfg.Now()
	audit := append(append([]AuditEntry(nil), retries...), a.audit...)
	for i := range audit {
		r.stamp(&audit[i], id)
	}
	for i := range a.ledger {
		e := &a.ledger[i]
		e.Run, e.Step = r.ID, id
		if e.At.IsZero() {
			e.At = rec.Done
		}
	}
	for i := range a.dead {
		d := &a.dead[i]
		d.Key, d.Run, d.Step, d.Status = r.Key, r.ID, id, DeadParked
		d.Created, d.Updated = rec.Done, rec.Done
		detail, _ := json.Marshal(map[string]string{"error": d.Error})
		if prev := a.answering[i]; prev.ID != 0 {
			// This run's replay of a letter failed again: the letter says
			// so; no second letter is parked for the same record.
			d.ID, d.Status, d.Run, d.Step, d.Created, d.ClaimedBy = prev.ID, DeadFailedAgain, prev.Run, prev.Step, prev.Created, r.ID
			detail, _ = json.Marshal(map[string]any{"error": d.Error, "dead_letter": prev.ID, "replay_failed_again": true})
		}
		var ids []string
		if d.RecordID != "" {
			ids = []string{d.RecordID}
		}
		audit = append(audit, AuditEntry{Time: rec.Done, Key: r.Key, Run: r.ID, Step: id,
			Kind: AuditDeadLetter, System: d.System, RecordIDs: ids, Detail: detail})
	}
	for i := range a.links {
		if a.links[i].Key == "" {
			a.links[i].Key = r.Key
		}
		if a.links[i].UpdatedAt.IsZero() {
			a.links[i].UpdatedAt = rec.Done
		}
	}
	for i := range a.conflicts {
		if a.conflicts[i].Key == "" {
			a.conflicts[i].Key = r.Key
		}
		if a.conflicts[i].DetectedAt.IsZero() {
			a.conflicts[i].DetectedAt = rec.Done
		}
	}
	return Checkpoint{Run: r.ID, Step: rec, Cursors: a.cursors, Ledger: a.ledger, Audit: audit, DeadLetters: a.dead,
		Links: a.links, Conflicts: a.conflicts}
}

// commit stores a checkpoint, retrying transient Store errors without
// running the step again.
func (r *Run) commit(ctx context.Context, cp Checkpoint) error {
	st := r.eng.cfg.Store
	err := retry.Do(ctx, DefaultRetry.retryPolicy(r.eng.cfg.Sleep), func(int) error {
		if err := r.waitRenewal(ctx); err != nil {
			return backoff.Permanent(err)
		}
		return st.Commit(ctx, r.Lease(), cp)
	}, func(err error) retry.Verdict {
		if errors.Is(err, ErrLeaseLost) {
			return retry.Stop(nil)
		}
		return retry.Retry(0)
	}, func(_ int, err error, _ time.Duration) {
		r.log.Warn("commit failed, retrying", "step", cp.Step.Step, "err", err)
	})
	if err != nil {
		var ex *retry.ExhaustedError
		if errors.As(err, &ex) {
			err = ex.Err
		}
		return fmt.Errorf("crmsync: run %s step %q: commit: %w", r.ID, cp.Step.Step, err)
	}
	// The result is not kept: a step id runs once per execution (seen), and
	// a long run must not hold every page it read.
	r.eng.hookAudit(ctx, cp.Audit)
	return nil
}

// fail commits a permanent failure, parking the payload if asked.
func (r *Run) fail(ctx context.Context, id string, n int, ferr error, spec *DeadLetterSpec, retries []AuditEntry) error {
	a := &Attempt{N: n, run: r}
	if spec != nil {
		payload, err := json.Marshal(spec.Payload)
		if err != nil {
			payload, _ = json.Marshal(map[string]string{"unencodable_payload": err.Error()})
		}
		a.DeadLetter(DeadLetter{System: spec.System, RecordID: spec.RecordID, Payload: payload, Error: ferr.Error()})
	}
	cp := r.checkpoint(id, StepRecord{Step: id, Error: ferr.Error(), Attempts: n}, a, retries)
	if err := r.commit(ctx, cp); err != nil {
		r.release(a)
		return errors.Join(fmt.Errorf("crmsync: run %s step %q: %w", r.ID, id, ferr), err)
	}
	r.mu.Lock()
	r.counters.Failed++
	r.counters.DeadLetters += len(a.dead)
	r.mu.Unlock()
	if spec != nil {
		r.log.Warn("step failed permanently; payload parked", "step", id, "record_id", spec.RecordID, "err", ferr)
		return fmt.Errorf("crmsync: run %s step %q: %w: %w", r.ID, id, ErrDeadLettered, ferr)
	}
	r.log.Warn("step failed permanently", "step", id, "err", ferr)
	return fmt.Errorf("crmsync: run %s step %q: %w", r.ID, id, ferr)
}

// letterSubject names what a dead letter is about: its system and the
// source record of its payload when the payload says (a sync's letters do),
// else its record id.
func letterSubject(d DeadLetter) string {
	var src struct {
		System string `json:"source_system"`
		ID     string `json:"source_id"`
	}
	if json.Unmarshal(d.Payload, &src) == nil && src.ID != "" {
		return d.System + "\x00" + src.System + "\x00" + src.ID
	}
	return d.System + "\x00\x00" + d.RecordID
}

// letterWrite names the write a dead letter parks, its system and the op's
// idempotency key, when its payload has one (a sync's write letters do);
// else "".
func letterWrite(d DeadLetter) string {
	var pl struct {
		Op *struct {
			Key string `json:"key"`
		} `json:"op"`
	}
	if json.Unmarshal(d.Payload, &pl) != nil || pl.Op == nil || pl.Op.Key == "" {
		return ""
	}
	return d.System + "\x00" + pl.Op.Key
}

// claimFor returns the letter this run claimed for replay that d, a new
// failure, updates, if any, and counts d as its answer until release.
// Each claimed letter answers one new letter: a claimed letter for the same
// write is taken first, then one about the same subject that nothing
// answers yet, so two letters for one record stay two; a letter about a
// subject whose claimed letters are all answered updates one of them again
// rather than parking a second letter for it.
func (r *Run) claimFor(d DeadLetter) (DeadLetter, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.replays) == 0 {
		return DeadLetter{}, false
	}
	sub, write := letterSubject(d), letterWrite(d)
	var sameWrite, sameSubject []DeadLetter
	for _, c := range r.replays {
		if letterSubject(c) != sub {
			continue
		}
		if write != "" && letterWrite(c) == write {
			sameWrite = append(sameWrite, c)
		} else {
			sameSubject = append(sameSubject, c)
		}
	}
	pick := func(free bool) (DeadLetter, bool) {
		for _, group := range [][]DeadLetter{sameWrite, sameSubject} {
			for _, c := range group {
				if !free || r.answers[c.ID] == 0 {
					return c, true
				}
			}
		}
		return DeadLetter{}, false
	}
	c, ok := pick(true)
	if !ok {
		c, ok = pick(false)
	}
	if ok {
		r.answers[c.ID]++
	}
	return c, ok
}

// release gives back the claimed letters a's letters answered: a was
// dropped (it failed) or its commit failed.
func (r *Run) release(a *Attempt) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range a.answering {
		if c.ID != 0 && r.answers[c.ID] > 0 {
			r.answers[c.ID]--
		}
	}
	a.answering = nil
}
