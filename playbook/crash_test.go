//go:build unix

package playbook

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/hubspot"
	"github.com/crmsync/crmsync/hubspot/hubspottest"
	"github.com/crmsync/crmsync/salesforce"
	"github.com/crmsync/crmsync/store/sqlite"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The crash matrix. The fakes live in this (the parent) test process, on
// httptest servers, so that they outlive the sync. Each sync pass runs in a
// child process: the test binary started again with envCrashChild set,
// which TestMain turns into one call of crashChild. A child told to die
// kills itself with SIGKILL right after its Nth successful Store.Commit (a
// step boundary), or right after its Nth write response arrived from a CRM
// (inside the write step, after the API call, before its checkpoint). A
// second child then resumes the same run, and the world it leaves must be
// the world a pass without a crash leaves.

// envCrashChild carries a child's childConfig, as JSON.
const envCrashChild = "CRMSYNC_CRASH_CHILD"

// crashKey is the concurrency key of every crash-matrix run.
const crashKey = "team-1"

func TestMain(m *testing.M) {
	if c := os.Getenv(envCrashChild); c != "" {
		os.Exit(crashChild(c))
	}
	os.Exit(m.Run())
}

// childConfig tells a child where the fakes and the store are and where to die.
type childConfig struct {
	HubSpotURL, HubSpotToken       string
	SalesforceURL, SalesforceToken string
	Store                          string // SQLite file
	Log                            string // the child's event log, appended to
	// KillAfterCommit > 0: die right after the Nth successful Commit.
	KillAfterCommit int
	// KillAfterWrite > 0: die right after the Nth CRM write response arrived.
	KillAfterWrite int
}

// Child exit codes other than 0 (the pass finished).
const (
	childFailed     = 1 // the pass returned an error
	childSetup      = 2 // the child could not start the pass
	childNoKill     = 3 // told to die, it finished the pass: the kill point was never reached
	childKillFailed = 4 // the SIGKILL did not end the process
)

// eventLog is a child's log. Each line is one write(2) to a file opened
// with O_APPEND, so every line written before the SIGKILL is in the file.
type eventLog struct {
	mu sync.Mutex
	f  *os.File
}

func (l *eventLog) printf(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	fmt.Fprintf(l.f, format+"\n", args...)
}

// die logs why and kills the process with SIGKILL: no deferred call, no
// flush, no lease release runs, as when a machine loses the process.
func (l *eventLog) die(why string) {
	l.printf("kill %s", why)
	syscall.Kill(os.Getpid(), syscall.SIGKILL)
	time.Sleep(time.Minute) // the signal arrives asynchronously
	os.Exit(childKillFailed)
}

// crashStore is a Store whose methods all delegate to the embedded one;
// Commit also logs each committed step and dies after the Nth.
type crashStore struct {
	crmsync.Store
	log    *eventLog
	killAt int64
	n      atomic.Int64
}

func (s *crashStore) Commit(ctx context.Context, l crmsync.Lease, cp crmsync.Checkpoint) error {
	if err := s.Store.Commit(ctx, l, cp); err != nil {
		return err
	}
	n := s.n.Add(1)
	s.log.printf("commit %d %s", n, cp.Step.Step)
	if n == s.killAt {
		s.log.die(fmt.Sprintf("after-commit %d %s", n, cp.Step.Step))
	}
	return nil
}

// crashTransport counts the CRM write responses and dies right after the
// Nth arrived: the CRM applied the write, the step has not committed it.
type crashTransport struct {
	base   http.RoundTripper
	log    *eventLog
	killAt int64
	n      atomic.Int64
}

// isWrite reports a HubSpot batch write or a Salesforce sObject Collections
// write. HubSpot searches and batch reads are POSTs too, and are reads.
func isWrite(r *http.Request) bool {
	p := r.URL.Path
	switch {
	case r.Method == http.MethodGet:
		return false
	case strings.Contains(p, "/composite/sobjects"):
		return true
	}
	for _, k := range []string{"/batch/create", "/batch/update", "/batch/upsert", "/batch/archive"} {
		if strings.HasSuffix(p, k) {
			return true
		}
	}
	return false
}

func (t *crashTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := t.base.RoundTrip(r)
	if err == nil && isWrite(r) {
		n := t.n.Add(1)
		t.log.printf("write %d %s %d", n, r.URL.Path, resp.StatusCode)
		if n == t.killAt {
			t.log.die(fmt.Sprintf("after-write %d", n))
		}
	}
	return resp, err
}

// loggedCRM logs each read call before it is made ("read N what": the
// page (by token) of a change read, the values (by hash) of a lookup, the
// object of a schema), and "failed N" after a call that failed.
type loggedCRM struct {
	crmsync.CRM
	log *eventLog
	seq *atomic.Int64
}

func (c loggedCRM) began(format string, args ...any) int64 {
	n := c.seq.Add(1)
	c.log.printf("read %d "+format, append([]any{n}, args...)...)
	return n
}

func (c loggedCRM) ended(n int64, err error) {
	if err != nil {
		c.log.printf("failed %d", n)
	}
}

func (c loggedCRM) Changes(ctx context.Context, q crmsync.ChangeQuery) (crmsync.Page, error) {
	kind := "changes"
	if q.Archived {
		kind = "archived"
	}
	tok := q.PageToken
	if tok == "" {
		tok = "-"
	}
	n := c.began("changes %s %s %s", c.System(), kind, tok)
	p, err := c.CRM.Changes(ctx, q)
	c.ended(n, err)
	return p, err
}

func (c loggedCRM) Lookup(ctx context.Context, object, field string, values []string, fields []string) ([]crmsync.Record, error) {
	n := c.began("lookup %s %s %s", c.System(), field, hashValues(values))
	recs, err := c.CRM.Lookup(ctx, object, field, values, fields)
	c.ended(n, err)
	return recs, err
}

func (c loggedCRM) Schema(ctx context.Context, object string) (crmsync.Schema, error) {
	n := c.began("schema %s %s", c.System(), object)
	s, err := c.CRM.Schema(ctx, object)
	c.ended(n, err)
	return s, err
}

func hashValues(values []string) string {
	v := slices.Clone(values)
	sort.Strings(v)
	h := sha256.Sum256([]byte(strings.Join(v, "\x00")))
	return hex.EncodeToString(h[:8])
}

// crashSyncConfig is the pass every child runs: the playbook's policy, pages
// of 10 (HubSpot; Salesforce's smallest is 200) for many step boundaries.
func crashSyncConfig(a, b crmsync.CRM) crmsync.SyncConfig {
	pol := contactsPolicy()
	return crmsync.SyncConfig{A: a, B: b, ObjectA: "contacts", ObjectB: "Contact", Policy: &pol,
		LinkFieldA: hubspotLinkField, LinkFieldB: salesforceLinkField, PageSize: 10}
}

// crashChild runs one sync pass as the child process and returns its exit code.
func crashChild(raw string) int {
	var c childConfig
	if err := json.Unmarshal([]byte(raw), &c); err != nil {
		fmt.Fprintln(os.Stderr, "crash child: config:", err)
		return childSetup
	}
	f, err := os.OpenFile(c.Log, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		fmt.Fprintln(os.Stderr, "crash child:", err)
		return childSetup
	}
	lg := &eventLog{f: f}
	lg.printf("start pid %d", os.Getpid())
	setup := func(err error) int {
		fmt.Fprintln(os.Stderr, "crash child: setup:", err)
		return childSetup
	}
	tr := &crashTransport{base: http.DefaultTransport, log: lg, killAt: int64(c.KillAfterWrite)}
	hcl := &http.Client{Transport: tr}
	lim := func() crmsync.Limiter {
		th, _ := crmsync.NewThrottle(crmsync.ThrottleConfig{InFlight: 8})
		return th
	}
	hc, err := hubspot.New(hubspot.Config{Token: c.HubSpotToken, BaseURL: c.HubSpotURL, HTTPClient: hcl,
		Limiter: lim(), SearchLimiter: lim(), RetryInitial: 10 * time.Millisecond})
	if err != nil {
		return setup(err)
	}
	sc, err := salesforce.New(salesforce.Config{AccessToken: c.SalesforceToken, InstanceURL: c.SalesforceURL, HTTPClient: hcl,
		Limiter: lim(), RetryWait: 10 * time.Millisecond, DefaultFields: []string{"Id"}})
	if err != nil {
		return setup(err)
	}
	var seq atomic.Int64
	ctx := context.Background()
	st, err := sqlite.Open(ctx, sqlite.Config{Path: c.Store})
	if err != nil {
		return setup(err)
	}
	defer st.Close()
	s, err := crmsync.NewSync(crashSyncConfig(loggedCRM{hc, lg, &seq}, loggedCRM{sc, lg, &seq}))
	if err != nil {
		return setup(err)
	}
	// The lease must outlast the slowest renewal of a starved machine: a
	// renewal queues behind the step commits in the store's one writer,
	// and on two loaded cores with -race a commit took over a second, so
	// a 1.5 s lease (a renewal had 0.9 s) made live children stop
	// themselves. A renewal here has TTL - Heartbeat*5/4 = 3.5 s. The dead
	// child's lease expires at most 4 s after its last heartbeat; the next
	// child waits for it rather than failing busy, as after a real crash.
	eng, err := crmsync.NewEngine(crmsync.Config{
		Store:        &crashStore{Store: st, log: lg, killAt: int64(c.KillAfterCommit)},
		LeaseTTL:     4 * time.Second,
		Heartbeat:    400 * time.Millisecond,
		WaitForLease: true,
		Logger:       slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		return setup(err)
	}
	rep, info, err := s.RunOnce(ctx, eng, crashKey)
	if err != nil {
		fmt.Fprintln(os.Stderr, "crash child: pass:", err)
		return childFailed
	}
	lg.printf("finished %s attempts %d writes %d", info.ID, info.Attempts, rep.Writes())
	if c.KillAfterCommit > 0 || c.KillAfterWrite > 0 {
		return childNoKill
	}
	return 0
}

// crashWorld is one pair of fakes seeded with the matrix's data set, and a
// store file for the children.
type crashWorld struct {
	t         *testing.T
	f         *fakes
	dir       string
	invalidID string // the HubSpot contact Salesforce refuses
}

// The data set: 60 HubSpot contacts and 40 Salesforce contacts, 15 of them
// the same people on both sides (matched by email), one HubSpot contact
// without the last name Salesforce requires.
const (
	crashHubSpot    = 60
	crashSalesforce = 40
	crashShared     = 15
	crashInvalid    = 42 // index of the HubSpot contact without a last name
)

func newCrashWorld(t *testing.T) *crashWorld {
	t.Helper()
	f, closeFn, err := startFakes([]hubspottest.Option{hubspottest.WithoutRateLimits()}, nil)
	require.NoError(t, err)
	t.Cleanup(closeFn)
	w := &crashWorld{t: t, f: f, dir: t.TempDir()}
	hs := make([]map[string]string, crashHubSpot)
	for i := range hs {
		email := fmt.Sprintf("person%02d@hs.example.com", i)
		if i < crashShared {
			email = fmt.Sprintf("person%02d@both.example.com", i)
		}
		hs[i] = map[string]string{"email": email, "firstname": firstNames[i%len(firstNames)], "lastname": lastNames[i%len(lastNames)],
			"lifecyclestage": stages[i%6], "hubspotscore": strconv.Itoa(i)}
		if i%4 == 0 {
			hs[i]["recent_conversion_date"] = time.Date(2026, 10, 1+i%28, 9, 0, 0, 0, time.UTC).Format("2006-01-02T15:04:05.000Z")
		}
	}
	delete(hs[crashInvalid], "lastname")
	ids := f.hs.Seed("contacts", hs...)
	w.invalidID = ids[crashInvalid]
	// Salesforce's contacts are the newer: the shared ones' phones (blank in
	// HubSpot) go to HubSpot under the most-recent rule. Seeded in the same
	// millisecond, HubSpot would win the tie and its blank would clear them.
	time.Sleep(3 * time.Millisecond)
	sfOwners := []string{"005000000000001AAA", "005000000000002AAA", "005000000000003AAA"}
	sf := make([]crmsync.Fields, crashSalesforce)
	for i := range sf {
		email := fmt.Sprintf("person%02d@sf.example.com", i)
		if i < crashShared {
			email = fmt.Sprintf("person%02d@both.example.com", i)
		}
		sf[i] = crmsync.Fields{"Email": email, "FirstName": firstNames[i%len(firstNames)], "LastName": lastNames[i%len(lastNames)],
			"Phone": fmt.Sprintf("+1 415 555 %04d", i), "OwnerId": sfOwners[i%3],
			"Deal_Stage__c": dealStages[i%len(dealStages)], "Close_Date__c": time.Date(2026, 12, 1+i%28, 0, 0, 0, 0, time.UTC).Format("2006-01-02")}
	}
	f.sf.Seed(sf...)
	time.Sleep(3 * time.Millisecond) // seeded before the pass's window ends
	return w
}

// childRun is what one child did.
type childRun struct {
	exit   int  // exit code; -1 when killed
	killed bool // died of SIGKILL
	events []string
	reads  map[string]int // fake read calls during the child, by system
	stderr string
}

// lines returns the events with a prefix, without it.
func (r childRun) lines(prefix string) []string {
	var out []string
	for _, e := range r.events {
		if rest, ok := strings.CutPrefix(e, prefix); ok {
			out = append(out, rest)
		}
	}
	return out
}

// reads returns the read calls the child began and did not see fail, as
// "changes|lookup|schema system ..." lines.
func (r childRun) readCalls() []string {
	failed := map[string]bool{}
	for _, n := range r.lines("failed ") {
		failed[n] = true
	}
	var out []string
	for _, l := range r.lines("read ") {
		n, what, _ := strings.Cut(l, " ")
		if !failed[n] {
			out = append(out, what)
		}
	}
	return out
}

// readEndpoints are the fakes' endpoints that read.
var readEndpoints = map[string][]string{
	"hubspot":    {"search", "list", "get", "batch/read", "properties"},
	"salesforce": {"query", "queryAll", "queryMore", "describe", "deleted", "retrieve"},
}

func (w *crashWorld) readCalls() map[string]int {
	out := map[string]int{}
	hs, sf := w.f.hs.CallCounts(), w.f.sf.Calls()
	for _, ep := range readEndpoints["hubspot"] {
		out["hubspot"] += hs[ep]
	}
	for _, ep := range readEndpoints["salesforce"] {
		out["salesforce"] += sf[ep]
	}
	return out
}

// child runs one child process against the world and waits for it.
func (w *crashWorld) child(name string, killAfterCommit, killAfterWrite int) childRun {
	w.t.Helper()
	logPath := filepath.Join(w.dir, name+".log")
	cfg, _ := json.Marshal(childConfig{
		HubSpotURL: w.f.hsURL, HubSpotToken: w.f.hsToken, SalesforceURL: w.f.sfURL, SalesforceToken: w.f.sf.Token(),
		Store: filepath.Join(w.dir, "crmsync.db"), Log: logPath,
		KillAfterCommit: killAfterCommit, KillAfterWrite: killAfterWrite,
	})
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), envCrashChild+"="+string(cfg))
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	before := w.readCalls()
	err := cmd.Run()
	r := childRun{stderr: stderr.String(), reads: w.readCalls()}
	for k, v := range before {
		r.reads[k] -= v
	}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		r.exit = ee.ExitCode()
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL && ctx.Err() == nil {
			r.killed = true
		}
	default:
		w.t.Fatalf("child %s: %v", name, err)
	}
	b, err := os.ReadFile(logPath)
	require.NoError(w.t, err, "child %s left no log\n%s", name, r.stderr)
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		r.events = append(r.events, sc.Text())
	}
	return r
}

// withStore opens the world's store (no child is running) for fn.
func (w *crashWorld) withStore(fn func(st *sqlite.Store)) {
	w.t.Helper()
	st, err := sqlite.Open(context.Background(), sqlite.Config{Path: filepath.Join(w.dir, "crmsync.db")})
	require.NoError(w.t, err)
	defer st.Close()
	fn(st)
}

// outcome is the final state a pass leaves, compared between runs.
type outcome struct {
	// contacts maps "hubspot <email>" and "salesforce <email>" to the
	// policy's fields of that live contact, JSON-encoded (link fields left
	// out: they hold ids, which differ between worlds).
	contacts    map[string]string
	links       int
	auditWrites int
	deadLetters int
}

// outcome checks the invariants of a finished world and returns its state.
func (w *crashWorld) outcome() outcome {
	t := w.t
	t.Helper()
	out := outcome{contacts: map[string]string{}}
	pol := Policy()
	hsEmail := map[string]string{}  // HubSpot id -> email
	hsLinkOf := map[string]string{} // HubSpot id -> its salesforce_contact_id
	seenSFID := map[string]string{}
	for _, r := range w.f.hs.All("contacts") {
		if r.Archived {
			continue
		}
		e := r.Properties["email"]
		key := "hubspot " + e
		if _, dup := out.contacts[key]; dup {
			t.Errorf("duplicate: two live HubSpot contacts share the email of contact %s", r.ID)
		}
		fields := map[string]string{}
		for _, rule := range pol.Rules {
			if v, ok := r.Properties[rule.A]; ok {
				fields[rule.A] = v
			}
		}
		if v, ok := r.Properties[pol.Archived.A]; ok {
			fields[pol.Archived.A] = v
		}
		b, _ := json.Marshal(fields)
		out.contacts[key] = string(b)
		hsEmail[r.ID] = e
		if v := r.Properties[hubspotLinkField]; v != "" {
			if other, dup := seenSFID[v]; dup {
				t.Errorf("duplicate external id: HubSpot contacts %s and %s both hold Salesforce id %s", other, r.ID, v)
			}
			seenSFID[v] = r.ID
			hsLinkOf[r.ID] = v
		}
	}
	sfLinkOf := map[string]string{}
	seenHSID := map[string]string{}
	var sfIDs []string
	for _, r := range w.f.sf.All() {
		if r.Archived {
			continue
		}
		e, _ := r.Fields["Email"].(string)
		key := "salesforce " + e
		if _, dup := out.contacts[key]; dup {
			t.Errorf("duplicate: two live Salesforce contacts share the email of contact %s", r.ID)
		}
		fields := map[string]any{}
		for _, rule := range pol.Rules {
			if v, ok := r.Fields[rule.B]; ok && v != nil {
				fields[rule.B] = v
			}
		}
		if v, ok := r.Fields[pol.Archived.B]; ok && v != nil {
			fields[pol.Archived.B] = v
		}
		b, _ := json.Marshal(fields)
		out.contacts[key] = string(b)
		sfIDs = append(sfIDs, r.ID)
		if v, _ := r.Fields[salesforceLinkField].(string); v != "" {
			if other, dup := seenHSID[v]; dup {
				t.Errorf("duplicate external id: Salesforce contacts %s and %s both hold HubSpot id %s", other, r.ID, v)
			}
			seenHSID[v] = r.ID
			sfLinkOf[r.ID] = v
		}
	}
	ctx := context.Background()
	w.withStore(func(st *sqlite.Store) {
		var hsIDs []string
		for id := range hsEmail {
			hsIDs = append(hsIDs, id)
		}
		byA, err := st.LinksByA(ctx, crashKey, hsIDs)
		require.NoError(t, err)
		byB, err := st.LinksByB(ctx, crashKey, sfIDs)
		require.NoError(t, err)
		assert.Len(t, byB, len(byA), "links by Salesforce id, against those by HubSpot id; want them 1:1")
		bSeen := map[string]string{}
		for a, l := range byA {
			if other, dup := bSeen[l.BID]; dup {
				t.Errorf("links: Salesforce contact %s is linked to HubSpot contacts %s and %s", l.BID, other, a)
			}
			bSeen[l.BID] = a
			if back, ok := byB[l.BID]; !ok || back.AID != a {
				t.Errorf("links: %s->%s has no matching link back (%+v)", a, l.BID, back)
			}
			if hsLinkOf[a] != l.BID || sfLinkOf[l.BID] != a {
				t.Errorf("link %s<->%s: HubSpot holds %q, Salesforce holds %q", a, l.BID, hsLinkOf[a], sfLinkOf[l.BID])
			}
		}
		out.links = len(byA)

		dls, err := st.ListDeadLetters(ctx, crmsync.DeadLetterQuery{Key: crashKey})
		require.NoError(t, err)
		out.deadLetters = len(dls)
		var invalid int
		for _, d := range dls {
			if d.RecordID == w.invalidID {
				invalid++
			}
		}
		if len(dls) != 1 || invalid != 1 {
			t.Errorf("dead letters: %d, %d of them for the invalid contact %s; want it exactly once and nothing else", len(dls), invalid, w.invalidID)
		}
		rows, err := st.QueryAudit(ctx, crmsync.AuditQuery{Key: crashKey, Kind: crmsync.AuditDeadLetter, Limit: 1000})
		require.NoError(t, err)
		assert.Len(t, rows, 1, "dead-letter audit rows")
		for after := int64(0); ; {
			rows, err := st.QueryAudit(ctx, crmsync.AuditQuery{Key: crashKey, Kind: crmsync.AuditWrite, After: after, Limit: 1000})
			require.NoError(t, err)
			if len(rows) == 0 {
				break
			}
			out.auditWrites += len(rows)
			after = rows[len(rows)-1].ID
		}
		runs, err := st.ListRuns(ctx, crashKey, 0)
		require.NoError(t, err)
		if len(runs) != 1 || runs[0].Status != crmsync.RunFinished {
			t.Errorf("runs = %+v; want one, finished", runs)
		}
	})
	return out
}

// crashPoint is one row of the crash matrix: where the first child dies.
type crashPoint struct {
	name string
	// afterCommit > 0: at the step boundary after the Nth commit of the pass.
	afterCommit int
	// afterWrite > 0: inside the write step, right after the Nth write
	// response arrived and before the step's checkpoint.
	afterWrite int
}

// crashMatrix is the table of kill points for a pass of commits step
// boundaries and writes write calls: every boundary, or at most limit of them
// evenly spread including the first and the last; and every write.
func crashMatrix(commits, writes, limit int) []crashPoint {
	var rows []crashPoint
	for _, n := range spread(commits, limit) {
		rows = append(rows, crashPoint{name: fmt.Sprintf("commit-%02d", n), afterCommit: n})
	}
	for _, n := range spread(writes, limit) {
		rows = append(rows, crashPoint{name: fmt.Sprintf("write-%02d", n), afterWrite: n})
	}
	return rows
}

// spread returns 1..n, or limit of them evenly spread from 1 to n.
func spread(n, limit int) []int {
	if n <= limit {
		out := make([]int, n)
		for i := range out {
			out[i] = i + 1
		}
		return out
	}
	var out []int
	for i := range limit {
		v := 1 + i*(n-1)/(limit-1)
		if len(out) == 0 || out[len(out)-1] != v {
			out = append(out, v)
		}
	}
	return out
}

// readAccount is what the crash cost in reads.
type readAccount struct {
	killedAt     string // the event that killed the first child
	inFlight     int    // read calls the first child began whose steps did not commit
	repeated     int    // read calls the second child made that the first had made
	extraHTTP    int    // fake read calls of both children over the no-crash pass
	pagesReread  []string
	resumedReads int // read calls of the second child
}

// TestCrashMatrix kills the sync process with SIGKILL at step boundaries of a
// pass and inside write steps, resumes it in a new process, and checks that
// the world ends as after a pass without a crash: no duplicate, no lost
// write, the invalid record parked once, and no completed read repeated.
func TestCrashMatrix(t *testing.T) {
	if testing.Short() {
		t.Skip("starts about a hundred processes")
	}
	start := time.Now()
	// The pass without a crash: its step boundaries, writes, reads and
	// final state are the reference.
	base := newCrashWorld(t)
	ref := base.child("reference", 0, 0)
	require.Equal(t, 0, ref.exit, "reference pass: exit code\n%s", ref.stderr)
	want := base.outcome()
	commits, writes := len(ref.lines("commit ")), len(ref.lines("write "))
	if commits < 20 || writes < 4 || want.links < crashShared || want.auditWrites == 0 {
		t.Fatalf("reference pass too small to test: %d commits, %d writes, %d links, %d audited writes", commits, writes, want.links, want.auditWrites)
	}
	// The numbers every crashed and resumed pass must reproduce.
	require.Len(t, want.contacts, 2*(crashHubSpot+crashSalesforce-crashShared)-1, "contacts the reference pass left: want %d on each side but the invalid one", crashHubSpot+crashSalesforce-crashShared)
	// About 25 boundaries keep the matrix near a minute with -race;
	// CRMSYNC_CRASH_ALL=1 kills at every one.
	sample := 25
	if os.Getenv("CRMSYNC_CRASH_ALL") == "1" {
		sample = commits + writes
	}
	matrix := crashMatrix(commits, writes, sample)
	t.Logf("reference pass: %d step boundaries, %d write calls, reads %v; crash matrix of %d rows", commits, writes, ref.reads, len(matrix))

	type row struct {
		crashPoint
		acct readAccount
		dur  time.Duration
	}
	results := make([]row, len(matrix))
	t.Run("kill", func(t *testing.T) {
		for i, cp := range matrix {
			t.Run(cp.name, func(t *testing.T) {
				t.Parallel()
				t0 := time.Now()
				acct := crashAndResume(t, cp, ref, want)
				results[i] = row{cp, acct, time.Since(t0)}
			})
		}
	})
	var b strings.Builder
	fmt.Fprintf(&b, "%-10s %-44s %8s %8s %8s %9s %6s\n", "kill", "at", "inflight", "repeated", "resumed", "extraHTTP", "time")
	for _, r := range results {
		fmt.Fprintf(&b, "%-10s %-44s %8d %8d %8d %9d %6s\n", r.name, r.acct.killedAt, r.acct.inFlight, r.acct.repeated, r.acct.resumedReads, r.acct.extraHTTP, r.dur.Round(10*time.Millisecond))
	}
	t.Logf("crash matrix: %d rows in %s\n%s", len(matrix), time.Since(start).Round(time.Millisecond), b.String())
}

// crashAndResume runs one row of the matrix in a fresh world.
func crashAndResume(t *testing.T, cp crashPoint, ref childRun, want outcome) readAccount {
	w := newCrashWorld(t)
	first := w.child("killed", cp.afterCommit, cp.afterWrite)
	require.True(t, first.killed, "the child was not killed at %s: exit %d\n%s", cp.name, first.exit, first.stderr)
	kills := first.lines("kill ")
	require.Len(t, kills, 1, "the killed child's kill lines")
	acct := readAccount{killedAt: kills[0]}

	// What the dead child committed, as the store has it.
	var runID crmsync.RunID
	var committed map[string]crmsync.StepRecord
	w.withStore(func(st *sqlite.Store) {
		runs, err := st.ListRuns(context.Background(), crashKey, 0)
		if err != nil || len(runs) != 1 || runs[0].Status != crmsync.RunOpen {
			t.Fatalf("after the kill: runs %+v, %v; want one open run", runs, err)
		}
		runID = runs[0].ID
		committed, err = st.LoadSteps(context.Background(), runID)
		require.NoError(t, err)
	})

	second := w.child("resumed", 0, 0)
	require.Equal(t, 0, second.exit, "the resumed pass failed: exit code\n%s", second.stderr)
	fin := second.lines("finished ")
	if len(fin) != 1 || !strings.HasPrefix(fin[0], string(runID)+" attempts 2 ") {
		t.Errorf("the second child finished %q; want run %s resumed (attempt 2)", fin, runID)
	}
	got := w.outcome()
	// No lost write, no duplicate: the same contacts with the same values,
	// the same links and the same audited writes as without the crash.
	for k, v := range want.contacts {
		if g, ok := got.contacts[k]; !ok {
			t.Errorf("lost: %s is missing", k)
		} else if g != v {
			t.Errorf("%s: fields %s, want %s as without the crash", k, g, v)
		}
	}
	assert.Len(t, got.contacts, len(want.contacts), "live contacts, as without the crash")
	if got.links != want.links || got.auditWrites != want.auditWrites {
		t.Errorf("links %d, audited writes %d; want %d, %d as without the crash", got.links, got.auditWrites, want.links, want.auditWrites)
	}

	// Completed reads are not repeated. Change pages exactly: the second
	// child reads no page whose read step the first committed. Every read:
	// it repeats only calls the first began whose steps did not commit.
	// landed counts the resumed run's lookups of the creates of its write
	// steps not stored: a resumed run reads them back before sending them.
	landed := 0
	w.withStore(func(st *sqlite.Store) {
		steps, err := st.LoadSteps(context.Background(), runID)
		require.NoError(t, err)
		pageOf := pageIndex(t, steps)
		for _, st := range steps {
			if strings.Contains(st.Step, "landed:") {
				landed++
			}
		}
		for _, l := range second.readCalls() {
			f := strings.Fields(l) // changes system kind token
			if f[0] != "changes" {
				continue
			}
			f = f[1:]
			i, ok := pageOf[f[0]+" "+f[1]+" "+f[2]]
			if !ok {
				t.Errorf("the resumed child read a change page no step of the run holds: %s %s", f[0], f[1])
				continue
			}
			id := fmt.Sprintf("read:%s:%s:%d", f[0], f[1], i)
			if _, done := committed[id]; done {
				acct.pagesReread = append(acct.pagesReread, id)
			}
		}
	})
	assert.Empty(t, acct.pagesReread, "the resumed child read again pages the dead one had committed")
	began := first.readCalls()
	readSteps := 0
	for id := range committed {
		for _, p := range []string{"read:", "fetch:", "match:", "schema:"} {
			if strings.HasPrefix(id, p) {
				readSteps++
			}
		}
	}
	acct.inFlight = len(began) - readSteps
	resumed := second.readCalls()
	acct.resumedReads = len(resumed)
	left := map[string]int{}
	for _, r := range began {
		left[r]++
	}
	for _, r := range resumed {
		if left[r] > 0 {
			left[r]--
			acct.repeated++
		}
	}
	assert.LessOrEqual(t, acct.repeated, acct.inFlight, "reads of the dead one the resumed child repeated, against those in flight: completed reads were repeated")
	// The fakes' counters: both children together read what the pass
	// without a crash read, plus at most the reads in flight at the kill
	// (a Salesforce deleted-records read is two calls), and the resumed
	// run's lookups of its creates (a HubSpot lookup by a property is two
	// calls: a search, then a batch read).
	for sys, n := range ref.reads {
		acct.extraHTTP += first.reads[sys] + second.reads[sys] - n
	}
	if acct.extraHTTP < 0 || acct.extraHTTP > 2*acct.inFlight+2*landed {
		t.Errorf("fake read calls: killed %v + resumed %v against %v without a crash (%+d), with %d reads in flight at the kill",
			first.reads, second.reads, ref.reads, acct.extraHTTP, acct.inFlight)
	}
	return acct
}

// pageIndex maps "system kind token" of each change page of a run to its
// page number, from the page tokens its read steps returned.
func pageIndex(t *testing.T, steps map[string]crmsync.StepRecord) map[string]int {
	out := map[string]int{}
	for id, rec := range steps {
		rest, ok := strings.CutPrefix(id, "read:")
		if !ok {
			continue
		}
		parts := strings.Split(rest, ":") // system kind i
		require.Len(t, parts, 3, "unexpected read step id %q", id)
		i, err := strconv.Atoi(parts[2])
		if err != nil {
			t.Fatalf("unexpected read step id %q", id)
		}
		if i == 0 {
			out[parts[0]+" "+parts[1]+" -"] = 0
		}
		var res struct {
			Page crmsync.Page `json:"page"`
		}
		if err := json.Unmarshal(rec.Result, &res); err != nil {
			t.Fatalf("step %s: %v", id, err)
		}
		if res.Page.Next != "" {
			out[parts[0]+" "+parts[1]+" "+res.Page.Next] = i + 1
		}
	}
	return out
}

func TestCrashMatrixSpread(t *testing.T) {
	for _, c := range []struct{ n, limit int }{{58, 25}, {15, 25}, {26, 25}, {100, 25}, {2, 2}} {
		got := spread(c.n, c.limit)
		if len(got) > c.limit || len(got) > c.n || got[0] != 1 || got[len(got)-1] != c.n {
			t.Errorf("spread(%d, %d) = %v: want at most %d points from 1 to %d", c.n, c.limit, got, c.limit, c.n)
		}
		for i := 1; i < len(got); i++ {
			if got[i] <= got[i-1] {
				t.Errorf("spread(%d, %d) = %v is not increasing", c.n, c.limit, got)
			}
		}
		if c.n <= c.limit && len(got) != c.n {
			t.Errorf("spread(%d, %d) = %v, want every point", c.n, c.limit, got)
		}
	}
}
