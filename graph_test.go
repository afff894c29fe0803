package crmsync_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/store/memory"
)

// graphWorld is two in-memory CRMs with companies, contacts and deals, a
// memory store and a Graph of the three pairs.
type graphWorld struct {
	t      *testing.T
	clk    *fixedClock
	hs, sf *memCRM
	st     *memory.Store
	eng    *crmsync.Engine
	g      *crmsync.Graph
	key    string
}

type graphOpts struct {
	includeCompanyA func(crmsync.Record) bool
	includeContactA func(crmsync.Record) bool
	includeContactB func(crmsync.Record) bool
	// leads makes the people pair's Salesforce side Leads and Contacts,
	// new HubSpot contacts routed by lifecycle stage.
	leads bool
}

func companiesPolicy() crmsync.Policy {
	return crmsync.Policy{A: "hubspot", B: "salesforce",
		Identity: crmsync.Identity{A: "domain", B: "Website"},
		Rules: []crmsync.FieldRule{
			{Name: "name", A: "name", B: "Name", Type: crmsync.TypeString, Rule: crmsync.MostRecent()},
			{Name: "domain", A: "domain", B: "Website", Type: crmsync.TypeString, Rule: crmsync.MostRecent()},
			{Name: "tier", A: "tier", Type: crmsync.TypeString, Rule: crmsync.Never()},
		}}
}

func peoplePolicy() crmsync.Policy {
	return crmsync.Policy{A: "hubspot", B: "salesforce",
		Rules: []crmsync.FieldRule{
			{Name: "email", A: "email", B: "Email", Type: crmsync.TypeString, Rule: crmsync.MostRecent()},
			{Name: "firstname", A: "firstname", B: "FirstName", Type: crmsync.TypeString, Rule: crmsync.MostRecent()},
			{Name: "company", A: "associations.companies", B: "AccountId", Type: crmsync.TypeReference, Ref: "companies", Rule: crmsync.MostRecent()},
			{Name: "lifecyclestage", A: "lifecyclestage", Type: crmsync.TypeString, Rule: crmsync.Never()},
		}}
}

func dealsPolicy() crmsync.Policy {
	return crmsync.Policy{A: "hubspot", B: "salesforce",
		Identity: crmsync.Identity{A: "salesforce_deal_id", B: "HubSpot_Id__c"},
		Rules: []crmsync.FieldRule{
			{Name: "dealname", A: "dealname", B: "Name", Type: crmsync.TypeString, Rule: crmsync.MostRecent()},
			{Name: "amount", A: "amount", B: "Amount", Type: crmsync.TypeNumber, Rule: crmsync.Owner("salesforce")},
			{Name: "company", A: "associations.companies", B: "AccountId", Type: crmsync.TypeReference, Ref: "companies", Rule: crmsync.MostRecent()},
			{Name: "contacts", A: "associations.contacts", B: "OpportunityContactRoles", Type: crmsync.TypeReferences, Ref: "contacts", Rule: crmsync.MostRecent()},
		}}
}

func newGraphWorld(t *testing.T, o graphOpts) *graphWorld {
	t.Helper()
	clk := &fixedClock{t: time.Date(2026, 5, 4, 9, 0, 0, 0, time.UTC)}
	w := &graphWorld{t: t, clk: clk, hs: newMemCRM("hubspot", clk.Now), sf: newMemCRM("salesforce", clk.Now), st: memory.New(), key: "acme"}
	eng, err := crmsync.NewEngine(crmsync.Config{Store: w.st, Now: clk.Now})
	require.NoError(t, err)
	w.eng = eng
	mk := func(objA, objB, linkA string, pol crmsync.Policy, edit func(*crmsync.SyncConfig)) *crmsync.Sync {
		c := crmsync.SyncConfig{A: w.hs, B: w.sf, ObjectA: objA, ObjectB: objB, Policy: &pol,
			LinkFieldA: linkA, LinkFieldB: "HubSpot_Id__c", Now: clk.Now, Overlap: time.Second}
		if edit != nil {
			edit(&c)
		}
		s, err := crmsync.NewSync(c)
		require.NoError(t, err)
		return s
	}
	companies := mk("companies", "Account", "salesforce_account_id", companiesPolicy(), func(c *crmsync.SyncConfig) { c.IncludeA = o.includeCompanyA })
	people := mk("contacts", "Contact", "salesforce_contact_id", peoplePolicy(), func(c *crmsync.SyncConfig) {
		c.IncludeA, c.IncludeB = o.includeContactA, o.includeContactB
		if o.leads {
			r, err := crmsync.NewRouted(crmsync.RoutedConfig{CRM: w.sf,
				Objects: []crmsync.RoutedObject{
					{Name: "Lead", Fields: map[string]string{"AccountId": ""}, Defaults: crmsync.Fields{"Company": "[not provided]"}},
					{Name: "Contact"},
				},
				Route: func(src crmsync.Record) string {
					if src.Fields["lifecyclestage"] == "lead" {
						return "Lead"
					}
					return "Contact"
				}})
			require.NoError(t, err)
			c.B, c.ObjectB = r, r.Object()
		}
	})
	deals := mk("deals", "Opportunity", "salesforce_deal_id", dealsPolicy(), nil)
	// Given children first: the graph orders them parents first.
	g, err := crmsync.NewGraph(crmsync.GraphConfig{Pairs: []crmsync.GraphPair{
		{Name: "deals", Sync: deals}, {Name: "contacts", Sync: people}, {Name: "companies", Sync: companies},
	}})
	require.NoError(t, err)
	w.g = g
	return w
}

// pass runs one graph pass and moves the clock on.
func (w *graphWorld) pass() *crmsync.GraphReport {
	w.t.Helper()
	w.clk.Advance(time.Minute)
	rep, _, err := w.g.RunOnce(context.Background(), w.eng, w.key)
	require.NoError(w.t, err)
	w.clk.Advance(time.Minute)
	return rep
}

// counterpart returns the Salesforce record whose HubSpot_Id__c is id.
func (w *graphWorld) sfFor(object, hsID string) crmsync.Record {
	for _, r := range w.sf.all(object) {
		if r.Fields["HubSpot_Id__c"] == hsID {
			return r
		}
	}
	return crmsync.Record{}
}

func (w *graphWorld) deadLetters() []crmsync.DeadLetter {
	dl, err := w.st.ListDeadLetters(context.Background(), crmsync.DeadLetterQuery{Key: w.key})
	require.NoError(w.t, err)
	return dl
}

func TestGraphRunsParentsFirstAndTranslatesReferences(t *testing.T) {
	w := newGraphWorld(t, graphOpts{})
	require.Equal(t, []string{"companies", "contacts", "deals"}, w.g.Pairs())
	co := w.hs.put("companies", crmsync.Fields{"name": "Acme", "domain": "acme.test"})
	ada := w.hs.put("contacts", crmsync.Fields{"email": "ada@acme.test", "firstname": "Ada", "associations.companies": co})
	bob := w.hs.put("contacts", crmsync.Fields{"email": "bob@acme.test", "firstname": "Bob", "associations.companies": co})
	deal := w.hs.put("deals", crmsync.Fields{"dealname": "Big", "associations.companies": co, "associations.contacts": []string{bob, ada}})

	rep := w.pass()
	require.Equal(t, []string{"companies", "contacts", "deals"}, rep.Order)
	acct := w.sfFor("Account", co)
	require.NotEmpty(t, acct.ID, "the company reached Salesforce")
	sfAda, sfBob := w.sfFor("Contact", ada), w.sfFor("Contact", bob)
	require.NotEmpty(t, sfAda.ID)
	assert.Equal(t, acct.ID, sfAda.Fields["AccountId"], "the contact references the account, not the HubSpot company id")
	assert.Equal(t, acct.ID, sfBob.Fields["AccountId"])
	opp := w.sfFor("Opportunity", deal)
	require.NotEmpty(t, opp.ID, "the deal was created in the same pass, after its parents")
	assert.Equal(t, acct.ID, opp.Fields["AccountId"])
	want := []string{sfAda.ID, sfBob.ID}
	if want[0] > want[1] {
		want[0], want[1] = want[1], want[0]
	}
	assert.Equal(t, want, opp.Fields["OpportunityContactRoles"], "the deal's contacts map element-wise, sorted")
	assert.Empty(t, w.deadLetters())
	for _, name := range rep.Order {
		assert.Zero(t, rep.Pairs[name].Waiting, "pair %s: nothing waits when parents run first", name)
	}

	// Each pair keeps its own cursors and links.
	cur, err := w.st.ListCursors(context.Background(), w.key)
	require.NoError(t, err)
	for _, name := range []string{"companies/hubspot", "contacts/hubspot", "deals/salesforce"} {
		assert.Contains(t, cur, name)
	}
	links, err := w.st.LinksByA(context.Background(), crmsync.PairKey(w.key, "contacts"), []string{ada, co})
	require.NoError(t, err)
	assert.Contains(t, links, ada)
	assert.NotContains(t, links, co, "a company's link is kept under its own pair")

	// References are compared by link: the sides hold different raw ids,
	// and a quiet pass writes nothing.
	rep = w.pass()
	assert.Zero(t, rep.Writes(), "references that point at linked counterparts are equal")
}

func TestGraphChildWaitsForItsParent(t *testing.T) {
	included := func(r crmsync.Record) bool { return r.Fields["tier"] != "hidden" }
	w := newGraphWorld(t, graphOpts{includeCompanyA: included})
	co := w.hs.put("companies", crmsync.Fields{"name": "Hidden Co", "domain": "hidden.test", "tier": "hidden"})
	ada := w.hs.put("contacts", crmsync.Fields{"email": "ada@hidden.test", "firstname": "Ada", "associations.companies": co})

	rep := w.pass()
	assert.Empty(t, w.sf.all("Account"), "the company is not included")
	assert.Empty(t, w.sf.all("Contact"), "the contact waits: it is never created with a dangling reference")
	assert.Empty(t, w.deadLetters(), "waiting is not a dead letter")
	assert.Equal(t, 1, rep.Pairs["contacts"].Waiting)

	// A quiet pass later the contact still waits (its change is older than
	// the cursor: it is read again from the waiting list).
	rep = w.pass()
	assert.Empty(t, w.sf.all("Contact"))
	assert.Equal(t, 1, rep.Pairs["contacts"].Waiting)

	// The company enters the inclusion: it is created, and in the same pass
	// the contact follows, referencing it.
	w.hs.edit("companies", co, crmsync.Fields{"tier": "gold"})
	rep = w.pass()
	acct := w.sfFor("Account", co)
	require.NotEmpty(t, acct.ID)
	sfAda := w.sfFor("Contact", ada)
	require.NotEmpty(t, sfAda.ID, "the waiting contact was created once its parent was linked")
	assert.Equal(t, acct.ID, sfAda.Fields["AccountId"])
	assert.Zero(t, rep.Pairs["contacts"].Waiting)
	assert.Empty(t, w.deadLetters())
}

func TestGraphReparentingBothWays(t *testing.T) {
	w := newGraphWorld(t, graphOpts{})
	c1 := w.hs.put("companies", crmsync.Fields{"name": "One", "domain": "one.test"})
	c2 := w.hs.put("companies", crmsync.Fields{"name": "Two", "domain": "two.test"})
	ada := w.hs.put("contacts", crmsync.Fields{"email": "ada@one.test", "firstname": "Ada", "associations.companies": c1})
	w.pass()
	a1, a2 := w.sfFor("Account", c1), w.sfFor("Account", c2)
	sfAda := w.sfFor("Contact", ada)
	require.Equal(t, a1.ID, sfAda.Fields["AccountId"])

	// HubSpot moves Ada to Two.
	w.hs.edit("contacts", ada, crmsync.Fields{"associations.companies": c2})
	w.pass()
	assert.Equal(t, a2.ID, w.sf.get("Contact", sfAda.ID).Fields["AccountId"], "HubSpot's re-parenting reached Salesforce as Two's account")

	// Salesforce moves her back to One.
	w.sf.edit("Contact", sfAda.ID, crmsync.Fields{"AccountId": a1.ID})
	w.pass()
	assert.Equal(t, c1, w.hs.get("contacts", ada).Fields["associations.companies"], "Salesforce's re-parenting reached HubSpot as One")

	// Salesforce clears the account: the reference is cleared on HubSpot.
	w.sf.edit("Contact", sfAda.ID, crmsync.Fields{"AccountId": nil})
	w.pass()
	assert.Nil(t, w.hs.get("contacts", ada).Fields["associations.companies"])
	assert.Empty(t, w.deadLetters())
}

func TestGraphLinkedChildSyncsOtherFieldsWhileItsNewParentWaits(t *testing.T) {
	included := func(r crmsync.Record) bool { return r.Fields["tier"] != "hidden" }
	w := newGraphWorld(t, graphOpts{includeCompanyA: included})
	c1 := w.hs.put("companies", crmsync.Fields{"name": "One", "domain": "one.test"})
	ada := w.hs.put("contacts", crmsync.Fields{"email": "ada@one.test", "firstname": "Ada", "associations.companies": c1})
	w.pass()
	sfAda := w.sfFor("Contact", ada)
	a1 := w.sfFor("Account", c1)
	require.Equal(t, a1.ID, sfAda.Fields["AccountId"])

	// Ada moves to a company that is not synced, and is renamed.
	hidden := w.hs.put("companies", crmsync.Fields{"name": "Hidden", "domain": "hidden.test", "tier": "hidden"})
	w.hs.edit("contacts", ada, crmsync.Fields{"associations.companies": hidden, "firstname": "Ada L"})
	rep := w.pass()
	got := w.sf.get("Contact", sfAda.ID)
	assert.Equal(t, "Ada L", got.Fields["FirstName"], "the other fields sync")
	assert.Equal(t, a1.ID, got.Fields["AccountId"], "the reference is left as it was, never dangling")
	assert.Equal(t, 1, rep.Pairs["contacts"].Waiting)

	// The company joins: the reference follows.
	w.hs.edit("companies", hidden, crmsync.Fields{"tier": "gold"})
	w.pass()
	assert.Equal(t, w.sfFor("Account", hidden).ID, w.sf.get("Contact", sfAda.ID).Fields["AccountId"])
	assert.Empty(t, w.deadLetters())
}

func TestInclusionExitNeverArchives(t *testing.T) {
	customers := func(r crmsync.Record) bool { return r.Fields["lifecyclestage"] != "other" }
	w := newGraphWorld(t, graphOpts{includeContactA: customers})
	ada := w.hs.put("contacts", crmsync.Fields{"email": "ada@x.test", "firstname": "Ada", "lifecyclestage": "customer"})
	w.pass()
	sfAda := w.sfFor("Contact", ada)
	require.NotEmpty(t, sfAda.ID)

	// Ada leaves the inclusion and is renamed on both sides.
	w.hs.edit("contacts", ada, crmsync.Fields{"lifecyclestage": "other", "firstname": "Ada H"})
	w.sf.edit("Contact", sfAda.ID, crmsync.Fields{"FirstName": "Ada S"})
	rep := w.pass()
	assert.Equal(t, "Ada S", w.sf.get("Contact", sfAda.ID).Fields["FirstName"], "a record out of the inclusion is not written")
	assert.Equal(t, "Ada H", w.hs.get("contacts", ada).Fields["firstname"], "nor is its counterpart's change brought to it")
	assert.False(t, w.sf.get("Contact", sfAda.ID).Archived, "leaving the inclusion archives nothing")
	assert.False(t, w.hs.get("contacts", ada).Archived)
	assert.Zero(t, rep.Pairs["contacts"].Writes())
	assert.Empty(t, w.deadLetters())

	// Back in: the pair syncs again (most recent edit wins).
	w.hs.edit("contacts", ada, crmsync.Fields{"lifecyclestage": "customer", "firstname": "Ada Back"})
	w.pass()
	assert.Equal(t, "Ada Back", w.sf.get("Contact", sfAda.ID).Fields["FirstName"])
}

func TestNewGraphValidates(t *testing.T) {
	clk := &fixedClock{t: time.Now()}
	hs, sf := newMemCRM("hubspot", clk.Now), newMemCRM("salesforce", clk.Now)
	pol := peoplePolicy()
	people, err := crmsync.NewSync(crmsync.SyncConfig{A: hs, B: sf, ObjectA: "contacts", ObjectB: "Contact", Policy: &pol,
		LinkFieldA: "salesforce_contact_id", LinkFieldB: "HubSpot_Id__c"})
	require.NoError(t, err)
	_, err = crmsync.NewGraph(crmsync.GraphConfig{Pairs: []crmsync.GraphPair{{Name: "contacts", Sync: people}}})
	require.ErrorContains(t, err, `references pair "companies", which is not in the graph`)
	_, err = crmsync.NewGraph(crmsync.GraphConfig{Pairs: []crmsync.GraphPair{{Name: "con tacts", Sync: people}}})
	require.ErrorContains(t, err, "letters, digits")
	cpol := companiesPolicy()
	companies, err := crmsync.NewSync(crmsync.SyncConfig{A: hs, B: sf, ObjectA: "companies", ObjectB: "Account", Policy: &cpol,
		LinkFieldA: "salesforce_account_id", LinkFieldB: "HubSpot_Id__c"})
	require.NoError(t, err)
	_, err = crmsync.NewGraph(crmsync.GraphConfig{Pairs: []crmsync.GraphPair{
		{Name: "companies", Sync: companies, AdoptKeyLinks: true}, {Name: "contacts", Sync: people, AdoptKeyLinks: true}}})
	require.ErrorContains(t, err, "one pair at most may adopt the key's links")

	// A Sync with a reference rule cannot run alone.
	eng, err := crmsync.NewEngine(crmsync.Config{Store: memory.New()})
	require.NoError(t, err)
	hs.put("contacts", crmsync.Fields{"email": "a@b.test", "associations.companies": "x"})
	_, _, err = people.RunOnce(context.Background(), eng, "k")
	require.ErrorContains(t, err, "needs its Sync to run in a Graph")

	bad := peoplePolicy()
	bad.Rules[2].Type = crmsync.TypeString
	require.ErrorContains(t, bad.Validate(), "needs type reference or references")
}

func TestLeadRoutingAndConversionRelinks(t *testing.T) {
	w := newGraphWorld(t, graphOpts{leads: true})
	co := w.hs.put("companies", crmsync.Fields{"name": "Acme", "domain": "acme.test"})
	ada := w.hs.put("contacts", crmsync.Fields{"email": "ada@acme.test", "firstname": "Ada", "lifecyclestage": "lead", "associations.companies": co})
	bob := w.hs.put("contacts", crmsync.Fields{"email": "bob@acme.test", "firstname": "Bob", "lifecyclestage": "customer", "associations.companies": co})
	w.pass()
	acct := w.sfFor("Account", co)
	lead := w.sfFor("Lead", ada)
	require.NotEmpty(t, lead.ID, "a HubSpot lead is routed to a Salesforce Lead")
	assert.Equal(t, "[not provided]", lead.Fields["Company"], "the Lead's defaults fill its required fields")
	assert.NotContains(t, lead.Fields, "AccountId", "a Lead has no account: the reference is not written there")
	assert.Empty(t, w.sfFor("Contact", ada).ID)
	sfBob := w.sfFor("Contact", bob)
	require.NotEmpty(t, sfBob.ID, "a customer is routed to a Contact")
	assert.Equal(t, acct.ID, sfBob.Fields["AccountId"])
	assert.Equal(t, lead.ID, w.hs.get("contacts", ada).Fields["salesforce_contact_id"])

	// Sales converts Ada's Lead into a Contact; in the same window
	// marketing renames her in HubSpot.
	contact := w.sf.put("Contact", crmsync.Fields{"Email": "ada@acme.test", "FirstName": "Ada", "AccountId": acct.ID})
	w.sf.convert("Lead", lead.ID, contact)
	w.hs.edit("contacts", ada, crmsync.Fields{"firstname": "Ada L"})
	writesBefore := len(w.sf.writes)
	w.pass()
	w.pass()
	assert.Equal(t, contact, w.hs.get("contacts", ada).Fields["salesforce_contact_id"], "the HubSpot contact is relinked to the new Contact")
	assert.Equal(t, "Ada L", w.sf.get("Contact", contact).Fields["FirstName"], "the edit made meanwhile is not lost")
	assert.Equal(t, ada, w.sf.get("Contact", contact).Fields["HubSpot_Id__c"])
	for _, wr := range w.sf.writes[writesBefore:] {
		assert.NotEqual(t, "Lead/"+lead.ID, wr, "a converted Lead is never written again")
	}
	assert.Len(t, w.hs.all("contacts"), 2, "no duplicate HubSpot contact")
	assert.False(t, w.hs.get("contacts", ada).Archived, "nothing archived")
	assert.Len(t, w.sf.all("Contact"), 2, "no duplicate Salesforce contact")
	assert.Empty(t, w.deadLetters())
	assert.Equal(t, acct.ID, w.sf.get("Contact", contact).Fields["AccountId"])

	// Later edits go to the Contact.
	w.hs.edit("contacts", ada, crmsync.Fields{"firstname": "Ada Lovelace"})
	w.pass()
	assert.Equal(t, "Ada Lovelace", w.sf.get("Contact", contact).Fields["FirstName"])
}

// A plan of the graph sees what its parents' plans would link: the
// contacts of a new company are planned as creates, not as waiting, and
// the counts are those of the pass that follows.
func TestGraphPlanMatchesThePass(t *testing.T) {
	w := newGraphWorld(t, graphOpts{})
	co := w.hs.put("companies", crmsync.Fields{"name": "Acme", "domain": "acme.test"})
	w.hs.put("contacts", crmsync.Fields{"email": "ada@acme.test", "firstname": "Ada", "associations.companies": co})
	w.hs.put("deals", crmsync.Fields{"dealname": "Big", "associations.companies": co})
	w.clk.Advance(time.Minute)
	plan, err := w.g.Plan(context.Background(), w.st, w.key, nil)
	require.NoError(t, err)
	w.clk.Advance(-time.Minute)
	rep := w.pass()
	for _, name := range rep.Order {
		assert.Equal(t, rep.Pairs[name].Writes(), plan.Pairs[name].Writes(), "pair %s", name)
		assert.Zero(t, plan.Pairs[name].Waiting, "pair %s: nothing waits in the plan", name)
		assert.Equal(t, rep.Pairs[name].Directions, plan.Pairs[name].Directions, "pair %s", name)
	}
	var planned []string
	for _, p := range plan.Pairs["contacts"].Planned {
		planned = append(planned, p.Fields...)
	}
	assert.Contains(t, planned, "AccountId", "the contact's account is planned")
}

// A graph run that stops part-way (the daily allocation ran out while the
// contacts were written) resumes in the next run: the companies pair's
// steps are replayed without a call, the contacts are written once, the
// account is not created again.
func TestGraphRunResumesWherePairStopped(t *testing.T) {
	w := newGraphWorld(t, graphOpts{})
	co := w.hs.put("companies", crmsync.Fields{"name": "Acme", "domain": "acme.test"})
	ada := w.hs.put("contacts", crmsync.Fields{"email": "ada@acme.test", "firstname": "Ada", "associations.companies": co})
	w.sf.mu.Lock()
	w.sf.failWrite = func(object string) error {
		if object == "Contact" {
			return fmt.Errorf("salesforce: %w", crmsync.ErrDailyLimit)
		}
		return nil
	}
	w.sf.mu.Unlock()
	w.clk.Advance(time.Minute)
	_, info, err := w.g.RunOnce(context.Background(), w.eng, w.key)
	require.ErrorIs(t, err, crmsync.ErrDailyLimit)
	require.Equal(t, crmsync.RunOpen, info.Status)
	require.Len(t, w.sf.all("Account"), 1, "the companies pair finished before the stop")
	require.Empty(t, w.sf.all("Contact"))

	w.sf.mu.Lock()
	w.sf.failWrite = nil
	w.sf.mu.Unlock()
	rep, info2, err := w.g.RunOnce(context.Background(), w.eng, w.key)
	require.NoError(t, err)
	assert.Equal(t, info.ID, info2.ID, "the same run resumed")
	assert.Zero(t, rep.Pairs["companies"].APICalls["salesforce"]+rep.Pairs["companies"].APICalls["hubspot"], "the finished pair's steps replay without calls")
	assert.Len(t, w.sf.all("Account"), 1, "no account created twice")
	require.Len(t, w.sf.all("Contact"), 1)
	sfAda := w.sfFor("Contact", ada)
	assert.Equal(t, w.sfFor("Account", co).ID, sfAda.Fields["AccountId"])
	assert.Empty(t, w.deadLetters())
}
