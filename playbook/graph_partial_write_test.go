package playbook

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/hubspot/hubspottest"
	"github.com/crmsync/crmsync/salesforce/salesforcetest"
)

// A HubSpot deal reaches Salesforce, but the call making its contact roles
// is refused whole: the Opportunity exists, the deal is parked. A sales
// rep then moves the opportunity's stage, a field Salesforce owns. The
// rep's edit survives on both sides and the deal ends linked to that
// Opportunity.
//
// Found by TestGraphModel (seed 9886303279367472831): a parked write used
// to drop the id of the Opportunity its upsert made, so the pair stayed
// unlinked and the next pass's upsert landed on that Opportunity and wrote
// HubSpot's stage over the rep's. A write refused after it made its record
// (a PartialWriteError) now links the pair; the fields it did not write
// keep their old base, so they are written again.
func TestGraphDealParkedAfterItsOpportunityWasMade(t *testing.T) {
	x := newGraphFixture(t)
	hs, sf := x.f.hs, x.f.sf
	ada := hs.Seed("contacts", map[string]string{"email": "ada@acme.example.com", "firstname": "Ada", "lastname": "Lovelace", "lifecyclestage": "customer"})[0]
	x.pass()
	require.NotEmpty(t, x.sfFor("Contact", ada).ID)
	deal := hs.Seed("deals", map[string]string{"dealname": "Acme renewal", "dealstage": "qualifiedtobuy", "amount": "12000", "closedate": "2026-12-15"})[0]
	require.NoError(t, hs.Associate("deals", deal, "contacts", ada, hubspottest.AssociationType{Category: hubspottest.HubSpotDefined, TypeID: 3}))
	sf.Inject(salesforcetest.Fault{Endpoint: "create", Status: 400, ErrorCode: "JSON_PARSER_ERROR"})
	x.pass()
	opp := x.sfFor("Opportunity", deal)
	require.NotEmpty(t, opp.ID, "the upsert made the Opportunity")
	require.NotEmpty(t, x.deadLetters(), "the deal was parked")
	ls, err := x.st.LinksByA(t.Context(), crmsync.PairKey("acme", "deals"), []string{deal})
	require.NoError(t, err)
	assert.Equal(t, opp.ID, ls[deal].BID, "the deal is linked at once to the Opportunity its upsert made")

	require.NoError(t, hs.Edit("deals", deal, map[string]string{"dealname": "Acme renewal 2027", "dealstage": "appointmentscheduled"}))
	time.Sleep(5 * time.Millisecond)
	require.NoError(t, sf.Edit(opp.ID, crmsync.Fields{"StageName": "Closed Won"}))
	x.pass()
	x.pass()
	got, _ := sf.Get(opp.ID)
	assert.Equal(t, "Closed Won", got.Fields["StageName"], "the rep's edit of a field Salesforce owns survived")
	h, _ := hs.Get("deals", deal)
	assert.Equal(t, "closedwon", h.Properties["dealstage"])
	ls, err = x.st.LinksByA(t.Context(), crmsync.PairKey("acme", "deals"), []string{deal})
	require.NoError(t, err)
	assert.Equal(t, opp.ID, ls[deal].BID, "the deal is linked to the Opportunity its upsert made")
	// The contact roles the refused call did not make are written again,
	// and HubSpot keeps the deal's contact.
	assert.Equal(t, []string{x.sfFor("Contact", ada).ID}, sf.ContactRoles(opp.ID), "the roles were written again")
	assert.Len(t, hs.Associations("deals", deal, "contacts"), 1, "HubSpot keeps the deal's contact")
	assert.Equal(t, "Acme renewal 2027", h.Properties["dealname"], "HubSpot's rename survived")
}
