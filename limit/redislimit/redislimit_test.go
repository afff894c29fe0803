package redislimit

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"net"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// testAddr returns CRMSYNC_TEST_REDIS_ADDR. Outside CI the tests skip
// without it; in CI (CI=true) they must run.
func testAddr(t *testing.T) string {
	t.Helper()
	addr := os.Getenv("CRMSYNC_TEST_REDIS_ADDR")
	if addr == "" {
		require.NotEqual(t, "true", os.Getenv("CI"), "CRMSYNC_TEST_REDIS_ADDR is unset and CI=true: the Redis limiter tests must run in CI")
		t.Skip("CRMSYNC_TEST_REDIS_ADDR is unset; set it to a Redis address (e.g. 127.0.0.1:6379) to run the Redis limiter tests")
	}
	return addr
}

// newClient is one process's connection to Redis.
func newClient(t *testing.T, addr string) *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: addr})
	t.Cleanup(func() { c.Close() })
	return c
}

// testPrefix is a fresh limit name whose keys are deleted when the test ends.
func testPrefix(t *testing.T) string {
	b := make([]byte, 6)
	rand.Read(b)
	p := "crmsync:test:" + hex.EncodeToString(b)
	addr := testAddr(t)
	t.Cleanup(func() {
		c := redis.NewClient(&redis.Options{Addr: addr})
		defer c.Close()
		tag := "{" + p + "}"
		c.Del(context.Background(), tag+":tat", tag+":pause", tag+":inflight")
	})
	return p
}

func newLimiter(t *testing.T, c Config) *Limiter {
	t.Helper()
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	l, err := New(c)
	require.NoError(t, err, "New")
	return l
}

// grants collects the Redis server times (µs) of grants.
type grants struct {
	mu sync.Mutex
	at []int64
	by map[string]int
}

func (g *grants) hook(name string) func(int64) {
	return func(us int64) {
		g.mu.Lock()
		g.at = append(g.at, us)
		if g.by == nil {
			g.by = map[string]int{}
		}
		g.by[name]++
		g.mu.Unlock()
	}
}

func TestNewValidates(t *testing.T) {
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	defer c.Close()
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"no client", Config{Rate: 1, Every: time.Second}, "Client"},
		{"rate without every", Config{Client: c, Rate: 5}, "both"},
		{"negative", Config{Client: c, Rate: 1, Every: time.Second, InFlight: -1}, "negative"},
		{"too fine", Config{Client: c, Rate: 1e9, Every: time.Second}, "microsecond"},
	} {
		_, err := New(tc.cfg)
		if assert.Error(t, err, "New(%s) = %v, want an error mentioning %q", tc.name, err, tc.want) {
			assert.Contains(t, err.Error(), tc.want, "New(%s) = %v, want an error mentioning %q", tc.name, err, tc.want)
		}
	}
}

// Two limiters, as two processes, share one rate: in every window of Every
// (on the Redis clock) together they grant at most Burst + Rate calls.
func TestSharedRate(t *testing.T) {
	addr := testAddr(t)
	prefix := testPrefix(t)
	const rate, burst = 20, 4
	every := 200 * time.Millisecond // one call per 10ms
	var g grants
	var lims []*Limiter
	for _, name := range []string{"p1", "p2"} {
		l := newLimiter(t, Config{Client: newClient(t, addr), Prefix: prefix, Rate: rate, Every: every, Burst: burst})
		l.onGrant = g.hook(name)
		lims = append(lims, l)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 600*time.Millisecond)
	defer cancel()
	var wg sync.WaitGroup
	for _, l := range lims {
		for range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					release, err := l.Acquire(ctx)
					if err != nil {
						assert.ErrorIs(t, err, context.DeadlineExceeded, "Acquire = %v", err)
						return
					}
					release()
				}
			}()
		}
	}
	wg.Wait()
	sort.Slice(g.at, func(i, j int) bool { return g.at[i] < g.at[j] })
	require.NotEqual(t, 0, g.by["p1"], "grants by process = %v; want both to be served", g.by)
	require.NotEqual(t, 0, g.by["p2"], "grants by process = %v; want both to be served", g.by)
	window := every.Microseconds()
	maxIn := burst + rate
	for i, start := range g.at {
		n := sort.Search(len(g.at), func(j int) bool { return g.at[j] > start+window }) - i
		require.LessOrEqual(t, n, maxIn, "%d grants in the window of %s from grant %d; want at most burst+rate = %d", n, every, i, maxIn)
	}
	// Over the whole test: at most burst plus one per interval.
	span := g.at[len(g.at)-1] - g.at[0]
	limit := int64(burst) + span/(every.Microseconds()/rate)
	assert.LessOrEqual(t, int64(len(g.at)), limit, "%d grants over %dµs; want at most %d", len(g.at), span, limit)
	// Coarse: the limiter is not stuck (600ms allows about 60).
	assert.GreaterOrEqual(t, len(g.at), 20, "only %d grants in 600ms at 100/s", len(g.at))
}

// A pause set by one process holds the other's Acquire until it ends.
func TestPauseShared(t *testing.T) {
	addr := testAddr(t)
	prefix := testPrefix(t)
	var g grants
	a := newLimiter(t, Config{Client: newClient(t, addr), Prefix: prefix, Rate: 100, Every: time.Second})
	bc := newClient(t, addr)
	b := newLimiter(t, Config{Client: bc, Prefix: prefix, Rate: 100, Every: time.Second})
	b.onGrant = g.hook("b")

	a.Pause(time.Now().Add(500 * time.Millisecond))
	raw, err := bc.Get(context.Background(), "{"+prefix+"}:pause").Result()
	require.NoError(t, err, "pause key")
	pauseEnd, _ := strconv.ParseInt(raw, 10, 64)

	// A wait that would outlast the deadline fails at once.
	short, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	_, err = b.Acquire(short)
	cancel()
	assert.ErrorIs(t, err, context.DeadlineExceeded, "Acquire with a deadline inside the pause = %v, want DeadlineExceeded", err)
	release, err := b.Acquire(context.Background())
	require.NoError(t, err)
	release()
	if assert.Len(t, g.at, 1, "grant at %v (server µs), pause ends at %d: the other process did not honour the pause", g.at, pauseEnd) {
		assert.GreaterOrEqual(t, g.at[0], pauseEnd, "grant at %v (server µs), pause ends at %d: the other process did not honour the pause", g.at, pauseEnd)
	}
	// A pause that is already over does nothing.
	a.Pause(time.Now().Add(-time.Second))
	_, err = b.Acquire(context.Background())
	require.NoError(t, err)
}

// The in-flight cap holds across processes; a slot whose release never
// comes (a dead process) frees itself after LeaseTTL.
func TestInFlightShared(t *testing.T) {
	addr := testAddr(t)
	prefix := testPrefix(t)
	mk := func() *Limiter {
		return newLimiter(t, Config{Client: newClient(t, addr), Prefix: prefix, InFlight: 2, LeaseTTL: 2 * time.Second, PollInterval: 5 * time.Millisecond})
	}
	a, b := mk(), mk()
	var running, peak atomic.Int32
	ctx := context.Background()
	var wg sync.WaitGroup
	for i := range 12 {
		l := a
		if i%2 == 1 {
			l = b
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 5 {
				release, err := l.Acquire(ctx)
				if err != nil {
					t.Error(err)
					return
				}
				n := running.Add(1)
				for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
				}
				time.Sleep(2 * time.Millisecond)
				running.Add(-1)
				release()
			}
		}()
	}
	wg.Wait()
	p := peak.Load()
	assert.LessOrEqual(t, p, int32(2), "peak in flight = %d, want at most 2", p)
	assert.GreaterOrEqual(t, p, int32(1), "peak in flight = %d, want at most 2", p)

	// A process takes both slots and dies without releasing them.
	dead := newLimiter(t, Config{Client: newClient(t, addr), Prefix: prefix, InFlight: 2, LeaseTTL: time.Second})
	for range 2 {
		_, err := dead.Acquire(ctx)
		require.NoError(t, err)
	}
	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	_, err := a.Acquire(short)
	cancel()
	require.ErrorIs(t, err, context.DeadlineExceeded, "Acquire while the slots are taken = %v, want DeadlineExceeded", err)
	release, err := a.Acquire(ctx) // once the dead process's leases expire
	require.NoError(t, err)
	release()
}

// syncBuffer is a log sink safe for concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// With Redis unreachable Acquire grants nothing, logs, and returns ctx's
// error only when ctx ends; Pause still holds this process.
func TestUnreachableFailsSafe(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	ln.Close() // nothing listens here now
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	defer c.Close()
	var logs syncBuffer
	l := newLimiter(t, Config{Client: c, Prefix: "crmsync:test:down", Rate: 1000, Every: time.Second, InFlight: 5,
		RetryInterval: 100 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	var g grants
	l.onGrant = g.hook("x")

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := l.Acquire(ctx)
		done <- err
	}()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(logs.String(), "Redis does not answer") {
		require.False(t, time.Now().After(deadline), "no outage log line; logs:\n%s", logs.String())
		time.Sleep(10 * time.Millisecond)
	}
	select {
	case err := <-done:
		t.Fatalf("Acquire returned %v while Redis is unreachable and ctx is live; want it to hold", err)
	case <-time.After(300 * time.Millisecond): // several retries
	}
	cancel()
	err = <-done
	assert.ErrorIs(t, err, context.Canceled, "Acquire after cancel = %v, want context.Canceled", err)
	assert.Empty(t, g.at, "%d calls granted with Redis unreachable", len(g.at))
	line := logs.String()
	for _, want := range []string{"level=WARN", "prefix=crmsync:test:down", "connection refused"} {
		assert.Contains(t, line, want, "log %q lacks %q", line, want)
	}
	n := strings.Count(line, "Redis does not answer")
	assert.Equal(t, 1, n, "outage logged %d times in under 30s, want once", n)

	// Pause cannot reach Redis: it says so and still holds this process.
	logs.mu.Lock()
	logs.b.Reset()
	logs.mu.Unlock()
	l.Pause(time.Now().Add(time.Hour))
	assert.Contains(t, logs.String(), "pausing this process only", "Pause with Redis down logged %q", logs.String())
	short, cancel2 := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel2()
	_, err = l.Acquire(short)
	assert.ErrorIs(t, err, context.DeadlineExceeded, "Acquire during a local pause = %v, want DeadlineExceeded", err)
}

// After an outage the limiter logs the recovery and grants again.
func TestRecovers(t *testing.T) {
	addr := testAddr(t)
	prefix := testPrefix(t)
	// A proxy that refuses until told to forward to Redis.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	var open atomic.Bool
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			if !open.Load() {
				conn.Close()
				continue
			}
			go func() {
				up, err := net.Dial("tcp", addr)
				if err != nil {
					conn.Close()
					return
				}
				go func() { copyClose(up, conn) }()
				copyClose(conn, up)
			}()
		}
	}()
	c := redis.NewClient(&redis.Options{Addr: ln.Addr().String(), MaxRetries: -1})
	defer c.Close()
	var logs syncBuffer
	l := newLimiter(t, Config{Client: c, Prefix: prefix, Rate: 100, Every: time.Second, RetryInterval: 50 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	done := make(chan error, 1)
	go func() {
		_, err := l.Acquire(context.Background())
		done <- err
	}()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(logs.String(), "Redis does not answer") {
		require.False(t, time.Now().After(deadline), "no outage log line; logs:\n%s", logs.String())
		time.Sleep(5 * time.Millisecond)
	}
	open.Store(true)
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("Acquire did not return after Redis came back")
	}
	assert.Contains(t, logs.String(), "Redis answers again", "no recovery log line; logs:\n%s", logs.String())
}

func copyClose(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				break
			}
		}
		if err != nil {
			break
		}
	}
	dst.Close()
	src.Close()
}

// A call's place in the shared rate is held from its grant until an
// interval after it ended: the server counts the call when its request
// arrives, at any moment between the grant and the response (a starved
// process, a slow network), so the next call may start only an interval
// after that. Counting from the grant let another process's call start
// while the first, granted intervals ago, might still be about to arrive.
func TestRateHoldsACallUntilItEnds(t *testing.T) {
	addr := testAddr(t)
	prefix := testPrefix(t)
	const interval = 100 * time.Millisecond
	rdb := newClient(t, addr)
	mk := func() *Limiter {
		return newLimiter(t, Config{Client: newClient(t, addr), Prefix: prefix, Rate: 1, Every: interval, Burst: 1})
	}
	a, b := mk(), mk()
	var g grants
	b.onGrant = g.hook("b")
	ctx := context.Background()
	relA, err := a.Acquire(ctx)
	require.NoError(t, err)
	time.Sleep(3 * interval) // A is still in flight: the server may count it at any moment
	short, cancel := context.WithTimeout(ctx, 3*interval)
	_, err = b.Acquire(short)
	cancel()
	require.ErrorIs(t, err, context.DeadlineExceeded, "a call while the only place of a burst of 1 is in flight = %v, want a wait", err)
	require.Empty(t, g.at, "a call was granted while the only place of a burst of 1 is in flight")

	ended, err := rdb.Time(ctx).Result() // A ends after this
	require.NoError(t, err)
	relA()
	relB, err := b.Acquire(ctx)
	require.NoError(t, err)
	relB()
	require.Len(t, g.at, 1)
	next := ended.Add(interval).UnixMicro()
	assert.GreaterOrEqual(t, g.at[0], next, "the next call was granted %dµs after A ended, want at least an interval (%s)", g.at[0]-ended.UnixMicro(), interval)
}
