package hubspot_test

import (
	"context"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/hubspot"
	"github.com/crmsync/crmsync/hubspot/hubspottest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func lookupOne(c *hubspot.Client, id string) error {
	_, err := c.Lookup(context.Background(), "contacts", "id", []string{id}, nil)
	return err
}

func TestRateLimit429IsRetried(t *testing.T) {
	srv := fastFake(t)
	id := srv.SeedContacts(1)[0]
	c := newClient(t, srv)
	srv.Fail(hubspottest.Fault{Kind: hubspottest.RateLimit, Endpoint: "batch/read", Count: 2})
	require.NoError(t, lookupOne(c, id), "Lookup after two 429s")
	n := srv.Calls("batch/read")
	require.Equal(t, 3, n, "batch/read calls = %d, want 3", n)

	srv.Fail(hubspottest.Fault{Kind: hubspottest.RateLimit, Endpoint: "search", Count: 2})
	_, err := c.Changes(context.Background(), crmsync.ChangeQuery{Object: "contacts"})
	require.NoError(t, err, "Changes after two search 429s")
}

func TestRateLimitGivesUpWithRateLimitError(t *testing.T) {
	srv := fastFake(t)
	id := srv.SeedContacts(1)[0]
	lim := &pauseRecorder{}
	c := newClient(t, srv, func(cfg *hubspot.Config) { cfg.MaxRateRetries = 2; cfg.Limiter = lim })
	srv.Fail(hubspottest.Fault{Kind: hubspottest.RateLimit, Endpoint: "batch/read", Count: 10, RetryAfter: time.Second})
	err := lookupOne(c, id)
	var rl *crmsync.RateLimitError
	require.ErrorAs(t, err, &rl, "Lookup under endless 429s = %v, want a *RateLimitError with RetryAfter 1s", err)
	require.False(t, crmsync.IsPermanent(err), "Lookup under endless 429s = %v, want a *RateLimitError with RetryAfter 1s", err)
	require.Equal(t, time.Second, rl.RetryAfter, "Lookup under endless 429s = %v, want a *RateLimitError with RetryAfter 1s", err)
	var ae *hubspot.APIError
	require.ErrorAs(t, err, &ae, "RateLimitError wraps %v, want the 429 APIError", rl.Err)
	require.Equal(t, "TEN_SECONDLY_ROLLING", ae.PolicyName, "RateLimitError wraps %v, want the 429 APIError", rl.Err)
	require.Equal(t, 429, ae.Status, "RateLimitError wraps %v, want the 429 APIError", rl.Err)
	n := srv.Calls("batch/read")
	require.Equal(t, 3, n, "batch/read calls = %d, want 3", n)
	// Each 429's Retry-After paused the account's limiter.
	p := lim.paused()
	require.Len(t, p, 3, "limiter pauses = %v, want three of about 1s", p)
	require.GreaterOrEqual(t, p[0], time.Duration(900*time.Millisecond), "limiter pauses = %v, want three of about 1s", p)
	require.LessOrEqual(t, p[0], time.Second, "limiter pauses = %v, want three of about 1s", p)
}

// pauseRecorder is a Limiter that admits every call and records pauses.
type pauseRecorder struct {
	mu     sync.Mutex
	pauses []time.Duration
}

func (p *pauseRecorder) Acquire(context.Context) (func(), error) { return func() {}, nil }

func (p *pauseRecorder) Pause(until time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.pauses = append(p.pauses, time.Until(until))
}

func (p *pauseRecorder) paused() []time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]time.Duration(nil), p.pauses...)
}

func TestDailyLimitFromHubSpotStopsTheClient(t *testing.T) {
	srv := fastFake(t)
	id := srv.SeedContacts(1)[0]
	c := newClient(t, srv)
	srv.ExhaustDaily()
	err := lookupOne(c, id)
	require.ErrorIs(t, err, crmsync.ErrDailyLimit, "Lookup over the daily limit = %v, want ErrDailyLimit", err)
	var ae *hubspot.APIError
	require.ErrorAs(t, err, &ae, "daily error = %v, want the DAILY APIError", err)
	require.Equal(t, "DAILY", ae.PolicyName, "daily error = %v, want the DAILY APIError", err)
	// The client does not spin: later calls fail without a request.
	before := srv.Calls("batch/read")
	require.ErrorIs(t, lookupOne(c, id), crmsync.ErrDailyLimit, "second Lookup")
	require.Equal(t, before, srv.Calls("batch/read"), "the client called HubSpot again after a DAILY 429")
	// An injected DAILY 429 behaves the same.
	srv2 := fastFake(t)
	c2 := newClient(t, srv2)
	srv2.Fail(hubspottest.Fault{Kind: hubspottest.DailyLimit})
	_, err = c2.Changes(context.Background(), crmsync.ChangeQuery{Object: "contacts"})
	require.ErrorIs(t, err, crmsync.ErrDailyLimit, "Changes under DAILY 429")
}

func TestDailyBudgetStopsBeforeExceeding(t *testing.T) {
	srv := fastFake(t)
	id := srv.SeedContacts(1)[0]
	c := newClient(t, srv, func(cfg *hubspot.Config) { cfg.DailyBudget = 3 })
	for i := 0; i < 3; i++ {
		require.NoError(t, lookupOne(c, id))
	}
	err := lookupOne(c, id)
	require.ErrorIs(t, err, crmsync.ErrDailyLimit, "fourth call = %v, want ErrDailyLimit", err)
	n := srv.Calls("batch/read")
	require.Equal(t, 3, n, "fake saw %d calls, want 3", n)
	// A new UTC day opens a new budget.
	clk := newClock()
	c2 := newClient(t, srv, func(cfg *hubspot.Config) { cfg.DailyBudget = 1; cfg.Now = clk.Now })
	require.NoError(t, lookupOne(c2, id))
	require.ErrorIs(t, lookupOne(c2, id), crmsync.ErrDailyLimit, "over budget")
	clk.Advance(24 * time.Hour)
	require.NoError(t, lookupOne(c2, id), "next day")
}

func TestFakeDailyLimitCounts(t *testing.T) {
	srv := fastFake(t, hubspottest.WithDailyLimit(2))
	id := srv.SeedContacts(1)[0]
	c := newClient(t, srv)
	for i := 0; i < 2; i++ {
		require.NoError(t, lookupOne(c, id))
	}
	err := lookupOne(c, id)
	require.ErrorIs(t, err, crmsync.ErrDailyLimit, "third call = %v, want ErrDailyLimit", err)
}

func TestServerErrorsAreRetried(t *testing.T) {
	for _, status := range []int{500, 502, 503, 504, 423, 477} {
		t.Run(strconv.Itoa(status), func(t *testing.T) {
			srv := fastFake(t)
			id := srv.SeedContacts(1)[0]
			c := newClient(t, srv, func(cfg *hubspot.Config) { cfg.MaxRetries = 3 })
			srv.Fail(hubspottest.Fault{Kind: hubspottest.ServerError, Status: status, Count: 3})
			require.NoError(t, lookupOne(c, id), "Lookup after three %d", status)
			srv.Fail(hubspottest.Fault{Kind: hubspottest.ServerError, Status: status, Count: 10})
			err := lookupOne(c, id)
			var ae *hubspot.APIError
			require.ErrorAs(t, err, &ae, "Lookup under endless %d = %v, want a transient APIError", status, err)
			require.Equal(t, status, ae.Status, "Lookup under endless %d = %v, want a transient APIError", status, err)
			require.False(t, crmsync.IsPermanent(err), "Lookup under endless %d = %v, want a transient APIError", status, err)
			n := srv.Calls("batch/read")
			require.Equal(t, 4+4, n, "batch/read calls = %d, want 8", n)
		})
	}
}

func TestNetworkFaultsAreRetried(t *testing.T) {
	tests := []struct {
		name  string
		fault hubspottest.Fault
	}{
		{"connection reset", hubspottest.Fault{Kind: hubspottest.Reset, Count: 2}},
		{"hanging request", hubspottest.Fault{Kind: hubspottest.Hang}},
		{"latency", hubspottest.Fault{Kind: hubspottest.Latency, Latency: 20 * time.Millisecond}},
		{"html from a proxy", hubspottest.Fault{Kind: hubspottest.Raw, Status: 502, ContentType: "text/html", Body: []byte("<html><body>Bad gateway</body></html>")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := fastFake(t)
			id := srv.SeedContacts(1)[0]
			c := newClient(t, srv, func(cfg *hubspot.Config) {
				cfg.HTTPClient = &http.Client{Timeout: 300 * time.Millisecond}
			})
			srv.Fail(tt.fault)
			recs, err := c.Lookup(context.Background(), "contacts", "id", []string{id}, nil)
			require.NoError(t, err, "Lookup after %s = %v", tt.name, recs)
			require.Len(t, recs, 1, "Lookup after %s = %v, %v", tt.name, recs, err)
		})
	}
}

func TestHangingRequestsEndWithTheContext(t *testing.T) {
	srv := fastFake(t)
	c := newClient(t, srv)
	srv.Fail(hubspottest.Fault{Kind: hubspottest.Hang, Count: 100})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err := c.Changes(ctx, crmsync.ChangeQuery{Object: "contacts"})
	require.ErrorIs(t, err, context.DeadlineExceeded, "Changes on a hanging server = %v, want the context's deadline", err)
	// Endless resets: bounded retries, then a transient error.
	srv.ClearFaults()
	srv.Fail(hubspottest.Fault{Kind: hubspottest.Reset, Count: 100})
	_, err = c.Changes(context.Background(), crmsync.ChangeQuery{Object: "contacts"})
	require.Error(t, err, "Changes under endless resets = %v, want a transient error", err)
	require.False(t, crmsync.IsPermanent(err), "Changes under endless resets = %v, want a transient error", err)
}

func TestUnauthorizedIsPermanent(t *testing.T) {
	srv := fastFake(t)
	c := newClient(t, srv, func(cfg *hubspot.Config) { cfg.Token = "wrong-secret-token" })
	_, err := c.Changes(context.Background(), crmsync.ChangeQuery{Object: "contacts"})
	var ae *hubspot.APIError
	require.ErrorAs(t, err, &ae, "wrong token = %v, want a permanent 401 APIError", err)
	require.Equal(t, 401, ae.Status, "wrong token = %v, want a permanent 401 APIError", err)
	require.Equal(t, "INVALID_AUTHENTICATION", ae.Category, "wrong token = %v, want a permanent 401 APIError", err)
	require.NotEmpty(t, ae.CorrelationID, "wrong token = %v, want a permanent 401 APIError", err)
	require.True(t, crmsync.IsPermanent(err), "wrong token = %v, want a permanent 401 APIError", err)
	require.NotContains(t, err.Error(), "wrong-secret-token", "error text leaks the token")
	n := srv.Calls("search")
	require.Equal(t, 1, n, "search calls = %d, want 1 (no retry)", n)
	// An injected 401 on a good token is permanent too.
	good := newClient(t, srv)
	srv.Fail(hubspottest.Fault{Kind: hubspottest.Unauthorized})
	err = lookupOne(good, "1")
	require.True(t, crmsync.IsPermanent(err), "injected 401 = %v, want permanent", err)
}

func TestOAuthRefreshFlow(t *testing.T) {
	clk := newClock()
	srv := fastFake(t, hubspottest.WithClock(clk.Now))
	id := srv.SeedContacts(1)[0]
	oauth := &hubspot.OAuth{ClientID: hubspottest.DefaultClientID, ClientSecret: hubspottest.DefaultClientSecret, RefreshToken: hubspottest.DefaultRefreshToken}
	c := newClient(t, srv, func(cfg *hubspot.Config) { cfg.Token = ""; cfg.OAuth = oauth })
	for i := 0; i < 3; i++ {
		require.NoError(t, lookupOne(c, id))
	}
	n := srv.IssuedTokens()
	require.Equal(t, 1, n, "tokens issued = %d, want 1 reused", n)
	// HubSpot refuses the token before its expiry: refresh once and retry.
	srv.ExpireTokens()
	require.NoError(t, lookupOne(c, id), "Lookup after token revocation")
	n = srv.IssuedTokens()
	require.Equal(t, 2, n, "tokens issued = %d, want 2", n)
	require.Equal(t, int64(2), c.Stats()["oauth/token"], "Stats = %v", c.Stats())

	bad := newClient(t, srv, func(cfg *hubspot.Config) {
		cfg.Token = ""
		cfg.OAuth = &hubspot.OAuth{ClientID: oauth.ClientID, ClientSecret: oauth.ClientSecret, RefreshToken: "revoked-refresh-secret"}
	})
	err := lookupOne(bad, id)
	require.Error(t, err, "bad refresh token = %v, want a permanent invalid_grant error", err)
	require.True(t, crmsync.IsPermanent(err), "bad refresh token = %v, want a permanent invalid_grant error", err)
	require.Contains(t, err.Error(), "invalid_grant", "bad refresh token = %v, want a permanent invalid_grant error", err)
	require.NotContains(t, err.Error(), "revoked-refresh-secret", "error text leaks a secret")
	require.NotContains(t, err.Error(), oauth.ClientSecret, "error text leaks a secret")
}

// TestPacingStaysUnderTheLimit: with a scaled-down limit, a client pacing
// itself with the same limit never gets a 429.
func TestPacingStaysUnderTheLimit(t *testing.T) {
	const n, window = 20, 600 * time.Millisecond
	srv := hubspottest.NewServer(t, hubspottest.WithRateLimit(n, window), hubspottest.WithSearchRateLimit(4, window))
	id := srv.SeedContacts(1)[0]
	lim, err := hubspot.NewLimiter(n, window, 4)
	require.NoError(t, err)
	slim, err := hubspot.NewLimiter(4, window, 2)
	require.NoError(t, err)
	c := newClient(t, srv, func(cfg *hubspot.Config) { cfg.Limiter, cfg.SearchLimiter = lim, slim })
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for g := 0; g < 6; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 6; i++ {
				errs <- lookupOne(c, id)
			}
			_, err := c.Changes(context.Background(), crmsync.ChangeQuery{Object: "contacts"})
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	got := srv.RateLimited()
	require.Equal(t, 0, got, "fake refused %d calls for rate, want 0", got)
	// 36 lookups, and 6 searches each followed by a batch read of its ids.
	require.Equal(t, 36+6, srv.Calls("batch/read"), "calls = %v", srv.CallCounts())
	require.Equal(t, 6, srv.Calls("search"), "calls = %v", srv.CallCounts())

	// The fake enforces the limit: without pacing, the call after n in one
	// window is refused. The window is long so that the n calls fall in it
	// however slowly a loaded machine makes them.
	strict := hubspottest.NewServer(t, hubspottest.WithRateLimit(n, time.Minute))
	sid := strict.SeedContacts(1)[0]
	fast := newClient(t, strict, func(cfg *hubspot.Config) { cfg.MaxRateRetries = -1 })
	for i := 0; i < n; i++ {
		require.NoError(t, lookupOne(fast, sid), "unpaced call %d of %d in the window", i+1, n)
	}
	err = lookupOne(fast, sid)
	var rl *crmsync.RateLimitError
	require.ErrorAs(t, err, &rl, "call %d in the window = %v, want the fake's 429", n+1, err)
	require.Equal(t, 1, strict.RateLimited(), "the fake refused %d calls, want 1", strict.RateLimited())
}

// TestPacingHoldsAStalledCallInTheWindow: a request that reaches HubSpot
// late (a starved process, a slow network: here the fake holds it before
// counting) is counted late, and the client's pacing must leave room for
// it. Pacing that counted calls from when they were granted let three
// more calls into the window of the late one's count.
func TestPacingHoldsAStalledCallInTheWindow(t *testing.T) {
	const n, window = 3, 400 * time.Millisecond
	srv := hubspottest.NewServer(t, hubspottest.WithRateLimit(n, window))
	id := srv.SeedContacts(1)[0]
	lim, err := hubspot.NewLimiter(n, window, n+1)
	require.NoError(t, err)
	c := newClient(t, srv, func(cfg *hubspot.Config) { cfg.Limiter = lim })
	srv.Fail(hubspottest.Fault{Kind: hubspottest.Latency, Latency: window * 3 / 8, Endpoint: "batch/read"})
	stalled := make(chan error, 1)
	go func() { stalled <- lookupOne(c, id) }()
	// The stalled call has reached the fake (and waits there uncounted)
	// before the others start.
	require.Eventually(t, func() bool { return srv.Calls("batch/read") == 1 }, 5*time.Second, time.Millisecond)
	for i := 0; i < 2*n-1; i++ {
		require.NoError(t, lookupOne(c, id))
	}
	require.NoError(t, <-stalled)
	got := srv.RateLimited()
	require.Equal(t, 0, got, "fake refused %d calls for rate, want 0", got)
	require.Equal(t, 2*n, srv.Calls("batch/read"), "calls = %v", srv.CallCounts())
}

func TestInFlightCap(t *testing.T) {
	srv := fastFake(t)
	id := srv.SeedContacts(1)[0]
	c := newClient(t, srv, func(cfg *hubspot.Config) { cfg.Limiter = nil; cfg.InFlight = 3 })
	srv.Fail(hubspottest.Fault{Kind: hubspottest.Latency, Latency: 30 * time.Millisecond, Count: 9})
	var wg sync.WaitGroup
	for i := 0; i < 9; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			assert.NoError(t, lookupOne(c, id))
		}()
	}
	wg.Wait()
	m := srv.MaxInFlight()
	require.LessOrEqual(t, m, 3, "fake saw %d calls at once, want at most 3 (and some overlap)", m)
	require.GreaterOrEqual(t, m, 2, "fake saw %d calls at once, want at most 3 (and some overlap)", m)
}

func TestLongRetryAfterIsHandedToTheCaller(t *testing.T) {
	srv := fastFake(t)
	id := srv.SeedContacts(1)[0]
	c := newClient(t, srv)
	srv.Fail(hubspottest.Fault{Kind: hubspottest.ServerError, Status: 477, RetryAfter: time.Hour})
	err := lookupOne(c, id)
	var rl *crmsync.RateLimitError
	require.ErrorAs(t, err, &rl, "477 with Retry-After 3600 = %v, want a RateLimitError of 1h", err)
	require.Equal(t, time.Hour, rl.RetryAfter, "477 with Retry-After 3600 = %v, want a RateLimitError of 1h", err)
}
