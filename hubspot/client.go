// Package hubspot is a client for HubSpot's CRM v3 API that implements
// [crmsync.CRM] for contacts and any other object type by name.
//
// It reads changes through the search API as a list of changed ids, then
// reads those records by id with batch read (search is eventually
// consistent and may answer with stale values; its body is capped at 3,000
// characters), and archived records through the list API. It looks records
// up and writes them in batches of up to 100, reads property definitions
// for drift detection, and paces itself under HubSpot's per-account limits:
// a rolling ten-second limit by tier, 5 searches a second, and a daily
// budget whose day runs in the account's time zone (Config.BudgetLocation).
//
// Write reports each op's outcome in its own result: a batch HubSpot
// refuses whole is split into single calls, creates are never sent twice
// blind (a create with a unique match goes as an upsert), updates to ids a
// merge took away follow the merge, and properties HubSpot does not know
// come back as a *[crmsync.FieldError].
//
// Relations are fields: asking Changes or Lookup for the pseudo-field
// FieldCompanies (contacts, deals) or FieldContacts (deals) reads the
// records' associations with the associations v4 batch read, one call per
// page of records, and fills the field with the primary company's id or
// the sorted contact ids; a Write op carrying them changes the
// associations with v4 batch create and archive, batched over the call's
// ops. Schema lists them as references (crmsync.TypeReference,
// crmsync.TypeReferences).
//
// Three optional interfaces tell the sync how HubSpot differs: the client
// is a [crmsync.ChangeLagger] (search shows a write only after a while;
// Config.ChangeLag), a [crmsync.WholeBinReader] (the archived list is the
// whole recycle bin, whatever the window) and a [crmsync.IDResolver] (a
// merge makes a new id; a single GET by an old id follows it). A fourth,
// [crmsync.ChangeCounter], counts a window with one search, so that the
// sync checks rather than reads again what it read already.
//
// [github.com/crmsync/crmsync/hubspot/hubspottest] serves a fake HubSpot
// that the client (and HubSpot's official clients) work against, for tests
// and local runs.
package hubspot

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v4"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/internal/retry"
)

// DefaultBaseURL is HubSpot's API host.
const DefaultBaseURL = "https://api.hubapi.com"

// Tier is the account's API tier, which sets the ten-second and daily limits.
type Tier int

// The tiers (HubSpot usage guidelines: the account's highest hub decides).
const (
	// TierStarter is Free and Starter: 100 calls per 10 s, 250,000 a day.
	TierStarter Tier = iota
	// TierProfessional is 190 calls per 10 s, 625,000 a day.
	TierProfessional
	// TierEnterprise is 190 calls per 10 s, 1,000,000 a day.
	TierEnterprise
	// TierLimitIncrease is the API limit increase add-on: 250 calls per 10 s,
	// 2,000,000 a day (one add-on on Enterprise).
	TierLimitIncrease
)

// TenSecondLimit is the tier's call budget per rolling ten seconds.
func (t Tier) TenSecondLimit() int {
	switch t {
	case TierProfessional, TierEnterprise:
		return 190
	case TierLimitIncrease:
		return 250
	}
	return 100
}

// DailyLimit is the tier's daily call budget per account.
func (t Tier) DailyLimit() int {
	switch t {
	case TierProfessional:
		return 625_000
	case TierEnterprise:
		return 1_000_000
	case TierLimitIncrease:
		return 2_000_000
	}
	return 250_000
}

// OAuth configures the OAuth refresh-token flow.
type OAuth struct {
	// ClientID and ClientSecret identify the app; both are required.
	ClientID     string
	ClientSecret string
	// RefreshToken is the long-lived token the app got at install; required.
	RefreshToken string
	// TokenURL is the token endpoint; "" means BaseURL + "/oauth/v3/token".
	TokenURL string
}

// Config configures a Client. Exactly one of Token and OAuth is set.
type Config struct {
	// Token is a private-app access token, sent as a Bearer token. "" means
	// OAuth is used instead.
	Token string
	// OAuth enables the OAuth refresh-token flow; nil means Token is used.
	OAuth *OAuth
	// HTTPClient sends the requests; the caller owns it. nil means
	// http.DefaultClient.
	HTTPClient *http.Client
	// BaseURL is the API's base URL, without a trailing slash; "" means
	// DefaultBaseURL. A test points it at a hubspottest server.
	BaseURL string
	// Tier sets the default rate and daily limits; the zero value is TierStarter.
	Tier Tier
	// Limiter paces every call except search; share one among all clients of
	// an account. nil means NewLimiter(Tier.TenSecondLimit(), 10 s, InFlight).
	Limiter crmsync.Limiter
	// SearchLimiter paces search calls; nil means NewLimiter(5, 1 s, InFlight).
	SearchLimiter crmsync.Limiter
	// InFlight caps the calls running at once in the default limiters; zero
	// means 10. It is ignored for injected limiters.
	InFlight int
	// DailyBudget is the most calls the client makes per day in
	// BudgetLocation (counted by this client); zero means Tier.DailyLimit(); negative means no budget.
	DailyBudget int
	// MaxRetries bounds the retries of one call after a 5xx, 423, 477 or
	// network error; zero means 4; negative means none. A Retry-After longer
	// than RetryMax is not waited out: the call returns a
	// *crmsync.RateLimitError carrying it.
	MaxRetries int
	// MaxRateRetries bounds the retries of one call after 429s before it
	// returns a *crmsync.RateLimitError; zero means 3; negative means none.
	MaxRateRetries int
	// RateLimitWait is the pause after a ten-secondly 429 without Retry-After;
	// zero means 10 s.
	RateLimitWait time.Duration
	// SearchRateLimitWait is the pause after a search 429 without
	// Retry-After; zero means 1 s.
	SearchRateLimitWait time.Duration
	// RetryInitial and RetryMax shape the exponential backoff between retries
	// of failed calls; zero means 200 ms and 10 s.
	RetryInitial time.Duration
	RetryMax     time.Duration
	// MaxResponseBytes caps a response body; zero means 32 MiB.
	MaxResponseBytes int64
	// Now is the clock for the daily budget's day; nil means time.Now.
	Now func() time.Time
	// BudgetLocation is the HubSpot account's time zone (Settings, Account
	// defaults): HubSpot's daily limit runs from midnight to midnight
	// there, and so does DailyBudget. nil means UTC; set it for accounts in
	// other zones, or the budget opens a new day hours early or late.
	BudgetLocation *time.Location
	// ChangeLag is how long a write may take to show in search (HubSpot
	// documents "a few moments"); the sync never moves its change cursor
	// past a window's end less this lag. Zero means DefaultChangeLag;
	// negative is refused.
	ChangeLag time.Duration
}

// DefaultChangeLag is the default Config.ChangeLag: searches lag writes by
// seconds in practice, and a minute leaves room for bad days.
const DefaultChangeLag = time.Minute

// Client is a HubSpot CRM v3 client. It is safe for concurrent use.
type Client struct {
	hc           *http.Client
	base         string
	token        string
	oauth        *tokenSource
	lim          crmsync.Limiter
	searchLim    crmsync.Limiter
	budget       int
	maxRetries   int
	maxRate      int
	rateWait     time.Duration
	searchWait   time.Duration
	retryInitial time.Duration
	retryMax     time.Duration
	maxBody      int64
	now          func() time.Time
	budgetLoc    *time.Location
	changeLag    time.Duration

	mu        sync.Mutex
	stats     map[string]int64
	day       string
	dayCalls  int
	dayClosed bool
	daily     dailyUsage
	unique    map[string]map[string]bool // object -> property -> unique
}

var _ crmsync.CRM = (*Client)(nil)

// New returns a Client, or an error naming the first invalid Config field.
func New(c Config) (*Client, error) {
	if c.Token == "" && c.OAuth == nil {
		return nil, errors.New("hubspot: Config.Token or Config.OAuth is required")
	}
	if c.Token != "" && c.OAuth != nil {
		return nil, errors.New("hubspot: Config.Token and Config.OAuth are exclusive")
	}
	if c.OAuth != nil {
		switch {
		case c.OAuth.ClientID == "":
			return nil, errors.New("hubspot: Config.OAuth.ClientID is required")
		case c.OAuth.ClientSecret == "":
			return nil, errors.New("hubspot: Config.OAuth.ClientSecret is required")
		case c.OAuth.RefreshToken == "":
			return nil, errors.New("hubspot: Config.OAuth.RefreshToken is required")
		}
	}
	if c.Tier < TierStarter || c.Tier > TierLimitIncrease {
		return nil, fmt.Errorf("hubspot: Config.Tier %d is unknown", c.Tier)
	}
	if c.InFlight < 0 {
		return nil, errors.New("hubspot: Config.InFlight must not be negative")
	}
	if c.RateLimitWait < 0 || c.SearchRateLimitWait < 0 || c.RetryInitial < 0 || c.RetryMax < 0 {
		return nil, errors.New("hubspot: Config.RateLimitWait, SearchRateLimitWait, RetryInitial and RetryMax must not be negative")
	}
	if c.ChangeLag < 0 {
		return nil, errors.New("hubspot: Config.ChangeLag must not be negative")
	}
	if c.MaxResponseBytes < 0 {
		return nil, errors.New("hubspot: Config.MaxResponseBytes must not be negative")
	}
	base := c.BaseURL
	if base == "" {
		base = DefaultBaseURL
	}
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, errors.New("hubspot: Config.BaseURL must be an absolute http or https URL")
	}
	cl := &Client{
		hc:           c.HTTPClient,
		base:         strings.TrimRight(base, "/"),
		token:        c.Token,
		lim:          c.Limiter,
		searchLim:    c.SearchLimiter,
		budget:       c.DailyBudget,
		maxRetries:   c.MaxRetries,
		maxRate:      c.MaxRateRetries,
		rateWait:     c.RateLimitWait,
		searchWait:   c.SearchRateLimitWait,
		retryInitial: c.RetryInitial,
		retryMax:     c.RetryMax,
		maxBody:      c.MaxResponseBytes,
		now:          c.Now,
		budgetLoc:    c.BudgetLocation,
		changeLag:    c.ChangeLag,
		stats:        map[string]int64{},
	}
	if cl.hc == nil {
		cl.hc = http.DefaultClient
	}
	inFlight := c.InFlight
	if inFlight == 0 {
		inFlight = 10
	}
	if cl.lim == nil {
		if cl.lim, err = NewLimiter(c.Tier.TenSecondLimit(), 10*time.Second, inFlight); err != nil {
			return nil, err
		}
	}
	if cl.searchLim == nil {
		if cl.searchLim, err = NewLimiter(5, time.Second, inFlight); err != nil {
			return nil, err
		}
	}
	if cl.budget == 0 {
		cl.budget = c.Tier.DailyLimit()
	}
	if cl.maxRetries == 0 {
		cl.maxRetries = 4
	}
	if cl.maxRate == 0 {
		cl.maxRate = 3
	}
	if cl.rateWait == 0 {
		cl.rateWait = 10 * time.Second
	}
	if cl.searchWait == 0 {
		cl.searchWait = time.Second
	}
	if cl.retryInitial == 0 {
		cl.retryInitial = 200 * time.Millisecond
	}
	if cl.retryMax == 0 {
		cl.retryMax = 10 * time.Second
	}
	if cl.maxBody == 0 {
		cl.maxBody = 32 << 20
	}
	if cl.now == nil {
		cl.now = time.Now
	}
	if cl.budgetLoc == nil {
		cl.budgetLoc = time.UTC
	}
	if cl.changeLag == 0 {
		cl.changeLag = DefaultChangeLag
	}
	if c.OAuth != nil {
		tokenURL := c.OAuth.TokenURL
		if tokenURL == "" {
			tokenURL = cl.base + "/oauth/v3/token"
		}
		cl.oauth = newTokenSource(cl, *c.OAuth, tokenURL)
	}
	return cl, nil
}

// NewLimiter returns a limiter that keeps calls under n per rolling window,
// as HubSpot counts them: HubSpot counts a call when its request arrives,
// at any moment until its response, so a call starts only while fewer than
// n calls are running or ended within the last window plus a 2% margin.
// The client runs at the published rate and never over it, however late a
// starved process or a slow network delivers its requests. inFlight caps
// concurrent calls (zero means no cap).
func NewLimiter(n int, window time.Duration, inFlight int) (crmsync.Limiter, error) {
	if n < 1 || window <= 0 {
		return nil, errors.New("hubspot: NewLimiter: n and window must be positive")
	}
	return crmsync.NewWindowLimiter(crmsync.WindowConfig{N: n, Window: window, Margin: window / 50, InFlight: inFlight})
}

// System implements crmsync.CRM.
func (c *Client) System() string { return "hubspot" }

// ChangeLag implements crmsync.ChangeLagger: how long a write may take to
// show in Changes (Config.ChangeLag).
func (c *Client) ChangeLag() time.Duration { return c.changeLag }

var _ crmsync.ChangeLagger = (*Client)(nil)

// ArchivedReadsWholeBin reports true: HubSpot lists its recycle bin whole,
// with no filter by archive time, so the sync reads it on its own slower
// cadence (crmsync.SyncConfig.ArchivedEvery) instead of on every pass.
func (c *Client) ArchivedReadsWholeBin() bool { return true }

var _ crmsync.WholeBinReader = (*Client)(nil)

// Limits implements crmsync.CRM: batches of 100 for writes and lookups.
func (c *Client) Limits() crmsync.Limits { return crmsync.Limits{WriteBatch: 100, LookupBatch: 100} }

// Stats returns the HTTP calls made so far per endpoint ("search",
// "batch/read", "batch/create", "batch/update", "batch/upsert",
// "batch/archive", "list", "properties", "oauth/token",
// "associations/batch/read", "associations/batch/create",
// "associations/batch/archive"), retries included.
func (c *Client) Stats() map[string]int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]int64, len(c.stats))
	for k, v := range c.stats {
		out[k] = v
	}
	return out
}

// Calls returns the total HTTP calls made so far.
func (c *Client) Calls() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	var n int64
	for _, v := range c.stats {
		n += v
	}
	return n
}

// count charges one call to the daily budget and the endpoint's counter, or
// reports ErrDailyLimit if the budget (or HubSpot's daily limit) is spent.
func (c *Client) count(endpoint string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	day := c.now().In(c.budgetLoc).Format(time.DateOnly)
	if day != c.day {
		c.day, c.dayCalls, c.dayClosed = day, 0, false
	}
	if c.dayClosed {
		return fmt.Errorf("hubspot: %s: daily limit reported by hubspot: %w", endpoint, crmsync.ErrDailyLimit)
	}
	if c.budget > 0 && c.dayCalls >= c.budget {
		return fmt.Errorf("hubspot: %s: daily budget of %d calls spent: %w", endpoint, c.budget, crmsync.ErrDailyLimit)
	}
	c.dayCalls++
	c.stats[endpoint]++
	return nil
}

func (c *Client) closeDay() {
	c.mu.Lock()
	c.day = c.now().In(c.budgetLoc).Format(time.DateOnly)
	c.dayClosed = true
	c.mu.Unlock()
}

// request is one API call.
type request struct {
	endpoint string // stats key
	call     string // for errors: "search contacts"
	object   string // object type, for FieldError
	method   string
	path     string
	query    url.Values
	body     any
	search   bool
	// once marks a call that is not idempotent (batch/create): after a
	// 5xx or a connection lost once the request may have been sent, its
	// outcome is unknown and it is not sent again.
	once bool
}

// do sends r, retrying as HubSpot advises, and returns the status and body of
// the final 2xx response.
func (c *Client) do(ctx context.Context, r request) (int, []byte, error) {
	var payload []byte
	if r.body != nil {
		var err error
		if payload, err = json.Marshal(r.body); err != nil {
			return 0, nil, fmt.Errorf("hubspot: %s: encode request: %w", r.call, err)
		}
	}
	u := c.base + r.path
	if len(r.query) > 0 {
		u += "?" + r.query.Encode()
	}
	lim := c.lim
	rateWait := c.rateWait
	if r.search {
		lim, rateWait = c.searchLim, c.searchWait
	}
	policy := retry.Policy{
		InitialInterval: c.retryInitial,
		MaxInterval:     c.retryMax,
		Multiplier:      backoff.DefaultMultiplier,
		Jitter:          backoff.DefaultRandomizationFactor,
		MaxAttempts:     max(c.maxRetries, 0) + 1,
	}
	var (
		verdict              retry.Verdict
		okStatus             int
		okBody               []byte
		retries, rateRetries int
		refreshed            bool
	)
	// Each attempt sets verdict: classify only passes it on.
	err := retry.Do(ctx, policy, func(int) error {
		var err error
		okStatus, okBody, verdict, err = c.attempt(ctx, r, u, payload, lim, rateWait, &retries, &rateRetries, &refreshed)
		return err
	}, func(error) retry.Verdict { return verdict }, nil)
	if err != nil {
		if ctx.Err() != nil {
			return 0, nil, fmt.Errorf("hubspot: %s: %w", r.call, ctx.Err())
		}
		return 0, nil, err
	}
	return okStatus, okBody, nil
}

// attempt sends r once and says what comes next: nil error for a 2xx, else
// the error and whether to retry after backoff (retries counts them), wait
// (a 429, whose pause the limiter holds, or a renewed token), or stop.
func (c *Client) attempt(ctx context.Context, r request, u string, payload []byte, lim crmsync.Limiter, rateWait time.Duration,
	retries, rateRetries *int, refreshed *bool) (int, []byte, retry.Verdict, error) {
	stop := func(err error) (int, []byte, retry.Verdict, error) { return 0, nil, retry.Stop(nil), err }
	if err := ctx.Err(); err != nil {
		return stop(fmt.Errorf("hubspot: %s: %w", r.call, err))
	}
	release, err := lim.Acquire(ctx)
	if err != nil {
		return stop(fmt.Errorf("hubspot: %s: wait for rate limiter: %w", r.call, err))
	}
	if err := c.count(r.endpoint); err != nil {
		release()
		return stop(err)
	}
	status, header, body, err := c.send(ctx, r, u, payload)
	release()
	switch {
	case err != nil:
		if ctx.Err() != nil {
			return stop(fmt.Errorf("hubspot: %s: %w", r.call, ctx.Err()))
		}
		var de *DecodeError
		if errors.As(err, &de) || !isNetErr(err) {
			return stop(err)
		}
		if r.once && !isDialErr(err) {
			return stop(&UnknownOutcomeError{Call: r.call, Err: err})
		}
		if *retries >= c.maxRetries {
			return stop(fmt.Errorf("hubspot: %s: after %d retries: %w", r.call, *retries, err))
		}
		*retries++
		return 0, nil, retry.Retry(0), err
	case status >= 200 && status < 300:
		return status, body, retry.Verdict{}, nil
	case status == http.StatusTooManyRequests:
		apiErr := c.apiError(r, status, body)
		if apiErr.PolicyName == "DAILY" {
			c.closeDay()
			return stop(fmt.Errorf("%w: %w", apiErr, crmsync.ErrDailyLimit))
		}
		wait := retryAfter(header, rateWait)
		lim.Pause(time.Now().Add(wait))
		if *rateRetries >= c.maxRate {
			return stop(&crmsync.RateLimitError{RetryAfter: wait, Err: apiErr})
		}
		*rateRetries++
		return 0, nil, retry.Wait(0), apiErr // the limiter holds the next Acquire until the pause ends
	case status == http.StatusUnauthorized && c.oauth != nil && !*refreshed:
		*refreshed = true
		c.oauth.invalidate()
		return 0, nil, retry.Wait(0), c.apiError(r, status, body)
	case status >= 500 || status == http.StatusLocked || status == 477:
		apiErr := c.apiError(r, status, body)
		if ra := retryAfter(header, 0); ra > c.retryMax {
			// A long wait (477 migrations announce hours): hand it to
			// the caller's scheduler rather than sleeping in the call.
			return stop(&crmsync.RateLimitError{RetryAfter: ra, Err: apiErr})
		}
		if r.once && status >= 500 {
			return stop(&UnknownOutcomeError{Call: r.call, Err: apiErr})
		}
		if *retries >= c.maxRetries {
			return stop(fmt.Errorf("hubspot: %s: after %d retries: %w", r.call, *retries, apiErr))
		}
		*retries++
		return 0, nil, retry.Retry(retryAfter(header, 0)), apiErr
	default:
		return stop(crmsync.Permanent(c.apiError(r, status, body)))
	}
}

// send makes one HTTP round trip and reads the body under the size cap.
func (c *Client) send(ctx context.Context, r request, u string, payload []byte) (int, http.Header, []byte, error) {
	var rd io.Reader
	if payload != nil {
		rd = bytes.NewReader(payload)
	}
	req, err := http.NewRequestWithContext(ctx, r.method, u, rd)
	if err != nil {
		return 0, nil, nil, fmt.Errorf("hubspot: %s: build request: %w", r.call, err)
	}
	req.Header.Set("Accept", "application/json")
	if payload != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	tok := c.token
	if c.oauth != nil {
		if tok, err = c.oauth.token(ctx); err != nil {
			return 0, nil, nil, err
		}
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := c.hc.Do(req)
	if err != nil {
		return 0, nil, nil, &netError{call: r.call, err: err}
	}
	defer resp.Body.Close()
	c.noteDaily(resp.Header)
	body, err := io.ReadAll(io.LimitReader(resp.Body, c.maxBody+1))
	if err != nil {
		return 0, nil, nil, &netError{call: r.call, err: err}
	}
	if int64(len(body)) > c.maxBody {
		return 0, nil, nil, &DecodeError{Call: r.call, Status: resp.StatusCode, Reason: fmt.Sprintf("body exceeds %d bytes", c.maxBody)}
	}
	return resp.StatusCode, resp.Header, body, nil
}

// netError is a transport failure; it is retried.
type netError struct {
	call string
	err  error
}

func (e *netError) Error() string { return "hubspot: " + e.call + ": " + e.err.Error() }
func (e *netError) Unwrap() error { return e.err }

func isNetErr(err error) bool {
	var ne *netError
	if errors.As(err, &ne) {
		return true
	}
	var nt net.Error
	return errors.As(err, &nt)
}

// isDialErr reports a connection that failed before any request was sent.
func isDialErr(err error) bool {
	var oe *net.OpError
	return errors.As(err, &oe) && oe.Op == "dial"
}

// retryAfter reads a Retry-After header in seconds, or returns def.
func retryAfter(h http.Header, def time.Duration) time.Duration {
	if h == nil {
		return def
	}
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v == "" {
		return def
	}
	if n, err := strconv.Atoi(v); err == nil && n >= 0 {
		return time.Duration(n) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(0, time.Until(t))
	}
	return def
}

// errorBody is HubSpot's error body; every field is optional.
type errorBody struct {
	Status        string        `json:"status"`
	Message       string        `json:"message"`
	Category      string        `json:"category"`
	SubCategory   any           `json:"subCategory"`
	CorrelationID string        `json:"correlationId"`
	PolicyName    string        `json:"policyName"`
	ErrorType     string        `json:"errorType"`
	Errors        []errorDetail `json:"errors"`
}

// apiError builds an APIError from an error response, whatever its body.
func (c *Client) apiError(r request, status int, body []byte) *APIError {
	e := &APIError{Call: r.call, Status: status, Object: r.object}
	var b errorBody
	if json.Unmarshal(body, &b) == nil {
		e.Category, e.Message, e.CorrelationID, e.PolicyName = b.Category, b.Message, b.CorrelationID, b.PolicyName
		e.details = b.Errors
		if s, ok := b.SubCategory.(string); ok {
			e.SubCategory = s
		}
		if e.Category == "" && b.ErrorType != "" {
			e.Category = b.ErrorType
		}
	}
	return e
}

// decode unmarshals a 2xx body into out, with typed errors for bodies that
// are not the JSON object expected.
func decode(call string, status int, body []byte, out any) error {
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 {
		return &DecodeError{Call: call, Status: status, Reason: "empty body"}
	}
	if trimmed[0] == '<' {
		return &DecodeError{Call: call, Status: status, Reason: "html body"}
	}
	if trimmed[0] != '{' {
		return &DecodeError{Call: call, Status: status, Reason: "body is not a json object"}
	}
	var probe struct {
		Status json.RawMessage `json:"status"`
	}
	if err := json.Unmarshal(trimmed, &probe); err != nil {
		return &DecodeError{Call: call, Status: status, Reason: "malformed json", Err: err}
	}
	if string(probe.Status) == `"error"` {
		return &DecodeError{Call: call, Status: status, Reason: "error body with a success status"}
	}
	if err := json.Unmarshal(trimmed, out); err != nil {
		return &DecodeError{Call: call, Status: status, Reason: "malformed json", Err: err}
	}
	return nil
}
