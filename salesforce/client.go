// Package salesforce is a Salesforce REST API client that implements
// [crmsync.CRM]: SOQL change queries on SystemModstamp, batched lookups,
// sObject Collections writes with per-record results, and describe.
//
// The client authenticates with the OAuth 2.0 JWT bearer, client credentials
// or refresh token flow (or a static access token), paces itself with a
// [crmsync.Limiter], keeps within a share of the org's daily API allocation
// (read from the Sforce-Limit-Info header of every response), and retries
// 500, 503 and network failures with bounded exponential backoff.
//
// What the API refuses, the client names:
//   - Write reports every outcome it knows per record, a whole collections
//     call refused for its content (400 with an error array, 413) included,
//     and returns an error only when no op's outcome is known (see
//     crmsync.CRM). Creates are never repeated after an ambiguous failure;
//     updates and upserts are.
//   - A field that does not exist or that field-level security hides is
//     refused by SOQL (400 INVALID_FIELD "No such column ...") and by writes
//     (INVALID_FIELD, INVALID_FIELD_FOR_INSERT_UPDATE for fields the user
//     may not write): the error's chain holds a *crmsync.FieldError naming
//     the fields, parsed from the message, never with values. Describe is
//     filtered by field-level security, so Schema lacks hidden fields.
//   - A Lead, Contact or Account that a merge took away is read from the
//     recycle bin with Record.MergedInto set to the winner (MasterRecordId).
//   - Numbers that float64 cannot hold exactly (Salesforce keeps 18 digits)
//     are decoded as json.Number, so that their digits survive; others are
//     float64.
//
// # Objects
//
// Any sObject works by name; Account, Contact, Lead and Opportunity have
// default field lists of their own (Config.DefaultFields replaces them
// all). Schema types reference fields crmsync.TypeReference with
// FieldSchema.RefObject naming the object referred to (Contact.AccountId:
// "Account"; "" for a polymorphic field such as OwnerId). Opportunity has
// the pseudo-field ContactRolesField ("OpportunityContactRoles", of type
// crmsync.TypeReferences, RefObject "Contact"): the sorted ids of the
// contacts with an OpportunityContactRole, read with a child subquery in
// the same query and written by creating and deleting roles in batches of
// 200. A converted Lead (IsConverted) is read with Record.MergedInto set to
// its ConvertedContactId, and IsConverted kept in Fields; reads of Lead
// always select both. Writes to it fail per record with an error matching
// ErrConvertedLead.
//
// The daily allocation is a rolling 24 hours, learnt from the
// Sforce-Limit-Info header of every response; it has no reset time.
//
// SOQL sees a write at once, deletions are read by window (getDeleted,
// queryAll), and a merge loser names its winner, so the client implements
// none of the optional interfaces [crmsync.ChangeLagger],
// [crmsync.WholeBinReader] and [crmsync.IDResolver]. It is a
// [crmsync.OwnWriteFilter]: with Config.SkipOwnWrites its change reads can
// leave out what its own user wrote (LastModifiedById).
//
// [github.com/crmsync/crmsync/salesforce/salesforcetest] serves a fake
// Salesforce that the client (and jsforce) work against, for tests and
// local runs.
package salesforce

import (
	"bytes"
	"context"
	"crypto/rsa"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v4"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/internal/retry"
)

// DefaultAPIVersion is the REST API version used when Config.APIVersion is "".
const DefaultAPIVersion = "66.0"

// MaxBatch is the most records one sObject Collections call takes, and the
// most values one lookup query carries.
const MaxBatch = 200

// Config configures a Client. Exactly one of AccessToken, JWT,
// ClientCredentials and RefreshToken must be set.
type Config struct {
	// HTTPClient sends the requests; nil means http.DefaultClient. The caller
	// owns it (transport, proxies, TLS).
	HTTPClient *http.Client
	// LoginURL is the OAuth server: https://login.salesforce.com,
	// https://test.salesforce.com or the org's My Domain URL. Required with the
	// OAuth flows; its /services/oauth2/token is the token endpoint.
	LoginURL string
	// InstanceURL is the org's base URL for API calls; "" means the
	// instance_url of the token response. Required with AccessToken.
	InstanceURL string
	// APIVersion is the REST API version ("66.0" or "v66.0"); "" means DefaultAPIVersion.
	APIVersion string

	// AccessToken is a static session token; the client cannot renew it.
	AccessToken string
	// JWT selects the JWT bearer flow.
	JWT *JWTAuth
	// ClientCredentials selects the client credentials flow.
	ClientCredentials *ClientCredentialsAuth
	// RefreshToken selects the refresh token flow.
	RefreshToken *RefreshTokenAuth

	// DailyShare is the share of the org's daily API allocation this client may
	// use up to (org-wide usage counts); past it calls fail with an error
	// wrapping crmsync.ErrDailyLimit. Zero means 0.5; it must be in (0, 1].
	DailyShare float64
	// Limiter paces API calls; nil means a crmsync.Throttle with 25 calls in flight.
	Limiter crmsync.Limiter
	// MaxRetries bounds the retries of one call after 500, 503, network errors
	// and timeouts; zero means 4, negative means none.
	MaxRetries int
	// RetryWait is the first backoff interval (it grows 1.5 times per retry up
	// to 30 s); zero means 500 ms.
	RetryWait time.Duration
	// RequestTimeout bounds one HTTP attempt; zero means 2 minutes.
	RequestTimeout time.Duration
	// MaxBodyBytes bounds a response body; zero means 64 MiB.
	MaxBodyBytes int64
	// MaxURLLength bounds the URL of a lookup query; zero means 16000.
	MaxURLLength int
	// DefaultFields are the fields Changes and Lookup fetch when the caller
	// names none, for every object; nil means Id, FirstName, LastName,
	// Email, SystemModstamp, CreatedDate and IsDeleted, and for Account,
	// Lead and Opportunity lists of their own (with the Lead's conversion
	// fields and the Opportunity's AccountId and ContactRolesField).
	DefaultFields []string
	// Now is the clock (JWT expiry, the deleted-records window); nil means time.Now.
	Now func() time.Time

	// SkipOwnWrites makes Changes leave out, when asked
	// (crmsync.ChangeQuery.OthersOnly), the records whose LastModifiedById
	// is the token's user, and makes the client a crmsync.OwnWriteFilter:
	// the sync then reads its writes back in the pass that made them
	// instead of reading them again in the next pass. Set it only when the
	// token's user is an integration user that no person edits as, since a
	// person's edit made as that user would be taken for the sync's own.
	SkipOwnWrites bool
	// UserID is the id of the token's user, for SkipOwnWrites; "" means
	// asked once from the API (/services/oauth2/userinfo).
	UserID string
}

// Stats counts a Client's HTTP requests.
type Stats struct {
	// Calls counts requests sent per endpoint ("oauth2/token", "query",
	// "queryAll", "query/next", "composite/sobjects", "describe",
	// "sobjects/deleted"), retries included.
	Calls map[string]int64
	// Retries counts requests repeated after a transient failure.
	Retries int64
	// APIUsed and APIMax are the org's daily API usage and allocation from the
	// last Sforce-Limit-Info header; zero before the first response.
	APIUsed, APIMax int64
}

// Client is a Salesforce REST client. It is safe for concurrent use.
type Client struct {
	cfg     Config
	hc      *http.Client
	limiter crmsync.Limiter
	version string
	jwtKey  *rsa.PrivateKey
	fields  []string
	now     func() time.Time

	authMu sync.Mutex
	token  string
	base   string

	userMu sync.Mutex
	userID string // the token's user, once known

	mu      sync.Mutex
	calls   map[string]int64
	retries int64
	used    int64
	max     int64
	usageAt time.Time // when used and max were last learnt (or probed)
}

var _ crmsync.CRM = (*Client)(nil)

var versionPattern = regexp.MustCompile(`^v?([0-9]{2,3})\.0$`)

// New returns a Client for cfg; it reports an error naming the first invalid field.
func New(cfg Config) (*Client, error) {
	c := &Client{cfg: cfg, hc: cfg.HTTPClient, limiter: cfg.Limiter, now: cfg.Now, calls: map[string]int64{}}
	n := 0
	for _, set := range []bool{cfg.AccessToken != "", cfg.JWT != nil, cfg.ClientCredentials != nil, cfg.RefreshToken != nil} {
		if set {
			n++
		}
	}
	if n != 1 {
		return nil, errors.New("salesforce: Config: exactly one of AccessToken, JWT, ClientCredentials and RefreshToken must be set")
	}
	if cfg.AccessToken != "" {
		if cfg.InstanceURL == "" {
			return nil, errors.New("salesforce: Config.InstanceURL: required with AccessToken")
		}
		c.token = cfg.AccessToken
		c.base = strings.TrimRight(cfg.InstanceURL, "/")
	} else if err := checkURL("LoginURL", cfg.LoginURL); err != nil {
		return nil, err
	}
	if cfg.InstanceURL != "" {
		if err := checkURL("InstanceURL", cfg.InstanceURL); err != nil {
			return nil, err
		}
	}
	switch {
	case cfg.JWT != nil:
		if cfg.JWT.ClientID == "" {
			return nil, errors.New("salesforce: Config.JWT.ClientID: required")
		}
		if cfg.JWT.Username == "" {
			return nil, errors.New("salesforce: Config.JWT.Username: required")
		}
		k, err := parseRSAKey(cfg.JWT.PrivateKeyPEM)
		if err != nil {
			return nil, fmt.Errorf("salesforce: Config.JWT.PrivateKeyPEM: %w", err)
		}
		c.jwtKey = k
	case cfg.ClientCredentials != nil:
		if cfg.ClientCredentials.ClientID == "" || cfg.ClientCredentials.ClientSecret == "" {
			return nil, errors.New("salesforce: Config.ClientCredentials: ClientID and ClientSecret are required")
		}
	case cfg.RefreshToken != nil:
		if cfg.RefreshToken.ClientID == "" || cfg.RefreshToken.RefreshToken == "" {
			return nil, errors.New("salesforce: Config.RefreshToken: ClientID and RefreshToken are required")
		}
	}
	c.version = DefaultAPIVersion
	if cfg.APIVersion != "" {
		m := versionPattern.FindStringSubmatch(cfg.APIVersion)
		if m == nil {
			return nil, fmt.Errorf("salesforce: Config.APIVersion: %q is not like \"66.0\"", cfg.APIVersion)
		}
		c.version = m[1] + ".0"
	}
	if cfg.DailyShare == 0 {
		c.cfg.DailyShare = 0.5
	} else if cfg.DailyShare < 0 || cfg.DailyShare > 1 {
		return nil, errors.New("salesforce: Config.DailyShare: must be in (0, 1]")
	}
	if cfg.MaxRetries == 0 {
		c.cfg.MaxRetries = 4
	} else if cfg.MaxRetries < 0 {
		c.cfg.MaxRetries = 0
	}
	if cfg.RetryWait < 0 || cfg.RequestTimeout < 0 || cfg.MaxBodyBytes < 0 || cfg.MaxURLLength < 0 {
		return nil, errors.New("salesforce: Config: RetryWait, RequestTimeout, MaxBodyBytes and MaxURLLength must not be negative")
	}
	if cfg.RetryWait == 0 {
		c.cfg.RetryWait = 500 * time.Millisecond
	}
	if cfg.RequestTimeout == 0 {
		c.cfg.RequestTimeout = 2 * time.Minute
	}
	if cfg.MaxBodyBytes == 0 {
		c.cfg.MaxBodyBytes = 64 << 20
	}
	if cfg.MaxURLLength == 0 {
		c.cfg.MaxURLLength = 16000
	} else if cfg.MaxURLLength < 1000 {
		return nil, errors.New("salesforce: Config.MaxURLLength: must be at least 1000")
	}
	c.fields = []string{"Id", "FirstName", "LastName", "Email", "SystemModstamp", "CreatedDate", "IsDeleted"}
	if cfg.DefaultFields != nil {
		for _, f := range cfg.DefaultFields {
			if err := ValidName("field", f); err != nil {
				return nil, fmt.Errorf("salesforce: Config.DefaultFields: %w", err)
			}
		}
		c.fields = append([]string(nil), cfg.DefaultFields...)
	}
	if c.hc == nil {
		c.hc = http.DefaultClient
	}
	if c.now == nil {
		c.now = time.Now
	}
	if c.limiter == nil {
		t, err := crmsync.NewThrottle(crmsync.ThrottleConfig{InFlight: 25})
		if err != nil {
			return nil, err
		}
		c.limiter = t
	}
	return c, nil
}

func checkURL(field, s string) error {
	u, err := url.Parse(s)
	if s == "" || err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return fmt.Errorf("salesforce: Config.%s: must be an http(s) URL", field)
	}
	return nil
}

// System implements crmsync.CRM.
func (c *Client) System() string { return "salesforce" }

// Limits implements crmsync.CRM: 200 records per write, 200 values per lookup.
func (c *Client) Limits() crmsync.Limits {
	return crmsync.Limits{WriteBatch: MaxBatch, LookupBatch: MaxBatch}
}

// Stats returns a snapshot of the client's request counters.
func (c *Client) Stats() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := Stats{Calls: make(map[string]int64, len(c.calls)), Retries: c.retries, APIUsed: c.used, APIMax: c.max}
	for k, v := range c.calls {
		s.Calls[k] = v
	}
	return s
}

// call describes one logical API call.
type call struct {
	name        string // for errors: "query", "update", ...
	endpoint    string // for Stats
	method      string
	path        string // under /services/data/vNN.0, or a /services/... path
	url         string // absolute URL (token endpoint)
	body        []byte
	contentType string
	header      http.Header
	// idempotent calls are retried after network errors and 500s; others only after 503.
	idempotent bool
	noAuth     bool // the token endpoint: no bearer, no limiter, no budget
}

// response is a read HTTP response.
type response struct {
	status int
	header http.Header
	body   []byte
}

func permanent(err error) error { return crmsync.Permanent(err) }

// dataPath returns the API path prefix, /services/data/vNN.0.
func (c *Client) dataPath() string { return "/services/data/v" + c.version }

// checkBudget fails when the org's usage has reached this client's share.
// budgetRecheck is how often a client whose daily share is spent lets one
// call through to learn the org's current usage.
const budgetRecheck = 15 * time.Minute

func (c *Client) checkBudget(name string) error {
	c.mu.Lock()
	used, max := c.used, c.max
	c.mu.Unlock()
	if max == 0 {
		return nil
	}
	budget := int64(c.cfg.DailyShare * float64(max))
	if used >= budget {
		// Usage is a rolling 24 hours and is only learnt from responses: let
		// one call through now and then, so that a long-running process
		// sees the allocation free up again instead of refusing for ever.
		c.mu.Lock()
		probe := c.now().Sub(c.usageAt) >= budgetRecheck
		if probe {
			c.usageAt = c.now()
		}
		c.mu.Unlock()
		if probe {
			return nil
		}
		return fmt.Errorf("salesforce: %s: daily API usage %d of %d reached the %.0f%% share: %w",
			name, used, max, c.cfg.DailyShare*100, crmsync.ErrDailyLimit)
	}
	return nil
}

func (c *Client) count(endpoint string, retry bool) {
	c.mu.Lock()
	c.calls[endpoint]++
	if retry {
		c.retries++
	}
	c.mu.Unlock()
}

func (c *Client) noteUsage(h http.Header) {
	if used, max, ok := parseLimitInfo(h.Get("Sforce-Limit-Info")); ok {
		c.mu.Lock()
		c.used, c.max, c.usageAt = used, max, c.now()
		c.mu.Unlock()
	}
}

// do runs one call with authentication, pacing, budget, retries and
// re-authentication, and returns the 2xx response. Non-2xx responses become
// typed errors, except on the token endpoint, whose responses are returned.
func (c *Client) do(ctx context.Context, cl call) (response, error) {
	policy := retry.Policy{
		InitialInterval: c.cfg.RetryWait,
		MaxInterval:     30 * time.Second,
		Multiplier:      backoff.DefaultMultiplier,
		Jitter:          backoff.DefaultRandomizationFactor,
		MaxAttempts:     c.cfg.MaxRetries + 1,
	}
	reauthed := false
	var (
		resp  response
		again bool
	)
	err := retry.Do(ctx, policy, func(n int) error {
		var err error
		resp, err, again = c.attempt(ctx, cl, n > 1, &reauthed)
		return err
	}, func(err error) retry.Verdict {
		switch {
		case !again:
			return retry.Stop(nil)
		case errors.Is(err, errReauthed):
			return retry.Wait(0)
		}
		return retry.Retry(retryAfterHeader(resp.header))
	}, nil)
	var ex *retry.ExhaustedError
	switch {
	case err == nil:
		return resp, nil
	case ctx.Err() != nil:
		return response{}, fmt.Errorf("salesforce: %s: %w", cl.name, ctx.Err())
	case errors.As(err, &ex):
		var ae *APIError
		if errors.As(ex.Err, &ae) && (ae.Status == http.StatusTooManyRequests || ae.Status == http.StatusForbidden) {
			return response{}, crmsync.RetryAfter(max(retryAfterHeader(resp.header), c.cfg.RetryWait), ex.Err)
		}
		return response{}, ex.Err
	}
	return resp, err
}

var errReauthed = errors.New("salesforce: session renewed")

func retryAfterHeader(h http.Header) time.Duration {
	if h == nil {
		return 0
	}
	if s, err := strconv.Atoi(h.Get("Retry-After")); err == nil && s > 0 && s < 3600 {
		return time.Duration(s) * time.Second
	}
	return 0
}

// attempt sends one request. again reports that the call may be repeated
// (after backoff, or at once when err is errReauthed).
func (c *Client) attempt(ctx context.Context, cl call, retry bool, reauthed *bool) (resp response, err error, again bool) {
	if err := ctx.Err(); err != nil {
		return response{}, fmt.Errorf("salesforce: %s: %w", cl.name, err), false
	}
	target := cl.url
	var tok string
	if !cl.noAuth {
		if err := c.checkBudget(cl.name); err != nil {
			return response{}, err, false
		}
		var base string
		tok, base, err = c.session(ctx)
		if err != nil {
			return response{}, err, false
		}
		if strings.HasPrefix(cl.path, "/services/") {
			target = base + cl.path
		} else {
			target = base + c.dataPath() + cl.path
		}
		release, err := c.limiter.Acquire(ctx)
		if err != nil {
			return response{}, fmt.Errorf("salesforce: %s: wait for limiter: %w", cl.name, err), false
		}
		defer release()
	}
	actx, cancel := context.WithTimeout(ctx, c.cfg.RequestTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(actx, cl.method, target, bytes.NewReader(cl.body))
	if err != nil {
		return response{}, permanent(fmt.Errorf("salesforce: %s: build request: %w", cl.name, err)), false
	}
	for k, v := range cl.header {
		req.Header[k] = v
	}
	if cl.contentType != "" {
		req.Header.Set("Content-Type", cl.contentType)
	}
	req.Header.Set("Accept", "application/json")
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	c.count(cl.endpoint, retry)
	hr, err := c.hc.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return response{}, fmt.Errorf("salesforce: %s: %w", cl.name, ctx.Err()), false
		}
		return response{}, fmt.Errorf("salesforce: %s: %w", cl.name, scrubURLError(err)), cl.idempotent
	}
	defer hr.Body.Close()
	body, rerr := io.ReadAll(io.LimitReader(hr.Body, c.cfg.MaxBodyBytes+1))
	resp = response{status: hr.StatusCode, header: hr.Header, body: body}
	c.noteUsage(hr.Header)
	if rerr != nil {
		if ctx.Err() != nil {
			return response{}, fmt.Errorf("salesforce: %s: %w", cl.name, ctx.Err()), false
		}
		return response{}, fmt.Errorf("salesforce: %s: read response: %w", cl.name, rerr), cl.idempotent
	}
	if int64(len(body)) > c.cfg.MaxBodyBytes {
		return response{}, &DecodeError{Call: cl.name, Status: hr.StatusCode, Reason: fmt.Sprintf("body over %d bytes", c.cfg.MaxBodyBytes)}, false
	}
	st := hr.StatusCode
	switch {
	case st >= 200 && st < 300:
		return resp, nil, false
	case st == http.StatusServiceUnavailable:
		return resp, decodeError(cl.name, st, body), true
	case st == http.StatusInternalServerError || st == http.StatusBadGateway || st == http.StatusGatewayTimeout:
		return resp, decodeError(cl.name, st, body), cl.idempotent
	case cl.noAuth:
		return resp, nil, false
	case st == http.StatusTooManyRequests:
		if ra := retryAfterHeader(hr.Header); ra > 0 {
			c.limiter.Pause(time.Now().Add(ra))
		}
		return resp, decodeError(cl.name, st, body), true
	}
	ae := decodeError(cl.name, st, body)
	switch {
	case st == http.StatusUnauthorized:
		if !*reauthed {
			*reauthed = true
			ok, err := c.reauthenticate(ctx, tok)
			if err != nil {
				return response{}, err, false
			}
			if ok {
				return resp, errReauthed, true
			}
		}
		return resp, permanent(ae), false
	case st == http.StatusForbidden && ae.ErrorCode == "REQUEST_LIMIT_EXCEEDED":
		if strings.Contains(strings.ToLower(ae.Message), "concurrent") {
			return resp, ae, true
		}
		return resp, fmt.Errorf("%w: %w", ae, crmsync.ErrDailyLimit), false
	}
	return resp, permanent(ae), false
}

// scrubURLError keeps the URL (which may carry SOQL with record values) out
// of a transport error.
func scrubURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return fmt.Errorf("%s request: %w", ue.Op, ue.Err)
	}
	return err
}
