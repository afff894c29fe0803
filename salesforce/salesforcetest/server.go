// Package salesforcetest serves a fake Salesforce REST API for tests and
// local runs, that jsforce, crmsync's client and other tools work against.
// It holds Account, Contact, Lead, Opportunity and OpportunityContactRole
// records in memory.
//
// # Starting it
//
// Like net/http/httptest: New(Config) returns a Server not yet listening;
// Start listens on Config.Addr (127.0.0.1 and a free port by default) and
// serves in the background until Close, with no test needed; NewServer(t,
// options...) is the test helper that starts it and closes it when the
// test ends. Handler, Serve and ListenAndServe serve it anywhere else.
// BaseURL (instance and login URL) and AccessToken give what a client
// needs; SeedContacts, Seed, SeedAccounts, SeedLeads, SeedRecords,
// SeedStorm, AddContactRole, ConvertLead, Edit, EditMany, Touch, Delete,
// Undelete and Merge change the data as users would; CallCounts and
// CallCount count the calls. The HubSpot fake (hubspottest) has the same
// shape and names.
//
// # Objects
//
// Account (Name required), Contact (LastName required; AccountId refers to
// an Account), Lead (LastName and Company required; Status a restricted
// picklist, LeadStatuses), Opportunity (Name, StageName from
// OpportunityStages and CloseDate, a date, required; AccountId; IsClosed
// and IsWon follow the stage) and OpportunityContactRole (OpportunityId,
// not updatable, and ContactId; Role, IsPrimary). Account, Contact, Lead
// and Opportunity have the external-id field (Config.ExternalIDField);
// Config.Fields adds fields to Contact only. A reference must name a live
// record of its object (MALFORMED_ID, FIELD_INTEGRITY_EXCEPTION,
// INVALID_CROSS_REFERENCE_KEY or ENTITY_IS_DELETED per record, as
// Salesforce); a 15-character id is stored in its 18-character form. A
// query may nest the child relationships OpportunityContactRoles (of
// Opportunity and Contact), Contacts and Opportunities (of Account) as
// subqueries; a parent without children gets null, as in Salesforce.
//
// Deleting an Account deletes its Contacts and Opportunities, and deleting
// a Contact or an Opportunity its contact roles, each with the parent's
// stamp; undeleting the parent restores them. A contact role deleted on
// its own is gone (queryAll does not list it). Merge takes Leads,
// Contacts or Accounts and re-parents the losers' children without
// stamping them. ConvertLead converts a Lead as Salesforce does (a new or
// given Account and Contact, an optional Opportunity with the contact as
// primary role, the lead stamped IsConverted with its Converted*Id fields
// and read-only afterwards: CANNOT_UPDATE_CONVERTED_LEAD). Adding or
// removing a contact role does not stamp its Opportunity.
//
// # What it serves
//
// OAuth token grants (JWT bearer, client credentials, refresh token), the
// versions list, SOQL query and queryAll with query locators, sObject
// Collections create, update (records of several objects in one call),
// upsert (per-record results, allOrNone),
// retrieve (POST /composite/sobjects/{type} with ids and fields, or GET;
// null for an id without a live record) and delete (DELETE
// /composite/sobjects?ids=...&allOrNone=, to the recycle bin), single
// records of Contact only (POST /sobjects/Contact, GET, PATCH and DELETE
// /sobjects/Contact/{id}, upsert by PATCH
// /sobjects/Contact/{field}/{value}), describeGlobal, describe,
// getUpdated, getDeleted and limits. API versions 31.0 to
// 66.0 are served (Config.MinAPIVersion, MaxAPIVersion; sObject
// Collections from 42.0, their upsert from 46.0); any other version gets
// Salesforce's 404 NOT_FOUND.
//
// # Change Data Capture
//
// StartPubSub serves the Pub/Sub API (gRPC: GetTopic, GetSchema,
// Subscribe with replay ids and flow control) on a second local listener:
// every write, by the API or the helpers, publishes Avro change events on
// /data/ChangeEvents and /data/<Object>ChangeEvent; EmitGap, EmitOverflow,
// EmitUnreadable, PurgeEvents and BreakSubscriptions make the unkind cases.
//
// # Limits, as Salesforce enforces them
//
// A bearer token (401 INVALID_SESSION_ID once ExpireSessions ran); the
// org's daily API allocation, 15,000 calls by default, reported in the
// Sforce-Limit-Info header of every response and refused past it with 403
// REQUEST_LIMIT_EXCEEDED (SetAPIUsage, APIUsage); at most 25 requests in
// flight (403 REQUEST_LIMIT_EXCEEDED, Config.MaxInFlight); 200 records
// per collections call and 2,000 ids per retrieve; query pages of 2,000
// records, less with Sforce-Query-Options: batchSize=200 to 2000 and at
// most Config.QueryPageSize (1 to 2,000); required fields, restricted
// picklists, field types and lengths, and a unique external-id field as
// per-record errors; millisecond stamps from a controllable clock
// (Config.Now), one stamp for all the records of one call; LastModifiedById
// is the token's user (Config.UserID, also served by
// /services/oauth2/userinfo) for records written through the API and
// PersonUserID for those the helpers seed, edit or merge, as a person.
//
// Rules the real API enforces are always on: describe is filtered by
// field-level security; a SOQL query naming a field that does not exist or
// is hidden fails as a whole with 400 INVALID_FIELD and Salesforce's message
// ("No such column 'X' on entity 'Contact'..." after the query line and
// "ERROR at Row:1:Column:N"); a collections record naming a hidden field
// fails alone with INVALID_FIELD; the records of one collections call share
// one stamp; a merge loser stays in the recycle bin with MasterRecordId set;
// getDeleted covers 15 days at most, and less after PurgeDeletedLog;
// ExpireQueryLocators makes open locators fail with INVALID_QUERY_LOCATOR.
//
// # Faults, on demand
//
// Inject queues a Fault for the next calls of an endpoint: any status
// with Salesforce's error body, a body of your own, an HTML page,
// Retry-After, latency, hanging, or a reset connection. FailRecords makes
// writes of given records fail with a per-record status code.
//
// # Hostile behaviours, each switched on by the test
//
//   - a field hidden or deleted, then restored: HideField and RestoreField;
//   - clock skew: Config.ClockSkew offsets the record stamps (±);
//   - equal stamps: Config.StampGranularity coarsens them, and EditMany
//     edits many records with one stamp, as a bulk update does;
//   - batch-level refusals: Inject a Fault on "create", "update" or
//     "upsert" (Status 400 with an error array in Body, 413 with ErrorCode
//     REQUEST_ENTITY_TOO_LARGE, 500), or Config.RefuseBatches for random
//     ones;
//   - merges: Merge(master, losers...) as SOAP merge does;
//   - Hostile(seed): the random ones at once (skew, coarse stamps, refused
//     batches), deterministic from the seed, for a model test.
package salesforcetest

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/crmsync/crmsync"
)

// Config configures a Server.
type Config struct {
	// Token is an access token valid from the start (until ExpireSessions);
	// "" means "fake-salesforce-token".
	Token string
	// ClientID and ClientSecret are the app's credentials for the client
	// credentials and refresh token grants and the JWT iss; "" means
	// "fake-client-id" and "fake-client-secret".
	ClientID     string
	ClientSecret string
	// RefreshToken is the refresh token accepted; "" means "fake-refresh-token".
	RefreshToken string
	// UserID is the user every token acts as: the LastModifiedById of the
	// records written through the API and the user_id of
	// /services/oauth2/userinfo; "" means DefaultUserID.
	UserID string
	// Username is the JWT sub accepted; "" accepts any.
	Username string
	// JWTPublicKey verifies JWT signatures; nil checks the claims only.
	JWTPublicKey *rsa.PublicKey
	// ExternalIDField is the name of Contact's unique external-id field;
	// "" means "HubSpot_Id__c".
	ExternalIDField string
	// DailyLimit is the org's daily API allocation; zero means 15000.
	DailyLimit int64
	// MaxInFlight caps requests in flight (past it: 403 REQUEST_LIMIT_EXCEEDED
	// ConcurrentPerOrgLongTxn); zero means 25.
	MaxInFlight int
	// Now is the clock for modification stamps and token expiry; nil means time.Now.
	Now func() time.Time
	// Contacts is how many generated contacts (SeedContacts) to create at
	// start.
	Contacts int
	// Seed is how many generated contacts to create at start.
	//
	// Deprecated: use Contacts (setting both to different values is an
	// error).
	Seed int
	// MinAPIVersion and MaxAPIVersion bound the REST API versions served
	// ("50.0" or "v50.0"); a path with another version gets Salesforce's
	// 404 NOT_FOUND, as a retired or future version does. "" means 31.0
	// (the oldest Salesforce still serves) and 66.0.
	MinAPIVersion, MaxAPIVersion string
	// QueryPageSize caps the records of one query page, from 1 to 2000;
	// zero means 2000, Salesforce's default. The Sforce-Query-Options
	// header (batchSize=200 to 2000) asks for less within it. A small one
	// exercises query locators on small data.
	QueryPageSize int
	// SubqueryPageSize caps the rows of a child subquery result nested in
	// a parent record (SELECT Id, (SELECT ContactId FROM
	// OpportunityContactRoles) FROM Opportunity); the rest follows from
	// its nextRecordsUrl, as Salesforce pages large child results. Zero
	// means no cap.
	SubqueryPageSize int
	// Addr is the address Start listens on; "" means 127.0.0.1:0 (a free
	// port).
	Addr string
	// Fields adds custom fields to Contact (an org's own fields), after the
	// built-in ones; a name that is already a field is an error.
	Fields []Field

	// ClockSkew offsets the org's clock for record stamps (CreatedDate,
	// LastModifiedDate, SystemModstamp, deletion times) from Now: positive
	// runs ahead of the sync host, negative behind. Tokens, the
	// deleted-records window and getDeleted's bounds keep Now.
	ClockSkew time.Duration
	// StampGranularity truncates record stamps; zero means a millisecond,
	// as Salesforce. A coarser one makes many records share one stamp, as
	// bulk updates do.
	StampGranularity time.Duration
	// RefuseBatches is the chance, from 0 to 1, that a collections call
	// (create, update, upsert) is refused as a whole with a status drawn
	// from RefuseStatuses, before any record is written. Draws are
	// deterministic: they depend on RandSeed, the request body and how
	// often that body was sent before, not on the order of concurrent
	// requests.
	RefuseBatches float64
	// RefuseStatuses are the statuses of refused batches: 400
	// (JSON_PARSER_ERROR), 413 (REQUEST_ENTITY_TOO_LARGE), 500
	// (UNKNOWN_EXCEPTION) or 503 (SERVER_UNAVAILABLE); nil means 400, 413
	// and 500.
	RefuseStatuses []int
	// RandSeed seeds the random behaviours (RefuseBatches).
	RandSeed uint64
}

// MaxSkew is the largest clock skew Hostile draws (either way).
const MaxSkew = 2 * time.Minute

// Hostile returns an option that turns on the fake's random hostile
// behaviours, drawn deterministically from seed: a clock skew within
// ±MaxSkew, record stamps truncated to the second (many records share one),
// and one collections call in 20 refused as a whole (400, 413 or 500).
// Hidden fields (HideField) and merges (Merge) are the test's to make.
func Hostile(seed uint64) Option {
	return func(c *Config) {
		r := mrand.New(mrand.NewPCG(seed, 0x5eed))
		c.ClockSkew = time.Duration(r.Int64N(int64(2*MaxSkew/time.Millisecond)+1))*time.Millisecond - MaxSkew
		c.StampGranularity = time.Second
		c.RefuseBatches = 0.05
		c.RandSeed = seed
	}
}

// Field is a custom Contact field the fake serves, writes and describes.
type Field struct {
	// Name is the field's API name, ending in __c, or a standard field such
	// as OwnerId.
	Name string
	// Type is the Salesforce type: string, email, phone, textarea, picklist,
	// multipicklist, boolean, double, date, datetime or reference.
	Type string
	// Picklist lists a picklist's values; Restricted rejects others.
	Picklist   []string
	Restricted bool
	// Unique makes the field unique (an external id when it ends in __c).
	Unique bool
}

// Fault is a failure injected into the next requests of an endpoint.
type Fault struct {
	// Endpoint is the endpoint name (see Server.Calls); "" means any endpoint
	// but "token".
	Endpoint string
	// Times is how many requests it affects; zero means 1.
	Times int
	// Status answers with this HTTP status and a Salesforce error body
	// (SERVER_UNAVAILABLE for 503, UNKNOWN_EXCEPTION otherwise), or Body.
	Status int
	// Body replaces the error body (with Status; Status 200 sends a broken success).
	Body string
	// ErrorCode sets the errorCode of the error body (with Status), as
	// REQUEST_ENTITY_TOO_LARGE with 413; "" means the default for Status.
	ErrorCode string
	// HTML sends an HTML error page instead of JSON (with Status).
	HTML bool
	// RetryAfter sets a Retry-After header (whole seconds) on a Status answer.
	RetryAfter time.Duration
	// Latency delays the request before it is handled normally.
	Latency time.Duration
	// Hang never answers: the handler returns when the client gives up or the
	// server closes.
	Hang bool
	// Reset closes the connection without an answer.
	Reset bool
}

type recordFault struct {
	code, message string
	times         int // remaining; 0 means unlimited
}

type locator struct {
	rows  []map[string]any
	batch int
}

// Server is a fake Salesforce org. It is safe for concurrent use.
type Server struct {
	// URL is the base URL (also the login URL), set by Start and
	// NewServer; Serve and ListenAndServe leave it to the caller. BaseURL
	// reads it safely while the server runs.
	URL string

	cfg Config
	now func() time.Time
	// hs is the HTTP server Start runs; nil until then.
	hs *http.Server
	// minVersion and maxVersion bound the API versions served (major
	// numbers).
	minVersion, maxVersion int
	// fields and byName are Contact's (contact.fields, contact.byName).
	fields []fieldDef
	byName map[string]fieldDef // lower-case name → def
	// objects holds the sObjects by lower-case name; objectList in the
	// order describeGlobal lists them.
	objects    map[string]*sobject
	objectList []*sobject
	contact    *sobject
	done       chan struct{}
	close      sync.Once

	mu       sync.Mutex
	records  map[string]*record
	order    []string
	seq      int
	tokens   map[string]bool
	used     int64
	inflight int
	// refusedInFlight counts requests refused for the concurrency cap.
	refusedInFlight int
	locators        map[string]*locator
	locSeq          int
	calls           map[string]int
	faults          []*Fault
	recordFaults    map[string]*recordFault
	logStart        time.Time
	locExpired      bool
	// hidden holds the lower-case "object.field" names of fields hidden
	// from the integration user (HideField, HideObjectField).
	hidden map[string]bool
	// sent counts the collections request bodies seen, by hash, for
	// deterministic refusals.
	sent map[uint64]int
	// bus is the Pub/Sub API (pubsub.go).
	bus eventBus
}

// New returns a Server for cfg; it reports an error naming an invalid field.
func New(cfg Config) (*Server, error) {
	if cfg.DailyLimit < 0 || cfg.MaxInFlight < 0 || cfg.Seed < 0 || cfg.StampGranularity < 0 {
		return nil, errors.New("salesforcetest: Config: DailyLimit, MaxInFlight, Seed and StampGranularity must not be negative")
	}
	if cfg.RefuseBatches < 0 || cfg.RefuseBatches > 1 {
		return nil, errors.New("salesforcetest: Config.RefuseBatches: must be in [0, 1]")
	}
	for _, st := range cfg.RefuseStatuses {
		if _, ok := refusals[st]; !ok {
			return nil, fmt.Errorf("salesforcetest: Config.RefuseStatuses: %d is not one of 400, 413, 500, 503", st)
		}
	}
	if cfg.Seed != 0 && cfg.Contacts != 0 && cfg.Seed != cfg.Contacts {
		return nil, errors.New("salesforcetest: Config.Seed and Config.Contacts differ (Seed is the old name of Contacts)")
	}
	if cfg.Contacts == 0 {
		cfg.Contacts = cfg.Seed
	}
	if cfg.Contacts < 0 {
		return nil, errors.New("salesforcetest: Config.Contacts must not be negative")
	}
	if cfg.SubqueryPageSize < 0 {
		return nil, errors.New("salesforcetest: Config.SubqueryPageSize must not be negative")
	}
	if cfg.QueryPageSize < 0 || cfg.QueryPageSize > 2000 {
		return nil, fmt.Errorf("salesforcetest: Config.QueryPageSize: %d is not in [1, 2000]", cfg.QueryPageSize)
	}
	if cfg.QueryPageSize == 0 {
		cfg.QueryPageSize = 2000
	}
	minV, err := parseVersion("MinAPIVersion", cfg.MinAPIVersion, 31)
	if err != nil {
		return nil, err
	}
	maxV, err := parseVersion("MaxAPIVersion", cfg.MaxAPIVersion, 66)
	if err != nil {
		return nil, err
	}
	if minV > maxV {
		return nil, fmt.Errorf("salesforcetest: Config.MinAPIVersion (%d.0) is above MaxAPIVersion (%d.0)", minV, maxV)
	}
	if cfg.Token == "" {
		cfg.Token = DefaultToken
	}
	if cfg.UserID == "" {
		cfg.UserID = DefaultUserID
	}
	if cfg.ClientID == "" {
		cfg.ClientID = DefaultClientID
	}
	if cfg.ClientSecret == "" {
		cfg.ClientSecret = DefaultClientSecret
	}
	if cfg.RefreshToken == "" {
		cfg.RefreshToken = DefaultRefreshToken
	}
	if cfg.ExternalIDField == "" {
		cfg.ExternalIDField = "HubSpot_Id__c"
	}
	if !regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_]*__c$`).MatchString(cfg.ExternalIDField) {
		return nil, errors.New("salesforcetest: Config.ExternalIDField: must be a custom field name ending in __c")
	}
	if cfg.DailyLimit == 0 {
		cfg.DailyLimit = 15000
	}
	if cfg.MaxInFlight == 0 {
		cfg.MaxInFlight = 25
	}
	s := &Server{cfg: cfg, now: cfg.Now, minVersion: minV, maxVersion: maxV, done: make(chan struct{}),
		records: map[string]*record{}, tokens: map[string]bool{cfg.Token: true},
		locators: map[string]*locator{}, calls: map[string]int{}, recordFaults: map[string]*recordFault{},
		hidden: map[string]bool{}, sent: map[uint64]int{}}
	if s.now == nil {
		s.now = time.Now
	}
	s.contact = newObject(objContact, "Contacts", "003", contactFields(cfg.ExternalIDField), "LastName")
	s.contact.mergeable = true
	for _, f := range cfg.Fields {
		if !regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_]*$`).MatchString(f.Name) {
			return nil, fmt.Errorf("salesforcetest: Config.Fields: bad field name %q", f.Name)
		}
		if _, dup := s.contact.byName[strings.ToLower(f.Name)]; dup {
			return nil, fmt.Errorf("salesforcetest: Config.Fields: %s is already a Contact field", f.Name)
		}
		fd := fieldDef{Name: f.Name, Type: f.Type, Length: 255, Nillable: true, Createable: true, Updateable: true,
			Custom: strings.HasSuffix(f.Name, "__c"), Picklist: f.Picklist, Restricted: f.Restricted, Unique: f.Unique,
			ExternalID: f.Unique && strings.HasSuffix(f.Name, "__c")}
		s.contact.addField(fd)
	}
	s.fields, s.byName = s.contact.fields, s.contact.byName
	account := newObject(objAccount, "Accounts", "001", accountFields(cfg.ExternalIDField), "Name")
	account.mergeable = true
	lead := newObject(objLead, "Leads", "00Q", leadFields(cfg.ExternalIDField), "LastName", "Company")
	lead.mergeable = true
	opp := newObject(objOpportunity, "Opportunities", "006", opportunityFields(cfg.ExternalIDField), "Name", "StageName", "CloseDate")
	role := newObject(objContactRole, "OpportunityContactRoles", "00K", contactRoleFields(), "OpportunityId", "ContactId")
	account.children["contacts"] = childRel{objContact, "AccountId"}
	account.children["opportunities"] = childRel{objOpportunity, "AccountId"}
	opp.children["opportunitycontactroles"] = childRel{objContactRole, "OpportunityId"}
	s.contact.children["opportunitycontactroles"] = childRel{objContactRole, "ContactId"}
	s.objectList = []*sobject{account, s.contact, lead, opp, role}
	s.objects = map[string]*sobject{}
	for _, o := range s.objectList {
		s.objects[strings.ToLower(o.name)] = o
		o.uniq = map[string]map[string][]*record{}
		for _, fd := range o.fields {
			if fd.Unique || fd.ExternalID {
				o.uniq[fd.Name] = map[string][]*record{}
			}
		}
	}
	s.SeedContacts(cfg.Contacts)
	return s, nil
}

// NewServer is the test helper: it starts a Server (New, then Start) and
// closes it when the test ends. Options change the Config; an invalid one
// fails the test.
func NewServer(t testing.TB, opts ...Option) *Server {
	t.Helper()
	var cfg Config
	for _, o := range opts {
		o(&cfg)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// ListenAndServe serves the fake on addr (such as "127.0.0.1:8082") until ctx
// ends. Set s.URL first if tests read it; token responses take instance_url
// from the request's Host either way.
func (s *Server) ListenAndServe(ctx context.Context, addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("salesforcetest: listen: %w", err)
	}
	return s.Serve(ctx, ln)
}

// Serve serves the fake on ln until ctx ends, then closes ln.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	hs := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	select {
	case <-ctx.Done():
		s.Close()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = hs.Shutdown(sctx)
		return nil
	case err := <-errc:
		return err
	}
}

// Handler returns the fake's HTTP handler.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /services/oauth2/token", s.wrap("token", false, s.handleToken))
	mux.HandleFunc("GET /services/oauth2/userinfo", s.wrap("userinfo", false, s.handleUserInfo))
	mux.HandleFunc("GET /services/data/{$}", s.wrap("versions", false, s.handleVersions))
	mux.HandleFunc("GET /services/data", s.wrap("versions", false, s.handleVersions))
	d := "/services/data/{version}"
	mux.HandleFunc("GET "+d+"/query", s.wrap("query", true, func(w http.ResponseWriter, r *http.Request) { s.handleQuery(w, r, false) }))
	mux.HandleFunc("GET "+d+"/queryAll", s.wrap("queryAll", true, func(w http.ResponseWriter, r *http.Request) { s.handleQuery(w, r, true) }))
	mux.HandleFunc("GET "+d+"/query/{$}", s.wrap("query", true, func(w http.ResponseWriter, r *http.Request) { s.handleQuery(w, r, false) }))
	mux.HandleFunc("GET "+d+"/queryAll/{$}", s.wrap("queryAll", true, func(w http.ResponseWriter, r *http.Request) { s.handleQuery(w, r, true) }))
	mux.HandleFunc("GET "+d+"/query/{locator}", s.wrap("queryMore", true, s.handleQueryMore))
	mux.HandleFunc("GET "+d+"/queryAll/{locator}", s.wrap("queryMore", true, s.handleQueryMore))
	mux.HandleFunc("POST "+d+"/composite/sobjects", s.wrap("create", true, func(w http.ResponseWriter, r *http.Request) { s.handleCollection(w, r, "create", "") }))
	mux.HandleFunc("PATCH "+d+"/composite/sobjects", s.wrap("update", true, func(w http.ResponseWriter, r *http.Request) { s.handleCollection(w, r, "update", "") }))
	mux.HandleFunc("PATCH "+d+"/composite/sobjects/{sobject}/{field}", s.wrap("upsert", true, func(w http.ResponseWriter, r *http.Request) {
		if s.objectOr404(w, r.PathValue("sobject")) == nil {
			return
		}
		s.handleCollection(w, r, "upsert", r.PathValue("field"))
	}))
	mux.HandleFunc("POST "+d+"/composite/sobjects/{sobject}", s.wrap("retrieveMany", true, s.handleRetrieveMany))
	mux.HandleFunc("GET "+d+"/composite/sobjects/{sobject}", s.wrap("retrieveMany", true, s.handleRetrieveMany))
	mux.HandleFunc("DELETE "+d+"/composite/sobjects", s.wrap("delete", true, s.handleDeleteMany))
	mux.HandleFunc("GET "+d+"/sobjects", s.wrap("describeGlobal", true, s.handleGlobal))
	mux.HandleFunc("GET "+d+"/sobjects/{$}", s.wrap("describeGlobal", true, s.handleGlobal))
	mux.HandleFunc("GET "+d+"/sobjects/{sobject}/updated/{$}", s.wrap("updated", true, s.handleUpdated))
	mux.HandleFunc("GET "+d+"/sobjects/{sobject}/updated", s.wrap("updated", true, s.handleUpdated))
	mux.HandleFunc("GET "+d+"/sobjects/{sobject}/describe", s.wrap("describe", true, s.handleDescribe))
	mux.HandleFunc("GET "+d+"/sobjects/{sobject}/deleted/{$}", s.wrap("deleted", true, s.handleDeleted))
	mux.HandleFunc("GET "+d+"/sobjects/{sobject}/deleted", s.wrap("deleted", true, s.handleDeleted))
	mux.HandleFunc("GET "+d+"/sobjects/{sobject}/{id}", s.wrap("retrieve", true, s.handleRetrieve))
	mux.HandleFunc("POST "+d+"/sobjects/{sobject}", s.wrap("createOne", true, s.handleCreateOne))
	mux.HandleFunc("PATCH "+d+"/sobjects/{sobject}/{id}", s.wrap("updateOne", true, s.handleUpdateOne))
	mux.HandleFunc("DELETE "+d+"/sobjects/{sobject}/{id}", s.wrap("deleteOne", true, s.handleDeleteOne))
	mux.HandleFunc("PATCH "+d+"/sobjects/{sobject}/{field}/{value}", s.wrap("upsertOne", true, s.handleUpsertOne))
	mux.HandleFunc("GET "+d+"/limits", s.wrap("limits", true, s.handleLimits))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "NOT_FOUND", "The requested resource does not exist")
	})
	return mux
}

var versionRe = regexp.MustCompile(`^v?([0-9]{2,3})\.0$`)

// parseVersion reads a Config API version ("50.0" or "v50.0"); "" means def.
func parseVersion(field, v string, def int) (int, error) {
	if v == "" {
		return def, nil
	}
	m := versionRe.FindStringSubmatch(v)
	if m == nil {
		return 0, fmt.Errorf("salesforcetest: Config.%s: %q is not like \"66.0\"", field, v)
	}
	n, _ := strconv.Atoi(m[1])
	return n, nil
}

// sinceVersion is the first API version of endpoints newer than the
// fake's range can start at: sObject Collections came with 42.0, their
// upsert with 46.0.
var sinceVersion = map[string]int{"create": 42, "update": 42, "delete": 42, "retrieveMany": 42, "upsert": 46}

// versionOK reports whether the path's version ("v66.0") is served for
// the endpoint.
func (s *Server) versionOK(endpoint, v string) bool {
	if !strings.HasPrefix(v, "v") {
		return false
	}
	m := versionRe.FindStringSubmatch(v)
	if m == nil {
		return false
	}
	n, _ := strconv.Atoi(m[1])
	return n >= s.minVersion && n <= s.maxVersion && n >= sinceVersion[endpoint]
}

// wrap counts the call, applies faults, the concurrency cap, the bearer
// token, and (for api calls) the daily allocation and the Sforce-Limit-Info header.
func (s *Server) wrap(name string, api bool, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.calls[name]++
		f := s.takeFault(name)
		if s.inflight >= s.cfg.MaxInFlight {
			s.refusedInFlight++
			s.mu.Unlock()
			writeError(w, http.StatusForbidden, "REQUEST_LIMIT_EXCEEDED", "ConcurrentPerOrgLongTxn Limit exceeded.")
			return
		}
		s.inflight++
		s.mu.Unlock()
		defer func() {
			s.mu.Lock()
			s.inflight--
			s.mu.Unlock()
		}()
		if f != nil && !s.applyFault(w, r, f) {
			return
		}
		if !api {
			h(w, r)
			return
		}
		s.mu.Lock()
		w.Header().Set("Sforce-Limit-Info", fmt.Sprintf("api-usage=%d/%d", s.used, s.cfg.DailyLimit))
		s.mu.Unlock()
		if !s.versionOK(name, r.PathValue("version")) {
			writeError(w, http.StatusNotFound, "NOT_FOUND", "The requested resource does not exist")
			return
		}
		tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		s.mu.Lock()
		valid := ok && s.tokens[tok]
		s.mu.Unlock()
		if !valid {
			writeError(w, http.StatusUnauthorized, "INVALID_SESSION_ID", "Session expired or invalid")
			return
		}
		s.mu.Lock()
		if s.used >= s.cfg.DailyLimit {
			used := s.used
			s.mu.Unlock()
			w.Header().Set("Sforce-Limit-Info", fmt.Sprintf("api-usage=%d/%d", used, s.cfg.DailyLimit))
			writeError(w, http.StatusForbidden, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.")
			return
		}
		s.used++
		used := s.used
		s.mu.Unlock()
		w.Header().Set("Sforce-Limit-Info", fmt.Sprintf("api-usage=%d/%d", used, s.cfg.DailyLimit))
		h(w, r)
	}
}

// takeFault pops the first fault matching endpoint; s.mu is held.
func (s *Server) takeFault(endpoint string) *Fault {
	for i, f := range s.faults {
		if f.Endpoint == endpoint || (f.Endpoint == "" && endpoint != "token") {
			c := *f
			f.Times--
			if f.Times <= 0 {
				s.faults = append(s.faults[:i:i], s.faults[i+1:]...)
			}
			return &c
		}
	}
	return nil
}

// applyFault carries out f; it reports whether to go on handling normally.
func (s *Server) applyFault(w http.ResponseWriter, r *http.Request, f *Fault) bool {
	if f.Latency > 0 {
		t := time.NewTimer(f.Latency)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return false
		case <-s.done:
			t.Stop()
			return false
		}
	}
	switch {
	case f.Hang:
		select {
		case <-r.Context().Done():
		case <-s.done:
		}
		return false
	case f.Reset:
		panic(http.ErrAbortHandler)
	case f.Status != 0:
		if f.RetryAfter > 0 {
			w.Header().Set("Retry-After", strconv.Itoa(int(f.RetryAfter/time.Second)))
		}
		switch {
		case f.Body != "":
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(f.Status)
			_, _ = w.Write([]byte(f.Body))
		case f.HTML:
			w.Header().Set("Content-Type", "text/html")
			w.WriteHeader(f.Status)
			_, _ = w.Write([]byte("<html><head><title>Service Unavailable</title></head><body>Please try again later.</body></html>"))
		case f.ErrorCode != "":
			writeError(w, f.Status, f.ErrorCode, "The request was refused")
		case f.Status == http.StatusServiceUnavailable:
			writeError(w, f.Status, "SERVER_UNAVAILABLE", "Server is temporarily unavailable")
		default:
			writeError(w, f.Status, "UNKNOWN_EXCEPTION", "An unexpected error occurred")
		}
		return false
	}
	return true
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json;charset=UTF-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, code, msg string, fields ...string) {
	e := map[string]any{"message": msg, "errorCode": code}
	if fields != nil {
		e["fields"] = fields
	}
	writeJSON(w, status, []any{e})
}

// Inject adds a fault; faults apply in the order added.
func (s *Server) Inject(f Fault) {
	if f.Times <= 0 {
		f.Times = 1
	}
	s.mu.Lock()
	s.faults = append(s.faults, &f)
	s.mu.Unlock()
}

// FailRecords makes writes to the records matching any of keys (an id, an
// email or an external id, compared without case) fail with statusCode and
// message, times times each (zero: until ClearFaults).
func (s *Server) FailRecords(statusCode, message string, times int, keys ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, k := range keys {
		s.recordFaults[strings.ToLower(k)] = &recordFault{code: statusCode, message: message, times: times}
	}
}

// ClearFaults drops every pending fault and record failure.
func (s *Server) ClearFaults() {
	s.mu.Lock()
	s.faults = nil
	s.recordFaults = map[string]*recordFault{}
	s.locExpired = false
	s.mu.Unlock()
}

// ExpireSessions invalidates every access token issued so far, Config.Token
// included: the next API call gets 401 INVALID_SESSION_ID.
func (s *Server) ExpireSessions() {
	s.mu.Lock()
	s.tokens = map[string]bool{}
	s.mu.Unlock()
}

// ExpireQueryLocators makes every open query locator invalid: following a
// nextRecordsUrl gets 400 INVALID_QUERY_LOCATOR.
func (s *Server) ExpireQueryLocators() {
	s.mu.Lock()
	s.locators = map[string]*locator{}
	s.mu.Unlock()
}

// SetAPIUsage sets the org's daily API usage (SetAPIUsage(DailyLimit) exhausts it).
func (s *Server) SetAPIUsage(used int64) {
	s.mu.Lock()
	s.used = used
	s.mu.Unlock()
}

// APIUsage returns the org's daily API usage and allocation.
func (s *Server) APIUsage() (used, max int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.used, s.cfg.DailyLimit
}

// PurgeDeletedLog makes the delete log start at t, as when Salesforce has
// purged older entries: getDeleted reports it as earliestDateAvailable.
func (s *Server) PurgeDeletedLog(t time.Time) {
	s.mu.Lock()
	s.logStart = t
	s.mu.Unlock()
}

// Calls returns the requests received per endpoint, as CallCounts (the
// name both fakes share) does.
func (s *Server) Calls() map[string]int { return s.CallCounts() }

// Token returns Config.Token (for a client with a static access token),
// as AccessToken (the name both fakes share) does.
func (s *Server) Token() string { return s.cfg.Token }

// ExternalIDField returns the name of the unique external-id field.
func (s *Server) ExternalIDField() string { return s.cfg.ExternalIDField }

// stamp returns the org's current time for record stamps: Now plus
// ClockSkew, at millisecond precision or StampGranularity.
func (s *Server) stamp() time.Time {
	g := s.cfg.StampGranularity
	if g <= 0 {
		g = time.Millisecond
	}
	return s.now().Add(s.cfg.ClockSkew).UTC().Truncate(g)
}

// Seed creates contacts with the given fields (canonical names; values
// string, float64, bool, nil or time.Time) and returns their ids. It panics on
// an unknown field, which is a bug in the test.
func (s *Server) Seed(fields ...crmsync.Fields) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.seedLocked(s.contact, s.stamp(), fields)
}

// seedLocked creates records of o with the given fields; s.mu is held. It
// panics on an unknown or read-only field.
func (s *Server) seedLocked(o *sobject, now time.Time, fields []crmsync.Fields) []string {
	ids := make([]string, 0, len(fields))
	for _, f := range fields {
		r := s.newRecordOf(o, now)
		for k, v := range f {
			fd, ok := o.byName[strings.ToLower(k)]
			if !ok || !fd.Createable {
				panic("salesforcetest: Seed: unknown or read-only " + o.name + " field " + k)
			}
			s.setField(r, fd.Name, normalize(v))
		}
		ids = append(ids, r.id)
		s.publish(change{typ: "CREATE", recs: []*record{r}})
	}
	return ids
}

// SeedN creates n generated contacts and returns their ids, as
// SeedContacts (the name both fakes share) does.
func (s *Server) SeedN(n int) []string { return s.SeedContacts(n) }

// SeedContacts creates n generated contacts (FirstNameK, LastNameK,
// contactK@example.com) and returns their ids.
func (s *Server) SeedContacts(n int) []string {
	fs := make([]crmsync.Fields, n)
	s.mu.Lock()
	base := s.seq
	s.mu.Unlock()
	for i := range fs {
		k := base + i + 1
		fs[i] = crmsync.Fields{"FirstName": fmt.Sprintf("First%d", k), "LastName": fmt.Sprintf("Last%d", k),
			"Email": fmt.Sprintf("contact%d@example.com", k)}
	}
	return s.Seed(fs...)
}

func normalize(v any) any {
	switch x := v.(type) {
	case time.Time:
		return x.UTC().Format(dateTimeLayout)
	case int:
		return float64(x)
	case string:
		if x == "" {
			return nil
		}
	}
	return v
}

// newRecordOf adds an empty record of o stamped now, with its defaults;
// s.mu is held.
func (s *Server) newRecordOf(o *sobject, now time.Time) *record {
	s.seq++
	r := &record{id: newIDFor(o.prefix, s.seq), seq: s.seq, obj: o, fields: map[string]any{}, created: now, modified: now, stamp: now}
	switch o.name {
	case objContact:
		r.fields["DoNotCall"] = false
	case objLead:
		r.fields["Status"] = LeadStatuses[0]
		r.fields["IsConverted"] = false
	case objContactRole:
		r.fields["IsPrimary"] = false
	}
	s.indexRecord(r)
	s.records[r.id] = r
	s.order = append(s.order, r.id)
	return r
}

// Edit changes fields of a record as a user would, bumping LastModifiedDate
// and SystemModstamp, without validation.
func (s *Server) Edit(id string, fields crmsync.Fields) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.records[id]
	if !ok {
		return fmt.Errorf("salesforcetest: edit: no record %s", id)
	}
	for k, v := range fields {
		fd, ok := s.objOf(r).byName[strings.ToLower(k)]
		if !ok || !fd.Createable {
			return fmt.Errorf("salesforcetest: edit: unknown or read-only field %s", k)
		}
		s.setField(r, fd.Name, normalize(v))
	}
	r.modified = s.stamp()
	r.stamp = r.modified
	r.modifiedBy = PersonUserID
	s.publish(change{typ: "UPDATE", fields: changedNames(fields), recs: []*record{r}})
	return nil
}

// Touch bumps a record's SystemModstamp only, as a system process would.
func (s *Server) Touch(id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.records[id]
	if !ok {
		return fmt.Errorf("salesforcetest: touch: no record %s", id)
	}
	r.stamp = s.stamp()
	return nil
}

// Delete moves a record to the recycle bin (IsDeleted = true).
func (s *Server) Delete(id string) error { return s.setDeleted(id, true) }

// Undelete restores a record from the recycle bin.
func (s *Server) Undelete(id string) error { return s.setDeleted(id, false) }

func (s *Server) setDeleted(id string, del bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.records[id]
	if !ok {
		return fmt.Errorf("salesforcetest: no record %s", id)
	}
	if del {
		s.deleteLocked(r, s.stamp())
	} else {
		s.undeleteLocked(r, s.stamp())
	}
	return nil
}

// EditMany changes fields of several records at once, as a bulk update
// does: every record gets the same LastModifiedDate and SystemModstamp.
func (s *Server) EditMany(ids []string, fields crmsync.Fields) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.stamp()
	for _, id := range ids {
		r, ok := s.records[id]
		if !ok {
			return fmt.Errorf("salesforcetest: edit: no record %s", id)
		}
		for k, v := range fields {
			fd, ok := s.objOf(r).byName[strings.ToLower(k)]
			if !ok || !fd.Createable {
				return fmt.Errorf("salesforcetest: edit: unknown or read-only field %s", k)
			}
			s.setField(r, fd.Name, normalize(v))
		}
		r.modified, r.stamp, r.modifiedBy = now, now, PersonUserID
	}
	s.publish(change{typ: "UPDATE", fields: changedNames(fields), recs: s.recordsOf(ids)})
	return nil
}

// HideField hides a Contact field from the integration user, as when
// field-level security takes its read access away or an admin deletes it:
// describe omits it, a SOQL query naming it fails with 400 INVALID_FIELD
// ("No such column ..."), and a record written with it fails alone with
// INVALID_FIELD in the collections result. Values are kept; the test
// helpers (Seed, Edit, Get, All) still see the field.
func (s *Server) HideField(name string) error { return s.HideObjectField(objContact, name) }

// HideObjectField is HideField for a field of any of the fake's objects.
func (s *Server) HideObjectField(object, name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	o := s.object(object)
	if o == nil {
		return fmt.Errorf("salesforcetest: hide field: no object %s", object)
	}
	fd, ok := o.byName[strings.ToLower(name)]
	if !ok || fd.Name == "Id" || fd.Name == "SystemModstamp" || fd.Name == "IsDeleted" {
		return fmt.Errorf("salesforcetest: hide field: %s is not a field that can be hidden", name)
	}
	s.hidden[hiddenKey(o, fd.Name)] = true
	return nil
}

// RestoreField undoes HideField.
func (s *Server) RestoreField(name string) { s.RestoreObjectField(objContact, name) }

// RestoreObjectField undoes HideObjectField.
func (s *Server) RestoreObjectField(object, name string) {
	s.mu.Lock()
	if o := s.object(object); o != nil {
		delete(s.hidden, hiddenKey(o, name))
	}
	s.mu.Unlock()
}

// visible returns the field of o the integration user sees by that name.
func (s *Server) visible(o *sobject, name string) (fieldDef, bool) {
	fd, ok := o.byName[strings.ToLower(name)]
	if !ok {
		return fieldDef{}, false
	}
	s.mu.Lock()
	hidden := s.hidden[hiddenKey(o, fd.Name)]
	s.mu.Unlock()
	return fd, !hidden
}

// refusals are the error bodies of refused batches by status.
var refusals = map[int][2]string{
	http.StatusBadRequest:            {"JSON_PARSER_ERROR", "Unexpected character in the request body"},
	http.StatusRequestEntityTooLarge: {"REQUEST_ENTITY_TOO_LARGE", "The request body is too large"},
	http.StatusInternalServerError:   {"UNKNOWN_EXCEPTION", "An unexpected error occurred"},
	http.StatusServiceUnavailable:    {"SERVER_UNAVAILABLE", "Server is temporarily unavailable"},
}

// refuseBatch draws whether a collections request is refused as a whole
// (Config.RefuseBatches); s.mu is held.
func (s *Server) refuseBatch(body []byte) (status int, code, msg string) {
	if s.cfg.RefuseBatches <= 0 {
		return 0, "", ""
	}
	h := fnv.New64a()
	_, _ = h.Write(body)
	k := h.Sum64()
	n := s.sent[k]
	s.sent[k] = n + 1
	r := mrand.New(mrand.NewPCG(s.cfg.RandSeed, k^uint64(n)*0x9e3779b97f4a7c15))
	if r.Float64() >= s.cfg.RefuseBatches {
		return 0, "", ""
	}
	sts := s.cfg.RefuseStatuses
	if len(sts) == 0 {
		sts = []int{http.StatusBadRequest, http.StatusRequestEntityTooLarge, http.StatusInternalServerError}
	}
	status = sts[r.IntN(len(sts))]
	return status, refusals[status][0], refusals[status][1]
}

// toRecord renders r as a crmsync.Record with every field; s.mu is held.
func (s *Server) toRecord(r *record) crmsync.Record {
	f := crmsync.Fields{}
	for _, fd := range s.objOf(r).fields {
		f[fd.Name] = r.value(fd.Name)
	}
	return crmsync.Record{ID: r.id, Fields: f, CreatedAt: r.created, ModifiedAt: r.stamp, Archived: r.deleted, MergedInto: r.master}
}

// Get returns a record, deleted or not.
func (s *Server) Get(id string) (crmsync.Record, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.records[id]
	if !ok {
		return crmsync.Record{}, false
	}
	return s.toRecord(r), true
}

// All returns every record, deleted ones included, in creation order.
func (s *Server) All() []crmsync.Record {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]crmsync.Record, 0, len(s.order))
	for _, id := range s.order {
		out = append(out, s.toRecord(s.records[id]))
	}
	return out
}

func (s *Server) baseURL(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

func (s *Server) handleVersions(w http.ResponseWriter, r *http.Request) {
	var out []map[string]string
	for v := s.minVersion; v <= s.maxVersion; v++ {
		out = append(out, map[string]string{"version": fmt.Sprintf("%d.0", v), "url": fmt.Sprintf("/services/data/v%d.0", v), "label": releaseLabel(v)})
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) isContact(w http.ResponseWriter, name string) bool {
	if !strings.EqualFold(name, objContact) {
		writeError(w, http.StatusNotFound, "NOT_FOUND", "The requested resource does not exist")
		return false
	}
	return true
}

func (s *Server) handleDescribe(w http.ResponseWriter, r *http.Request) {
	o := s.objectOr404(w, r.PathValue("sobject"))
	if o == nil {
		return
	}
	fields := make([]map[string]any, 0, len(o.fields))
	for _, f := range o.fields {
		if _, ok := s.visible(o, f.Name); !ok {
			continue // describe is filtered by field-level security
		}
		pl := []map[string]any{}
		for _, v := range f.Picklist {
			pl = append(pl, map[string]any{"value": v, "label": v, "active": true, "defaultValue": false, "validFor": nil})
		}
		fields = append(fields, map[string]any{
			"name": f.Name, "label": f.Name, "type": f.Type, "length": f.Length, "nillable": f.Nillable,
			"createable": f.Createable, "updateable": f.Updateable, "calculated": f.Calculated,
			"unique": f.Unique, "externalId": f.ExternalID, "idLookup": f.Name == "Id" || f.ExternalID || f.Name == "Email",
			"defaultedOnCreate": f.DefaultedOnCreate, "custom": f.Custom, "restrictedPicklist": f.Restricted,
			"picklistValues": pl, "filterable": true, "sortable": true, "referenceTo": refTo(f),
			"relationshipName": relationshipName(f),
		})
	}
	children := []map[string]any{}
	for rel, c := range o.children {
		children = append(children, map[string]any{"childSObject": c.object, "field": c.field,
			"relationshipName": s.object(c.object).plural, "cascadeDelete": true, "_key": rel})
	}
	sort.Slice(children, func(i, j int) bool { return children[i]["_key"].(string) < children[j]["_key"].(string) })
	for _, c := range children {
		delete(c, "_key")
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"name": o.name, "label": o.name, "labelPlural": o.plural, "keyPrefix": o.prefix, "custom": false,
		"createable": true, "updateable": true, "deletable": true, "queryable": true, "replicateable": true,
		"retrieveable": true, "searchable": true, "fields": fields, "childRelationships": children,
		"urls": map[string]string{"describe": r.URL.Path},
	})
}

func (s *Server) handleLimits(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	used := s.used
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{
		"DailyApiRequests": map[string]int64{"Max": s.cfg.DailyLimit, "Remaining": max(s.cfg.DailyLimit-used, 0)},
	})
}

func (s *Server) handleRetrieve(w http.ResponseWriter, r *http.Request) {
	o := s.objectOr404(w, r.PathValue("sobject"))
	if o == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	rec, ok := s.records[r.PathValue("id")]
	if !ok || rec.deleted || s.objOf(rec) != o {
		writeError(w, http.StatusNotFound, "NOT_FOUND", "The requested resource does not exist")
		return
	}
	names := []string{}
	if q := r.URL.Query().Get("fields"); q != "" {
		for _, n := range strings.Split(q, ",") {
			fd, ok := o.byName[strings.ToLower(strings.TrimSpace(n))]
			if ok && s.hidden[hiddenKey(o, fd.Name)] {
				ok = false
			}
			if !ok {
				writeError(w, http.StatusBadRequest, "INVALID_FIELD", fmt.Sprintf("No such column '%s' on entity '%s'", n, o.name))
				return
			}
			names = append(names, fd.Name)
		}
	} else {
		for _, fd := range o.fields {
			if !s.hidden[hiddenKey(o, fd.Name)] {
				names = append(names, fd.Name)
			}
		}
	}
	writeJSON(w, http.StatusOK, s.render(r, rec, names))
}

// render renders the named fields of rec with attributes; s.mu is held.
func (s *Server) render(r *http.Request, rec *record, names []string) map[string]any {
	o := s.objOf(rec)
	m := map[string]any{"attributes": map[string]string{"type": o.name,
		"url": "/services/data/" + r.PathValue("version") + "/sobjects/" + o.name + "/" + rec.id}}
	for _, n := range names {
		m[n] = rec.value(n)
	}
	return m
}

func (s *Server) handleDeleted(w http.ResponseWriter, r *http.Request) {
	o := s.objectOr404(w, r.PathValue("sobject"))
	if o == nil {
		return
	}
	start, err1 := parseAnyTime(r.URL.Query().Get("start"))
	end, err2 := parseAnyTime(r.URL.Query().Get("end"))
	if err1 != nil || err2 != nil {
		writeError(w, http.StatusBadRequest, "MALFORMED_QUERY", "start and end must be ISO-8601 dates")
		return
	}
	now := s.now()
	if !end.After(start.Add(time.Minute)) {
		writeError(w, http.StatusBadRequest, "INVALID_REPLICATION_DATE", "start must precede end by more than one minute")
		return
	}
	if start.Before(now.Add(-30 * 24 * time.Hour)) {
		writeError(w, http.StatusBadRequest, "INVALID_REPLICATION_DATE", "start date is too far in the past")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	earliest := now.Add(-15 * 24 * time.Hour)
	if s.logStart.After(earliest) {
		earliest = s.logStart
	}
	earliest = earliest.UTC().Truncate(time.Minute)
	recs := []map[string]string{}
	for _, id := range s.order {
		rec := s.records[id]
		if s.objOf(rec) == o && rec.deleted && !rec.deletedAt.Before(start) && !rec.deletedAt.After(end) && !rec.deletedAt.Before(earliest) {
			recs = append(recs, map[string]string{"id": id, "deletedDate": rec.deletedAt.UTC().Format(dateTimeLayout)})
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"deletedRecords":        recs,
		"earliestDateAvailable": earliest.Format(dateTimeLayout),
		"latestDateCovered":     end.UTC().Truncate(time.Minute).Format(dateTimeLayout),
	})
}

func (s *Server) handleToken(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_request", "error_description": "bad form"})
		return
	}
	fail := func(code, desc string) {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": code, "error_description": desc})
	}
	switch r.PostForm.Get("grant_type") {
	case "urn:ietf:params:oauth:grant-type:jwt-bearer":
		if err := s.checkJWT(r, r.PostForm.Get("assertion")); err != nil {
			fail("invalid_grant", err.Error())
			return
		}
	case "client_credentials":
		if r.PostForm.Get("client_id") != s.cfg.ClientID || r.PostForm.Get("client_secret") != s.cfg.ClientSecret {
			fail("invalid_client", "invalid client credentials")
			return
		}
	case "refresh_token":
		if r.PostForm.Get("client_id") != s.cfg.ClientID {
			fail("invalid_client_id", "client identifier invalid")
			return
		}
		if sec := r.PostForm.Get("client_secret"); sec != "" && sec != s.cfg.ClientSecret {
			fail("invalid_client", "invalid client credentials")
			return
		}
		if r.PostForm.Get("refresh_token") != s.cfg.RefreshToken {
			fail("invalid_grant", "expired access/refresh token")
			return
		}
	default:
		fail("unsupported_grant_type", "grant type not supported")
		return
	}
	var b [12]byte
	_, _ = rand.Read(b[:])
	tok := "00DFAKE0000001!" + hex.EncodeToString(b[:])
	s.mu.Lock()
	s.tokens[tok] = true
	s.mu.Unlock()
	base := s.baseURL(r)
	writeJSON(w, http.StatusOK, map[string]string{
		"access_token": tok, "instance_url": base, "id": base + "/id/00DFAKE0000001AAA/005FAKE0000001AAA",
		"token_type": "Bearer", "issued_at": strconv.FormatInt(s.now().UnixMilli(), 10),
		"signature": "ZmFrZQ==", "scope": "api",
	})
}

// handleQuery runs a SOQL query.
func (s *Server) handleQuery(w http.ResponseWriter, r *http.Request, all bool) {
	soql := r.URL.Query().Get("q")
	q, err := parseSOQL(soql)
	if err != nil {
		writeError(w, http.StatusBadRequest, "MALFORMED_QUERY", err.Error())
		return
	}
	o := s.object(q.object)
	if o == nil {
		writeError(w, http.StatusBadRequest, "INVALID_TYPE", fmt.Sprintf("sObject type '%s' is not supported.", q.object))
		return
	}
	names := make([]string, len(q.fields))
	for i, f := range q.fields {
		fd, ok := s.visible(o, f)
		if !ok {
			writeError(w, http.StatusBadRequest, "INVALID_FIELD", noSuchColumn(soql, o.name, f))
			return
		}
		names[i] = fd.Name
	}
	for _, f := range append(fieldsIn(q.where, nil), orderFields(q.orderBy)...) {
		if _, ok := s.visible(o, f); !ok {
			writeError(w, http.StatusBadRequest, "INVALID_FIELD", noSuchColumn(soql, o.name, f))
			return
		}
	}
	subs := make([]childQuery, len(q.subs))
	for i, sub := range q.subs {
		rel, ok := o.children[strings.ToLower(sub.rel)]
		if !ok {
			writeError(w, http.StatusBadRequest, "INVALID_TYPE", fmt.Sprintf("\n%s\nDidn't understand relationship '%s' in FROM part of query call. "+
				"If you are attempting to use a custom relationship, be sure to append the '__r' after the custom relationship name. "+
				"Please reference your WSDL or the describe call for the appropriate names.", soql, sub.rel))
			return
		}
		co := s.object(rel.object)
		subs[i] = childQuery{rel: co.plural, obj: co, field: rel.field}
		for _, f := range sub.fields {
			fd, ok := s.visible(co, f)
			if !ok {
				writeError(w, http.StatusBadRequest, "INVALID_FIELD", noSuchColumn(soql, co.name, f))
				return
			}
			subs[i].names = append(subs[i].names, fd.Name)
		}
	}
	batch := s.cfg.QueryPageSize
	if opt := r.Header.Get("Sforce-Query-Options"); opt != "" {
		if v, ok := strings.CutPrefix(strings.TrimSpace(opt), "batchSize="); ok {
			if n, err := strconv.Atoi(v); err == nil {
				batch = min(max(n, 200), 2000, batch)
			}
		}
	}
	where := compile(q.where, o.byName)
	s.mu.Lock()
	defer s.mu.Unlock()
	var hits []*record
	for _, id := range s.order {
		rec := s.records[id]
		if (rec.deleted && !all) || s.objOf(rec) != o {
			continue
		}
		ok, err := where.eval(rec)
		if err != nil {
			writeError(w, http.StatusBadRequest, "MALFORMED_QUERY", err.Error())
			return
		}
		if ok {
			hits = append(hits, rec)
		}
	}
	if len(q.orderBy) > 0 {
		fds := make([]fieldDef, len(q.orderBy))
		for i, ot := range q.orderBy {
			fds[i] = o.byName[strings.ToLower(ot.field)]
		}
		type row struct {
			rec  *record
			keys []sortKey
		}
		rows := make([]row, len(hits))
		for i, rec := range hits {
			rows[i] = row{rec: rec, keys: make([]sortKey, len(fds))}
			for j, fd := range fds {
				rows[i].keys[j] = newSortKey(rec, fd)
			}
		}
		sort.SliceStable(rows, func(i, j int) bool {
			for k, ot := range q.orderBy {
				c := compareKeys(fds[k].Type, rows[i].keys[k], rows[j].keys[k])
				if ot.desc {
					c = -c
				}
				if c != 0 {
					return c < 0
				}
			}
			return false
		})
		for i := range rows {
			hits[i] = rows[i].rec
		}
	}
	if q.limit >= 0 && len(hits) > q.limit {
		hits = hits[:q.limit]
	}
	for i := range subs {
		subs[i].index(s, hits)
	}
	rows := make([]map[string]any, len(hits))
	for i, rec := range hits {
		rows[i] = s.render(r, rec, names)
		for _, sub := range subs {
			rows[i][sub.rel] = sub.result(s, r, rec)
		}
	}
	loc := &locator{rows: rows, batch: batch}
	s.writePage(w, r, loc, "", 0)
}

// childQuery is a subquery resolved against the fake's objects.
type childQuery struct {
	rel   string // relationship name, the key of its result
	obj   *sobject
	field string // the child's reference to the parent
	names []string
	// byParent holds the live children of the parents queried.
	byParent map[string][]*record
}

// index finds the live children of parents; s.mu is held.
func (c *childQuery) index(s *Server, parents []*record) {
	want := make(map[string]bool, len(parents))
	for _, p := range parents {
		want[p.id] = true
	}
	c.byParent = map[string][]*record{}
	for _, id := range s.order {
		rec := s.records[id]
		if rec.deleted || s.objOf(rec) != c.obj {
			continue
		}
		if p, _ := rec.fields[c.field].(string); want[p] {
			c.byParent[p] = append(c.byParent[p], rec)
		}
	}
}

// result is a parent's subquery result as Salesforce nests it: null
// without children, else a query result with every child; s.mu is held.
func (c *childQuery) result(s *Server, r *http.Request, parent *record) any {
	kids := c.byParent[parent.id]
	if len(kids) == 0 {
		return nil
	}
	rows := make([]map[string]any, len(kids))
	for i, k := range kids {
		rows[i] = s.render(r, k, c.names)
	}
	if n := s.cfg.SubqueryPageSize; n > 0 && len(rows) > n {
		s.locSeq++
		id := fmt.Sprintf("01gFk%013d", s.locSeq)
		s.locators[id] = &locator{rows: rows, batch: n}
		return map[string]any{"totalSize": len(rows), "done": false, "records": rows[:n],
			"nextRecordsUrl": fmt.Sprintf("/services/data/%s/query/%s-%d", r.PathValue("version"), id, n)}
	}
	return map[string]any{"totalSize": len(rows), "done": true, "records": rows}
}

// noSuchColumn is Salesforce's INVALID_FIELD message for a query naming a
// field that does not exist or that field-level security hides: the query
// line, a caret under the field, its position, and the explanation.
func noSuchColumn(soql, object, field string) string {
	line, _, _ := strings.Cut(soql, "\n")
	col := strings.Index(line, field) + 1
	if col < 1 {
		col = 1
	}
	return fmt.Sprintf("\n%s\n%s^\nERROR at Row:1:Column:%d\nNo such column '%s' on entity '%s'. "+
		"If you are attempting to use a custom field, be sure to append the '__c' after the custom field name. "+
		"Please reference your WSDL or the describe call for the appropriate names.",
		line, strings.Repeat(" ", col-1), col, field, object)
}

func orderFields(o []orderTerm) []string {
	var out []string
	for _, t := range o {
		out = append(out, t.field)
	}
	return out
}

// writePage writes rows[offset:offset+batch]; s.mu is held.
func (s *Server) writePage(w http.ResponseWriter, r *http.Request, loc *locator, id string, offset int) {
	end := min(offset+loc.batch, len(loc.rows))
	body := map[string]any{"totalSize": len(loc.rows), "done": end == len(loc.rows), "records": loc.rows[offset:end]}
	if end < len(loc.rows) {
		if id == "" {
			s.locSeq++
			id = fmt.Sprintf("01gFk%013d", s.locSeq)
			s.locators[id] = loc
		}
		body["nextRecordsUrl"] = fmt.Sprintf("/services/data/%s/query/%s-%d", r.PathValue("version"), id, end)
	} else if id != "" {
		delete(s.locators, id)
	}
	writeJSON(w, http.StatusOK, body)
}

func (s *Server) handleQueryMore(w http.ResponseWriter, r *http.Request) {
	id, off, ok := strings.Cut(r.PathValue("locator"), "-")
	n, err := strconv.Atoi(off)
	s.mu.Lock()
	defer s.mu.Unlock()
	loc := s.locators[id]
	if !ok || err != nil || loc == nil || n < 0 || n >= len(loc.rows) {
		writeError(w, http.StatusBadRequest, "INVALID_QUERY_LOCATOR", "invalid query locator")
		return
	}
	s.writePage(w, r, loc, id, n)
}

// RefusedInFlight reports how many requests were refused because
// MaxInFlight requests were already running.
func (s *Server) RefusedInFlight() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.refusedInFlight
}

// releaseLabel names the Salesforce release of API version v: 63.0 is
// Spring '25, and each release adds one (Spring, Summer, Winter of the
// next year).
func releaseLabel(v int) string {
	k := v - 63
	q, season := k/3, k%3
	if season < 0 {
		q, season = q-1, season+3
	}
	year := 25 + q
	if season == 2 {
		year++
	}
	return fmt.Sprintf("%s '%02d", [...]string{"Spring", "Summer", "Winter"}[season], year)
}

// handleUserInfo is GET /services/oauth2/userinfo: the token's user, as the
// OpenID Connect endpoint answers (user_id, organization_id, ...).
// It needs a valid bearer token and counts against no allocation.
func (s *Server) handleUserInfo(w http.ResponseWriter, r *http.Request) {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	s.mu.Lock()
	valid := ok && s.tokens[tok]
	s.mu.Unlock()
	if !valid {
		writeError(w, http.StatusUnauthorized, "INVALID_SESSION_ID", "Session expired or invalid")
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"user_id": s.cfg.UserID, "organization_id": "00DFk0000000001AAA",
		"preferred_username": "integration@example.com", "active": true})
}
