package playbook

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/hubspot"
	"github.com/crmsync/crmsync/hubspot/hubspottest"
	"github.com/crmsync/crmsync/salesforce/salesforcetest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func unlimited(t *testing.T) crmsync.Limiter {
	th, err := crmsync.NewThrottle(crmsync.ThrottleConfig{InFlight: 8})
	require.NoError(t, err)
	return th
}

// fast has no rate limits anywhere, for tests about something else.
func fast(t *testing.T) harnessOpts {
	return harnessOpts{
		hs:      []hubspottest.Option{hubspottest.WithoutRateLimits()},
		clients: clientOptions{HubSpotLimiter: unlimited(t), HubSpotSearch: unlimited(t), SalesforceLimiter: unlimited(t)},
	}
}

func TestMainJobConverges(t *testing.T) {
	var out, errb bytes.Buffer
	code := Main(context.Background(), "demo", []string{"-seed", "150"}, &out, &errb, func(string) string { return "" })
	require.Equal(t, 0, code, "exit code\n%s\n%s", out.String(), errb.String())
	s := out.String()
	for _, want := range []string{"first pass (initial sync):", "second pass (after users edited both sides):", "third pass (converged): 0 written", "held conflict(s)"} {
		assert.Contains(t, s, want, "output")
	}
	assert.NotContains(t, s+errb.String(), "@both.example.com", "output contains record values (emails)")
}

func TestMainJobJSONAndPlan(t *testing.T) {
	var out, errb bytes.Buffer
	code := Main(context.Background(), "demo", []string{"-seed", "40", "-plan", "-json"}, &out, &errb, func(string) string { return "" })
	require.Equal(t, 0, code, "exit code: %s", errb.String())
	if !strings.Contains(out.String(), `"plan":true`) || !strings.Contains(out.String(), `"created":`) {
		t.Errorf("plan JSON = %s", out.String())
	}
}

// TestWriteStorm: 10,000 contacts imported on HubSpot all arrive in
// Salesforce, in batches, at no more than 0.05 API calls per record.
func TestWriteStorm(t *testing.T) {
	n := 10_000
	if testing.Short() {
		n = 2_000
	}
	h := newHarness(t, fast(t))
	h.f.hs.SeedContacts(n)
	rep := h.pass()
	if got := len(h.f.sf.All()); got != n {
		t.Logf("report: %s", rep.Summary())
		have := map[string]bool{}
		for _, r := range h.f.sf.All() {
			have[r.Fields["Email"].(string)] = true
		}
		missing := 0
		for _, r := range h.f.hs.All("contacts") {
			if !have[r.Properties["email"]] && missing < 5 {
				missing++
				t.Logf("missing %s %v", r.ID, r.UpdatedAt)
			}
		}
		t.Fatalf("Salesforce has %d contacts, want %d", got, n)
	}
	calls := 0
	for _, c := range h.f.hs.CallCounts() {
		calls += c
	}
	for _, c := range h.f.sf.Calls() {
		calls += c
	}
	perRecord := float64(calls) / float64(n)
	t.Logf("storm of %d: %d API calls (%.4f per record); report: %v", n, calls, perRecord, rep.APICalls)
	assert.LessOrEqual(t, perRecord, 0.05, "API calls per record (hubspot %v, salesforce %v)", h.f.hs.CallCounts(), h.f.sf.Calls())
	if d := rep.Directions["hubspot->salesforce"]; d.Created != n || d.DeadLetters != 0 {
		t.Errorf("hubspot->salesforce = %+v, want %d created", d, n)
	}
	h.checkNoDuplicates()
	assert.Zero(t, h.pass().Writes(), "records written by the pass after the storm")
}

// TestRateLimits: both fakes enforce their limits (HubSpot's ten-secondly
// and search limits scaled to a tenth of the window) and inject 429 bursts
// and 503s; the clients pace themselves, nothing is lost, no 429 is left
// unhandled.
func TestRateLimits(t *testing.T) {
	hsLim, err := hubspot.NewLimiter(100, time.Second, 10)
	require.NoError(t, err)
	searchLim, _ := hubspot.NewLimiter(5, 100*time.Millisecond, 5)
	h := newHarness(t, harnessOpts{
		hs: []hubspottest.Option{hubspottest.WithRateLimit(100, time.Second), hubspottest.WithSearchRateLimit(5, 100*time.Millisecond)},
		sf: []func(*salesforcetest.Config){func(c *salesforcetest.Config) { c.MaxInFlight = 4 }},
		clients: clientOptions{HubSpotLimiter: hsLim, HubSpotSearch: searchLim,
			SalesforceLimiter: func() crmsync.Limiter {
				th, _ := crmsync.NewThrottle(crmsync.ThrottleConfig{InFlight: 4})
				return th
			}()},
		sync: func(c *crmsync.SyncConfig) { c.WriteConcurrency = 8; c.PageSize = 50 },
	})
	h.f.hs.SeedContacts(600)
	seedSalesforce(h, 400)
	injected := 3
	h.f.hs.Fail(hubspottest.Fault{Kind: hubspottest.RateLimit, Count: injected, RetryAfter: 50 * time.Millisecond})
	h.f.sf.Inject(salesforcetest.Fault{Status: 503, Times: 2})
	rep := h.pass()
	t.Logf("pass: %s", rep.Summary())
	assert.Len(t, h.f.sf.All(), 1000, "Salesforce contacts")
	assert.Len(t, h.hsByEmail(), 1000, "HubSpot contacts")
	assert.Zero(t, rep.DeadLetters(), "dead letters")
	assert.LessOrEqual(t, h.f.hs.RateLimited(), injected, "HubSpot calls refused for rate, against those injected: the client outran the limit")
	assert.Zero(t, h.f.sf.RefusedInFlight(), "Salesforce requests refused over its in-flight cap of 4")
	h.checkNoDuplicates()
	assert.Zero(t, h.pass().Writes(), "records written by the second pass")
}

// TestConflicts: the owner wins, the handler is told once per run with
// every conflict, and held conflicts wait for a person's choice.
func TestConflicts(t *testing.T) {
	var mu sync.Mutex
	var calls int
	var told []crmsync.Conflict
	handler := crmsync.ConflictHandlerFunc(func(ctx context.Context, run crmsync.RunID, cs []crmsync.Conflict) error {
		mu.Lock()
		defer mu.Unlock()
		calls++
		told = append(told, cs...)
		return nil
	})
	o := fast(t)
	o.sync = func(c *crmsync.SyncConfig) { c.OnConflict = []crmsync.ConflictHandler{handler} }
	h := newHarness(t, o)
	hsIDs := h.f.hs.Seed("contacts",
		map[string]string{"email": "ada@example.com", "firstname": "Ada", "lastname": "Lovelace", "phone": "1", "lifecyclestage": "lead"},
		map[string]string{"email": "grace@example.com", "firstname": "Grace", "lastname": "Hopper", "phone": "2", "lifecyclestage": "lead"})
	first := h.pass()
	t.Logf("first pass: %s", first.Summary())
	sfBy := h.sfByEmail()
	if len(sfBy["ada@example.com"]) != 1 || len(sfBy["grace@example.com"]) != 1 {
		dls, _ := h.st.ListDeadLetters(context.Background(), crmsync.DeadLetterQuery{})
		t.Fatalf("contacts did not reach Salesforce: %d there; dead letters %+v", len(h.f.sf.All()), dls)
	}
	ada, grace := sfBy["ada@example.com"][0].ID, sfBy["grace@example.com"][0].ID

	// Both sides change Ada's stage (HubSpot owns it) and Grace's phone
	// (most recent wins, but conflicts are held).
	require.NoError(t, h.f.hs.Edit("contacts", hsIDs[0], map[string]string{"lifecyclestage": "customer"}))
	require.NoError(t, h.f.sf.Edit(ada, crmsync.Fields{"Lifecycle_Stage__c": "opportunity"}))
	require.NoError(t, h.f.hs.Edit("contacts", hsIDs[1], map[string]string{"phone": "+44 1"}))
	require.NoError(t, h.f.sf.Edit(grace, crmsync.Fields{"Phone": "+1 2"}))
	time.Sleep(3 * time.Millisecond)
	rep := h.pass()

	adaSF, _ := h.f.sf.Get(ada)
	assert.Equal(t, "customer", adaSF.Fields["Lifecycle_Stage__c"], "Salesforce stage: want HubSpot's customer (HubSpot owns it)")
	adaHS, _ := h.f.hs.Get("contacts", hsIDs[0])
	assert.Equal(t, "customer", adaHS.Properties["lifecyclestage"], "HubSpot stage: want customer kept")
	graceHS, _ := h.f.hs.Get("contacts", hsIDs[1])
	assert.Equal(t, "+44 1", graceHS.Properties["phone"], "HubSpot phone: the held conflict wrote it")
	graceSF, _ := h.f.sf.Get(grace)
	assert.Equal(t, "+1 2", graceSF.Fields["Phone"], "Salesforce phone: the held conflict wrote it")
	if calls != 1 || len(told) != 2 || rep.Conflicts != 2 || rep.Held != 1 {
		t.Fatalf("handler called %d times with %d conflicts (report %d, held %d); want once with 2, 1 held", calls, len(told), rep.Conflicts, rep.Held)
	}
	for _, c := range told {
		if c.Key != h.key || c.RecordA == "" || c.RecordB == "" {
			t.Errorf("conflict told without key or ids: %v", c)
		}
	}
	// Nothing is silently lost: the losing value is in the stored conflict.
	ctx := context.Background()
	all, _ := h.st.ListConflicts(ctx, crmsync.ConflictFilter{Key: h.key})
	var held crmsync.Conflict
	for _, c := range all {
		if c.Field == "lifecyclestage" && (c.B != "opportunity" || c.Winner != "hubspot" || c.State != crmsync.ConflictResolved) {
			t.Errorf("stage conflict = %+v, want Salesforce's value kept and HubSpot the winner", c)
		}
		if c.Held {
			held = c
		}
	}
	if held.ID == "" || held.Field != "phone" || held.State != crmsync.ConflictHeld {
		t.Fatalf("held conflict = %+v", held)
	}
	// A pass before anyone chooses tells no one again and writes nothing.
	if again := h.pass(); again.Writes() != 0 || calls != 1 {
		t.Errorf("pass with the conflict still held wrote %d and told the handler again (%d calls)", again.Writes(), calls)
	}
	// A person picks Salesforce's phone; the next pass applies it.
	require.NoError(t, h.st.ResolveConflict(ctx, held.ID, crmsync.Resolution{Pick: "salesforce"}, time.Now()))
	rep = h.pass()
	assert.Equal(t, 1, rep.Resolved, "resolutions applied")
	graceHS, _ = h.f.hs.Get("contacts", hsIDs[1])
	assert.Equal(t, "+1 2", graceHS.Properties["phone"], "HubSpot phone after resolve: want Salesforce's")
	c, _ := h.st.GetConflict(ctx, held.ID)
	assert.Equal(t, crmsync.ConflictApplied, c.State, "conflict state")
	if last := h.pass(); last.Writes() != 0 || last.Conflicts != 0 {
		t.Errorf("pass after the resolution wrote %d, %d conflicts; want 0, 0", last.Writes(), last.Conflicts)
	}
}

// blipTransport fails Salesforce writes while down.
type blipTransport struct {
	base     http.RoundTripper
	down     atomic.Bool
	refused  atomic.Int32
	onWrite  func(*http.Response) // after a write that went through
	pathPart string
}

func (b *blipTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	isWrite := strings.Contains(r.URL.Path, b.pathPart) && r.Method != http.MethodGet
	if isWrite && b.down.Load() {
		b.refused.Add(1)
		if r.Body != nil {
			io.Copy(io.Discard, r.Body)
			r.Body.Close()
		}
		return nil, errors.New("dial tcp: connect: network is unreachable")
	}
	resp, err := b.base.RoundTrip(r)
	if err == nil && isWrite && b.onWrite != nil {
		b.onWrite(resp)
	}
	return resp, err
}

// TestNetworkBlip: Salesforce is unreachable for 30 simulated seconds
// during the write step. The pass completes, nothing is lost, and the
// reads before the write are not repeated.
func TestNetworkBlip(t *testing.T) {
	blip := &blipTransport{base: http.DefaultTransport, pathPart: "/composite/sobjects"}
	var simulated atomic.Int64
	o := fast(t)
	o.clients.HTTPClient = &http.Client{Transport: blip}
	o.engine = func(c *crmsync.Config) {
		c.Retry = &crmsync.RetryPolicy{MaxAttempts: 20, InitialInterval: time.Second, MaxInterval: 8 * time.Second, Multiplier: 2}
		c.Sleep = func(ctx context.Context, d time.Duration) error {
			if time.Duration(simulated.Add(int64(d))) >= 30*time.Second {
				blip.down.Store(false) // the network is back
			}
			return ctx.Err()
		}
	}
	h := newHarness(t, o)
	h.f.hs.SeedContacts(120)
	blip.down.Store(true)
	rep := h.pass()
	require.NotZero(t, blip.refused.Load(), "the blip refused no write; the test tested nothing")
	assert.Len(t, h.f.sf.All(), 120, "Salesforce contacts after the blip")
	// The same pass without the blip makes the same reads.
	control := newHarness(t, fast(t))
	control.f.hs.SeedContacts(120)
	control.pass()
	for _, ep := range []string{"query", "queryAll", "describe", "deleted"} {
		assert.Equal(t, control.f.sf.Calls()[ep], h.f.sf.Calls()[ep], "Salesforce %s calls, against a run without the blip: the reads were repeated", ep)
	}
	for _, ep := range []string{"search", "list", "properties"} {
		assert.Equal(t, control.f.hs.CallCounts()[ep], h.f.hs.CallCounts()[ep], "HubSpot %s calls, against a run without the blip: the reads were repeated", ep)
	}
	if rep.Retries == 0 || time.Duration(simulated.Load()) < 30*time.Second {
		t.Errorf("retries %d over %s simulated, want the step retried through 30s", rep.Retries, time.Duration(simulated.Load()))
	}
	h.checkNoDuplicates()
}

// TestCrashDuringWriteNoDuplicate: the process dies after Salesforce
// accepted a batch of creates but before the step's checkpoint. The
// resumed run repeats the write, which finds the records the first one made.
func TestCrashDuringWriteNoDuplicate(t *testing.T) {
	blip := &blipTransport{base: http.DefaultTransport, pathPart: "/composite/sobjects/Contact/"}
	ctx, crash := context.WithCancel(context.Background())
	blip.onWrite = func(*http.Response) { crash() } // dies right after the call
	o := fast(t)
	o.clients.HTTPClient = &http.Client{Transport: blip}
	h := newHarness(t, o)
	h.f.hs.SeedContacts(150)
	time.Sleep(3 * time.Millisecond) // seeded before the pass's window ends
	first, err := h.eng.Run(ctx, h.key, h.sync)
	require.Error(t, err, "the crashed run reported success")
	require.Len(t, h.f.sf.All(), 150, "Salesforce contacts after the crash: want the 150 the lost call made")
	blip.onWrite = nil
	info, err := h.eng.Run(context.Background(), h.key, h.sync)
	require.NoError(t, err)
	assert.Equal(t, first.ID, info.ID, "resumed run")
	assert.Len(t, h.f.sf.All(), 150, "Salesforce contacts after resume (no duplicates)")
	h.checkNoDuplicates()
	links, _ := h.st.LinksByA(context.Background(), h.key, hsIDs(h))
	assert.Len(t, links, 150, "links")
}

func hsIDs(h *harness) []string {
	var ids []string
	for _, r := range h.f.hs.All("contacts") {
		ids = append(ids, r.ID)
	}
	return ids
}

func TestSchemaDriftWarnsOnly(t *testing.T) {
	h := newHarness(t, fast(t))
	h.f.hs.SeedContacts(5)
	h.pass()
	h.f.hs.DefineProperty("contacts", hubspottest.Property{Name: "favourite_colour", Type: "string", FieldType: "text"})
	rep := h.pass()
	found := false
	for _, w := range rep.Drift {
		if strings.Contains(w, "favourite_colour") && strings.Contains(w, "not mapped") {
			found = true
		}
	}
	assert.True(t, found, "drift warnings %v lack the new field", rep.Drift)
}

func TestArchivePropagatesAsFlag(t *testing.T) {
	h := newHarness(t, fast(t))
	ids := h.f.hs.SeedContacts(3)
	h.pass()
	sfID := h.sfByEmail()["contact"+ids[0]+"@example.com"]
	require.Len(t, sfID, 1, "counterpart")
	require.NoError(t, h.f.hs.Archive("contacts", ids[0]))
	time.Sleep(3 * time.Millisecond)
	// HubSpot's recycle bin is read on its own cadence (an hour by
	// default); a deletion event asks for it at once, as here.
	h.sync.RequestArchivedRead(h.key, "hubspot")
	rep := h.pass()
	r, _ := h.f.sf.Get(sfID[0].ID)
	if r.Fields["Archived__c"] != true || r.Archived {
		t.Errorf("Salesforce contact: Archived__c = %v, deleted %v; want the flag set and the record kept", r.Fields["Archived__c"], r.Archived)
	}
	assert.Equal(t, 1, rep.Directions["hubspot->salesforce"].Archived, "report archived: %+v", rep.Directions["hubspot->salesforce"])
	require.NoError(t, h.f.hs.Restore("contacts", ids[0]))
	time.Sleep(3 * time.Millisecond)
	h.pass()
	restored, _ := h.f.sf.Get(sfID[0].ID)
	assert.Equal(t, false, restored.Fields["Archived__c"], "Archived__c after restore")
	// Deleting in Salesforce flags the HubSpot contact.
	require.NoError(t, h.f.sf.Delete(sfID[0].ID))
	time.Sleep(3 * time.Millisecond)
	h.pass()
	if r, _ := h.f.hs.Get("contacts", ids[0]); r.Properties["crmsync_archived"] != "true" || r.Archived {
		t.Errorf("HubSpot contact after the Salesforce delete: crmsync_archived = %q, archived %v", r.Properties["crmsync_archived"], r.Archived)
	}
}

func TestInvalidRecordsDeadLetterOnceAndReplay(t *testing.T) {
	h := newHarness(t, fast(t))
	ids := h.f.hs.Seed("contacts",
		map[string]string{"email": "ok@example.com", "firstname": "Ok", "lastname": "Fine"},
		map[string]string{"email": "nolast@example.com", "firstname": "No"}) // Salesforce requires LastName
	rep := h.pass()
	ctx := context.Background()
	dls, _ := h.st.ListDeadLetters(ctx, crmsync.DeadLetterQuery{Key: h.key})
	if len(dls) != 1 || rep.DeadLetters() != 1 || !strings.Contains(dls[0].Error, "REQUIRED_FIELD_MISSING") {
		t.Fatalf("dead letters = %+v (report %d), want the contact without a last name", dls, rep.DeadLetters())
	}
	assert.Len(t, h.f.sf.All(), 1, "Salesforce contacts: the valid contact did not go on")
	// Re-read in the overlap window, it is not parked again.
	assert.Zero(t, h.pass().DeadLetters(), "the same refusal was parked again")
	rows, _ := h.st.QueryAudit(ctx, crmsync.AuditQuery{Kind: crmsync.AuditDeadLetter})
	assert.Len(t, rows, 1, "dead-letter audit rows")
	// A person fixes the record in HubSpot and replays the letter.
	require.NoError(t, h.f.hs.Edit("contacts", ids[1], map[string]string{"lastname": "Longer"}))
	require.NoError(t, h.st.SetDeadLetterStatus(ctx, dls[0].ID, crmsync.DeadReplay, time.Now()))
	time.Sleep(3 * time.Millisecond)
	rep = h.pass()
	if rep.Replayed != 1 || len(h.f.sf.All()) != 2 {
		t.Errorf("after replay: replayed %d, Salesforce has %d contacts; want 1 and 2", rep.Replayed, len(h.f.sf.All()))
	}
}

func TestPlanWritesNothing(t *testing.T) {
	h := newHarness(t, fast(t))
	h.f.hs.SeedContacts(30)
	seedSalesforce(h, 20)
	time.Sleep(3 * time.Millisecond)
	rep, err := h.sync.Plan(context.Background(), h.st, h.key, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	if !rep.Plan || rep.Directions["hubspot->salesforce"].Created != 30 || rep.Directions["salesforce->hubspot"].Created != 20 {
		t.Errorf("plan = %s", rep.Summary())
	}
	assert.Len(t, h.f.sf.All(), 20, "the plan wrote to Salesforce")
	assert.Len(t, h.f.hs.All("contacts"), 30, "the plan wrote to HubSpot")
	runs, _ := h.st.ListRuns(context.Background(), "", 0)
	assert.Empty(t, runs, "the plan left runs in the store")
	c, _ := h.st.ListCursors(context.Background(), h.key)
	assert.Empty(t, c, "the plan moved cursors")
}

// seedSalesforce adds n contacts with emails unlike the HubSpot fake's.
func seedSalesforce(h *harness, n int) []string {
	fs := make([]crmsync.Fields, n)
	for i := range fs {
		fs[i] = crmsync.Fields{"FirstName": "Sales", "LastName": fmt.Sprintf("Person%d", i), "Email": fmt.Sprintf("sf-person-%d@example.com", i)}
	}
	return h.f.sf.Seed(fs...)
}

// must stops the test on err. Other playbook tests still call it; the
// tests in this file use require.NoError directly.
func must(t *testing.T, err error) {
	t.Helper()
	require.NoError(t, err)
}

func TestMainJobEveryStopsOnCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var out, errb syncWriter
	done := make(chan int)
	go func() {
		done <- Main(ctx, "demo", []string{"-seed", "20", "-every", "20ms", "-json"}, &out, &errb, func(string) string { return "" })
	}()
	deadline := time.Now().Add(30 * time.Second)
	for strings.Count(out.String(), `"pass"`) < 3 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	require.Equal(t, 0, <-done, "exit code: %s", errb.String())
	assert.GreaterOrEqual(t, strings.Count(out.String(), `"pass"`), 3, "passes before cancel:\n%s", out.String())
	var bad bytes.Buffer
	if code := Main(context.Background(), "demo", []string{"-cron", "not a cron"}, &bad, &bad, func(string) string { return "" }); code != 2 || !strings.Contains(bad.String(), "cron expression") {
		t.Errorf("bad -cron: exit %d, %q", code, bad.String())
	}
}

// syncWriter is a bytes.Buffer safe for a writer and a reader.
type syncWriter struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (w *syncWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *syncWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}
