package crmsync_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/crmsync/crmsync"
)

// A reference can name a parent that was archived (deleted) before any
// pass saw it live: it never gets a counterpart. The tests below are the
// three shapes the graph model found; in each, the record used to wait
// for that parent for ever.

func TestGraphNewRecordNamingAParentDeletedBeforeItSyncedIsCreated(t *testing.T) {
	for _, side := range []string{"salesforce", "hubspot"} {
		t.Run(side, func(t *testing.T) {
			w := newGraphWorld(t, graphOpts{})
			var person, ghost string
			if side == "salesforce" {
				ghost = w.sf.put("Account", crmsync.Fields{"Name": "Gone", "Website": "gone.test"})
				person = w.sf.put("Contact", crmsync.Fields{"Email": "ada@gone.test", "FirstName": "Ada", "AccountId": ghost})
				w.sf.archive("Account", ghost)
			} else {
				ghost = w.hs.put("companies", crmsync.Fields{"name": "Gone", "domain": "gone.test"})
				person = w.hs.put("contacts", crmsync.Fields{"email": "ada@gone.test", "firstname": "Ada", "associations.companies": ghost})
				w.hs.archive("companies", ghost)
			}
			w.pass()
			rep := w.pass()

			var counterpart crmsync.Record
			if side == "salesforce" {
				for _, r := range w.hs.all("contacts") {
					counterpart = r
				}
				assert.Empty(t, w.hs.all("companies"), "the deleted account is not brought over")
			} else {
				counterpart = w.sfFor("Contact", person)
				assert.Empty(t, w.sf.all("Account"), "the archived company is not brought over")
			}
			require.NotEmpty(t, counterpart.ID, "the person is created on the other side: a parent that can never be linked is not waited for")
			assert.Equal(t, "ada@gone.test", counterpart.Fields[map[string]string{"salesforce": "email", "hubspot": "Email"}[side]])
			assert.Nil(t, counterpart.Fields[map[string]string{"salesforce": "associations.companies", "hubspot": "AccountId"}[side]], "created with no reference, never a dangling one")
			assert.Zero(t, rep.Pairs["contacts"].Waiting, "nothing waits for a parent that is gone")
			assert.Empty(t, w.deadLetters())
		})
	}
}

func TestGraphReferenceToADeletedNeverSyncedParentYieldsToTheOtherSide(t *testing.T) {
	w := newGraphWorld(t, graphOpts{})
	one := w.hs.put("companies", crmsync.Fields{"name": "One", "domain": "one.test"})
	ada := w.hs.put("contacts", crmsync.Fields{"email": "ada@one.test", "firstname": "Ada"})
	w.pass()
	sfAda := w.sfFor("Contact", ada)
	require.NotEmpty(t, sfAda.ID)
	sfOne := w.sfFor("Account", one)
	require.NotEmpty(t, sfOne.ID)

	// Salesforce moves Ada to a new account and deletes it before a pass;
	// HubSpot moves her to One.
	ghost := w.sf.put("Account", crmsync.Fields{"Name": "Gone", "Website": "gone.test"})
	w.sf.edit("Contact", sfAda.ID, crmsync.Fields{"AccountId": ghost})
	w.sf.archive("Account", ghost)
	w.hs.edit("contacts", ada, crmsync.Fields{"associations.companies": one})
	w.pass()
	rep := w.pass()

	assert.Equal(t, sfOne.ID, w.sf.get("Contact", sfAda.ID).Fields["AccountId"], "HubSpot's move carries over a reference to a record that is gone")
	assert.Equal(t, one, w.hs.get("contacts", ada).Fields["associations.companies"])
	assert.Zero(t, rep.Pairs["contacts"].Waiting)
	assert.Zero(t, rep.Writes(), "settled")
	assert.Empty(t, w.deadLetters())
}

func TestGraphMoveToADeletedNeverSyncedParentReadsAsNone(t *testing.T) {
	w := newGraphWorld(t, graphOpts{})
	one := w.hs.put("companies", crmsync.Fields{"name": "One", "domain": "one.test"})
	two := w.hs.put("companies", crmsync.Fields{"name": "Two", "domain": "two.test"})
	ada := w.hs.put("contacts", crmsync.Fields{"email": "ada@one.test", "firstname": "Ada", "associations.companies": one})
	w.pass()
	sfAda := w.sfFor("Contact", ada)
	require.Equal(t, w.sfFor("Account", one).ID, sfAda.Fields["AccountId"])

	// Salesforce moves Ada to a new account and deletes it before a pass.
	ghost := w.sf.put("Account", crmsync.Fields{"Name": "Gone", "Website": "gone.test"})
	w.sf.edit("Contact", sfAda.ID, crmsync.Fields{"AccountId": ghost, "FirstName": "Ada S"})
	w.sf.archive("Account", ghost)
	w.pass()
	rep := w.pass()
	got := w.hs.get("contacts", ada)
	assert.Equal(t, "Ada S", got.Fields["firstname"], "the other fields sync")
	assert.Nil(t, got.Fields["associations.companies"], "Salesforce moved Ada away from One to a record that is gone: it reads as none, as HubSpot reads an association to an archived company")
	assert.Equal(t, ghost, w.sf.get("Contact", sfAda.ID).Fields["AccountId"], "nothing is written to Salesforce's reference")
	assert.Zero(t, rep.Pairs["contacts"].Waiting, "nothing waits for a parent that is gone")
	assert.Zero(t, rep.Writes(), "settled")
	var noted bool
	for _, s := range rep.Pairs["contacts"].Skips {
		noted = noted || (s.RecordID == sfAda.ID && s.Field == "company")
	}
	assert.True(t, noted, "the report says why the reference was not carried")

	// A later move on HubSpot still reaches Salesforce.
	w.hs.edit("contacts", ada, crmsync.Fields{"associations.companies": two})
	w.pass()
	assert.Equal(t, w.sfFor("Account", two).ID, w.sf.get("Contact", sfAda.ID).Fields["AccountId"])
	assert.Empty(t, w.deadLetters())
}

func TestGraphDealNamingAContactWhoseParentIsGoneGetsIt(t *testing.T) {
	w := newGraphWorld(t, graphOpts{})
	ghost := w.sf.put("Account", crmsync.Fields{"Name": "Gone", "Website": "gone.test"})
	bob := w.sf.put("Contact", crmsync.Fields{"Email": "bob@gone.test", "FirstName": "Bob", "AccountId": ghost})
	w.sf.archive("Account", ghost)
	opp := w.sf.put("Opportunity", crmsync.Fields{"Name": "Big", "OpportunityContactRoles": []string{bob}})
	w.pass()
	w.pass()

	var hsBob, hsDeal string
	for _, r := range w.hs.all("contacts") {
		hsBob = r.ID
	}
	for _, r := range w.hs.all("deals") {
		hsDeal = r.ID
	}
	require.NotEmpty(t, hsBob, "Bob is created in HubSpot")
	require.NotEmpty(t, hsDeal, "the deal is created in HubSpot")
	assert.Equal(t, []string{hsBob}, w.hs.get("deals", hsDeal).Fields["associations.contacts"], "the deal's contact is Bob's counterpart")
	assert.Equal(t, []string{bob}, w.sf.get("Opportunity", opp).Fields["OpportunityContactRoles"])
	assert.Empty(t, w.deadLetters())
}
