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
