package playbook

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"pgregory.net/rapid"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/hubspot"
	"github.com/crmsync/crmsync/hubspot/hubspottest"
	"github.com/crmsync/crmsync/internal/rapidtest"
	"github.com/crmsync/crmsync/salesforce"
	"github.com/crmsync/crmsync/salesforce/salesforcetest"
)

// TestGraphModel is the model test of the playbook's graph (NewGraph:
// companies <-> Accounts, contacts <-> Leads and Contacts, deals <->
// Opportunities) through the real clients against both fakes in the
// hostile world of TestModel (model_hostile_test.go): search lag, clock
// skew, shared stamps, whole-batch refusals and slow passes on a virtual
// clock, with random faults (429, 5xx, resets, expired tokens and
// sessions, lost write responses) and crashes at step boundaries, after a
// checkpoint or instead of it (the next pass runs in a restarted process
// on the same Store).
//
// Users on both sides create companies/accounts, contacts (HubSpot's
// routed to Leads or Contacts by lifecycle stage; Salesforce's as Contacts
// with an account), deals/opportunities with a company and contacts;
// re-parent contacts and deals; change a deal's contacts; edit names and
// the sales fields Salesforce owns; convert Leads; archive companies while
// their contacts and deals live (in Salesforce a deleted account takes its
// contacts and opportunities with it, as Salesforce does).
//
// Known limits this model works with, as documented: an association-only
// change does not stamp a HubSpot record, so the fake runs with
// WithAssociationsTouch (a portal where such changes are seen); a
// contact-role change does not stamp its Opportunity, so the Salesforce
// user's role change is made together with an edit of the opportunity
// (Touch), as the sync reads only changed records.
//
// After the faults stop, search settles and refused batches are replayed,
// quiet passes run until one writes nothing and each pair's delayed window
// has covered the story (an edit search listed late, to a record the
// passes knew, waits for it: a delayed window checked by count vouches
// only up to the first record it knows that may have been stamped again,
// and the rest waits for the next hourly one). Then the test checks:
//
//   - no duplicate: each record is linked at most once, and no two live
//     Salesforce records carry the same HubSpot id;
//   - every live record of a pair is linked (nothing left behind);
//   - no dangling reference: a Salesforce AccountId names an existing
//     account, a contact role a live contact;
//   - references agree: a linked pair's company references point at each
//     other's counterparts (a Salesforce account HubSpot does not name
//     only while that account has no live counterpart), and a deal's
//     contacts (those synced as Contacts) are the opportunity's contact
//     roles;
//   - no lost owner edit: the last Salesforce edit of an opportunity's
//     stage and amount is on both sides;
//   - nothing is left in the dead-letter queue.
//
// CI runs the fixed seeds of TestGraphModelSeeds (a tally fails it if
// an action or a check never happened over them); TestGraphModel runs a
// few fresh cases, and hunts with many more:
//
//	RAPID_CHECKS=200 go test ./playbook -run 'TestGraphModel$'
//
// Users put children in any live parent, including one whose counterpart
// is archived or deleted on the other side (the CRM refuses that
// reference; the child is written without it, see
// TestGraphChildOfAnArchivedCompany), and archive or delete any parent.
//
// A failing case prints its story; replay it with
//
//	go test ./playbook -run 'TestGraphModel$' -rapid.seed=N
//
// (MODEL_DEBUG=1 adds the audit rows to the story, MODEL_SLOG=1 writes the
// sync's debug log to stderr.)
func TestGraphModel(t *testing.T) {
	setDefaultChecks(t, 3)
	rapid.Check(t, graphModelCase(graphTally{}))
}

// graphModelSeedRange is how many fixed seeds (1, 2, …) CI runs.
const graphModelSeedRange = 40

// graphModelSeeds are seeds CI runs besides the range (seeds that failed
// once, each fixed since).
var graphModelSeeds = []uint64{
	8531373622830431240,  // a replay refused again after the quiet passes stopped replaying
	11976570161947583261, // a resumed run's write to a Lead converted since it was read
	10672102022051789528, // a resumed run's write to a Contact deleted with its account since it was read
	13289389590941822557, // a deal's contact added while a Lead, converted later: the deal never read again
	2771868193441,        // a write after SettleSearch hid its record from search in the fake, so a count missed a company never read
	16531949909304811463, // a create that landed, its repeat refused: the next pass upserted it again over the rep's stage
	5046766191221811292,  // a Lead converted while a run was stopped: the resumed run read the new Contact first and created it in HubSpot
	16018561320846230099, // a deal's contact added, search listing it late: the quiet passes stopped before the delayed window reached it
}

// TestGraphModelSeeds runs TestGraphModel's case for fixed seeds.
func TestGraphModelSeeds(t *testing.T) {
	seeds := slices.Clone(graphModelSeeds)
	for n := uint64(1); n <= graphModelSeedRange; n++ {
		if !slices.Contains(seeds, n) {
			seeds = append(seeds, n)
		}
	}
	if testing.Short() {
		seeds = seeds[:4]
	}
	tally := graphTally{}
	for _, seed := range seeds {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			rapidtest.Replay(t, seed, 1, graphModelCase(tally))
		})
	}
	if testing.Short() || t.Failed() {
		return
	}
	// The fixed seeds exercise every action and check: a model that
	// tests nothing shows here.
	for _, what := range []string{"conversion", "hubspot re-parent", "salesforce re-parent", "hubspot company archived",
		"salesforce account deleted", "deal contacts", "crash", "lost write response", "contact company checked",
		"deal company checked", "deal roles checked", "owner edit checked", "lead linked", "child of an archived parent"} {
		assert.Positive(t, tally[what], "no seed exercised %q: %v", what, tally)
	}
}

// graphTally counts what the cases exercised, by name.
type graphTally map[string]int

func graphModelCase(tally graphTally) func(*rapid.T) {
	return func(rt *rapid.T) {
		m := newGraphModel(rt)
		m.tally = tally
		m.play()
		m.quiesce()
		m.check()
	}
}

// gmodel is one case of the graph model.
type gmodel struct {
	t     *rapid.T
	w     hostileWorld
	clock *vclock
	f     *fakes
	st    *modelStore
	tr    *lossyTransport
	eng   *crmsync.Engine
	g     *crmsync.Graph
	key   string
	n     int
	log   []string

	passes, crashes int
	tally           graphTally
	// stage and amount hold the last Salesforce edit of an opportunity's
	// owned fields (by Salesforce id).
	stage, amount map[string]any
	// archived are the records users archived or deleted (either side).
	archived map[string]bool
}

func newGraphModel(t *rapid.T) *gmodel {
	w := drawWorld(t)
	w.inPass, w.schema, w.merges = false, false, false // contacts-only machinery
	clock := newVclock()
	hsOpts := append(w.hsOptions(clock), hubspottest.WithAssociationsTouch())
	f, closeFn, err := startFakes(hsOpts, w.sfOptions(clock))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(closeFn)
	m := &gmodel{t: t, w: w, clock: clock, f: f, st: newModelStore(), key: "acme",
		stage: map[string]any{}, amount: map[string]any{}, archived: map[string]bool{}}
	base := http.DefaultTransport.(*http.Transport).Clone()
	t.Cleanup(base.CloseIdleConnections)
	m.tr = &lossyTransport{base: base, before: func(*http.Request) { clock.Advance(w.reqStep) }}
	m.logf("world: %s", w)
	m.restart()
	return m
}

func (m *gmodel) logf(format string, args ...any) {
	at := m.clock.Now().Sub(modelEpoch).Round(time.Second)
	m.log = append(m.log, fmt.Sprintf("[+%v] ", at)+fmt.Sprintf(format, args...))
}

func (m *gmodel) fail(format string, args ...any) {
	m.t.Helper()
	for _, key := range m.letterKeys() {
		letters, _ := allDeadLetters(context.Background(), m.st, key)
		for _, d := range letters {
			m.logf("dead letter %d key %s step %s status %s: %s %s: %s", d.ID, key, d.Step, d.Status, d.System, d.RecordID, d.Error)
		}
	}
	if os.Getenv("MODEL_DEBUG") != "" {
		rows, _ := m.st.QueryAudit(context.Background(), crmsync.AuditQuery{Limit: 5000})
		for _, a := range rows {
			if a.Kind == crmsync.AuditWrite || a.Kind == crmsync.AuditDeadLetter || a.Kind == crmsync.AuditConflict {
				m.logf("audit run %s %s %s %s %v %s", a.Run, a.Step, a.Kind, a.System, a.RecordIDs, a.Detail)
			}
		}
	}
	m.t.Logf("story (%d passes, %d crashes, %d lost write responses):\n  %s", m.passes, m.crashes, m.tr.lost.Load(), strings.Join(m.log, "\n  "))
	m.t.Fatalf(format, args...)
}

func (m *gmodel) must(err error) {
	m.t.Helper()
	if err != nil {
		m.fail("%v", err)
	}
}

// restart builds a new process (clients, graph, engine) on the same Store
// and fakes.
func (m *gmodel) restart() {
	httpc := &http.Client{Transport: m.tr, Timeout: modelTimeout}
	hc, err := hubspot.New(hubspot.Config{
		OAuth: &hubspot.OAuth{ClientID: hubspottest.DefaultClientID, ClientSecret: hubspottest.DefaultClientSecret,
			RefreshToken: hubspottest.DefaultRefreshToken},
		BaseURL: m.f.hsURL, HTTPClient: httpc,
		Limiter: noLimits(), SearchLimiter: noLimits(), DailyBudget: -1,
		RetryInitial: 2 * time.Millisecond, RetryMax: 20 * time.Millisecond,
		RateLimitWait: 5 * time.Millisecond, SearchRateLimitWait: 5 * time.Millisecond, Now: m.clock.Now,
	})
	m.must(err)
	sc, err := salesforce.New(salesforce.Config{
		LoginURL: m.f.sfURL, HTTPClient: &http.Client{Transport: m.tr},
		ClientCredentials: &salesforce.ClientCredentialsAuth{ClientID: "fake-client-id", ClientSecret: "fake-client-secret"},
		Limiter:           noLimits(), RetryWait: 2 * time.Millisecond, RequestTimeout: modelTimeout,
		DefaultFields: []string{"Id"}, Now: m.clock.Now,
	})
	m.must(err)
	m.g, err = NewGraph(hc, sc, GraphConfig{Edit: func(_ string, c *crmsync.SyncConfig) {
		c.Now, c.PageSize, c.WriteConcurrency = m.clock.Now, 3, 2
	}})
	m.must(err)
	lg := slog.New(slog.DiscardHandler)
	if os.Getenv("MODEL_SLOG") != "" {
		lg = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	m.eng, err = crmsync.NewEngine(crmsync.Config{Store: m.st, Logger: lg,
		Retry: &crmsync.RetryPolicy{MaxAttempts: 4, InitialInterval: time.Millisecond, MaxInterval: 5 * time.Millisecond, Multiplier: 2},
		Sleep: func(ctx context.Context, d time.Duration) error {
			t := time.NewTimer(min(d, 20*time.Millisecond))
			defer t.Stop()
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-t.C:
				return nil
			}
		},
	})
	m.must(err)
}

// Records of either side, live.

func (m *gmodel) liveHS(object string) []string {
	var ids []string
	for _, r := range m.f.hs.All(object) {
		if !r.Archived {
			ids = append(ids, r.ID)
		}
	}
	return ids
}

func (m *gmodel) liveSF(object string) []string {
	var ids []string
	for _, r := range m.f.sf.All() {
		if !r.Archived && objectOf(r.ID) == object && r.Fields["IsConverted"] != true {
			ids = append(ids, r.ID)
		}
	}
	return ids
}

// refAccounts are the live accounts a Salesforce user may put a child
// in: any, including those whose HubSpot company is archived.
func (m *gmodel) refAccounts() []string { return m.liveSF("Account") }

// refCompanies are the live companies a HubSpot user may put a child in:
// any, including those whose account Salesforce deleted.
func (m *gmodel) refCompanies() []string { return m.liveHS("companies") }

// orphanParent tallies a child put in a parent whose counterpart is
// archived (a HubSpot company) or deleted (a Salesforce account) on the
// other side: the reference the sync cannot write there.
func (m *gmodel) orphanParent(id string) {
	if id == "" {
		return
	}
	if objectOf(id) == "Account" {
		for _, r := range m.f.hs.All("companies") {
			if r.Archived && r.Properties[hubspotCompanyLinkField] == id {
				m.tally["child of an archived parent"]++
				return
			}
		}
		return
	}
	r, _ := m.f.hs.Get("companies", id)
	if acct := r.Properties[hubspotCompanyLinkField]; acct != "" && !m.sfLive(acct) {
		m.tally["child of an archived parent"]++
	}
}

// maybe draws one of ids or "".
func (m *gmodel) maybe(ids []string, what string) string {
	if len(ids) == 0 || rapid.IntRange(0, 3).Draw(m.t, "no "+what) == 0 {
		return ""
	}
	return rapid.SampledFrom(ids).Draw(m.t, what)
}

var (
	hsPrimaryCompany = hubspottest.AssociationType{Category: hubspottest.HubSpotDefined, TypeID: hubspottest.ContactToCompanyPrimary}
	hsDealCompany    = hubspottest.AssociationType{Category: hubspottest.HubSpotDefined, TypeID: hubspottest.DealToCompanyPrimary}
	hsDealStages     = []string{"appointmentscheduled", "qualifiedtobuy", "presentationscheduled", "decisionmakerboughtin", "contractsent"}
	sfStages         = []string{"Prospecting", "Qualification", "Value Proposition", "Closed Won"}
)

// act plays one user action on one side.
func (m *gmodel) act() {
	m.n++
	n := m.n
	hs, sf := m.f.hs, m.f.sf
	onHS := rapid.Bool().Draw(m.t, "hubspot side")
	switch a := rapid.IntRange(0, 9).Draw(m.t, "action"); {
	case a == 0 && onHS:
		id := hs.Seed("companies", map[string]string{"name": fmt.Sprintf("Co %d", n), "domain": fmt.Sprintf("co%d.example.com", n)})[0]
		m.logf("hubspot: company %s created", id)
	case a == 0:
		id := sf.SeedRecords("Account", crmsync.Fields{"Name": fmt.Sprintf("Account %d", n)})[0]
		m.logf("salesforce: account %s created", id)
	case a == 1 && onHS:
		stage := rapid.SampledFrom(modelStages).Draw(m.t, "lifecycle stage")
		id := hs.Seed("contacts", map[string]string{"email": fmt.Sprintf("p%d@hs.example.com", n), "firstname": "P",
			"lastname": fmt.Sprintf("Person %d", n), "lifecyclestage": stage})[0]
		co := m.maybe(m.refCompanies(), "company")
		if co != "" {
			m.must(hs.Associate("contacts", id, "companies", co, hsPrimaryCompany))
		}
		m.orphanParent(co)
		m.logf("hubspot: contact %s (%s) created, company %q", id, stage, co)
	case a == 1:
		acct := m.maybe(m.refAccounts(), "account")
		m.orphanParent(acct)
		f := crmsync.Fields{"Email": fmt.Sprintf("p%d@sf.example.com", n), "FirstName": "P", "LastName": fmt.Sprintf("Person %d", n)}
		if acct != "" {
			f["AccountId"] = acct
		}
		id := sf.SeedRecords("Contact", f)[0]
		m.logf("salesforce: contact %s created, account %q", id, acct)
	case a == 2 && onHS:
		id := hs.Seed("deals", map[string]string{"dealname": fmt.Sprintf("Deal %d", n),
			"dealstage": rapid.SampledFrom(hsDealStages).Draw(m.t, "deal stage"), "amount": fmt.Sprint(1000 * n), "closedate": "2027-03-31"})[0]
		co := m.maybe(m.refCompanies(), "company")
		if co != "" {
			m.must(hs.Associate("deals", id, "companies", co, hsDealCompany))
		}
		m.orphanParent(co)
		cs := m.someOf(m.liveHS("contacts"))
		for _, c := range cs {
			m.must(hs.Associate("deals", id, "contacts", c))
		}
		m.logf("hubspot: deal %s created, company %q, contacts %v", id, co, cs)
	case a == 2:
		acct := m.maybe(m.refAccounts(), "account")
		m.orphanParent(acct)
		f := crmsync.Fields{"Name": fmt.Sprintf("Opportunity %d", n), "StageName": rapid.SampledFrom(sfStages).Draw(m.t, "stage"),
			"CloseDate": "2027-06-30", "Amount": float64(500 * n)}
		if acct != "" {
			f["AccountId"] = acct
		}
		id := sf.SeedRecords("Opportunity", f)[0]
		m.stage[id], m.amount[id] = f["StageName"], f["Amount"]
		cs := m.someOf(m.liveSF("Contact"))
		for _, c := range cs {
			_, err := sf.AddContactRole(id, c, "Decision Maker", false)
			m.must(err)
		}
		m.logf("salesforce: opportunity %s created, account %q, roles %v", id, acct, cs)
	case a == 3 && onHS: // re-parent a contact or a deal
		obj := rapid.SampledFrom([]string{"contacts", "deals"}).Draw(m.t, "object")
		ids, cos := m.liveHS(obj), m.refCompanies()
		if len(ids) == 0 || len(cos) == 0 {
			return
		}
		id, co := rapid.SampledFrom(ids).Draw(m.t, "child"), rapid.SampledFrom(cos).Draw(m.t, "company")
		typ := hsPrimaryCompany
		if obj == "deals" {
			typ = hsDealCompany
		}
		m.must(hs.Associate(obj, id, "companies", co, typ))
		m.orphanParent(co)
		m.tally["hubspot re-parent"]++
		m.logf("hubspot: %s %s moved to company %s", obj, id, co)
	case a == 3:
		obj := rapid.SampledFrom([]string{"Contact", "Opportunity"}).Draw(m.t, "object")
		ids, accts := m.liveSF(obj), m.refAccounts()
		if len(ids) == 0 || len(accts) == 0 {
			return
		}
		id, acct := rapid.SampledFrom(ids).Draw(m.t, "child"), rapid.SampledFrom(accts).Draw(m.t, "account")
		m.must(sf.Edit(id, crmsync.Fields{"AccountId": acct}))
		m.orphanParent(acct)
		m.tally["salesforce re-parent"]++
		m.logf("salesforce: %s %s moved to account %s", obj, id, acct)
	case a == 4 && onHS: // a deal's contacts
		deals, cs := m.liveHS("deals"), m.liveHS("contacts")
		if len(deals) == 0 || len(cs) == 0 {
			return
		}
		d, c := rapid.SampledFrom(deals).Draw(m.t, "deal"), rapid.SampledFrom(cs).Draw(m.t, "contact")
		if slices.ContainsFunc(hs.Associations("deals", d, "contacts"), func(x hubspottest.Association) bool { return x.ToID == c }) {
			hs.Dissociate("deals", d, "contacts", c)
			m.tally["deal contacts"]++
			m.logf("hubspot: contact %s taken off deal %s", c, d)
		} else {
			m.must(hs.Associate("deals", d, "contacts", c))
			m.logf("hubspot: contact %s added to deal %s", c, d)
		}
	case a == 4:
		opps, cs := m.liveSF("Opportunity"), m.liveSF("Contact")
		if len(opps) == 0 || len(cs) == 0 {
			return
		}
		o, c := rapid.SampledFrom(opps).Draw(m.t, "opportunity"), rapid.SampledFrom(cs).Draw(m.t, "contact")
		if slices.Contains(sf.ContactRoles(o), c) {
			return // removing a role is not modelled by the fake's user API
		}
		_, err := sf.AddContactRole(o, c, "Influencer", false)
		m.must(err)
		// A role change does not stamp the opportunity (a documented
		// limit): the user edits the opportunity too.
		m.must(sf.Edit(o, crmsync.Fields{"Name": fmt.Sprintf("Opportunity %d (roles)", n)}))
		m.tally["deal contacts"]++
		m.logf("salesforce: contact %s given a role on opportunity %s (and the opportunity renamed)", c, o)
	case a == 5 && onHS: // HubSpot edits a deal: the name is its to win, the stage is not
		deals := m.liveHS("deals")
		if len(deals) == 0 {
			return
		}
		d := rapid.SampledFrom(deals).Draw(m.t, "deal")
		stage := rapid.SampledFrom(hsDealStages).Draw(m.t, "deal stage")
		m.must(hs.Edit("deals", d, map[string]string{"dealname": fmt.Sprintf("Deal %d", n), "dealstage": stage}))
		m.logf("hubspot: deal %s renamed, stage %s", d, stage)
	case a == 5: // Salesforce's owner edit
		opps := m.liveSF("Opportunity")
		if len(opps) == 0 {
			return
		}
		o := rapid.SampledFrom(opps).Draw(m.t, "opportunity")
		stage, amount := rapid.SampledFrom(sfStages).Draw(m.t, "stage"), float64(100*n)
		m.must(sf.Edit(o, crmsync.Fields{"StageName": stage, "Amount": amount}))
		m.stage[o], m.amount[o] = stage, amount
		m.logf("salesforce: opportunity %s stage %s amount %v", o, stage, amount)
	case a == 6: // lead conversion
		leads := m.liveSF("Lead")
		if len(leads) == 0 {
			return
		}
		l := rapid.SampledFrom(leads).Draw(m.t, "lead")
		opts := salesforcetest.ConvertOptions{DoNotCreateOpportunity: rapid.Bool().Draw(m.t, "no opportunity")}
		if accts := m.refAccounts(); len(accts) > 0 && rapid.Bool().Draw(m.t, "into an account") {
			opts.AccountID = rapid.SampledFrom(accts).Draw(m.t, "account")
		}
		res, err := sf.ConvertLead(l, opts)
		m.must(err)
		if res.OpportunityID != "" {
			r, _ := sf.Get(res.OpportunityID)
			m.stage[res.OpportunityID], m.amount[res.OpportunityID] = r.Fields["StageName"], r.Fields["Amount"]
		}
		m.tally["conversion"]++
		m.logf("salesforce: lead %s converted: account %s contact %s opportunity %q", l, res.AccountID, res.ContactID, res.OpportunityID)
	case a == 7 && onHS: // a parent archived while its children live
		cos := m.liveHS("companies")
		if len(cos) == 0 {
			return
		}
		co := rapid.SampledFrom(cos).Draw(m.t, "company")
		m.must(hs.Archive("companies", co))
		m.archived[co] = true
		m.tally["hubspot company archived"]++
		m.logf("hubspot: company %s archived", co)
	case a == 7:
		accts := m.liveSF("Account")
		if len(accts) == 0 {
			return
		}
		acct := rapid.SampledFrom(accts).Draw(m.t, "account")
		m.must(sf.Delete(acct))
		m.archived[acct] = true
		m.tally["salesforce account deleted"]++
		m.logf("salesforce: account %s deleted (its contacts and opportunities with it)", acct)
	default: // identity edits on either side
		if onHS {
			if cos := m.liveHS("companies"); len(cos) > 0 {
				co := rapid.SampledFrom(cos).Draw(m.t, "company")
				m.must(hs.Edit("companies", co, map[string]string{"name": fmt.Sprintf("Co %d renamed", n)}))
				m.logf("hubspot: company %s renamed", co)
			}
			return
		}
		if accts := m.liveSF("Account"); len(accts) > 0 {
			acct := rapid.SampledFrom(accts).Draw(m.t, "account")
			m.must(sf.Edit(acct, crmsync.Fields{"Name": fmt.Sprintf("Account %d renamed", n)}))
			m.logf("salesforce: account %s renamed", acct)
		}
	}
}

// someOf draws up to two of ids.
func (m *gmodel) someOf(ids []string) []string {
	var out []string
	for range rapid.IntRange(0, 2).Draw(m.t, "how many") {
		if len(ids) == 0 {
			break
		}
		c := rapid.SampledFrom(ids).Draw(m.t, "one")
		if !slices.Contains(out, c) {
			out = append(out, c)
		}
	}
	return out
}

func (m *gmodel) play() {
	rounds := rapid.IntRange(2, 6).Draw(m.t, "rounds")
	for i := range rounds {
		m.clock.Advance(time.Duration(rapid.IntRange(0, 240).Draw(m.t, "pause")) * time.Second)
		for range rapid.IntRange(1, 6).Draw(m.t, "actions") {
			m.clock.Advance(time.Duration(rapid.IntRange(0, 20).Draw(m.t, "think")) * time.Second)
			m.act()
		}
		m.clock.Advance(time.Duration(rapid.IntRange(0, 120).Draw(m.t, "wait")) * time.Second)
		m.faultyPass(i)
	}
}

// faultyPass runs a pass under random faults and maybe a crash.
func (m *gmodel) faultyPass(round int) {
	var armed []string
	for range rapid.IntRange(0, 3).Draw(m.t, fmt.Sprintf("faults%d", round)) {
		kind := rapid.SampledFrom([]string{"hs 429", "hs 5xx", "hs reset", "hs token expiry", "sf 503", "sf reset",
			"sf session expiry", "lost write response"}).Draw(m.t, "fault")
		n := rapid.IntRange(1, 3).Draw(m.t, "count")
		armed = append(armed, fmt.Sprintf("%s×%d", kind, n))
		switch kind {
		case "hs 429":
			m.f.hs.Fail(hubspottest.Fault{Kind: hubspottest.RateLimit, Count: n})
		case "hs 5xx":
			m.f.hs.Fail(hubspottest.Fault{Kind: hubspottest.ServerError, Status: 502, Count: n})
		case "hs reset":
			m.f.hs.Fail(hubspottest.Fault{Kind: hubspottest.Reset, Count: n})
		case "hs token expiry":
			m.f.hs.ExpireTokens()
		case "sf 503":
			m.f.sf.Inject(salesforcetest.Fault{Status: 503, Times: n})
		case "sf reset":
			m.f.sf.Inject(salesforcetest.Fault{Reset: true, Times: n})
		case "sf session expiry":
			m.f.sf.ExpireSessions()
		case "lost write response":
			m.tr.lose.Store(int32(n))
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	crash := m.st.drawCrash(m.t, round, 30, cancel)
	_, info, err := m.pass(ctx)
	crashed := m.st.disarm()
	m.logf("pass %d (run %s) faults %v%s: crashed %v, err %v", m.passes, info.ID, armed, crash, crashed, err)
	m.f.hs.ClearFaults()
	m.f.sf.ClearFaults()
	m.tr.lose.Store(0)
	if crashed {
		m.crashes++
		m.tally["crash"]++
		m.restart()
	}
}

func (m *gmodel) pass(ctx context.Context) (*crmsync.GraphReport, crmsync.RunInfo, error) {
	m.clock.Advance(time.Second)
	m.passes++
	rep, info, err := m.g.RunOnce(ctx, m.eng, m.key)
	m.clock.Advance(time.Second)
	return rep, info, err
}

// replayRefusals marks for replay the parked letters of batches the fakes
// refused whole.
func (m *gmodel) replayRefusals() int {
	ctx := context.Background()
	n := 0
	for _, key := range m.letterKeys() {
		letters, err := allDeadLetters(ctx, m.st, key)
		m.must(err)
		for _, d := range letters {
			if d.Status != crmsync.DeadParked && d.Status != crmsync.DeadFailedAgain || !refusedWhole(d.Error) {
				continue
			}
			m.must(m.st.SetDeadLetterStatus(ctx, d.ID, crmsync.DeadReplay, time.Now()))
			n++
		}
	}
	return n
}

// pendingReplays counts the letters of batches refused whole that wait for
// a replay: marked for one no run has made yet (a resumed run replays only
// the letters it claimed when it began), or whose replay was refused again.
// The graph has not settled while one waits.
func (m *gmodel) pendingReplays() int {
	n := 0
	for _, key := range m.letterKeys() {
		letters, err := allDeadLetters(context.Background(), m.st, key)
		m.must(err)
		for _, d := range letters {
			if d.Status == crmsync.DeadReplay || (d.Status == crmsync.DeadParked || d.Status == crmsync.DeadFailedAgain) && refusedWhole(d.Error) {
				n++
			}
		}
	}
	return n
}

// letterKeys are the keys dead letters may be kept under: the graph's
// lease key and each pair's key.
func (m *gmodel) letterKeys() []string {
	keys := []string{m.key}
	for _, p := range m.g.Pairs() {
		keys = append(keys, crmsync.PairKey(m.key, p))
	}
	return keys
}

func (m *gmodel) quiesce() {
	end := m.clock.Now()
	m.f.hs.ClearFaults()
	m.f.sf.ClearFaults()
	m.f.hs.SettleSearch()
	m.clock.Advance(2 * time.Hour)
	m.restart()
	wait, waits := 3*time.Minute, 0
	for i := 1; ; i++ {
		m.clock.Advance(wait)
		wait = 3 * time.Minute
		m.f.hs.SettleSearch()
		replayed := m.replayRefusals()
		rep, info, err := m.pass(context.Background())
		if err != nil && (crmsync.IsPermanent(err) || i == 8) {
			m.fail("quiet pass %d failed: %v", i, err)
		}
		if err != nil {
			// The fakes still refuse a share of batches whole (5xx among
			// them), so a step may give up after its retries: the run
			// fails, as a real one would, and the next resumes it.
			m.logf("quiet pass %d failed, resumed by the next: %v", i, err)
			continue
		}
		m.logf("quiet pass %d: %s", i, rep.Summary())
		parked := 0
		for _, name := range rep.Order {
			parked += rep.Pairs[name].DeadLetters()
		}
		if replayed == 0 && info.Attempts == 1 && rep.Writes() == 0 && parked == 0 && m.pendingReplays() == 0 {
			if !slices.ContainsFunc(m.g.Pairs(), func(pair string) bool { return delayedBehind(m.st, m.key, pair+"/", end) }) {
				return
			}
			// Quiet, but a delayed window has yet to cover the story:
			// the next comes with the hourly cadence, and waiting for it
			// does not count against the passes. After 8 hours the
			// checks decide: a delayed window checked by count may
			// crawl (sync_tail.go), and only a lost edit is a failure.
			if waits++; waits > 8 {
				return
			}
			wait = time.Hour
			i--
			continue
		}
		if i == 8 {
			m.fail("the graph did not settle in %d quiet passes; the last: %s", i, rep.Summary())
		}
	}
}

// links returns a pair's links by HubSpot id (failing on a record linked
// twice).
func (m *gmodel) links(pair, object string) map[string]string {
	var ids []string
	for _, r := range m.f.hs.All(object) {
		ids = append(ids, r.ID)
	}
	ls, err := m.st.LinksByA(context.Background(), crmsync.PairKey(m.key, pair), ids)
	m.must(err)
	out := map[string]string{}
	seen := map[string]string{}
	for a, l := range ls {
		if prev, ok := seen[l.BID]; ok {
			m.fail("%s: salesforce %s linked to both %s and %s", pair, l.BID, prev, a)
		}
		seen[l.BID] = a
		out[a] = l.BID
	}
	return out
}

func (m *gmodel) hsLive(object, id string) bool {
	r, ok := m.f.hs.Get(object, id)
	return ok && !r.Archived
}

func (m *gmodel) sfLive(id string) bool {
	r, ok := m.f.sf.Get(id)
	return ok && !r.Archived && r.Fields["IsConverted"] != true
}

func (m *gmodel) check() {
	hs, sf := m.f.hs, m.f.sf
	co, ct, dl := m.links("companies", "companies"), m.links("contacts", "contacts"), m.links("deals", "deals")
	byB := func(l map[string]string) map[string]string {
		out := map[string]string{}
		for a, b := range l {
			out[b] = a
		}
		return out
	}
	coB, ctB, dlB := byB(co), byB(ct), byB(dl)

	// No duplicate: no two live Salesforce records of one object carry
	// the same HubSpot id.
	seen := map[string]string{}
	for _, r := range sf.All() {
		h, _ := r.Fields[salesforceLinkField].(string)
		if h == "" || !m.sfLive(r.ID) {
			continue
		}
		k := objectOf(r.ID) + "/" + h
		if objectOf(r.ID) == "Lead" {
			k = "Contact/" + h // a person is a Lead or a Contact, not both
		}
		if prev, ok := seen[k]; ok {
			m.fail("duplicate: salesforce %s and %s both carry hubspot %s", prev, r.ID, h)
		}
		seen[k] = r.ID
	}
	// Every live record is linked.
	for _, p := range []struct {
		object string
		links  map[string]string
	}{{"companies", co}, {"contacts", ct}, {"deals", dl}} {
		for _, id := range m.liveHS(p.object) {
			if _, ok := p.links[id]; !ok {
				m.fail("hubspot %s %s is not linked", p.object, id)
			}
		}
	}
	for _, p := range []struct {
		object string
		links  map[string]string
	}{{"Account", coB}, {"Contact", ctB}, {"Lead", ctB}, {"Opportunity", dlB}} {
		for _, id := range m.liveSF(p.object) {
			if _, ok := p.links[id]; !ok {
				m.fail("salesforce %s %s is not linked", p.object, id)
			}
		}
	}
	// References of linked live pairs.
	companyOK := func(kind, hid, sid, hc, sc string) {
		if sc != "" {
			if _, ok := sf.Get(sc); !ok || objectOf(sc) != "Account" {
				m.fail("%s %s/%s: dangling AccountId %s", kind, hid, sid, sc)
			}
		}
		if hc != "" {
			if b, ok := co[hc]; ok && m.sfLive(b) {
				if sc != b {
					m.fail("%s %s/%s: hubspot names company %s (salesforce %s), salesforce names %q", kind, hid, sid, hc, b, sc)
				}
				return
			}
		}
		if sc != "" && sc != co[hc] {
			if a, ok := coB[sc]; ok && m.hsLive("companies", a) && m.sfLive(sc) {
				m.fail("%s %s/%s: salesforce names account %s (hubspot %s), hubspot names %q", kind, hid, sid, sc, a, hc)
			}
		}
	}
	for hid, sid := range ct {
		if m.hsLive("contacts", hid) && m.sfLive(sid) && objectOf(sid) == "Lead" {
			m.tally["lead linked"]++
		}
		if !m.hsLive("contacts", hid) || !m.sfLive(sid) || objectOf(sid) != "Contact" {
			continue
		}
		s, _ := sf.Get(sid)
		sc, _ := s.Fields["AccountId"].(string)
		hc := hs.PrimaryCompany("contacts", hid)
		if hc != "" || sc != "" {
			m.tally["contact company checked"]++
		}
		companyOK("contact", hid, sid, hc, sc)
	}
	for hid, sid := range dl {
		if !m.hsLive("deals", hid) || !m.sfLive(sid) {
			continue
		}
		s, _ := sf.Get(sid)
		sc, _ := s.Fields["AccountId"].(string)
		hc := hs.PrimaryCompany("deals", hid)
		if hc != "" || sc != "" {
			m.tally["deal company checked"]++
		}
		companyOK("deal", hid, sid, hc, sc)
		// Contacts: HubSpot's (those linked to live Salesforce Contacts)
		// are the roles; every role is a live contact.
		var want []string
		for _, a := range hs.Associations("deals", hid, "contacts") {
			if b, ok := ct[a.ToID]; ok && m.sfLive(b) && objectOf(b) == "Contact" {
				want = append(want, b)
			}
		}
		slices.Sort(want)
		var got []string
		for _, c := range sf.ContactRoles(sid) {
			if !m.sfLive(c) {
				continue
			}
			got = append(got, c)
		}
		if len(want) > 0 {
			m.tally["deal roles checked"]++
		}
		if !slices.Equal(want, got) {
			m.fail("deal %s/%s: hubspot's contacts are %v in salesforce, the roles %v", hid, sid, want, got)
		}
		// No lost owner edit.
		if st, ok := m.stage[sid]; ok && st != nil {
			m.tally["owner edit checked"]++
			h, _ := hs.Get("deals", hid)
			if s.Fields["StageName"] != st {
				m.fail("opportunity %s: stage %v, the last Salesforce edit was %v", sid, s.Fields["StageName"], st)
			}
			if want := hsStageOf(st.(string)); h.Properties["dealstage"] != want {
				m.fail("deal %s: stage %q, Salesforce's last edit was %v (%s)", hid, h.Properties["dealstage"], st, want)
			}
		}
		if am, ok := m.amount[sid]; ok && am != nil && s.Fields["Amount"] != am {
			m.fail("opportunity %s: amount %v, the last Salesforce edit was %v", sid, s.Fields["Amount"], am)
		}
	}
	m.tally["lost write response"] += int(m.tr.lost.Load())
	// Nothing left in the dead-letter queue.
	for _, key := range m.letterKeys() {
		letters, err := allDeadLetters(context.Background(), m.st, key)
		m.must(err)
		for _, d := range letters {
			if d.Status == crmsync.DeadParked || d.Status == crmsync.DeadFailedAgain {
				m.fail("dead letter %d left: %s %s: %s", d.ID, d.System, d.RecordID, d.Error)
			}
		}
	}
}

// hsStageOf maps a Salesforce stage to HubSpot's.
func hsStageOf(sf string) string {
	for k, v := range dealStageMap {
		if v == sf {
			return k
		}
	}
	return ""
}
