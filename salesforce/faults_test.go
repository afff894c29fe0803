package salesforce_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/salesforce"
	"github.com/crmsync/crmsync/salesforce/salesforcetest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestFaultsRetried(t *testing.T) {
	tests := []struct {
		name  string
		fault salesforcetest.Fault
	}{
		{"503 burst", salesforcetest.Fault{Endpoint: "query", Status: 503, Times: 3}},
		{"500", salesforcetest.Fault{Endpoint: "query", Status: 500, Times: 2}},
		{"502 html page", salesforcetest.Fault{Endpoint: "query", Status: 502, HTML: true}},
		{"connection reset", salesforcetest.Fault{Endpoint: "query", Reset: true, Times: 2}},
		{"hanging request", salesforcetest.Fault{Endpoint: "query", Hang: true}},
		{"latency", salesforcetest.Fault{Endpoint: "query", Latency: 20 * time.Millisecond}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := setup(t, nil, func(c *salesforce.Config) { c.RequestTimeout = 300 * time.Millisecond })
			f.srv.SeedN(2)
			f.srv.Inject(tt.fault)
			recs, err := f.c.Lookup(ctx, "Contact", "Email", []string{"contact1@example.com"}, nil)
			require.NoError(t, err, "Lookup = %d", len(recs))
			require.Len(t, recs, 1, "Lookup = %d, %v", len(recs), err)
			want := max(tt.fault.Times, 1) + 1
			if tt.fault.Latency > 0 {
				want = 1
			}
			got := f.srv.Calls()["query"]
			assert.GreaterOrEqual(t, got, want, "query calls = %d, want at least %d", got, want)
		})
	}
}

func TestFaultsExhaustRetries(t *testing.T) {
	f := setup(t, nil, func(c *salesforce.Config) { c.MaxRetries = 2 })
	f.srv.Inject(salesforcetest.Fault{Endpoint: "describe", Status: 503, Times: 10})
	_, err := f.c.Schema(ctx, "Contact")
	var ae *salesforce.APIError
	require.ErrorAs(t, err, &ae, "Schema() = %v, want 503", err)
	require.Equal(t, 503, ae.Status, "Schema() = %v, want 503", err)
	require.Equal(t, "SERVER_UNAVAILABLE", ae.ErrorCode, "Schema() = %v, want 503", err)
	assert.False(t, crmsync.IsPermanent(err), "exhausted 503 retries = %v, want a transient error", err)
	assert.NotErrorIs(t, err, crmsync.ErrDailyLimit, "exhausted 503 retries = %v, want a transient error", err)
	got := f.srv.Calls()["describe"]
	assert.Equal(t, 3, got, "describe calls = %d, want 3 (1 + 2 retries)", got)
	st := f.c.Stats()
	assert.Equal(t, int64(2), st.Retries, "Stats().Retries = %d, want 2", st.Retries)
}

func TestCreateNotRetriedAfterAmbiguousFailure(t *testing.T) {
	f := setup(t, nil, nil)
	f.srv.Inject(salesforcetest.Fault{Endpoint: "create", Status: 500})
	op := []crmsync.WriteOp{{Kind: crmsync.Create, Fields: crmsync.Fields{"LastName": "Once"}}}
	_, err := f.c.Write(ctx, "Contact", op)
	require.Error(t, err, "Write(create, 500) = %v, want a transient error", err)
	require.False(t, crmsync.IsPermanent(err), "Write(create, 500) = %v, want a transient error", err)
	got := f.srv.Calls()["create"]
	assert.Equal(t, 1, got, "create calls = %d, want 1: a create is not repeated blind", got)
	// 503 means not processed: retried.
	f.srv.Inject(salesforcetest.Fault{Endpoint: "create", Status: 503})
	res, err := f.c.Write(ctx, "Contact", op)
	require.NoError(t, err, "Write(create, 503) = %+v", res)
	require.NoError(t, res[0].Err, "Write(create, 503) = %+v, %v", res, err)
	// A reset connection on a create is not repeated either.
	f.srv.Inject(salesforcetest.Fault{Endpoint: "create", Reset: true})
	_, err = f.c.Write(ctx, "Contact", op)
	require.Error(t, err, "Write(create, reset) = %v, want transient", err)
	require.False(t, crmsync.IsPermanent(err), "Write(create, reset) = %v, want transient", err)
	n := len(f.srv.All())
	assert.Equal(t, 1, n, "%d records, want 1", n)
}

func TestBadBodies(t *testing.T) {
	tests := []struct {
		name   string
		fault  salesforcetest.Fault
		reason string
	}{
		{"truncated json", salesforcetest.Fault{Endpoint: "query", Status: 200, Body: `{"totalSize":1,"done":true,"records":[{"Id":`}, "query result"},
		{"html with 200", salesforcetest.Fault{Endpoint: "query", Status: 200, Body: `<html><body>proxy</body></html>`}, "html"},
		{"wrong shape", salesforcetest.Fault{Endpoint: "query", Status: 200, Body: `{"records":"nope","done":true}`}, "query result"},
		{"missing done", salesforcetest.Fault{Endpoint: "query", Status: 200, Body: `{"totalSize":0}`}, "without done"},
		{"not done without next", salesforcetest.Fault{Endpoint: "query", Status: 200, Body: `{"done":false,"records":[]}`}, "nextRecordsUrl"},
		{"empty", salesforcetest.Fault{Endpoint: "query", Status: 200, Body: ` `}, "empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := setup(t, nil, nil)
			f.srv.Inject(tt.fault)
			_, err := f.c.Lookup(ctx, "Contact", "Email", []string{"a@example.com"}, nil)
			var de *salesforce.DecodeError
			require.ErrorAs(t, err, &de, "Lookup = %v, want a *DecodeError naming lookup and %q", err, tt.reason)
			require.Equal(t, "lookup", de.Call, "Lookup = %v, want a *DecodeError naming lookup and %q", err, tt.reason)
			require.Contains(t, err.Error(), tt.reason, "Lookup = %v, want a *DecodeError naming lookup and %q", err, tt.reason)
		})
	}
	t.Run("error array with 200", func(t *testing.T) {
		f := setup(t, nil, nil)
		f.srv.Inject(salesforcetest.Fault{Endpoint: "upsert", Status: 200, Body: `[{"message":"boom","errorCode":"UNKNOWN_EXCEPTION"}]`})
		_, err := f.c.Write(ctx, "Contact", []crmsync.WriteOp{{Kind: crmsync.Upsert, MatchField: "HubSpot_Id__c", MatchValue: "1", Fields: crmsync.Fields{"LastName": "X"}}})
		var ae *salesforce.APIError
		require.ErrorAs(t, err, &ae, "Write = %v, want the error body as *APIError", err)
		require.Equal(t, "UNKNOWN_EXCEPTION", ae.ErrorCode, "Write = %v, want the error body as *APIError", err)
	})
	t.Run("result count mismatch", func(t *testing.T) {
		f := setup(t, nil, nil)
		f.srv.Inject(salesforcetest.Fault{Endpoint: "upsert", Status: 200, Body: `[]`})
		_, err := f.c.Write(ctx, "Contact", []crmsync.WriteOp{{Kind: crmsync.Upsert, MatchField: "HubSpot_Id__c", MatchValue: "1", Fields: crmsync.Fields{"LastName": "X"}}})
		var de *salesforce.DecodeError
		require.ErrorAs(t, err, &de, "Write = %v, want *DecodeError", err)
	})
	t.Run("huge body", func(t *testing.T) {
		f := setup(t, nil, func(c *salesforce.Config) { c.MaxBodyBytes = 10000 })
		f.srv.SeedN(300)
		_, err := f.c.Changes(ctx, crmsync.ChangeQuery{Object: "Contact"})
		var de *salesforce.DecodeError
		require.ErrorAs(t, err, &de, "Changes = %v, want body-size *DecodeError", err)
		require.Contains(t, err.Error(), "body over", "Changes = %v, want body-size *DecodeError", err)
	})
	t.Run("html error page on 400", func(t *testing.T) {
		f := setup(t, nil, nil)
		f.srv.Inject(salesforcetest.Fault{Endpoint: "describe", Status: 404, HTML: true})
		_, err := f.c.Schema(ctx, "Contact")
		var ae *salesforce.APIError
		require.ErrorAs(t, err, &ae, "Schema = %v, want permanent 404", err)
		require.Equal(t, 404, ae.Status, "Schema = %v, want permanent 404", err)
		require.True(t, crmsync.IsPermanent(err), "Schema = %v, want permanent 404", err)
	})
}

func TestDailyShare(t *testing.T) {
	f := setup(t, func(c *salesforcetest.Config) { c.DailyLimit = 100 }, nil)
	f.srv.SetAPIUsage(48)
	// Call 49 and 50 go through; at 50 of 100 the 50% share is used up.
	for i := range 2 {
		if _, err := f.c.Schema(ctx, "Contact"); err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	_, err := f.c.Schema(ctx, "Contact")
	require.ErrorIs(t, err, crmsync.ErrDailyLimit, "third call = %v, want ErrDailyLimit", err)
	got := f.srv.Calls()["describe"]
	assert.Equal(t, 2, got, "describe calls = %d, want 2: the client stops before sending", got)
	used, _ := f.srv.APIUsage()
	assert.Equal(t, int64(50), used, "org usage = %d, want 50", used)
}

func TestDailyLimitExhausted(t *testing.T) {
	f := setup(t, func(c *salesforcetest.Config) { c.DailyLimit = 100 }, func(c *salesforce.Config) { c.DailyShare = 1 })
	f.srv.SetAPIUsage(100)
	_, err := f.c.Lookup(ctx, "Contact", "Email", []string{"a@example.com"}, nil)
	var ae *salesforce.APIError
	require.ErrorIs(t, err, crmsync.ErrDailyLimit, "Lookup = %v, want 403 REQUEST_LIMIT_EXCEEDED wrapping ErrDailyLimit", err)
	require.ErrorAs(t, err, &ae, "Lookup = %v, want 403 REQUEST_LIMIT_EXCEEDED wrapping ErrDailyLimit", err)
	require.Equal(t, 403, ae.Status, "Lookup = %v, want 403 REQUEST_LIMIT_EXCEEDED wrapping ErrDailyLimit", err)
	require.Equal(t, "REQUEST_LIMIT_EXCEEDED", ae.ErrorCode, "Lookup = %v, want 403 REQUEST_LIMIT_EXCEEDED wrapping ErrDailyLimit", err)
	got := f.srv.Calls()["query"]
	assert.Equal(t, 1, got, "query calls = %d, want 1 (no retry)", got)
}

func TestConcurrencyCap(t *testing.T) {
	run := func(t *testing.T, clientInFlight int) (*fixture, []error) {
		lim, err := crmsync.NewThrottle(crmsync.ThrottleConfig{InFlight: clientInFlight})
		require.NoError(t, err)
		f := setup(t, func(c *salesforcetest.Config) { c.MaxInFlight = 3 }, func(c *salesforce.Config) {
			c.Limiter = lim
			c.MaxRetries = 100
		})
		f.srv.SeedN(1)
		_, err = f.c.Schema(ctx, "Contact") // fetch the token first
		require.NoError(t, err)
		f.srv.Inject(salesforcetest.Fault{Endpoint: "query", Latency: 10 * time.Millisecond, Times: 1000})
		var wg sync.WaitGroup
		errs := make([]error, 12)
		for i := range errs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, errs[i] = f.c.Lookup(ctx, "Contact", "Email", []string{"contact1@example.com"}, nil)
			}()
		}
		wg.Wait()
		return f, errs
	}
	t.Run("within the cap", func(t *testing.T) {
		f, errs := run(t, 3)
		for _, err := range errs {
			require.NoError(t, err)
		}
		got := f.srv.Calls()["query"]
		assert.Equal(t, 12, got, "query calls = %d, want 12: the client kept under the cap", got)
	})
	t.Run("over the cap", func(t *testing.T) {
		f, errs := run(t, 12)
		for _, err := range errs {
			require.NoError(t, err, "Lookup over the cap = %v, want retries to land", err)
		}
		assert.NotEqual(t, int64(0), f.c.Stats().Retries, "no retries: the fake did not enforce its cap")
	})
}

func TestContextCancelled(t *testing.T) {
	f := setup(t, nil, nil)
	f.srv.Inject(salesforcetest.Fault{Endpoint: "describe", Hang: true})
	cctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	_, err := f.c.Schema(cctx, "Contact")
	require.ErrorIs(t, err, context.DeadlineExceeded, "Schema = %v, want the context's deadline", err)
}

func TestRateLimited(t *testing.T) {
	f := setup(t, nil, func(c *salesforce.Config) { c.MaxRetries = -1 })
	f.srv.Inject(salesforcetest.Fault{Endpoint: "describe", Status: 429, RetryAfter: 7 * time.Second,
		Body: `[{"message":"too many requests","errorCode":"REQUEST_LIMIT_EXCEEDED"}]`})
	_, err := f.c.Schema(ctx, "Contact")
	var rl *crmsync.RateLimitError
	require.ErrorAs(t, err, &rl, "Schema() = %v, want a *RateLimitError of 7s", err)
	require.Equal(t, time.Duration(7*time.Second), rl.RetryAfter, "Schema() = %v, want a *RateLimitError of 7s", err)
	require.False(t, crmsync.IsPermanent(err), "Schema() = %v, want a *RateLimitError of 7s", err)
	require.NotErrorIs(t, err, crmsync.ErrDailyLimit, "Schema() = %v, want a *RateLimitError of 7s", err)
}

func TestErrorsCarryNoValues(t *testing.T) {
	f := setup(t, nil, func(c *salesforce.Config) { c.MaxRetries = 1 })
	f.srv.Inject(salesforcetest.Fault{Endpoint: "query", Reset: true, Times: 5})
	_, err := f.c.Lookup(ctx, "Contact", "Email", []string{"secret.person@example.com"}, nil)
	require.Error(t, err, "Lookup over resets = %v, want a transient error", err)
	require.False(t, crmsync.IsPermanent(err), "Lookup over resets = %v, want a transient error", err)
	require.NotContains(t, err.Error(), "secret.person", "error text carries the looked-up value: %v", err)
	require.NotContains(t, err.Error(), "secret%2Eperson", "error text carries the looked-up value: %v", err)
	require.NotContains(t, err.Error(), "example.com", "error text carries the looked-up value: %v", err)
	f.srv.ClearFaults()
	f.srv.Inject(salesforcetest.Fault{Endpoint: "query", Status: 400,
		Body: `[{"message":"unexpected token: 'secret.person@example.com'","errorCode":"MALFORMED_QUERY"}]`})
	_, err = f.c.Lookup(ctx, "Contact", "Email", []string{"secret.person@example.com"}, nil)
	var ae *salesforce.APIError
	require.ErrorAs(t, err, &ae, "Lookup(400) = %v", err)
	require.Equal(t, "MALFORMED_QUERY", ae.ErrorCode, "Lookup(400) = %v", err)
	require.NotContains(t, err.Error(), "secret", "Lookup(400) = %v", err)
}
