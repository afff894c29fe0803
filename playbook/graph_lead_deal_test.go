package playbook

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/crmsync/crmsync/salesforce/salesforcetest"
)

// A HubSpot deal whose contacts include one that is a Salesforce Lead
// (a lead cannot hold a contact role): the opportunity is created with the
// others' roles, the HubSpot association with the lead is kept, and once
// the lead is converted its Contact gets the role.
func TestGraphDealWithALeadContact(t *testing.T) {
	x := newGraphFixture(t)
	hs, sf := x.f.hs, x.f.sf
	people := hs.Seed("contacts",
		map[string]string{"email": "ada@acme.example.com", "firstname": "Ada", "lastname": "Lovelace", "lifecyclestage": "customer"},
		map[string]string{"email": "grace@acme.example.com", "firstname": "Grace", "lastname": "Hopper", "lifecyclestage": "lead"})
	deal := hs.Seed("deals", map[string]string{"dealname": "Acme", "dealstage": "qualifiedtobuy", "closedate": "2026-12-15"})[0]
	for _, p := range people {
		require.NoError(t, hs.Associate("deals", deal, "contacts", p))
	}
	rep := x.pass()
	opp := x.sfFor("Opportunity", deal)
	require.NotEmpty(t, opp.ID, "%s", rep.Summary())
	ada := x.sfFor("Contact", people[0])
	assert.Equal(t, []string{ada.ID}, sf.ContactRoles(opp.ID))
	assert.Empty(t, x.deadLetters())
	x.pass()
	x.pass()
	assert.Len(t, hs.Associations("deals", deal, "contacts"), 2, "the association with the lead is kept")
	assert.Empty(t, x.deadLetters())

	conv, err := sf.ConvertLead(x.sfFor("Lead", people[1]).ID, salesforcetest.ConvertOptions{DoNotCreateOpportunity: true})
	require.NoError(t, err)
	x.pass()
	require.NoError(t, hs.Edit("deals", deal, map[string]string{"dealname": "Acme expansion"}))
	x.pass()
	assert.ElementsMatch(t, []string{ada.ID, conv.ContactID}, sf.ContactRoles(opp.ID), "the converted Lead's Contact has the role")
	assert.Len(t, hs.Associations("deals", deal, "contacts"), 2)
	assert.Empty(t, x.deadLetters())
}

// The same deal, but nothing edits it after the conversion: the deal
// waits while a contact's counterpart is a Lead (read again each pass),
// so the relink of the conversion reaches the opportunity's roles on its
// own. A deal made in HubSpot with the lead, and one that gains the lead
// once linked, both get the role; nothing is duplicated or archived.
//
// Found by TestGraphModel (seed 13289389590941822557): the deal was
// written once without the Lead's role and never read again, so the
// opportunity never got the converted Contact's role.
func TestGraphDealWithALeadContactConvertedLater(t *testing.T) {
	x := newGraphFixture(t)
	hs, sf := x.f.hs, x.f.sf
	people := hs.Seed("contacts",
		map[string]string{"email": "ada@acme.example.com", "firstname": "Ada", "lastname": "Lovelace", "lifecyclestage": "customer"},
		map[string]string{"email": "grace@acme.example.com", "firstname": "Grace", "lastname": "Hopper", "lifecyclestage": "lead"})
	deals := hs.Seed("deals",
		map[string]string{"dealname": "Acme", "dealstage": "qualifiedtobuy", "closedate": "2026-12-15"},
		map[string]string{"dealname": "Acme renewal", "dealstage": "qualifiedtobuy", "closedate": "2026-12-20"})
	for _, p := range people {
		require.NoError(t, hs.Associate("deals", deals[0], "contacts", p))
	}
	require.NoError(t, hs.Associate("deals", deals[1], "contacts", people[0]))
	x.pass()
	renewal := x.sfFor("Opportunity", deals[1])
	require.NotEmpty(t, renewal.ID)
	// Once linked, the renewal gains the lead in HubSpot (with an edit:
	// an association alone does not stamp the deal).
	require.NoError(t, hs.Associate("deals", deals[1], "contacts", people[1]))
	require.NoError(t, hs.Edit("deals", deals[1], map[string]string{"dealname": "Acme renewal 2027"}))
	x.pass()
	x.pass()
	opp := x.sfFor("Opportunity", deals[0])
	require.NotEmpty(t, opp.ID)
	ada := x.sfFor("Contact", people[0])
	require.NotEmpty(t, ada.ID)
	require.Equal(t, []string{ada.ID}, sf.ContactRoles(opp.ID), "a Lead holds no role")
	require.Equal(t, []string{ada.ID}, sf.ContactRoles(renewal.ID), "a Lead holds no role")

	conv, err := sf.ConvertLead(x.sfFor("Lead", people[1]).ID, salesforcetest.ConvertOptions{DoNotCreateOpportunity: true})
	require.NoError(t, err)
	x.pass()
	x.pass()
	assert.ElementsMatch(t, []string{ada.ID, conv.ContactID}, sf.ContactRoles(opp.ID), "the converted Lead's Contact has the role")
	assert.ElementsMatch(t, []string{ada.ID, conv.ContactID}, sf.ContactRoles(renewal.ID), "the converted Lead's Contact has the role")
	for _, d := range deals {
		var ids []string
		for _, a := range hs.Associations("deals", d, "contacts") {
			ids = append(ids, a.ToID)
		}
		assert.ElementsMatch(t, people, ids, "deal %s keeps both contacts", d)
	}
	assert.Equal(t, 2, x.sfCount("Opportunity"), "no opportunity duplicated or archived")
	assert.Equal(t, 2, x.hsCount("deals"), "no deal duplicated or archived")
	assert.Equal(t, 2, x.sfCount("Contact"), "the converted Lead's Contact is not duplicated")
	assert.Equal(t, 2, x.hsCount("contacts"), "no contact duplicated or archived")
	assert.Equal(t, conv.ContactID, x.sfFor("Contact", people[1]).ID, "Grace is linked to the converted Contact")
	assert.Empty(t, x.deadLetters())
	// Settled: a further pass writes nothing.
	assert.Zero(t, x.pass().Writes())
}
