// Package redislimit is a crmsync.Limiter shared through Redis, so that
// every process syncing one CRM account together stays under its limit.
//
// The rate is a GCRA (generic cell rate algorithm) kept in one Redis key and
// decided by a Lua script on the Redis server's clock, so the processes'
// clocks need not agree. A server counts a call when its request arrives,
// which may be any moment between the grant and the response (a starved
// process or a slow network delays it), so a call holds its place in the
// rate from its grant until it ends, and the rate counts it as made when it
// ended. Pause (after a 429 with Retry-After) sets a shared key that holds
// every process's Acquire. The calls running across processes are leases in
// a sorted set, which the in-flight cap (optional) counts too; a lease whose
// process died expires after Config.LeaseTTL, and the rate then counts its
// call as made.
//
// The limiter fails safe: while Redis does not answer, Acquire grants
// nothing; it logs, waits and tries again until Redis answers or the
// caller's context ends.
//
// Keys, for Prefix p: {p}:tat (the rate), {p}:pause and {p}:inflight. The
// braces are a Redis Cluster hash tag, so the three live on one node. Every
// key expires by itself once idle. Redis 5 or newer is required.
package redislimit

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/crmsync/crmsync"
	"github.com/redis/go-redis/v9"
)

// Config configures New.
type Config struct {
	// Client is the caller's Redis client (*redis.Client, *redis.ClusterClient
	// or any redis.UniversalClient); the caller closes it. Required.
	Client redis.Scripter
	// Prefix names the limit in Redis: every process limiting one CRM
	// account must use the same Prefix, and different accounts different
	// ones. "" means "crmsync:limit".
	Prefix string
	// Rate calls per Every, shared by every process. Both zero means no
	// rate limit (Pause and InFlight still apply).
	Rate  int
	Every time.Duration
	// Burst is the most calls that may start at once after an idle spell;
	// zero means Rate.
	Burst int
	// InFlight caps the calls running at once across processes; zero means
	// no cap.
	InFlight int
	// LeaseTTL is how long a call in flight (with a rate or an in-flight
	// cap) holds its place without its release, so that a process that
	// dies mid-call frees its places. It must exceed the longest call; zero
	// means one minute.
	LeaseTTL time.Duration
	// PollInterval is how often a caller waiting for an in-flight slot asks
	// again; zero means 50ms.
	PollInterval time.Duration
	// RetryInterval is the longest wait between tries while Redis does not
	// answer (waits start at a tenth of it and double); zero means 2s.
	RetryInterval time.Duration
	// Logger receives the outage and recovery lines; nil means none.
	Logger *slog.Logger
	// Now is the local clock, used only to turn Pause's time into a
	// duration; nil means time.Now.
	Now func() time.Time
}

// Limiter is a crmsync.Limiter kept in Redis. It is safe for concurrent use.
type Limiter struct {
	client                   redis.Scripter
	prefix                   string
	keys                     []string
	interval, tolerance      int64 // microseconds
	inFlight                 int
	leaseTTL, poll, retryMax time.Duration
	log                      *slog.Logger
	now                      func() time.Time
	onGrant                  func(serverMicros int64) // test hook
	mu                       sync.Mutex
	localUntil               time.Time // Pause's time, honoured here even while Redis is down
	downSince, lastLog       time.Time
	logEvery                 time.Duration
}

var _ crmsync.Limiter = (*Limiter)(nil)

// New validates c and returns a Limiter. It does not contact Redis.
func New(c Config) (*Limiter, error) {
	if c.Client == nil {
		return nil, errors.New("redislimit: Config.Client is nil")
	}
	if c.Rate < 0 || c.Every < 0 || c.Burst < 0 || c.InFlight < 0 || c.LeaseTTL < 0 || c.PollInterval < 0 || c.RetryInterval < 0 {
		return nil, errors.New("redislimit: Config: Rate, Every, Burst, InFlight, LeaseTTL, PollInterval and RetryInterval must not be negative")
	}
	if (c.Rate == 0) != (c.Every == 0) {
		return nil, errors.New("redislimit: Config: Rate and Every must both be set or both be zero")
	}
	if c.Prefix == "" {
		c.Prefix = "crmsync:limit"
	}
	l := &Limiter{
		client: c.Client, prefix: c.Prefix, inFlight: c.InFlight,
		leaseTTL: c.LeaseTTL, poll: c.PollInterval, retryMax: c.RetryInterval,
		log: c.Logger, now: c.Now, logEvery: 30 * time.Second,
	}
	tag := "{" + c.Prefix + "}"
	l.keys = []string{tag + ":tat", tag + ":pause", tag + ":inflight"}
	if c.Rate > 0 {
		l.interval = (c.Every / time.Duration(c.Rate)).Microseconds()
		if l.interval < 1 {
			return nil, fmt.Errorf("redislimit: Config: %d calls per %s is finer than a microsecond apart", c.Rate, c.Every)
		}
		burst := c.Burst
		if burst == 0 {
			burst = c.Rate
		}
		l.tolerance = int64(burst-1) * l.interval
	}
	if l.leaseTTL == 0 {
		l.leaseTTL = time.Minute
	}
	if l.poll == 0 {
		l.poll = 50 * time.Millisecond
	}
	if l.retryMax == 0 {
		l.retryMax = 2 * time.Second
	}
	if l.log == nil {
		l.log = slog.New(slog.DiscardHandler)
	}
	if l.now == nil {
		l.now = time.Now
	}
	return l, nil
}

// acquireScript grants one call or says how long to wait, in microseconds,
// on the Redis server's clock. It returns {granted, wait, now}. A call in
// flight holds its place in the rate as though it ended now (the rate's
// theoretical arrival time moves when it ends: see releaseScript); the
// calls of expired leases are counted as made now.
//
//	KEYS: tat, pause, inflight
//	ARGV: interval, tolerance, cap, lease id, lease ttl, poll (µs)
var acquireScript = redis.NewScript(`
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local pause = tonumber(redis.call('GET', KEYS[2]) or '0')
if pause > now then return {0, pause - now, now} end
local cap = tonumber(ARGV[3])
local interval = tonumber(ARGV[1])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local running = 0
if cap > 0 or interval > 0 then
	local dead = redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
	if dead > 0 and interval > 0 then
		tat = tat + dead * interval
		redis.call('SET', KEYS[1], string.format('%.0f', tat), 'PX', math.ceil((tat - now) / 1000) + 1000)
	end
	running = redis.call('ZCARD', KEYS[3])
end
if cap > 0 and running >= cap then return {0, tonumber(ARGV[6]), now} end
if interval > 0 then
	local allow = tat + running * interval - tonumber(ARGV[2])
	if now < allow then return {0, allow - now, now} end
end
if cap > 0 or interval > 0 then
	local ttl = tonumber(ARGV[5])
	redis.call('ZADD', KEYS[3], string.format('%.0f', now + ttl), ARGV[4])
	local ms = math.ceil(ttl / 1000) + 1000
	if redis.call('PTTL', KEYS[3]) < ms then redis.call('PEXPIRE', KEYS[3], ms) end
end
return {1, 0, now}
`)

// pauseScript moves the shared pause to now+ARGV[1] µs (server clock) unless
// it is already later, and returns the pause's end.
var pauseScript = redis.NewScript(`
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local d = tonumber(ARGV[1])
local untilv = now + d
local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
if untilv > cur then
	redis.call('SET', KEYS[1], string.format('%.0f', untilv), 'PX', math.ceil(d / 1000) + 1000)
	return untilv
end
return cur
`)

// releaseScript ends a call: its lease leaves the in-flight set and, with a
// rate, the rate counts the call as made now (Redis server clock).
//
//	KEYS: tat, inflight
//	ARGV: lease id, interval (µs)
var releaseScript = redis.NewScript(`
if redis.replicate_commands then redis.replicate_commands() end
if redis.call('ZREM', KEYS[2], ARGV[1]) == 0 then return 0 end
local interval = tonumber(ARGV[2])
if interval > 0 then
	local t = redis.call('TIME')
	local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
	local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
	if tat < now then tat = now end
	tat = tat + interval
	redis.call('SET', KEYS[1], string.format('%.0f', tat), 'PX', math.ceil((tat - now) / 1000) + 1000)
end
return 1
`)

// Acquire implements crmsync.Limiter. It blocks until the shared rate, the
// shared pause and the in-flight cap allow a call, or ctx ends (returning
// ctx's error, or at once when a known wait would outlast ctx's deadline).
// While Redis does not answer it grants nothing and keeps trying.
func (l *Limiter) Acquire(ctx context.Context) (func(), error) {
	lease := ""
	if l.inFlight > 0 || l.interval > 0 {
		b := make([]byte, 12)
		rand.Read(b)
		lease = hex.EncodeToString(b)
	}
	retry := l.retryMax / 10
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if d := l.localPause(); d > 0 {
			if err := l.wait(ctx, d, "paused"); err != nil {
				return nil, err
			}
			continue
		}
		res, err := acquireScript.Run(ctx, l.client, l.keys,
			l.interval, l.tolerance, l.inFlight, lease, l.leaseTTL.Microseconds(), l.poll.Microseconds()).Int64Slice()
		if err == nil && len(res) != 3 {
			err = fmt.Errorf("acquire script returned %d values, want 3", len(res))
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			l.down(err, retry)
			if err := sleep(ctx, retry); err != nil {
				return nil, err
			}
			retry = min(2*retry, l.retryMax)
			continue
		}
		l.up()
		retry = l.retryMax / 10
		if res[0] == 1 {
			if l.onGrant != nil {
				l.onGrant(res[2])
			}
			return l.releaser(lease), nil
		}
		if err := l.wait(ctx, time.Duration(res[1])*time.Microsecond, "rate"); err != nil {
			return nil, err
		}
	}
}

// wait sleeps d, failing at once if ctx's deadline comes first.
func (l *Limiter) wait(ctx context.Context, d time.Duration, why string) error {
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < d {
		return fmt.Errorf("redislimit: %s: %s wait of %s outlasts the context deadline: %w", l.prefix, why, d, context.DeadlineExceeded)
	}
	return sleep(ctx, d)
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func (l *Limiter) releaser(lease string) func() {
	if lease == "" {
		return func() {}
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			keys := []string{l.keys[0], l.keys[2]}
			if err := releaseScript.Run(ctx, l.client, keys, lease, l.interval).Err(); err != nil {
				l.log.Warn("redislimit: could not release a call in flight; its place frees itself when its lease expires",
					"prefix", l.prefix, "lease_ttl", l.leaseTTL, "err", err)
			}
		})
	}
}

// Pause implements crmsync.Limiter: it holds every process's Acquire until
// t. The pause is kept in Redis on the server's clock (t is turned into a
// duration from now) and in this process, which honours it even if Redis
// does not answer.
func (l *Limiter) Pause(t time.Time) {
	d := t.Sub(l.now())
	if d <= 0 {
		return
	}
	l.mu.Lock()
	if until := time.Now().Add(d); until.After(l.localUntil) {
		l.localUntil = until
	}
	l.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := pauseScript.Run(ctx, l.client, l.keys[1:2], d.Microseconds()).Err(); err != nil {
		l.log.Warn("redislimit: could not share a pause through Redis; pausing this process only",
			"prefix", l.prefix, "pause", d, "err", err)
	}
}

func (l *Limiter) localPause() time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	return time.Until(l.localUntil)
}

// down logs that Redis does not answer: once when the outage starts, then
// at most every logEvery while it lasts.
func (l *Limiter) down(err error, retry time.Duration) {
	l.mu.Lock()
	now := time.Now()
	first := l.downSince.IsZero()
	if first {
		l.downSince = now
	}
	log := first || now.Sub(l.lastLog) >= l.logEvery
	if log {
		l.lastLog = now
	}
	since := l.downSince
	l.mu.Unlock()
	if log {
		l.log.Warn("redislimit: Redis does not answer; holding calls (none pass unlimited) and retrying",
			"prefix", l.prefix, "down_for", now.Sub(since).Round(time.Millisecond), "retry_in", retry, "err", err)
	}
}

func (l *Limiter) up() {
	l.mu.Lock()
	since := l.downSince
	l.downSince = time.Time{}
	l.mu.Unlock()
	if !since.IsZero() {
		l.log.Info("redislimit: Redis answers again; calls resume", "prefix", l.prefix, "down_for", time.Since(since).Round(time.Millisecond))
	}
}
