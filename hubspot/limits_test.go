package hubspot_test

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/hubspot"
	"github.com/crmsync/crmsync/hubspot/hubspottest"
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
	if err := lookupOne(c, id); err != nil {
		t.Fatalf("Lookup after two 429s = %v", err)
	}
	if n := srv.Calls("batch/read"); n != 3 {
		t.Fatalf("batch/read calls = %d, want 3", n)
	}

	srv.Fail(hubspottest.Fault{Kind: hubspottest.RateLimit, Endpoint: "search", Count: 2})
	if _, err := c.Changes(context.Background(), crmsync.ChangeQuery{Object: "contacts"}); err != nil {
		t.Fatalf("Changes after two search 429s = %v", err)
	}
}

func TestRateLimitGivesUpWithRateLimitError(t *testing.T) {
	srv := fastFake(t)
	id := srv.SeedContacts(1)[0]
	lim := &pauseRecorder{}
	c := newClient(t, srv, func(cfg *hubspot.Config) { cfg.MaxRateRetries = 2; cfg.Limiter = lim })
	srv.Fail(hubspottest.Fault{Kind: hubspottest.RateLimit, Endpoint: "batch/read", Count: 10, RetryAfter: time.Second})
	err := lookupOne(c, id)
	var rl *crmsync.RateLimitError
	if !errors.As(err, &rl) || crmsync.IsPermanent(err) || rl.RetryAfter != time.Second {
		t.Fatalf("Lookup under endless 429s = %v, want a *RateLimitError with RetryAfter 1s", err)
	}
	var ae *hubspot.APIError
	if !errors.As(err, &ae) || ae.PolicyName != "TEN_SECONDLY_ROLLING" || ae.Status != 429 {
		t.Fatalf("RateLimitError wraps %v, want the 429 APIError", rl.Err)
	}
	if n := srv.Calls("batch/read"); n != 3 {
		t.Fatalf("batch/read calls = %d, want 3", n)
	}
	// Each 429's Retry-After paused the account's limiter.
	if p := lim.paused(); len(p) != 3 || p[0] < 900*time.Millisecond || p[0] > time.Second {
		t.Fatalf("limiter pauses = %v, want three of about 1s", p)
	}
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
	if !errors.Is(err, crmsync.ErrDailyLimit) {
		t.Fatalf("Lookup over the daily limit = %v, want ErrDailyLimit", err)
	}
	var ae *hubspot.APIError
	if !errors.As(err, &ae) || ae.PolicyName != "DAILY" {
		t.Fatalf("daily error = %v, want the DAILY APIError", err)
	}
	// The client does not spin: later calls fail without a request.
	before := srv.Calls("batch/read")
	if err := lookupOne(c, id); !errors.Is(err, crmsync.ErrDailyLimit) {
		t.Fatalf("second Lookup = %v", err)
	}
	if srv.Calls("batch/read") != before {
		t.Fatal("the client called HubSpot again after a DAILY 429")
	}
	// An injected DAILY 429 behaves the same.
	srv2 := fastFake(t)
	c2 := newClient(t, srv2)
	srv2.Fail(hubspottest.Fault{Kind: hubspottest.DailyLimit})
	if _, err := c2.Changes(context.Background(), crmsync.ChangeQuery{Object: "contacts"}); !errors.Is(err, crmsync.ErrDailyLimit) {
		t.Fatalf("Changes under DAILY 429 = %v", err)
	}
}

func TestDailyBudgetStopsBeforeExceeding(t *testing.T) {
	srv := fastFake(t)
	id := srv.SeedContacts(1)[0]
	c := newClient(t, srv, func(cfg *hubspot.Config) { cfg.DailyBudget = 3 })
	for i := 0; i < 3; i++ {
		if err := lookupOne(c, id); err != nil {
			t.Fatal(err)
		}
	}
	if err := lookupOne(c, id); !errors.Is(err, crmsync.ErrDailyLimit) {
		t.Fatalf("fourth call = %v, want ErrDailyLimit", err)
	}
	if n := srv.Calls("batch/read"); n != 3 {
		t.Fatalf("fake saw %d calls, want 3", n)
	}
	// A new UTC day opens a new budget.
	clk := newClock()
	c2 := newClient(t, srv, func(cfg *hubspot.Config) { cfg.DailyBudget = 1; cfg.Now = clk.Now })
	if err := lookupOne(c2, id); err != nil {
		t.Fatal(err)
	}
	if err := lookupOne(c2, id); !errors.Is(err, crmsync.ErrDailyLimit) {
		t.Fatalf("over budget = %v", err)
	}
	clk.Advance(24 * time.Hour)
	if err := lookupOne(c2, id); err != nil {
		t.Fatalf("next day = %v", err)
	}
}

func TestFakeDailyLimitCounts(t *testing.T) {
	srv := fastFake(t, hubspottest.WithDailyLimit(2))
	id := srv.SeedContacts(1)[0]
	c := newClient(t, srv)
	for i := 0; i < 2; i++ {
		if err := lookupOne(c, id); err != nil {
			t.Fatal(err)
		}
	}
	if err := lookupOne(c, id); !errors.Is(err, crmsync.ErrDailyLimit) {
		t.Fatalf("third call = %v, want ErrDailyLimit", err)
	}
}

func TestServerErrorsAreRetried(t *testing.T) {
	for _, status := range []int{500, 502, 503, 504, 423, 477} {
		t.Run(strconv.Itoa(status), func(t *testing.T) {
			srv := fastFake(t)
			id := srv.SeedContacts(1)[0]
			c := newClient(t, srv, func(cfg *hubspot.Config) { cfg.MaxRetries = 3 })
			srv.Fail(hubspottest.Fault{Kind: hubspottest.ServerError, Status: status, Count: 3})
			if err := lookupOne(c, id); err != nil {
				t.Fatalf("Lookup after three %d = %v", status, err)
			}
			srv.Fail(hubspottest.Fault{Kind: hubspottest.ServerError, Status: status, Count: 10})
			err := lookupOne(c, id)
			var ae *hubspot.APIError
			if !errors.As(err, &ae) || ae.Status != status || crmsync.IsPermanent(err) {
				t.Fatalf("Lookup under endless %d = %v, want a transient APIError", status, err)
			}
			if n := srv.Calls("batch/read"); n != 4+4 {
				t.Fatalf("batch/read calls = %d, want 8", n)
			}
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
			if err != nil || len(recs) != 1 {
				t.Fatalf("Lookup after %s = %v, %v", tt.name, recs, err)
			}
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
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Changes on a hanging server = %v, want the context's deadline", err)
	}
	// Endless resets: bounded retries, then a transient error.
	srv.ClearFaults()
	srv.Fail(hubspottest.Fault{Kind: hubspottest.Reset, Count: 100})
	_, err = c.Changes(context.Background(), crmsync.ChangeQuery{Object: "contacts"})
	if err == nil || crmsync.IsPermanent(err) {
		t.Fatalf("Changes under endless resets = %v, want a transient error", err)
	}
}

func TestUnauthorizedIsPermanent(t *testing.T) {
	srv := fastFake(t)
	c := newClient(t, srv, func(cfg *hubspot.Config) { cfg.Token = "wrong-secret-token" })
	_, err := c.Changes(context.Background(), crmsync.ChangeQuery{Object: "contacts"})
	var ae *hubspot.APIError
	if !errors.As(err, &ae) || ae.Status != 401 || ae.Category != "INVALID_AUTHENTICATION" || ae.CorrelationID == "" || !crmsync.IsPermanent(err) {
		t.Fatalf("wrong token = %v, want a permanent 401 APIError", err)
	}
	if strings.Contains(err.Error(), "wrong-secret-token") {
		t.Fatal("error text leaks the token")
	}
	if n := srv.Calls("search"); n != 1 {
		t.Fatalf("search calls = %d, want 1 (no retry)", n)
	}
	// An injected 401 on a good token is permanent too.
	good := newClient(t, srv)
	srv.Fail(hubspottest.Fault{Kind: hubspottest.Unauthorized})
	if err := lookupOne(good, "1"); !crmsync.IsPermanent(err) {
		t.Fatalf("injected 401 = %v, want permanent", err)
	}
}

func TestOAuthRefreshFlow(t *testing.T) {
	clk := newClock()
	srv := fastFake(t, hubspottest.WithClock(clk.Now))
	id := srv.SeedContacts(1)[0]
	oauth := &hubspot.OAuth{ClientID: hubspottest.DefaultClientID, ClientSecret: hubspottest.DefaultClientSecret, RefreshToken: hubspottest.DefaultRefreshToken}
	c := newClient(t, srv, func(cfg *hubspot.Config) { cfg.Token = ""; cfg.OAuth = oauth })
	for i := 0; i < 3; i++ {
		if err := lookupOne(c, id); err != nil {
			t.Fatal(err)
		}
	}
	if n := srv.IssuedTokens(); n != 1 {
		t.Fatalf("tokens issued = %d, want 1 reused", n)
	}
	// HubSpot refuses the token before its expiry: refresh once and retry.
	srv.ExpireTokens()
	if err := lookupOne(c, id); err != nil {
		t.Fatalf("Lookup after token revocation = %v", err)
	}
	if n := srv.IssuedTokens(); n != 2 {
		t.Fatalf("tokens issued = %d, want 2", n)
	}
	if c.Stats()["oauth/token"] != 2 {
		t.Fatalf("Stats = %v", c.Stats())
	}

	bad := newClient(t, srv, func(cfg *hubspot.Config) {
		cfg.Token = ""
		cfg.OAuth = &hubspot.OAuth{ClientID: oauth.ClientID, ClientSecret: oauth.ClientSecret, RefreshToken: "revoked-refresh-secret"}
	})
	err := lookupOne(bad, id)
	if err == nil || !crmsync.IsPermanent(err) || !strings.Contains(err.Error(), "invalid_grant") {
		t.Fatalf("bad refresh token = %v, want a permanent invalid_grant error", err)
	}
	if strings.Contains(err.Error(), "revoked-refresh-secret") || strings.Contains(err.Error(), oauth.ClientSecret) {
		t.Fatal("error text leaks a secret")
	}
}

// TestPacingStaysUnderTheLimit: with a scaled-down limit, a client pacing
// itself with the same limit never gets a 429.
func TestPacingStaysUnderTheLimit(t *testing.T) {
	const n, window = 20, 600 * time.Millisecond
	srv := hubspottest.NewServer(t, hubspottest.WithRateLimit(n, window), hubspottest.WithSearchRateLimit(4, window))
	id := srv.SeedContacts(1)[0]
	lim, err := hubspot.NewLimiter(n, window, 4)
	if err != nil {
		t.Fatal(err)
	}
	slim, err := hubspot.NewLimiter(4, window, 2)
	if err != nil {
		t.Fatal(err)
	}
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
		if err != nil {
			t.Fatal(err)
		}
	}
	if got := srv.RateLimited(); got != 0 {
		t.Fatalf("fake refused %d calls for rate, want 0", got)
	}
	// 36 lookups, and 6 searches each followed by a batch read of its ids.
	if srv.Calls("batch/read") != 36+6 || srv.Calls("search") != 6 {
		t.Fatalf("calls = %v", srv.CallCounts())
	}

	// Without pacing the same load runs into the limit, and the client
	// still finishes every call by waiting out the 429s.
	fast := newClient(t, srv, func(cfg *hubspot.Config) { cfg.MaxRateRetries = 100; cfg.RateLimitWait = window / 4 })
	for i := 0; i < 2*n; i++ {
		if err := lookupOne(fast, id); err != nil {
			t.Fatal(err)
		}
	}
	if srv.RateLimited() == 0 {
		t.Fatal("an unpaced client was never refused: the fake does not enforce its limit")
	}
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
			if err := lookupOne(c, id); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if m := srv.MaxInFlight(); m > 3 || m < 2 {
		t.Fatalf("fake saw %d calls at once, want at most 3 (and some overlap)", m)
	}
}

func TestLongRetryAfterIsHandedToTheCaller(t *testing.T) {
	srv := fastFake(t)
	id := srv.SeedContacts(1)[0]
	c := newClient(t, srv)
	srv.Fail(hubspottest.Fault{Kind: hubspottest.ServerError, Status: 477, RetryAfter: time.Hour})
	err := lookupOne(c, id)
	var rl *crmsync.RateLimitError
	if !errors.As(err, &rl) || rl.RetryAfter != time.Hour {
		t.Fatalf("477 with Retry-After 3600 = %v, want a RateLimitError of 1h", err)
	}
}
