// Package hubspottest is an in-memory fake of HubSpot's CRM v3 API for tests
// and local runs, that HubSpot's official clients and crmsync's own client
// work against.
//
// # Starting it
//
// Like net/http/httptest: New(Config) returns a Server not yet listening;
// Start listens on Config.Addr (127.0.0.1 and a free port by default) and
// serves in the background until Close, with no test needed; NewServer(t,
// options...) is the test helper that starts it and closes it when the
// test ends. Handler and Serve serve it on a listener of your own.
// BaseURL and AccessToken give what a client needs; SeedContacts, Seed,
// Edit, Archive and Merge change the data as users would; CallCounts and
// CallCount count the calls. The Salesforce fake (salesforcetest) has the
// same shape and names.
//
// # What it serves
//
// The real paths and wire format: single records (GET, PATCH and DELETE
// /crm/v3/objects/{type}/{id} with properties, idProperty and archived;
// POST /crm/v3/objects/{type} answering 201), list, search, batch
// read/create/update/upsert/archive, merge, properties (list, get one,
// create, archive; HubSpot's own cannot be archived) and the OAuth v3
// token endpoint. List parameters (properties) are read both as one
// comma-joined value and repeated. Contacts have HubSpot's standard
// properties from the start (email, firstname, lastname, phone,
// mobilephone, fax, company, jobtitle, website, address, city, state, zip,
// country, industry, salutation, lifecyclestage, hs_lead_status);
// DefineProperty (or the properties create endpoint) adds an org's own.
// Companies have name, domain, website, phone, city, state, country,
// industry, description, hs_additional_domains, hubspot_owner_id,
// numberofemployees, annualrevenue and lifecyclestage, and need a name or
// a domain; deals have dealname, dealstage (the default pipeline's
// stages, DealStages), pipeline ("default" when none is given), amount,
// closedate, dealtype, description and hubspot_owner_id, and need a
// dealname and a dealstage. Any other object type gets name and domain.
//
// # Associations (v4)
//
// Associations between contacts, companies and deals are kept both ways
// with HubSpot's direction-specific type ids (contact → company 279,
// primary 1; company → contact 280, primary 2; deal → company 341, primary
// 5; company → deal 342, primary 6; deal → contact 3; contact → deal 4),
// labels as HubSpot reports them, and USER_DEFINED types as given. A
// labelled type brings the pair's unlabeled one; a new primary company
// leaves the old one associated, unlabeled; a contact's primary company
// is mirrored in its associatedcompanyid property. POST
// /crm/v4/associations/{from}/{to}/batch/read (1,000 ids; a page of
// Config.AssociationPage associated records per id, continued with
// paging.next.after; 207 OBJECT_NOT_FOUND with subcategory
// crm.associations.NO_ASSOCIATIONS_FOUND for an id with none, a shape the
// vendor does not document), batch/create (2,000 inputs; 201, or 207 with
// a VALIDATION_ERROR per input whose records are not live, whose type the
// pair does not have, or that would take a record past
// Config.AssociationCap associated records of one type, 50,000 by default;
// context fromObjectId and toObjectId) and
// batch/archive (2,000 inputs; 204) serve them. Associations of an
// archived record are hidden from reads, not deleted: a restore brings
// them back (HubSpot documents neither way). A merge moves both records'
// associations to the new record, the primary's primary company winning.
// Association changes do not touch records' stamps (undocumented;
// connectors re-read associations with every changed record), except a
// contact's associatedcompanyid; WithAssociationsTouch makes them touch
// both records. Associate, Dissociate, Associations, PrimaryCompany,
// FailAssociations and SeedGraph (a storm: SeedGraph(500, 10000, 0))
// serve tests.
//
// # Limits, as HubSpot enforces them
//
// A bearer token (the private-app token or one the token endpoint issued;
// OAuth tokens expire after Config.TokenTTL, or at once with
// ExpireTokens); 100 calls per rolling 10 seconds and 5 searches per
// second (429 with the policy name; Config.RateLimit, SearchRateLimit); a
// daily limit of 250,000 calls (429 DAILY; ExhaustDaily, ResetDaily); 100
// inputs per batch, 100 records per list page, 200 per search page, the
// search cap of 10,000 results, 5 filter groups, 6 filters per group and
// 18 in all; unique emails and unique properties (409 CONFLICT naming the
// existing id), required properties and enumeration options as per-record
// errors (207 when every input has an objectWriteTraceId, else the whole
// batch fails), and millisecond modification stamps from a controllable
// clock (Config.Now).
//
// # Faults, on demand
//
// Fail queues faults for the next calls of an endpoint: 429s, 5xx (423
// and 477 too), latency, hanging, reset connections, 401s, raw bodies
// (malformed, HTML, huge) and whole-batch refusals (Fault.Kind
// BatchRefusal); Fault.AfterServe lets the request land and loses its
// response. FailRecords makes writes of given records fail with a
// per-record error.
//
// # Rules always on, as the real API
//
//   - A search body over 3,000 characters is refused with a 400
//     VALIDATION_ERROR (the limit counts the properties list too).
//   - A search filter on a date or datetime property at or before the epoch
//     gets a 500 (HubSpot fails such queries).
//   - A write naming a property the object does not have fails with
//     VALIDATION_ERROR, code PROPERTY_DOESNT_EXIST: the message embeds the
//     JSON list of invalid properties ("Property values were not valid:
//     [...]") and errors[] names each in context.propertyName; per record
//     (207) when every input has an objectWriteTraceId, else a 400 for the
//     whole batch. Reads leave unknown properties out.
//   - Merges (POST /crm/v3/objects/{type}/merge and Server.Merge) make a new
//     record with a new id holding the primary's values (the other's where
//     the primary's are blank) and hs_merged_object_ids "old1;old2". The
//     old ids leave search and lists; a single GET by an old id returns the
//     new record with its new id, while batch read and batch update of an
//     old id fail as not found. Whether real HubSpot lists merged-away ids
//     with archived=true is unconfirmed: the fake does not.
//
// # Hostile behaviours, each switchable (all off by default)
//
//   - Search index lag (WithSearchLag): a write shows in search only after
//     a random delay in [min, max], drawn per write, so writes surface out
//     of order; until then search sees the record's previous state (stale
//     values and stamp, or no record if new), while batch read and GET see
//     the latest at once. SettleSearch makes everything visible.
//   - Clock skew (WithClockSkew): every stamp runs ahead of or behind the
//     clock by a fixed offset.
//   - Equal stamps (WithStampGranularity): stamps are truncated, so writes
//     within one span (a bulk update) share a stamp; records written by one
//     batch call always share one.
//   - Whole-batch refusals (WithBatchRefusals): a share of multi-input batch
//     writes is refused whole with a 400, 409 or 413 before any is written.
//   - Deleted properties (DeleteProperty, RestoreProperty): a property leaves
//     the schema, reads omit it and writes to it fail as above; restoring it
//     brings its values back.
//
// Hostile(seed) turns on all the random ones with draws from seed
// (WithSeed seeds them one by one): the same seed gives the same world.
package hubspottest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Defaults for the credentials the fake accepts.
const (
	DefaultToken        = "hubspottest-private-app-token"
	DefaultClientID     = "hubspottest-client-id"
	DefaultClientSecret = "hubspottest-client-secret"
	DefaultRefreshToken = "hubspottest-refresh-token"
)

// Config configures a Server.
type Config struct {
	// Token is the private-app token the fake accepts; "" means DefaultToken.
	Token string
	// ClientID, ClientSecret and RefreshToken are the OAuth app credentials
	// the token endpoint accepts; "" means the Default values.
	ClientID, ClientSecret, RefreshToken string
	// TokenTTL is the life of an OAuth access token; zero means 30 minutes.
	TokenTTL time.Duration
	// Prefix is a path prefix in front of every API path ("/hubspot"); ""
	// means none.
	Prefix string
	// RateLimit calls per RateWindow (rolling) are allowed for every endpoint
	// but search and the token endpoint; zero means 100 per 10 s; negative
	// means no limit. Windows run on real time, as clients pace on it.
	RateLimit  int
	RateWindow time.Duration
	// SearchRateLimit searches per SearchWindow are allowed; zero means 5 per
	// second; negative means no limit.
	SearchRateLimit int
	SearchWindow    time.Duration
	// DailyLimit is the calls allowed before every call gets a DAILY 429;
	// zero means 250,000; negative means no limit.
	DailyLimit int
	// SearchCap is the most results one search query pages through; zero
	// means 10,000.
	SearchCap int
	// Now is the clock for modification stamps and token expiry; nil means
	// time.Now.
	Now func() time.Time
	// Contacts is how many generated contacts (SeedContacts) to create at
	// start.
	Contacts int
	// Addr is the address Start listens on; "" means 127.0.0.1:0 (a free
	// port).
	Addr string

	// Hostile behaviours, all off by default (see the package doc).

	// SearchLagMin and SearchLagMax bound the random delay before a write
	// shows in search; while it waits, search sees the record as it was
	// (absent if new). Zero SearchLagMax means no lag.
	SearchLagMin, SearchLagMax time.Duration
	// ClockSkew offsets every stamp the fake makes (and its clock) from Now.
	ClockSkew time.Duration
	// StampGranularity truncates modification stamps, so that writes
	// within one span share a stamp (bulk updates share a millisecond);
	// zero means a millisecond.
	StampGranularity time.Duration
	// RefuseBatchRate is the share (0 to 1) of batch write calls with more
	// than one input that are refused whole with a 400, 409 or 413.
	RefuseBatchRate float64
	// Seed seeds the random choices of the hostile behaviours.
	Seed uint64

	// AssociationPage is the most associated records the v4 batch read
	// returns per id in one call (the rest follow with paging.next.after);
	// zero means 500.
	AssociationPage int
	// AssociationCap is the most records of one object type a record may
	// be associated with (HubSpot's per-record limits depend on the
	// objects and subscription; its example is a company with up to
	// 50,000 contacts); a batch create past it fails that input. Zero
	// means 50,000.
	AssociationCap int
	// AssociationsTouch makes every association change bump both records'
	// modification stamps, so that change queries see it. Off by default:
	// HubSpot does not document that association changes touch records
	// (connectors re-read associations with every changed record), and
	// the fake changes only what HubSpot maintains, a contact's
	// associatedcompanyid when its primary company changes.
	AssociationsTouch bool
}

// Option adjusts the Config of NewServer.
type Option func(*Config)

// WithConfig replaces the whole Config.
func WithConfig(c Config) Option { return func(dst *Config) { *dst = c } }

// WithPrefix serves the API under a path prefix.
func WithPrefix(p string) Option { return func(c *Config) { c.Prefix = p } }

// WithRateLimit sets the rolling limit for non-search calls.
func WithRateLimit(n int, window time.Duration) Option {
	return func(c *Config) { c.RateLimit, c.RateWindow = n, window }
}

// WithSearchRateLimit sets the search limit.
func WithSearchRateLimit(n int, window time.Duration) Option {
	return func(c *Config) { c.SearchRateLimit, c.SearchWindow = n, window }
}

// WithoutRateLimits turns both rate limits off.
func WithoutRateLimits() Option {
	return func(c *Config) { c.RateLimit, c.SearchRateLimit = -1, -1 }
}

// WithDailyLimit sets the daily limit.
func WithDailyLimit(n int) Option { return func(c *Config) { c.DailyLimit = n } }

// WithClock sets the clock for stamps and token expiry.
func WithClock(now func() time.Time) Option { return func(c *Config) { c.Now = now } }

// WithSearchLag makes each write show in search only after a random delay
// in [min, max], and search answer with the record's previous state until
// then.
func WithSearchLag(min, max time.Duration) Option {
	return func(c *Config) { c.SearchLagMin, c.SearchLagMax = min, max }
}

// WithClockSkew offsets the fake's stamps from its clock by d (±).
func WithClockSkew(d time.Duration) Option { return func(c *Config) { c.ClockSkew = d } }

// WithStampGranularity truncates stamps to d, so writes share stamps.
func WithStampGranularity(d time.Duration) Option { return func(c *Config) { c.StampGranularity = d } }

// WithBatchRefusals refuses the share rate (0 to 1) of multi-input batch
// writes whole (400, 409 or 413).
func WithBatchRefusals(rate float64) Option { return func(c *Config) { c.RefuseBatchRate = rate } }

// WithSeed seeds the hostile behaviours' random choices.
func WithSeed(seed uint64) Option { return func(c *Config) { c.Seed = seed } }

// Hostile turns on every random hostile behaviour, drawn from seed: search
// lag of up to 30 s (stale search meanwhile), a clock skew within ±2
// minutes, stamps shared within 10 ms, and 5% of multi-input batch writes
// refused whole. The same seed gives the same world.
func Hostile(seed uint64) Option {
	return func(c *Config) {
		r := mrand.New(mrand.NewPCG(seed, 0x6875627370))
		c.Seed = seed
		c.SearchLagMin, c.SearchLagMax = 0, 30*time.Second
		c.ClockSkew = time.Duration(r.Int64N(int64(4*time.Minute))) - 2*time.Minute
		c.StampGranularity = 10 * time.Millisecond
		c.RefuseBatchRate = 0.05
	}
}

// WithAssociationPage sets how many associated records the v4 batch read
// returns per id in one call.
func WithAssociationPage(n int) Option { return func(c *Config) { c.AssociationPage = n } }

// WithAssociationCap sets the most records of one object type a record may
// be associated with.
func WithAssociationCap(n int) Option { return func(c *Config) { c.AssociationCap = n } }

// WithAssociationsTouch makes association changes bump both records'
// modification stamps (a kind world; see Config.AssociationsTouch).
func WithAssociationsTouch() Option { return func(c *Config) { c.AssociationsTouch = true } }

// WithSearchCap sets the search results cap.
func WithSearchCap(n int) Option { return func(c *Config) { c.SearchCap = n } }

// Server is a fake HubSpot. Its methods are safe for concurrent use.
type Server struct {
	// URL is the base URL clients use (scheme, host and Prefix), set by
	// Start, NewServer and Serve; for New it is "" until then. BaseURL
	// reads it safely while the server runs.
	URL string
	// Token is the private-app token the fake accepts; AccessToken (the
	// name both fakes share) returns it too.
	Token string

	cfg  Config
	done chan struct{}
	once sync.Once
	// hs is the HTTP server Start runs; nil until then.
	hs *http.Server

	inFlight    atomic.Int64
	maxInFlight atomic.Int64

	mu          sync.Mutex
	objects     map[string]*objectStore
	nextID      int64
	calls       map[string]int
	rateLimited int
	daily       int
	rolling     []time.Time
	searches    []time.Time
	faults      []*Fault
	failRecords map[string]string
	tokens      map[string]time.Time
	tokenSeq    int
	rnd         *mrand.Rand
	// assoc holds associations by object pair, from id and to id, both
	// directions stored.
	assoc map[assocKey]map[string]map[string][]AssociationType
	// failAssoc maps a record id to the category its association
	// creates fail with.
	failAssoc map[string]string
}

type objectStore struct {
	recs  map[string]*rec
	props []*Property
	// order holds every record by id (ids only grow, so creation order).
	order []*rec
	// merged maps a merged-away id to the id of the record it went into.
	merged map[string]string
	// hidden holds deleted properties, to restore.
	hidden map[string]*Property
	// idx maps a property name to its values' fold keys and the records,
	// archived included, that hold them; a property gets an index on its
	// first lookup and keeps it in step with every change from then on.
	idx map[string]map[string][]*rec
}

type rec struct {
	// versions are the record's states waiting for the search index,
	// oldest first (search index lag); empty when search sees r itself.
	versions   []version
	id         string
	num        int64
	props      map[string]string
	created    time.Time
	updated    time.Time
	archived   bool
	archivedAt time.Time
}

// New returns a Server that is not yet listening: call Start, serve its
// Handler, or call Serve. It reports an error naming an invalid Config
// field.
func New(c Config) (*Server, error) {
	if c.Token == "" {
		c.Token = DefaultToken
	}
	if c.ClientID == "" {
		c.ClientID = DefaultClientID
	}
	if c.ClientSecret == "" {
		c.ClientSecret = DefaultClientSecret
	}
	if c.RefreshToken == "" {
		c.RefreshToken = DefaultRefreshToken
	}
	if c.TokenTTL == 0 {
		c.TokenTTL = 30 * time.Minute
	}
	if c.Prefix != "" && (!strings.HasPrefix(c.Prefix, "/") || strings.HasSuffix(c.Prefix, "/")) {
		return nil, errors.New("hubspottest: Config.Prefix must start and must not end with /")
	}
	if c.RateLimit == 0 {
		c.RateLimit = 100
	}
	if c.RateWindow == 0 {
		c.RateWindow = 10 * time.Second
	}
	if c.SearchRateLimit == 0 {
		c.SearchRateLimit = 5
	}
	if c.SearchWindow == 0 {
		c.SearchWindow = time.Second
	}
	if c.RateWindow < 0 || c.SearchWindow < 0 || c.TokenTTL < 0 {
		return nil, errors.New("hubspottest: Config.RateWindow, SearchWindow and TokenTTL must not be negative")
	}
	if c.DailyLimit == 0 {
		c.DailyLimit = 250_000
	}
	if c.SearchCap == 0 {
		c.SearchCap = 10_000
	}
	if c.SearchCap < 0 {
		return nil, errors.New("hubspottest: Config.SearchCap must not be negative")
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.SearchLagMin < 0 || c.SearchLagMax < c.SearchLagMin || c.StampGranularity < 0 {
		return nil, errors.New("hubspottest: Config.SearchLagMin must be in [0, SearchLagMax] and StampGranularity not negative")
	}
	if c.RefuseBatchRate < 0 || c.RefuseBatchRate > 1 {
		return nil, errors.New("hubspottest: Config.RefuseBatchRate must be in [0, 1]")
	}
	if c.AssociationPage == 0 {
		c.AssociationPage = 500
	}
	if c.AssociationCap == 0 {
		c.AssociationCap = 50_000
	}
	if c.AssociationPage < 0 || c.AssociationCap < 0 {
		return nil, errors.New("hubspottest: Config.AssociationPage and AssociationCap must not be negative")
	}
	if c.Contacts < 0 {
		return nil, errors.New("hubspottest: Config.Contacts must not be negative")
	}
	s := &Server{
		rnd:         mrand.New(mrand.NewPCG(c.Seed, 0x66616b65)),
		Token:       c.Token,
		cfg:         c,
		done:        make(chan struct{}),
		objects:     map[string]*objectStore{},
		nextID:      100,
		calls:       map[string]int{},
		failRecords: map[string]string{},
		tokens:      map[string]time.Time{},
	}
	s.SeedContacts(c.Contacts)
	return s, nil
}

// NewServer is the test helper: it starts a Server (New, then Start) and
// closes it when the test ends. It fails the test on an invalid option.
func NewServer(t testing.TB, opts ...Option) *Server {
	t.Helper()
	var c Config
	for _, o := range opts {
		o(&c)
	}
	s, err := New(c)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// URLFor returns the base URL for a server listening on addr.
func (s *Server) URLFor(addr net.Addr) string { return "http://" + addr.String() + s.cfg.Prefix }

// Serve serves the API on l until ctx ends, then shuts down. It sets URL.
func (s *Server) Serve(ctx context.Context, l net.Listener) error {
	s.mu.Lock()
	s.URL = s.URLFor(l.Addr())
	s.mu.Unlock()
	hs := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		s.release()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = hs.Shutdown(sctx)
	}()
	if err := hs.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("hubspottest: serve: %w", err)
	}
	return nil
}

func (s *Server) release() { s.once.Do(func() { close(s.done) }) }

// CallCounts returns the requests received per endpoint: "search", "list",
// "get", "create", "update", "archive" (the single-record calls),
// "merge", "properties", "properties/get", "properties/create",
// "properties/archive", "batch/read", "batch/create", "batch/update", "batch/upsert",
// "batch/archive", "properties", "oauth/token", and the associations v4
// batch calls "associations/batch/read", "associations/batch/create" and
// "associations/batch/archive". Rejected requests count.
func (s *Server) CallCounts() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]int, len(s.calls))
	for k, v := range s.calls {
		out[k] = v
	}
	return out
}

// Calls returns the requests received for one endpoint, as CallCount (the
// name both fakes share) does.
func (s *Server) Calls(endpoint string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[endpoint]
}

// RateLimited returns how many requests the rate limits (not injected
// faults) refused with a 429.
func (s *Server) RateLimited() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rateLimited
}

// MaxInFlight returns the most requests the fake has served at once.
func (s *Server) MaxInFlight() int { return int(s.maxInFlight.Load()) }

// DailyUsed returns the calls counted against the daily limit.
func (s *Server) DailyUsed() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.daily
}

// ExhaustDaily uses up the daily limit: every call gets a DAILY 429.
func (s *Server) ExhaustDaily() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.daily = max(s.cfg.DailyLimit, s.daily)
}

// ResetDaily starts a new day for the daily limit.
func (s *Server) ResetDaily() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.daily = 0
}

// ExpireTokens expires every OAuth access token issued so far: requests
// with them get 401 until the client refreshes.
func (s *Server) ExpireTokens() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tokens = map[string]time.Time{}
}

// IssuedTokens returns how many OAuth access tokens the fake has issued.
func (s *Server) IssuedTokens() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tokenSeq
}

// now is the fake's clock, skewed and truncated as configured: the source
// of every stamp.
func (s *Server) now() time.Time {
	g := s.cfg.StampGranularity
	if g < time.Millisecond {
		g = time.Millisecond
	}
	return s.cfg.Now().Add(s.cfg.ClockSkew).UTC().Truncate(g)
}

func stamp(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z") }

func correlationID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// writeJSON writes v with status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json;charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// writeError writes HubSpot's error body.
func writeError(w http.ResponseWriter, status int, category, message string) {
	writeJSON(w, status, map[string]any{
		"status":        "error",
		"message":       message,
		"correlationId": correlationID(),
		"category":      category,
	})
}

// Handler returns the API's http.Handler.
func (s *Server) Handler() http.Handler { return http.HandlerFunc(s.serveHTTP) }

// route names the endpoint of a request and its path parts.
type route struct {
	endpoint string
	object   string
	id       string
}

func (s *Server) route(r *http.Request) (route, bool) {
	// Split the path as sent, then decode each part: a record id or an
	// idProperty value may hold an escaped "/".
	p := r.URL.EscapedPath()
	if s.cfg.Prefix != "" {
		if !strings.HasPrefix(p, s.cfg.Prefix+"/") {
			return route{}, false
		}
		p = strings.TrimPrefix(p, s.cfg.Prefix)
	}
	parts := strings.Split(strings.Trim(p, "/"), "/")
	for i, part := range parts {
		dec, err := url.PathUnescape(part)
		if err != nil {
			return route{}, false
		}
		parts[i] = dec
	}
	switch {
	case r.Method == http.MethodPost && (p == "/oauth/v3/token" || p == "/oauth/v1/token"):
		return route{endpoint: "oauth/token"}, true
	case len(parts) == 4 && parts[0] == "crm" && parts[1] == "v3" && parts[2] == "properties" && r.Method == http.MethodGet:
		return route{endpoint: "properties", object: parts[3]}, true
	case len(parts) == 4 && parts[0] == "crm" && parts[1] == "v3" && parts[2] == "properties" && r.Method == http.MethodPost:
		return route{endpoint: "properties/create", object: parts[3]}, true
	case len(parts) == 5 && parts[0] == "crm" && parts[1] == "v3" && parts[2] == "properties" && r.Method == http.MethodGet:
		return route{endpoint: "properties/get", object: parts[3], id: parts[4]}, true
	case len(parts) == 5 && parts[0] == "crm" && parts[1] == "v3" && parts[2] == "properties" && r.Method == http.MethodDelete:
		return route{endpoint: "properties/archive", object: parts[3], id: parts[4]}, true
	case len(parts) == 7 && parts[1] == "v4":
		return assocRoute(parts, r.Method)
	case len(parts) < 4 || parts[0] != "crm" || parts[1] != "v3" || parts[2] != "objects":
		return route{}, false
	case len(parts) == 4 && r.Method == http.MethodGet:
		return route{endpoint: "list", object: parts[3]}, true
	case len(parts) == 4 && r.Method == http.MethodPost:
		return route{endpoint: "create", object: parts[3]}, true
	case len(parts) == 5 && parts[4] == "merge" && r.Method == http.MethodPost:
		return route{endpoint: "merge", object: parts[3]}, true
	case len(parts) == 5 && parts[4] == "search" && r.Method == http.MethodPost:
		return route{endpoint: "search", object: parts[3]}, true
	case len(parts) == 5 && r.Method == http.MethodGet:
		return route{endpoint: "get", object: parts[3], id: parts[4]}, true
	case len(parts) == 5 && r.Method == http.MethodPatch:
		return route{endpoint: "update", object: parts[3], id: parts[4]}, true
	case len(parts) == 5 && r.Method == http.MethodDelete:
		return route{endpoint: "archive", object: parts[3], id: parts[4]}, true
	case len(parts) == 6 && parts[4] == "batch" && r.Method == http.MethodPost:
		switch parts[5] {
		case "read", "create", "update", "upsert", "archive":
			return route{endpoint: "batch/" + parts[5], object: parts[3]}, true
		}
	}
	return route{}, false
}

func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	rt, ok := s.route(r)
	if !ok {
		writeError(w, http.StatusNotFound, "OBJECT_NOT_FOUND", "no such endpoint")
		return
	}
	n := s.inFlight.Add(1)
	defer s.inFlight.Add(-1)
	for m := s.maxInFlight.Load(); n > m && !s.maxInFlight.CompareAndSwap(m, n); m = s.maxInFlight.Load() {
	}
	s.mu.Lock()
	s.calls[rt.endpoint]++
	f := s.takeFault(rt.endpoint)
	s.mu.Unlock()
	if f != nil && f.AfterServe && f.Kind != Latency && f.Kind != Hang {
		// The request is served (its writes land), then its response is
		// replaced by the fault: a response lost on the way back.
		s.dispatch(httptest.NewRecorder(), r, rt)
		s.applyFault(w, r, f, rt.endpoint)
		return
	}
	if f != nil && !s.applyFault(w, r, f, rt.endpoint) {
		return
	}
	s.dispatch(w, r, rt)
}

// dispatch serves a routed request.
func (s *Server) dispatch(w http.ResponseWriter, r *http.Request, rt route) {
	if rt.endpoint == "oauth/token" {
		s.serveToken(w, r)
		return
	}
	if !s.admit(w, r, rt.endpoint) {
		return
	}
	switch rt.endpoint {
	case "properties":
		s.serveProperties(w, rt.object)
	case "properties/get":
		s.servePropertyGet(w, rt.object, rt.id)
	case "properties/create":
		s.servePropertyCreate(w, r, rt.object)
	case "properties/archive":
		s.servePropertyArchive(w, rt.object, rt.id)
	case "list":
		s.serveList(w, r, rt.object)
	case "get":
		s.serveGet(w, r, rt.object, rt.id)
	case "create":
		s.serveCreate(w, r, rt.object)
	case "update":
		s.serveUpdate(w, r, rt.object, rt.id)
	case "archive":
		s.serveArchive(w, rt.object, rt.id)
	case "search":
		s.serveSearch(w, r, rt.object)
	case "batch/read":
		s.serveBatchRead(w, r, rt.object)
	case "batch/archive":
		s.serveBatchArchive(w, r, rt.object)
	case "merge":
		s.serveMerge(w, r, rt.object)
	case "associations/batch/read":
		s.serveAssocRead(w, r, rt.object, rt.id)
	case "associations/batch/create":
		s.serveAssocCreate(w, r, rt.object, rt.id)
	case "associations/batch/archive":
		s.serveAssocArchive(w, r, rt.object, rt.id)
	default:
		s.serveBatchWrite(w, r, rt.object, strings.TrimPrefix(rt.endpoint, "batch/"))
	}
}

// admit checks the bearer token, the daily limit and the rate limits.
func (s *Server) admit(w http.ResponseWriter, r *http.Request, endpoint string) bool {
	auth := r.Header.Get("Authorization")
	tok, ok := strings.CutPrefix(auth, "Bearer ")
	s.mu.Lock()
	defer s.mu.Unlock()
	if !ok || tok == "" {
		writeError(w, http.StatusUnauthorized, "INVALID_AUTHENTICATION", "Authentication credentials not found.")
		return false
	}
	if tok != s.cfg.Token {
		exp, issued := s.tokens[tok]
		if !issued {
			writeError(w, http.StatusUnauthorized, "INVALID_AUTHENTICATION", "Authentication credentials not found or invalid.")
			return false
		}
		if !s.now().Before(exp) {
			writeError(w, http.StatusUnauthorized, "EXPIRED_AUTHENTICATION", "The OAuth token used to make this call expired.")
			return false
		}
	}
	if s.cfg.DailyLimit > 0 && s.daily >= s.cfg.DailyLimit {
		writeRateLimit(w, "DAILY", "You have reached your daily limit.", 0)
		return false
	}
	now := time.Now()
	if endpoint == "search" {
		if s.cfg.SearchRateLimit > 0 {
			s.searches = prune(s.searches, now.Add(-s.cfg.SearchWindow))
			if len(s.searches) >= s.cfg.SearchRateLimit {
				s.rateLimited++
				writeRateLimit(w, "SECONDLY", "You have reached your secondly limit.", 0)
				return false
			}
			s.searches = append(s.searches, now)
		}
	} else if s.cfg.RateLimit > 0 {
		s.rolling = prune(s.rolling, now.Add(-s.cfg.RateWindow))
		if len(s.rolling) >= s.cfg.RateLimit {
			s.rateLimited++
			writeRateLimit(w, "TEN_SECONDLY_ROLLING", "You have reached your ten_secondly_rolling limit.", 0)
			return false
		}
		s.rolling = append(s.rolling, now)
		h := w.Header()
		h.Set("X-HubSpot-RateLimit-Max", strconv.Itoa(s.cfg.RateLimit))
		h.Set("X-HubSpot-RateLimit-Remaining", strconv.Itoa(s.cfg.RateLimit-len(s.rolling)))
		h.Set("X-HubSpot-RateLimit-Interval-Milliseconds", strconv.FormatInt(s.cfg.RateWindow.Milliseconds(), 10))
	}
	s.daily++
	if s.cfg.DailyLimit > 0 && endpoint != "search" {
		w.Header().Set("X-HubSpot-RateLimit-Daily", strconv.Itoa(s.cfg.DailyLimit))
		w.Header().Set("X-HubSpot-RateLimit-Daily-Remaining", strconv.Itoa(s.cfg.DailyLimit-s.daily))
	}
	return true
}

func prune(ts []time.Time, after time.Time) []time.Time {
	i := sort.Search(len(ts), func(i int) bool { return ts[i].After(after) })
	return append(ts[:0], ts[i:]...)
}

func writeRateLimit(w http.ResponseWriter, policy, message string, retryAfter time.Duration) {
	if retryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int((retryAfter+time.Second-1)/time.Second)))
	}
	writeJSON(w, http.StatusTooManyRequests, map[string]any{
		"status":        "error",
		"message":       message,
		"errorType":     "RATE_LIMIT",
		"correlationId": correlationID(),
		"policyName":    policy,
		"groupName":     "hubspottest",
	})
}
