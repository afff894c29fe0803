package playbook

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"pgregory.net/rapid"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/hubspot/hubspottest"
	"github.com/crmsync/crmsync/salesforce/salesforcetest"
)

// This file holds the hostile world of the model test (model_test.go): a
// virtual clock, the hostile behaviours each case draws, users' actions
// fired while a pass is reading and writing, schema changes and merges.

// modelEpoch is where every case's virtual clock starts.
var modelEpoch = time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)

// vclock is a virtual clock shared by both fakes' stamps and search lag,
// the clients and the sync's windows: passes run minutes apart on it,
// so that the overlap, clock skew and search lag are measured in the
// durations the real world has.
type vclock struct{ ns atomic.Int64 }

func newVclock() *vclock {
	c := &vclock{}
	c.ns.Store(modelEpoch.UnixNano())
	return c
}

// Now returns the virtual time.
func (c *vclock) Now() time.Time { return time.Unix(0, c.ns.Load()).UTC() }

// Advance moves the clock forward by d.
func (c *vclock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

// hostileWorld is the hostile behaviours a case drew; a zero field is off.
type hostileWorld struct {
	// lagMax bounds HubSpot's search index lag (stale values, out of
	// order); it may exceed the client's change lag (1 minute).
	lagMax time.Duration
	// skewHS and skewSF offset each CRM's stamps from the sync host's
	// clock.
	skewHS, skewSF time.Duration
	// stampsHS and stampsSF truncate stamps, so that writes share them.
	stampsHS, stampsSF time.Duration
	// refuseHS and refuseSF are the shares of batch writes refused whole.
	refuseHS, refuseSF float64
	// reqStep is how far the clock moves at every HTTP request: a pass
	// takes virtual time, and edits during it are stamped inside it.
	reqStep time.Duration
	// inPass fires users' actions while a pass reads and writes; schema
	// hides a mapped field on one side for a while; merges lets users merge
	// duplicates on both sides.
	inPass, schema, merges bool
	seed                   uint64
}

func (w hostileWorld) String() string {
	var on []string
	if w.lagMax > 0 {
		on = append(on, fmt.Sprintf("search lag ≤%v", w.lagMax))
	}
	if w.skewHS != 0 || w.skewSF != 0 {
		on = append(on, fmt.Sprintf("skew hubspot %v salesforce %v", w.skewHS, w.skewSF))
	}
	if w.stampsHS > 0 || w.stampsSF > 0 {
		on = append(on, fmt.Sprintf("stamps hubspot %v salesforce %v", w.stampsHS, w.stampsSF))
	}
	if w.refuseHS > 0 || w.refuseSF > 0 {
		on = append(on, fmt.Sprintf("batch refusals hubspot %.2f salesforce %.2f", w.refuseHS, w.refuseSF))
	}
	if w.reqStep > 0 {
		on = append(on, fmt.Sprintf("%v per request", w.reqStep))
	}
	for _, b := range []struct {
		on   bool
		what string
	}{{w.inPass, "edits during passes"}, {w.schema, "schema changes"}, {w.merges, "merges"}} {
		if b.on {
			on = append(on, b.what)
		}
	}
	return strings.Join(on, ", ")
}

// drawWorld draws each hostile behaviour, on with probability 3/4.
func drawWorld(t *rapid.T) hostileWorld {
	on := func(what string) bool { return rapid.IntRange(0, 3).Draw(t, what) > 0 }
	var w hostileWorld
	w.seed = rapid.Uint64().Draw(t, "world seed")
	if on("search lag") {
		w.lagMax = rapid.SampledFrom([]time.Duration{5 * time.Second, 30 * time.Second, 90 * time.Second, 3 * time.Minute}).Draw(t, "lag max")
	}
	if on("clock skew") {
		skew := func(what string) time.Duration {
			return time.Duration(rapid.IntRange(-120, 120).Draw(t, what)) * time.Second
		}
		w.skewHS, w.skewSF = skew("hubspot skew"), skew("salesforce skew")
	}
	if on("shared stamps") {
		w.stampsHS, w.stampsSF = 10*time.Millisecond, time.Second
	}
	if on("batch refusals") {
		w.refuseHS = rapid.SampledFrom([]float64{0.05, 0.15}).Draw(t, "hubspot refusals")
		w.refuseSF = rapid.SampledFrom([]float64{0.05, 0.15}).Draw(t, "salesforce refusals")
	}
	if on("slow passes") {
		w.reqStep = rapid.SampledFrom([]time.Duration{100 * time.Millisecond, time.Second, 10 * time.Second, 30 * time.Second}).Draw(t, "request step")
	}
	w.inPass, w.schema, w.merges = on("edits during passes"), on("schema changes"), on("merges")
	return w
}

// hsOptions and sfOptions configure the fakes for w on clock c.
func (w hostileWorld) hsOptions(c *vclock) []hubspottest.Option {
	opts := []hubspottest.Option{hubspottest.WithoutRateLimits(), hubspottest.WithClock(c.Now), hubspottest.WithSeed(w.seed)}
	if w.lagMax > 0 {
		opts = append(opts, hubspottest.WithSearchLag(0, w.lagMax))
	}
	if w.skewHS != 0 {
		opts = append(opts, hubspottest.WithClockSkew(w.skewHS))
	}
	if w.stampsHS > 0 {
		opts = append(opts, hubspottest.WithStampGranularity(w.stampsHS))
	}
	if w.refuseHS > 0 {
		opts = append(opts, hubspottest.WithBatchRefusals(w.refuseHS))
	}
	return opts
}

func (w hostileWorld) sfOptions(c *vclock) []func(*salesforcetest.Config) {
	return []func(*salesforcetest.Config){func(cfg *salesforcetest.Config) {
		cfg.Now = c.Now
		cfg.ClockSkew = w.skewSF
		cfg.StampGranularity = w.stampsSF
		cfg.RefuseBatches = w.refuseSF
		cfg.RandSeed = w.seed
	}}
}

// Draws that users' actions make: from rapid on the test's goroutine,
// from the pass's own source during a pass (rapid.T is not for other
// goroutines).

func (m *model) intRange(lo, hi int, label string) int {
	if m.rnd != nil {
		return lo + m.rnd.IntN(hi-lo+1)
	}
	return rapid.IntRange(lo, hi).Draw(m.t, label)
}

func (m *model) flip(label string) bool { return m.intRange(0, 1, label) == 1 }

func sample[T any](m *model, vals []T, label string) T {
	if m.rnd != nil {
		return vals[m.rnd.IntN(len(vals))]
	}
	return rapid.SampledFrom(vals).Draw(m.t, label)
}

// must fails the case on err; during a pass it keeps err for the test's
// goroutine to report.
func (m *model) must(err error) {
	if err == nil {
		return
	}
	if m.rnd != nil {
		m.inPassErrs = append(m.inPassErrs, err)
		return
	}
	m.t.Fatal(err)
}

// inPassPlan is the users' actions to fire during one pass: at the
// request numbers at (counting every request), then at the write request
// numbers atWrite (counting writes: a side's writes come after its
// reads, before its cursor moves), drawing from rnd.
type inPassPlan struct {
	at, atWrite  []int
	next, nextW  int
	reqs, writes int
	rnd          *rand.Rand
}

// planInPass draws the users' actions of the next pass.
func (m *model) planInPass(round int) {
	if !m.w.inPass {
		return
	}
	n := rapid.IntRange(0, 3).Draw(m.t, fmt.Sprintf("in-pass actions%d", round))
	if n == 0 {
		return
	}
	p := &inPassPlan{rnd: rand.New(rand.NewPCG(rapid.Uint64().Draw(m.t, "in-pass seed"), 0))}
	for range n {
		if rapid.Bool().Draw(m.t, "at a write") {
			p.atWrite = append(p.atWrite, rapid.IntRange(1, 4).Draw(m.t, "at write"))
		} else {
			p.at = append(p.at, rapid.IntRange(1, 40).Draw(m.t, "at request"))
		}
	}
	sort.Ints(p.at)
	sort.Ints(p.atWrite)
	m.mu.Lock()
	m.plan = p
	m.mu.Unlock()
}

// endInPass drops the plan's actions that did not fire and fails the case
// on an error of one that did.
func (m *model) endInPass() {
	m.mu.Lock()
	m.plan = nil
	errs := m.inPassErrs
	m.inPassErrs = nil
	m.mu.Unlock()
	if len(errs) > 0 {
		m.fail("a user's action during the pass failed: %v", errs)
	}
}

// onRequest runs before every HTTP request of the clients: the clock
// moves, and the users' actions planned at this request fire.
func (m *model) onRequest(r *http.Request) {
	m.clock.Advance(m.w.reqStep)
	m.mu.Lock()
	defer m.mu.Unlock()
	p := m.plan
	if p == nil {
		return
	}
	p.reqs++
	fire := 0
	for p.next < len(p.at) && p.at[p.next] <= p.reqs {
		p.next++
		fire++
	}
	if isWriteRequest(r) {
		p.writes++
		for p.nextW < len(p.atWrite) && p.atWrite[p.nextW] <= p.writes {
			p.nextW++
			fire++
		}
	}
	for range fire {
		m.rnd, m.during = p.rnd, true
		m.userAction()
		m.rnd, m.during = nil, false
		m.inPassFired++
	}
}

// hidden reports whether a field is gone from its side's schema now.
func (m *model) hidden(system, field string) bool { return m.gone[system+"/"+field] }

var (
	hsHideable = []string{"phone", "hubspotscore", "sf_deal_stage"}
	sfHideable = []string{"Phone", "Close_Date__c", "Deal_Stage__c"}
)

// schemaChange may hide a mapped field on one side (an admin deletes a
// HubSpot property; field-level security hides a Salesforce field) or
// restore one hidden before. While a field is gone its side's users do not
// edit it.
func (m *model) schemaChange(round int) {
	if !m.w.schema {
		return
	}
	if len(m.gone) > 0 {
		if rapid.Bool().Draw(m.t, fmt.Sprintf("restore%d", round)) {
			m.restoreFields()
		}
		return
	}
	if rapid.IntRange(0, 2).Draw(m.t, fmt.Sprintf("hide%d", round)) != 0 {
		return
	}
	if rapid.Bool().Draw(m.t, "hide side") {
		f := rapid.SampledFrom(hsHideable).Draw(m.t, "hubspot property")
		m.must(m.f.hs.DeleteProperty("contacts", f))
		m.gone["hubspot/"+f] = true
		m.logf("a hubspot admin deletes the property %s", f)
	} else {
		f := rapid.SampledFrom(sfHideable).Draw(m.t, "salesforce field")
		m.must(m.f.sf.HideField(f))
		m.gone["salesforce/"+f] = true
		m.logf("a salesforce admin hides the field %s from the integration user", f)
	}
	m.hides++
}

// restoreFields brings back every field hidden before.
func (m *model) restoreFields() {
	for _, k := range keys(m.gone) {
		system, f, _ := strings.Cut(k, "/")
		if system == "hubspot" {
			m.must(m.f.hs.RestoreProperty("contacts", f))
		} else {
			m.f.sf.RestoreField(f)
		}
		delete(m.gone, k)
		m.restores++
		m.logf("the %s field %s is back", system, f)
	}
}

// mergeExpect is what a merge promises: the survivor's counterpart on the
// other side stays live and ends linked to the survivor.
type mergeExpect struct {
	system, survivor, counterpart string
}

// linkedLive returns the live records of system whose counterpart is live
// and not flagged archived, with the counterpart's id.
func (m *model) linkedLive(system string) [][2]string {
	var out [][2]string
	if system == "hubspot" {
		for _, h := range m.liveHS() {
			sid := h.Properties[hubspotLinkField]
			if sid == "" || h.Properties["crmsync_archived"] == "true" || m.mergedAway[h.ID] {
				continue
			}
			if s, ok := m.f.sf.Get(sid); ok && !s.Archived && s.Fields["Archived__c"] != true && s.Fields[salesforceLinkField] == h.ID {
				out = append(out, [2]string{h.ID, sid})
			}
		}
		return out
	}
	for _, s := range m.liveSF() {
		hid, _ := s.Fields[salesforceLinkField].(string)
		if hid == "" || s.Fields["Archived__c"] == true || m.mergedAway[s.ID] {
			continue
		}
		if h, ok := m.f.hs.Get("contacts", hid); ok && !h.Archived && h.Properties["crmsync_archived"] != "true" && h.Properties[hubspotLinkField] == s.ID {
			out = append(out, [2]string{s.ID, hid})
		}
	}
	return out
}

// hsMerge: a HubSpot user finds a duplicate of a synced person (another
// email, just created) and merges the two; HubSpot makes a new record.
func (m *model) hsMerge() {
	pairs := m.linkedLive("hubspot")
	if len(pairs) == 0 {
		return
	}
	p := sample(m, pairs, "hubspot pair")
	h1, _ := m.f.hs.Get("contacts", p[0])
	props := m.newHSContact(m.freshEmail())
	props["firstname"], props["lastname"] = h1.Properties["firstname"], h1.Properties["lastname"]
	if props["lastname"] == "" {
		delete(props, "lastname")
	}
	h2 := m.createHS(props)
	primary, other := h1.ID, h2
	if m.flip("primary") {
		primary, other = other, primary
	}
	nid, err := m.f.hs.Merge("contacts", primary, other)
	if err != nil {
		m.must(err)
		return
	}
	delete(m.owned, "hubspot/"+h1.ID)
	delete(m.owned, "hubspot/"+h2)
	n, _ := m.f.hs.Get("contacts", nid)
	for _, f := range hsFields {
		if f.owned {
			m.noteOwned("hubspot", nid, f.name, n.Properties[f.name])
		}
	}
	m.mergedAway[h1.ID], m.mergedAway[h2] = true, true
	m.merges = append(m.merges, mergeExpect{system: "hubspot", survivor: nid, counterpart: p[1]})
	m.hsMerges++
	m.logf("a hubspot user creates %s, a duplicate of %s (salesforce %s), and merges %s into %s: new record %s", h2, h1.ID, p[1], other, primary, nid)
}

// sfMerge: a Salesforce user finds a duplicate of a synced person (another
// email, just created) and merges the two; the loser is deleted with
// MasterRecordId set.
func (m *model) sfMerge() {
	pairs := m.linkedLive("salesforce")
	if len(pairs) == 0 {
		return
	}
	p := sample(m, pairs, "salesforce pair")
	s1, _ := m.f.sf.Get(p[0])
	fs := m.newSFContact(m.freshEmail())
	fs["FirstName"], fs["LastName"] = s1.Fields["FirstName"], s1.Fields["LastName"]
	s2 := m.createSF(fs)
	master, loser := s1.ID, s2
	if m.flip("master") {
		master, loser = s2, s1.ID
		// The user keeps the old contact's sales fields on the master.
		if m.flip("keep owned") {
			keep := crmsync.Fields{}
			for _, f := range sfFields {
				if f.owned && !m.hidden("salesforce", f.name) {
					keep[f.name] = s1.Fields[f.name]
					m.noteOwned("salesforce", s2, f.name, s1.Fields[f.name])
				}
			}
			m.must(m.f.sf.Edit(s2, keep))
		}
	}
	if err := m.f.sf.Merge(master, loser); err != nil {
		m.must(err)
		return
	}
	m.mergedAway[loser] = true
	m.archivedEver[loser] = true // a write read before the merge finds it deleted
	m.merges = append(m.merges, mergeExpect{system: "salesforce", survivor: master, counterpart: p[1]})
	m.sfMerges++
	m.logf("a salesforce user creates %s, a duplicate of %s (hubspot %s), and merges %s into %s", s2, s1.ID, p[1], loser, master)
}

// checkMerges checks each merge's promise whose records users left alone
// since: the counterpart is live, not flagged archived, and linked to the
// survivor.
func (m *model) checkMerges(byA, byB map[string]crmsync.Link) {
	for _, e := range m.merges {
		if m.archivedEver[e.survivor] || m.archivedEver[e.counterpart] || m.mergedAway[e.survivor] || m.mergedAway[e.counterpart] {
			continue
		}
		m.mergesChecked++
		if e.system == "hubspot" {
			s, ok := m.f.sf.Get(e.counterpart)
			if !ok || s.Archived || s.Fields["Archived__c"] == true {
				m.fail("hubspot merge into %s: its salesforce counterpart %s is gone or flagged archived (deleted %v, flag %v)", e.survivor, e.counterpart, s.Archived, s.Fields["Archived__c"])
			}
			if l, ok := byB[e.counterpart]; !ok || l.AID != e.survivor {
				m.fail("hubspot merge into %s: salesforce %s is linked to %q, want the survivor", e.survivor, e.counterpart, l.AID)
			}
			continue
		}
		h, ok := m.f.hs.Get("contacts", e.counterpart)
		if !ok || h.Archived || h.Properties["crmsync_archived"] == "true" {
			m.fail("salesforce merge into %s: its hubspot counterpart %s is gone or flagged archived (archived %v, flag %q)", e.survivor, e.counterpart, h.Archived, h.Properties["crmsync_archived"])
		}
		if l, ok := byA[e.counterpart]; !ok || l.BID != e.survivor {
			m.fail("salesforce merge into %s: hubspot %s is linked to %q, want the survivor", e.survivor, e.counterpart, l.BID)
		}
	}
}

// refusedWhole reports whether a dead letter's error is a whole batch the
// fakes refused at random (Salesforce's client parks the records of a
// collections call refused with a 400 or 413).
func refusedWhole(err string) bool {
	for _, s := range []string{"JSON_PARSER_ERROR", "REQUEST_ENTITY_TOO_LARGE", "batch refused", "request payload too large"} {
		if strings.Contains(err, s) {
			return true
		}
	}
	return false
}

// replayRefusals: a person replays the parked letters of batches refused
// whole; the next pass writes them. It returns how many it marked.
func (m *model) replayRefusals() int {
	ctx := context.Background()
	letters, err := allDeadLetters(ctx, m.st, m.key)
	if err != nil {
		m.t.Fatal(err)
	}
	n := 0
	for _, d := range letters {
		if d.Status != crmsync.DeadParked && d.Status != crmsync.DeadFailedAgain || !refusedWhole(d.Error) {
			continue
		}
		if err := m.st.SetDeadLetterStatus(ctx, d.ID, crmsync.DeadReplay, time.Now()); err != nil {
			m.t.Fatal(err)
		}
		m.replays++
		n++
		m.logf("a person replays dead letter %d (%s %s, refused whole)", d.ID, d.System, d.RecordID)
	}
	return n
}

// runWrote counts the write and dead-letter audit rows of a run (the
// report's counts leave out the writes that apply people's choices).
func (m *model) runWrote(run crmsync.RunID) int {
	rows, err := m.st.QueryAudit(context.Background(), crmsync.AuditQuery{Run: run, Limit: 1000})
	if err != nil {
		m.t.Fatal(err)
	}
	n := 0
	for _, a := range rows {
		if a.Kind == crmsync.AuditWrite || a.Kind == crmsync.AuditDeadLetter {
			n++
		}
	}
	return n
}
