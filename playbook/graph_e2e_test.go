package playbook

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/hubspot/hubspottest"
	"github.com/crmsync/crmsync/salesforce/salesforcetest"
	"github.com/crmsync/crmsync/store/memory"
)

// graphFixture is the playbook's three pairs between the fakes, through
// the real clients, on a memory store.
type graphFixture struct {
	t   *testing.T
	f   *fakes
	st  *memory.Store
	eng *crmsync.Engine
	g   *crmsync.Graph
}

func newGraphFixture(t *testing.T) *graphFixture {
	t.Helper()
	return newGraphFixtureWith(t, nil)
}

// newGraphFixtureWith is newGraphFixture with the Salesforce client's
// requests going through sfTransport (nil: the default transport), once
// the fakes are up (it gets them to arm faults).
func newGraphFixtureWith(t *testing.T, sfTransport func(*fakes) http.RoundTripper) *graphFixture {
	t.Helper()
	return newGraphFixtureOpts(t, graphFixtureOptions{sfTransport: sfTransport})
}

// graphFixtureOptions tune newGraphFixtureOpts; the zero value is
// newGraphFixture's.
type graphFixtureOptions struct {
	// sfTransport, if set, carries the Salesforce client's requests (it
	// gets the fakes to arm faults).
	sfTransport func(*fakes) http.RoundTripper
	// sf tunes the Salesforce fake (clock skew, stamps).
	sf []func(*salesforcetest.Config)
	// store, if set, wraps the memory store the engine uses (a store that
	// crashes at a step); graphFixture.st stays the memory store.
	store func(crmsync.Store) crmsync.Store
}

// newGraphFixtureOpts is newGraphFixture tuned by o.
func newGraphFixtureOpts(t *testing.T, o graphFixtureOptions) *graphFixture {
	t.Helper()
	f, closeFn, err := startFakes(nil, o.sf)
	require.NoError(t, err)
	t.Cleanup(closeFn)
	co := clientOptions{HubSpotLimiter: unlimited(t), HubSpotSearch: unlimited(t), SalesforceLimiter: unlimited(t)}
	if o.sfTransport != nil {
		co.SalesforceHTTPClient = &http.Client{Transport: o.sfTransport(f)}
	}
	hc, sc, err := f.clients(co)
	require.NoError(t, err)
	g, err := NewGraph(hc, sc, GraphConfig{})
	require.NoError(t, err)
	st := memory.New()
	var engStore crmsync.Store = st
	if o.store != nil {
		engStore = o.store(st)
	}
	eng, err := crmsync.NewEngine(crmsync.Config{Store: engStore})
	require.NoError(t, err)
	return &graphFixture{t: t, f: f, st: st, eng: eng, g: g}
}

func (x *graphFixture) pass() *crmsync.GraphReport {
	x.t.Helper()
	time.Sleep(5 * time.Millisecond) // edits land before the window ends
	rep, _, err := x.g.RunOnce(context.Background(), x.eng, "acme")
	require.NoError(x.t, err)
	return rep
}

// sfFor returns the Salesforce record of object whose external id holds
// the HubSpot id.
func (x *graphFixture) sfFor(object, hsID string) crmsync.Record {
	for _, r := range x.f.sf.All() {
		if r.Fields[salesforceLinkField] == hsID && !r.Archived {
			if got, ok := x.f.sf.Get(r.ID); ok && objectOf(r.ID) == object {
				return got
			}
		}
	}
	return crmsync.Record{}
}

// objectOf names the object of a Salesforce id by its key prefix.
func objectOf(id string) string {
	switch id[:3] {
	case "001":
		return "Account"
	case "003":
		return "Contact"
	case "00Q":
		return "Lead"
	case "006":
		return "Opportunity"
	}
	return ""
}

func (x *graphFixture) hsFor(object, field, sfID string) string {
	for _, r := range x.f.hs.All(object) {
		if r.Properties[field] == sfID && !r.Archived {
			return r.ID
		}
	}
	return ""
}

func (x *graphFixture) deadLetters() []crmsync.DeadLetter {
	dl, err := x.st.ListDeadLetters(context.Background(), crmsync.DeadLetterQuery{Key: "acme"})
	require.NoError(x.t, err)
	return dl
}

// The reference workflow's three pairs, end to end through the real
// clients: companies reach Salesforce before the contacts and deals that
// reference them, references are written as the other side's ids, a new
// HubSpot lead becomes a Salesforce Lead, a deal's contacts become contact
// roles, and what Salesforce has reaches HubSpot with its references.
func TestGraphEndToEnd(t *testing.T) {
	x := newGraphFixture(t)
	hs, sf := x.f.hs, x.f.sf
	cos := hs.Seed("companies",
		map[string]string{"name": "Acme", "domain": "acme.example.com"},
		map[string]string{"name": "Globex", "domain": "globex.example.com"})
	people := hs.Seed("contacts",
		map[string]string{"email": "ada@acme.example.com", "firstname": "Ada", "lastname": "Lovelace", "lifecyclestage": "customer"},
		map[string]string{"email": "alan@acme.example.com", "firstname": "Alan", "lastname": "Turing", "lifecyclestage": "opportunity"},
		map[string]string{"email": "grace@globex.example.com", "firstname": "Grace", "lastname": "Hopper", "lifecyclestage": "lead"})
	for i, c := range []string{cos[0], cos[0], cos[1]} {
		require.NoError(t, hs.Associate("contacts", people[i], "companies", c, hubspottest.AssociationType{Category: hubspottest.HubSpotDefined, TypeID: hubspottest.ContactToCompanyPrimary}))
	}
	deal := hs.Seed("deals", map[string]string{"dealname": "Acme renewal", "dealstage": "qualifiedtobuy", "amount": "12000", "closedate": "2026-12-15"})[0]
	require.NoError(t, hs.Associate("deals", deal, "companies", cos[0], hubspottest.AssociationType{Category: hubspottest.HubSpotDefined, TypeID: hubspottest.DealToCompanyPrimary}))
	require.NoError(t, hs.Associate("deals", deal, "contacts", people[0]))
	require.NoError(t, hs.Associate("deals", deal, "contacts", people[1]))
	initech := sf.SeedRecords("Account", crmsync.Fields{"Name": "Initech", "Website": "initech.example.com"})[0]
	sf.SeedRecords("Contact", crmsync.Fields{"LastName": "Lumbergh", "FirstName": "Bill", "Email": "bill@initech.example.com", "AccountId": initech})

	rep := x.pass()
	require.Equal(t, []string{"companies", "contacts", "deals"}, rep.Order)
	acme := x.sfFor("Account", cos[0])
	require.NotEmpty(t, acme.ID, "the company reached Salesforce")
	ada, alan := x.sfFor("Contact", people[0]), x.sfFor("Contact", people[1])
	require.NotEmpty(t, ada.ID)
	assert.Equal(t, acme.ID, ada.Fields["AccountId"], "the contact's company is written as the account's id")
	assert.Equal(t, acme.ID, alan.Fields["AccountId"])
	grace := x.sfFor("Lead", people[2])
	require.NotEmpty(t, grace.ID, "a HubSpot lead becomes a Salesforce Lead")
	assert.Equal(t, "[not provided]", grace.Fields["Company"])
	opp := x.sfFor("Opportunity", deal)
	require.NotEmpty(t, opp.ID, "the deal was created after its company and contacts, in the same pass")
	assert.Equal(t, acme.ID, opp.Fields["AccountId"])
	assert.Equal(t, "Qualification", opp.Fields["StageName"])
	assert.ElementsMatch(t, []string{ada.ID, alan.ID}, sf.ContactRoles(opp.ID), "the deal's contacts became contact roles")

	// Salesforce's account and contact reached HubSpot, the contact
	// associated with the new company.
	initechHS := x.hsFor("companies", hubspotCompanyLinkField, initech)
	require.NotEmpty(t, initechHS)
	bill := x.hsFor("contacts", hubspotLinkField, x.sfForEmail("bill@initech.example.com"))
	require.NotEmpty(t, bill)
	assert.Equal(t, initechHS, hs.PrimaryCompany("contacts", bill))
	assert.Empty(t, x.deadLetters())
	for _, name := range rep.Order {
		assert.Zero(t, rep.Pairs[name].Waiting, "%s: parents first, nothing waits", name)
	}

	// Quiet: references compared by link write nothing.
	x.pass() // reads back the link write-backs of the first pass
	rep = x.pass()
	assert.Zero(t, rep.Writes(), "%s", rep.Summary())

	// Sales moves Alan to Initech in Salesforce; marketing moves Ada to
	// Globex in HubSpot.
	require.NoError(t, sf.Edit(alan.ID, crmsync.Fields{"AccountId": initech}))
	require.NoError(t, hs.Associate("contacts", people[0], "companies", cos[1], hubspottest.AssociationType{Category: hubspottest.HubSpotDefined, TypeID: hubspottest.ContactToCompanyPrimary}))
	x.pass()
	assert.Equal(t, initechHS, hs.PrimaryCompany("contacts", people[1]), "re-parented in Salesforce, re-parented in HubSpot")
	globex := x.sfFor("Account", cos[1])
	got, _ := sf.Get(ada.ID)
	assert.Equal(t, globex.ID, got.Fields["AccountId"], "re-parented in HubSpot, re-parented in Salesforce")
	assert.Empty(t, x.deadLetters())
}

// sfForEmail finds a Salesforce contact by email.
func (x *graphFixture) sfForEmail(email string) string {
	for _, r := range x.f.sf.All() {
		if r.Fields["Email"] == email && objectOf(r.ID) == "Contact" {
			return r.ID
		}
	}
	return ""
}

// A Lead converted in Salesforce while marketing edits the person in
// HubSpot: the HubSpot contact is relinked to the new Contact, the edit
// reaches it, nothing is duplicated, archived or dead-lettered, and the
// converted Lead is not written again.
func TestGraphLeadConversion(t *testing.T) {
	x := newGraphFixture(t)
	hs, sf := x.f.hs, x.f.sf
	grace := hs.Seed("contacts", map[string]string{"email": "grace@globex.example.com", "firstname": "Grace", "lastname": "Hopper", "lifecyclestage": "lead"})[0]
	x.pass()
	lead := x.sfFor("Lead", grace)
	require.NotEmpty(t, lead.ID)

	conv, err := sf.ConvertLead(lead.ID, salesforcetest.ConvertOptions{DoNotCreateOpportunity: true})
	require.NoError(t, err)
	require.NoError(t, hs.Edit("contacts", grace, map[string]string{"firstname": "Grace B."}))
	updatesBefore := sf.CallCount("update")
	x.pass()
	x.pass()
	assert.Equal(t, conv.ContactID, hs.All("contacts")[0].Properties[hubspotLinkField], "relinked to the Contact the conversion made")
	got, _ := sf.Get(conv.ContactID)
	assert.Equal(t, "Grace B.", got.Fields["FirstName"], "the edit made meanwhile reached the Contact")
	assert.Equal(t, grace, got.Fields[salesforceLinkField])
	assert.Len(t, hs.All("contacts"), 1, "no duplicate in HubSpot")
	assert.False(t, hs.All("contacts")[0].Archived, "nothing archived")
	l, _ := sf.Get(lead.ID)
	assert.Equal(t, "Grace", l.Fields["FirstName"], "the converted Lead was not written")
	assert.Empty(t, x.deadLetters(), "no write to the converted Lead was tried and refused")
	assert.Positive(t, sf.CallCount("update")-updatesBefore)
	// The account the conversion made reached HubSpot, and Grace is in it.
	co := x.hsFor("companies", hubspotCompanyLinkField, conv.AccountID)
	require.NotEmpty(t, co)
	assert.Equal(t, co, hs.PrimaryCompany("contacts", grace))
}
