// Package retry is crmsync's one retry loop, built on backoff/v4
// (backoff.RetryNotify with a context): the step engine, both CRM clients and
// the Slack notifier call [Do] with their own policy and a classify func.
//
// Behaviours:
//   - The operation runs at once, then again after each failure that classify
//     lets through, until it succeeds, classify stops, the policy runs out or
//     ctx ends.
//   - [Retry] counts against Policy.MaxAttempts and waits the exponential
//     backoff (InitialInterval growing by Multiplier to MaxInterval, spread by
//     Jitter), or longer when the server asked for longer.
//   - [Wait] waits exactly the given time (a Retry-After, a rate limit pause,
//     zero for a renewed session) and does not count as an attempt; a classify
//     func bounds such waits itself.
//   - [Stop] returns the error (or its replacement) at once, as does an error
//     wrapped by backoff.Permanent.
//   - When MaxAttempts or MaxElapsed runs out, Do returns an *[ExhaustedError]
//     wrapping the last error. When ctx ends, Do returns an error wrapping both
//     context.Cause(ctx) and the last error; the operation is not run again.
//   - Notify is called before each wait with the attempt number, the error and
//     the wait.
package retry

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cenkalti/backoff/v4"
)

// Policy shapes the waits and bounds of one [Do].
type Policy struct {
	// InitialInterval is the first backoff wait; zero means none.
	InitialInterval time.Duration
	// MaxInterval caps one backoff wait; zero means 30 s.
	MaxInterval time.Duration
	// Multiplier grows the wait after each counted retry; zero means 2.
	Multiplier float64
	// Jitter spreads each backoff wait by ± this fraction (0 to 1).
	Jitter float64
	// MaxAttempts bounds the runs of the operation that end in a [Retry]
	// verdict, the first run included; zero means no bound.
	MaxAttempts int
	// MaxElapsed bounds the time spent retrying (backoff/v4's
	// MaxElapsedTime); zero means no bound.
	MaxElapsed time.Duration
	// Sleep waits d or until ctx ends; nil means a timer. The step engine
	// passes its configurable sleep here.
	Sleep func(ctx context.Context, d time.Duration) error
}

// Verdict is classify's answer for one failure.
type Verdict struct {
	kind verdictKind
	wait time.Duration
	err  error
}

type verdictKind int

const (
	kindRetry verdictKind = iota
	kindWait
	kindStop
)

// Retry retries after the next backoff wait, or after atLeast if that is
// longer (a server's Retry-After); it counts against Policy.MaxAttempts.
func Retry(atLeast time.Duration) Verdict { return Verdict{kind: kindRetry, wait: atLeast} }

// Wait retries after exactly d, without counting an attempt.
func Wait(d time.Duration) Verdict { return Verdict{kind: kindWait, wait: d} }

// Stop ends the retries; Do returns err, or the operation's error when err
// is nil.
func Stop(err error) Verdict { return Verdict{kind: kindStop, err: err} }

// ExhaustedError is what Do returns when the policy's attempts or elapsed
// time ran out.
type ExhaustedError struct {
	// Attempts is how many times the operation ran.
	Attempts int
	// Err is the last failure.
	Err error
}

func (e *ExhaustedError) Error() string {
	return fmt.Sprintf("gave up after %d attempts: %v", e.Attempts, e.Err)
}

func (e *ExhaustedError) Unwrap() error { return e.Err }

// Do runs op until it succeeds or the retries end (see the package doc).
// classify decides on each failure; nil retries every error. notify, if not
// nil, is called before each wait. op gets the attempt number, from 1.
func Do(ctx context.Context, p Policy, op func(attempt int) error,
	classify func(error) Verdict, notify func(attempt int, err error, wait time.Duration)) error {
	if classify == nil {
		classify = func(error) Verdict { return Retry(0) }
	}
	exp := backoff.NewExponentialBackOff()
	exp.InitialInterval = max(p.InitialInterval, 0)
	exp.MaxInterval = p.MaxInterval
	if exp.MaxInterval <= 0 {
		exp.MaxInterval = 30 * time.Second
	}
	exp.Multiplier = p.Multiplier
	if exp.Multiplier < 1 {
		exp.Multiplier = 2
	}
	exp.RandomizationFactor = p.Jitter
	exp.MaxElapsedTime = p.MaxElapsed
	bo := &policyBackOff{exp: exp, maxAttempts: p.MaxAttempts}

	var last error
	attempt, exhausted := 0, false
	var timer *sleepTimer
	if p.Sleep != nil {
		timer = &sleepTimer{ctx: ctx, sleep: p.Sleep}
	}
	operation := func() error {
		if timer != nil && timer.err != nil {
			return backoff.Permanent(timer.err)
		}
		attempt++
		err := op(attempt)
		if err == nil {
			return nil
		}
		last = err
		if ctx.Err() != nil {
			return backoff.Permanent(err)
		}
		var perm *backoff.PermanentError
		if errors.As(err, &perm) {
			last = perm.Err
			return err
		}
		v := classify(err)
		switch v.kind {
		case kindStop:
			if v.err != nil {
				last = v.err
			}
			return backoff.Permanent(last)
		case kindWait:
			bo.next, bo.exact = v.wait, true
		default:
			bo.next, bo.exact = v.wait, false
		}
		return err
	}
	var btimer backoff.Timer
	if timer != nil {
		btimer = timer
	}
	bo.onStop = func() { exhausted = true }
	err := backoff.RetryNotifyWithTimer(operation, backoff.WithContext(bo, ctx),
		func(err error, d time.Duration) {
			if notify != nil {
				notify(attempt, err, d)
			}
		}, btimer)
	switch {
	case err == nil:
		return nil
	case ctx.Err() != nil:
		if last == nil {
			return context.Cause(ctx)
		}
		return errors.Join(context.Cause(ctx), last)
	case timer != nil && timer.err != nil:
		return errors.Join(timer.err, last)
	case exhausted:
		return &ExhaustedError{Attempts: attempt, Err: last}
	}
	return last
}

// policyBackOff is the backoff.BackOff of one Do: the classify verdict's
// exact wait, or the exponential wait (at least the verdict's) bounded by
// the attempts.
type policyBackOff struct {
	exp         *backoff.ExponentialBackOff
	maxAttempts int
	counted     int
	next        time.Duration
	exact       bool
	onStop      func()
}

func (b *policyBackOff) Reset() { b.exp.Reset(); b.counted = 0 }

func (b *policyBackOff) NextBackOff() time.Duration {
	if b.exact {
		return max(b.next, 0)
	}
	b.counted++
	if b.maxAttempts > 0 && b.counted >= b.maxAttempts {
		b.onStop()
		return backoff.Stop
	}
	d := b.exp.NextBackOff()
	if d == backoff.Stop {
		b.onStop()
		return backoff.Stop
	}
	return max(d, b.next)
}

// sleepTimer is a backoff.Timer over a sleep func.
type sleepTimer struct {
	ctx   context.Context
	sleep func(context.Context, time.Duration) error
	c     chan time.Time
	err   error // a failed sleep; read after the channel fires
}

func (t *sleepTimer) Start(d time.Duration) {
	t.c = make(chan time.Time, 1)
	c := t.c
	go func() {
		if err := t.sleep(t.ctx, d); err != nil {
			t.err = err
		}
		c <- time.Now()
	}()
}

func (t *sleepTimer) Stop() {}

func (t *sleepTimer) C() <-chan time.Time { return t.c }
