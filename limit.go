package crmsync

import (
	"context"
	"fmt"
	"sync"
	"time"

	"golang.org/x/sync/semaphore"
)

// Limiter paces calls to one CRM account. A Limiter is shared by every run in a
// process (Throttle), or by every process (a Redis-backed limiter).
// Implementations must be safe for concurrent use.
type Limiter interface {
	// Acquire blocks until one call may start, or ctx ends (returning ctx's
	// error, or at once if the wait would outlast ctx's deadline). The caller
	// calls release when the call has ended.
	Acquire(ctx context.Context) (release func(), err error)
	// Pause holds every Acquire until t, as after a 429 with Retry-After.
	Pause(t time.Time)
}

// ThrottleConfig configures a Throttle.
type ThrottleConfig struct {
	// Every is the interval the Rate calls spread over; Rate calls per Every.
	// Both zero means unlimited rate.
	Rate  int
	Every time.Duration
	// Burst is the most calls that may start at once after an idle spell; zero means Rate.
	Burst int
	// InFlight caps the calls running at once; zero means no cap.
	InFlight int
	// Now is the clock; nil means time.Now. Waits always use real timers.
	Now func() time.Time
}

// Throttle is a process-local Limiter: a token bucket with an in-flight cap
// (x/sync/semaphore). A server that paces calls counts one when its request
// arrives, which may be any moment between the Throttle's grant and the
// response (a starved process or a slow network delays it), so a call takes
// its token at its start and the bucket refills it only from when the call
// ended: a call starts only while the bucket holds a token for it besides
// those of the calls in flight. However late the requests arrive, the
// server sees no more than Burst at once and Rate per Every after.
type Throttle struct {
	sem *semaphore.Weighted
	now func() time.Time
	// perToken is the refill time of one token, zero for no rate limit.
	perToken time.Duration
	burst    int

	mu      sync.Mutex
	until   time.Time
	tokens  float64   // the bucket as of last, the in-flight calls' tokens still in it
	last    time.Time // zero until the first call
	running int       // calls granted, not ended
	ended   chan struct{}
}

var _ Limiter = (*Throttle)(nil)

// NewThrottle returns a Throttle; it reports an error naming a negative or
// inconsistent field.
func NewThrottle(c ThrottleConfig) (*Throttle, error) {
	if c.Rate < 0 || c.Every < 0 || c.Burst < 0 || c.InFlight < 0 {
		return nil, fmt.Errorf("crmsync: ThrottleConfig: Rate, Every, Burst and InFlight must not be negative")
	}
	if (c.Rate == 0) != (c.Every == 0) {
		return nil, fmt.Errorf("crmsync: ThrottleConfig: Rate and Every must both be set or both be zero")
	}
	t := &Throttle{now: c.Now, ended: make(chan struct{})}
	if t.now == nil {
		t.now = time.Now
	}
	if c.Rate > 0 {
		t.burst = c.Burst
		if t.burst == 0 {
			t.burst = c.Rate
		}
		t.perToken = max(c.Every/time.Duration(c.Rate), 1)
	}
	if c.InFlight > 0 {
		t.sem = semaphore.NewWeighted(int64(c.InFlight))
	}
	return t, nil
}

// Acquire implements Limiter.
func (t *Throttle) Acquire(ctx context.Context) (func(), error) {
	if err := t.waitPause(ctx); err != nil {
		return nil, err
	}
	if t.sem != nil {
		if err := t.sem.Acquire(ctx, 1); err != nil {
			return nil, err
		}
	}
	release := func() {
		if t.sem != nil {
			t.sem.Release(1)
		}
	}
	if t.perToken == 0 {
		var once sync.Once
		return func() { once.Do(release) }, nil
	}
	if err := t.take(ctx); err != nil {
		release()
		return nil, err
	}
	var once sync.Once
	return func() { once.Do(func() { t.end(); release() }) }, nil
}

// refill brings the bucket to now; t.mu is held.
func (t *Throttle) refill(now time.Time) {
	if t.last.IsZero() {
		t.tokens, t.last = float64(t.burst), now
		return
	}
	if d := now.Sub(t.last); d > 0 {
		t.tokens = min(float64(t.burst), t.tokens+float64(d)/float64(t.perToken))
		t.last = now
	}
}

// take waits until the bucket holds a token besides those of the calls in
// flight, and marks one more call in flight.
func (t *Throttle) take(ctx context.Context) error {
	for {
		t.mu.Lock()
		now := t.now()
		t.refill(now)
		free := t.tokens - float64(t.running)
		if free >= 1 {
			t.running++
			t.mu.Unlock()
			return nil
		}
		full := t.running >= t.burst
		ended := t.ended
		t.mu.Unlock()
		if full {
			// Every token is held by a call in flight: wait for one to end.
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-ended:
			}
			continue
		}
		d := time.Duration((1 - free) * float64(t.perToken))
		d = max(d, time.Microsecond)
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) < d {
			return fmt.Errorf("crmsync: throttle: next call in %s, past the context deadline: %w", d, context.DeadlineExceeded)
		}
		if err := sleepCtx(ctx, d); err != nil {
			return err
		}
	}
}

// end records that a call ended now: its token leaves the bucket, which
// refills it from now.
func (t *Throttle) end() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.refill(t.now())
	t.tokens--
	t.running--
	close(t.ended)
	t.ended = make(chan struct{})
}

func (t *Throttle) waitPause(ctx context.Context) error {
	for {
		t.mu.Lock()
		d := t.until.Sub(t.now())
		t.mu.Unlock()
		if d <= 0 {
			return nil
		}
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) < d {
			return fmt.Errorf("crmsync: throttle paused for %s, past the context deadline: %w", d, context.DeadlineExceeded)
		}
		if err := sleepCtx(ctx, d); err != nil {
			return err
		}
	}
}

// Pause implements Limiter.
func (t *Throttle) Pause(until time.Time) {
	t.mu.Lock()
	if until.After(t.until) {
		t.until = until
	}
	t.mu.Unlock()
}

// WindowConfig configures a WindowLimiter.
type WindowConfig struct {
	// N calls may start in any Window. Both are required.
	N      int
	Window time.Duration
	// Margin widens the window the limiter keeps to, for clock skew and
	// network jitter between this process and the server that counts; zero
	// means none.
	Margin time.Duration
	// InFlight caps the calls running at once; zero means no cap.
	InFlight int
	// Now is the clock; nil means time.Now. Waits always use real timers.
	Now func() time.Time
}

// WindowLimiter is a process-local Limiter for APIs that count calls in a
// rolling window (HubSpot: 100 per 10 seconds). The server counts a call
// when its request arrives, which may be any moment between the limiter's
// grant and the response (a starved process or a slow network delays it),
// so the limiter holds each call's place from its start until Window+Margin
// after it ended, and lets a call start only while fewer than N places are
// held. It runs at the published rate, bursts included, and never over it,
// however late the requests arrive.
type WindowLimiter struct {
	n      int
	window time.Duration
	now    func() time.Time
	sem    *semaphore.Weighted

	mu      sync.Mutex
	running int         // calls started, not ended: each holds a place
	ends    []time.Time // end times of ended calls still holding a place, oldest first
	until   time.Time
	ended   chan struct{} // closed (and replaced) when a call ends
}

var _ Limiter = (*WindowLimiter)(nil)

// NewWindowLimiter returns a WindowLimiter; it reports an error naming a
// missing or negative field.
func NewWindowLimiter(c WindowConfig) (*WindowLimiter, error) {
	if c.N < 1 || c.Window <= 0 {
		return nil, fmt.Errorf("crmsync: WindowConfig: N and Window must be positive")
	}
	if c.Margin < 0 || c.InFlight < 0 {
		return nil, fmt.Errorf("crmsync: WindowConfig: Margin and InFlight must not be negative")
	}
	l := &WindowLimiter{n: c.N, window: c.Window + c.Margin, now: c.Now, ends: make([]time.Time, 0, c.N), ended: make(chan struct{})}
	if l.now == nil {
		l.now = time.Now
	}
	if c.InFlight > 0 {
		l.sem = semaphore.NewWeighted(int64(c.InFlight))
	}
	return l, nil
}

// Acquire implements Limiter.
func (l *WindowLimiter) Acquire(ctx context.Context) (func(), error) {
	if l.sem != nil {
		if err := l.sem.Acquire(ctx, 1); err != nil {
			return nil, err
		}
	}
	release := func() {
		if l.sem != nil {
			l.sem.Release(1)
		}
	}
	for {
		l.mu.Lock()
		now := l.now()
		i := 0
		for i < len(l.ends) && !l.ends[i].Add(l.window).After(now) {
			i++
		}
		l.ends = append(l.ends[:0], l.ends[i:]...)
		full := l.running+len(l.ends) >= l.n
		var at time.Time // when a place frees, if an ended call holds one
		if full && len(l.ends) > 0 {
			at = l.ends[0].Add(l.window)
		}
		if l.until.After(at) {
			at = l.until
		}
		if !full && !at.After(now) {
			l.running++
			l.mu.Unlock()
			var once sync.Once
			return func() { once.Do(func() { l.end(); release() }) }, nil
		}
		ended := l.ended
		l.mu.Unlock()
		if full && at.IsZero() {
			// Every place is held by a call in flight: wait for one to end.
			select {
			case <-ctx.Done():
				release()
				return nil, ctx.Err()
			case <-ended:
			}
			continue
		}
		d := at.Sub(now)
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) < d {
			release()
			return nil, fmt.Errorf("crmsync: window limiter: next call in %s, past the context deadline: %w", d, context.DeadlineExceeded)
		}
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			release()
			return nil, ctx.Err()
		case <-t.C:
		}
	}
}

// end records that a call ended now: its place stays held a window longer.
func (l *WindowLimiter) end() {
	l.mu.Lock()
	defer l.mu.Unlock()
	t := l.now()
	if k := len(l.ends); k > 0 && t.Before(l.ends[k-1]) {
		t = l.ends[k-1] // keep the ends in order; a later end holds longer
	}
	l.running--
	l.ends = append(l.ends, t)
	close(l.ended)
	l.ended = make(chan struct{})
}

// Pause implements Limiter.
func (l *WindowLimiter) Pause(until time.Time) {
	l.mu.Lock()
	if until.After(l.until) {
		l.until = until
	}
	l.mu.Unlock()
}
