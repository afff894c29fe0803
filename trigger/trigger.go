// Package trigger turns change notifications (HubSpot webhooks, Salesforce
// change events) into sync passes: few, prompt, and never a queue.
//
// An [Event] says "key K has changes on system S"; it carries no data, so a
// lost, repeated, forged or late event can only make a pass run early or
// late, never write a wrong value. A [Coalescer] debounces the events of a
// key (a pass starts once the key has been quiet for Config.Quiet, or
// Config.MaxWait after its first pending event, whichever comes first) and
// merges them: a burst of 10,000 events is one or two passes. While a pass
// of a key runs, new events mark the key for one more pass after it.
//
// # Across processes
//
// With Config.Store (a [crmsync.TriggerStore]: store/sqlite, store/postgres,
// store/memory) every event is recorded in the Store before Trigger returns,
// and a pass clears only the triggers it read before it began. So an event
// survives a crash (the Coalescer of the next process finds it when it
// starts), and an event received by one process reaches the process that
// runs the key: the receiver's pass finds the key's lease taken
// ([crmsync.ErrBusy]), leaves the trigger in the Store, and the lease
// holder's Coalescer, which polls the Store every Config.Poll, runs one
// more pass once its own is done.
//
// The schedule stays the safety net: events missed while no process was
// listening are covered by the next scheduled pass, which reads everything
// since the cursor.
package trigger

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/crmsync/crmsync"
)

// Event is one trigger: key Key has changes on system System.
type Event struct {
	Key    string
	System string
	// Full asks for a full window pass (a gap or overflow in a change
	// stream: changes happened that no event described).
	Full bool
	// Reason says why (an event type such as "contact.propertyChange",
	// "gap"); it is logged, so it must never hold a record value.
	Reason string
	// Count is how many notifications the event stands for (a webhook
	// request carries many); zero means 1.
	Count int
}

// Pass is what a Coalescer asks Config.Run to do: one pass of Key.
type Pass struct {
	Key string
	// Full is set if any merged event asked for a full window pass. A
	// crmsync.Sync pass always reads the whole window since its cursor, so
	// it needs nothing more; a workflow that reads only announced records
	// must read everything.
	Full bool
	// Events is how many notifications the pass stands for.
	Events int64
	// Systems are the systems the events came from, sorted.
	Systems []string
}

// Config configures a Coalescer.
type Config struct {
	// Run runs one pass of p.Key; it returns when the pass ends. Returning
	// an error wrapping crmsync.ErrBusy says another process holds the
	// key's lease (with a Store, that process runs the pass; without one,
	// the key is tried again after RetryDelay). Other errors are logged and
	// the key is tried again after RetryDelay. Required.
	Run func(ctx context.Context, p Pass) error
	// Quiet is how long a key must go without events before its pass
	// starts; zero means 1s.
	Quiet time.Duration
	// MaxWait caps the wait from a key's first pending event to its pass,
	// however busy the key; zero means 10s. It must not be less than Quiet.
	MaxWait time.Duration
	// Store, if set, records every event before Trigger returns and is
	// polled for events recorded by other processes (see the package
	// doc). Nil keeps everything in this process.
	Store crmsync.TriggerStore
	// Poll is how often the Store is polled; zero means 1s.
	Poll time.Duration
	// RetryDelay is how long a key whose pass failed waits before it is
	// tried again; zero means MaxWait. A busy key is tried again after Poll.
	RetryDelay time.Duration
	// Logger receives the Coalescer's logs; nil means slog.Default().
	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// keyState is what the Coalescer knows of one key.
type keyState struct {
	pending     bool
	full        bool
	events      int64
	systems     map[string]bool
	first, last time.Time
	running     bool
	notBefore   time.Time
	// reading is the Store Seq a running pass read up to; done is the Seq
	// the last successful pass cleared through. Store triggers at or below
	// either are already handled.
	reading, done int64
}

// Coalescer debounces and merges events per key and runs their passes.
// Create it with New, start it with Run, feed it with Trigger. It is safe
// for concurrent use.
type Coalescer struct {
	c    Config
	log  *slog.Logger
	wake chan struct{}

	mu     sync.Mutex
	keys   map[string]*keyState
	passes int64
	wg     sync.WaitGroup
}

// New validates c and returns a Coalescer.
func New(c Config) (*Coalescer, error) {
	if c.Run == nil {
		return nil, errors.New("trigger: Config.Run is nil")
	}
	if c.Quiet < 0 || c.MaxWait < 0 || c.Poll < 0 || c.RetryDelay < 0 {
		return nil, errors.New("trigger: Config.Quiet, MaxWait, Poll and RetryDelay must not be negative")
	}
	if c.Quiet == 0 {
		c.Quiet = time.Second
	}
	if c.MaxWait == 0 {
		c.MaxWait = max(10*time.Second, c.Quiet)
	}
	if c.MaxWait < c.Quiet {
		return nil, fmt.Errorf("trigger: Config.MaxWait (%s) is less than Config.Quiet (%s)", c.MaxWait, c.Quiet)
	}
	if c.Poll == 0 {
		c.Poll = time.Second
	}
	if c.RetryDelay == 0 {
		c.RetryDelay = c.MaxWait
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return &Coalescer{
		c: c, log: c.Logger.With("component", "trigger"),
		wake: make(chan struct{}, 1), keys: map[string]*keyState{},
	}, nil
}

// Trigger records e and schedules a pass of e.Key. With a Store, e is in
// the Store when Trigger returns, or the failure is logged (use Record to
// get it); the pass is scheduled either way. An event without a Key is
// ignored.
func (co *Coalescer) Trigger(ctx context.Context, e Event) {
	if err := co.Record(ctx, e); err != nil {
		co.log.Warn("trigger not recorded in the store; this process still runs it", "key", e.Key, "system", e.System, "err", err)
	}
}

// Record is Trigger that reports whether e reached the Store (always nil
// without a Store). The pass is scheduled even when it did not, unless e
// has no Key.
func (co *Coalescer) Record(ctx context.Context, e Event) error {
	if e.Key == "" {
		return errors.New("trigger: event has no key")
	}
	n := int64(max(e.Count, 1))
	now := co.c.Now()
	var err error
	if co.c.Store != nil {
		err = co.c.Store.AddTrigger(ctx, crmsync.PendingTrigger{
			Key: e.Key, System: e.System, Full: e.Full, Reason: e.Reason, Count: n, First: now, Last: now,
		})
		if err != nil {
			err = fmt.Errorf("trigger: record event of key %s: %w", e.Key, err)
		}
	}
	co.mu.Lock()
	co.mark(e.Key, e.System, e.Full, n, now, now)
	co.mu.Unlock()
	co.signal()
	return err
}

// mark merges a trigger into key's state; co.mu held.
func (co *Coalescer) mark(key, system string, full bool, n int64, first, last time.Time) {
	k := co.keys[key]
	if k == nil {
		k = &keyState{}
		co.keys[key] = k
	}
	if !k.pending {
		k.pending, k.full, k.events, k.systems = true, false, 0, map[string]bool{}
		k.first, k.last = first, last
	}
	if first.Before(k.first) {
		k.first = first
	}
	if last.After(k.last) {
		k.last = last
	}
	k.full = k.full || full
	k.events += n
	if system != "" {
		k.systems[system] = true
	}
}

func (co *Coalescer) signal() {
	select {
	case co.wake <- struct{}{}:
	default:
	}
}

// Passes reports how many passes the Coalescer has started.
func (co *Coalescer) Passes() int64 {
	co.mu.Lock()
	defer co.mu.Unlock()
	return co.passes
}

// due is when key's pending pass may start; co.mu held.
func (co *Coalescer) due(k *keyState) time.Time {
	d := k.last.Add(co.c.Quiet)
	if m := k.first.Add(co.c.MaxWait); m.Before(d) {
		d = m
	}
	if d.Before(k.notBefore) {
		d = k.notBefore
	}
	return d
}

// Run starts the passes of due keys, and polls the Store if there is one,
// until ctx ends; then it waits for running passes (whose ctx is ctx) and
// returns nil. With a Store, it first looks for triggers left by an earlier
// process.
func (co *Coalescer) Run(ctx context.Context) error {
	var poll <-chan time.Time
	if co.c.Store != nil {
		co.poll(ctx)
		t := time.NewTicker(co.c.Poll)
		defer t.Stop()
		poll = t.C
	}
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		next := co.startDue(ctx)
		timer.Reset(next)
		select {
		case <-ctx.Done():
			co.wg.Wait()
			return nil
		case <-co.wake:
		case <-poll:
			co.poll(ctx)
		case <-timer.C:
		}
	}
}

// startDue starts the passes that are due and returns how long until the
// next one is.
func (co *Coalescer) startDue(ctx context.Context) time.Duration {
	now := co.c.Now()
	next := time.Hour
	co.mu.Lock()
	defer co.mu.Unlock()
	for key, k := range co.keys {
		if !k.pending || k.running {
			continue
		}
		if d := co.due(k); d.After(now) {
			next = min(next, d.Sub(now))
			continue
		}
		p := Pass{Key: key, Full: k.full, Events: k.events}
		for s := range k.systems {
			p.Systems = append(p.Systems, s)
		}
		slices.Sort(p.Systems)
		k.pending, k.running = false, true
		// Until the pass has read the Store, whatever a poll sees there is
		// older than that read, and so the pass's.
		k.reading = math.MaxInt64
		co.passes++
		co.wg.Add(1)
		go co.pass(ctx, k, p)
	}
	return next
}

// pass runs one pass of p.Key and settles the key's state.
func (co *Coalescer) pass(ctx context.Context, k *keyState, p Pass) {
	defer co.wg.Done()
	var through int64
	if co.c.Store != nil {
		pend, err := co.c.Store.PendingTriggers(ctx, p.Key, 1000)
		if err != nil {
			co.log.Warn("read pending triggers", "key", p.Key, "err", err)
		}
		for _, t := range pend {
			through = max(through, t.Seq)
			p.Full = p.Full || t.Full
		}
		co.mu.Lock()
		k.reading = through
		co.mu.Unlock()
	}
	co.log.Debug("triggered pass", "key", p.Key, "events", p.Events, "full", p.Full, "systems", p.Systems)
	err := co.c.Run(ctx, p)
	busy := errors.Is(err, crmsync.ErrBusy)
	if err == nil && through > 0 {
		if _, cerr := co.c.Store.ClearTriggers(ctx, p.Key, through); cerr != nil {
			co.log.Warn("clear triggers", "key", p.Key, "err", cerr)
		}
	}
	switch {
	case err == nil:
	case busy:
		co.log.Debug("triggered pass: key busy in another process", "key", p.Key)
	case ctx.Err() != nil:
	default:
		co.log.Warn("triggered pass failed; tried again later", "key", p.Key, "err", err)
	}
	now := co.c.Now()
	co.mu.Lock()
	k.running = false
	if err == nil {
		k.done = max(k.done, through)
	} else {
		k.notBefore = now.Add(co.c.RetryDelay)
		if busy {
			// Whoever holds the key may be done soon: look again at the
			// next poll rather than after RetryDelay.
			k.notBefore = now.Add(co.c.Poll)
		}
		// Without a Store the events live only here; with one, the Store
		// keeps them, and the poll finds them again (or, if the key is
		// busy, the process holding it does).
		if co.c.Store == nil {
			co.mark(p.Key, "", p.Full, p.Events, now, now)
			for _, s := range p.Systems {
				k.systems[s] = true
			}
		}
	}
	k.reading = 0
	co.mu.Unlock()
	co.signal()
}

// poll marks the keys that have triggers in the Store this process has not
// handled yet.
func (co *Coalescer) poll(ctx context.Context) {
	pend, err := co.c.Store.PendingTriggers(ctx, "", 1000)
	if err != nil {
		if ctx.Err() == nil {
			co.log.Warn("poll pending triggers", "err", err)
		}
		return
	}
	co.mu.Lock()
	defer co.mu.Unlock()
	for _, t := range pend {
		k := co.keys[t.Key]
		if k != nil && (t.Seq <= k.done || (k.running && t.Seq <= k.reading)) {
			continue
		}
		if k != nil && k.pending {
			// Already scheduled: the Store's copy adds nothing but a Full flag.
			k.full = k.full || t.Full
			continue
		}
		co.mark(t.Key, t.System, t.Full, t.Count, t.First, t.Last)
	}
	co.signal()
}
