package playbook

import (
	"errors"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
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

// A HubSpot deal's upsert lands in Salesforce but its response is lost,
// and the client's repeat of the call is refused whole (413): the sync
// takes the deal as refused and parks it, unlinked, though its Opportunity
// exists. A sales rep then moves that Opportunity's stage, a field
// Salesforce owns, and a HubSpot user renames the deal. The rep's stage
// survives on both sides, the rename reaches Salesforce, the deal is
// linked to that Opportunity and nothing is duplicated.
//
// Found by TestGraphModel (seed 16531949909304811463): the deal stayed
// unlinked, so the rename's pass created it again, an upsert on the link
// field that landed on the Opportunity the lost write had made and wrote
// HubSpot's stage over the rep's. A create refused with no record made is
// now read back by its link field, and a record found is linked at once.
func TestGraphDealWhoseLandedCreateWasRefusedOnRepeat(t *testing.T) {
	lose := &loseThenRefuse{path: "/composite/sobjects/Opportunity/"}
	x := newGraphFixtureWith(t, func(f *fakes) http.RoundTripper {
		lose.base, lose.sf = http.DefaultTransport.(*http.Transport).Clone(), f.sf
		return lose
	})
	hs, sf := x.f.hs, x.f.sf
	deal := hs.Seed("deals", map[string]string{"dealname": "Acme renewal", "dealstage": "qualifiedtobuy", "amount": "12000", "closedate": "2026-12-15"})[0]
	lose.armed.Store(true)
	x.pass()
	require.False(t, lose.armed.Load(), "the upsert's response was lost")
	opp := x.sfFor("Opportunity", deal)
	require.NotEmpty(t, opp.ID, "the lost upsert made the Opportunity")
	require.NotEmpty(t, x.deadLetters(), "the refused repeat parked the deal")

	require.NoError(t, sf.Edit(opp.ID, crmsync.Fields{"StageName": "Closed Won"}))
	time.Sleep(5 * time.Millisecond)
	require.NoError(t, hs.Edit("deals", deal, map[string]string{"dealname": "Acme renewal 2027", "dealstage": "contractsent"}))
	x.pass()
	x.pass()

	got, _ := sf.Get(opp.ID)
	assert.Equal(t, "Closed Won", got.Fields["StageName"], "the rep's edit of a field Salesforce owns survived")
	assert.Equal(t, "Acme renewal 2027", got.Fields["Name"], "HubSpot's rename reached Salesforce")
	h, _ := hs.Get("deals", deal)
	assert.Equal(t, "closedwon", h.Properties["dealstage"], "HubSpot's stage change was reverted")
	assert.Equal(t, opp.ID, h.Properties[hubspotDealLinkField], "the deal names its Opportunity")
	ls, err := x.st.LinksByA(t.Context(), crmsync.PairKey("acme", "deals"), []string{deal})
	require.NoError(t, err)
	assert.Equal(t, opp.ID, ls[deal].BID, "the deal is linked to the Opportunity its lost upsert made")
	n := 0
	for _, r := range sf.All() {
		if objectOf(r.ID) == "Opportunity" && !r.Archived {
			n++
		}
	}
	assert.Equal(t, 1, n, "no duplicate Opportunity")
}

// loseThenRefuse, once armed, lets the first write request to path reach
// the fake and loses its response (a reset connection), and has the fake
// refuse the client's repeat of that call whole (413).
type loseThenRefuse struct {
	base  http.RoundTripper
	sf    *salesforcetest.Server
	path  string
	armed atomic.Bool
}

func (l *loseThenRefuse) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := l.base.RoundTrip(r)
	if err != nil || r.Method != http.MethodPatch || !strings.Contains(r.URL.Path, l.path) || resp.StatusCode >= 300 || !l.armed.CompareAndSwap(true, false) {
		return resp, err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	l.sf.Inject(salesforcetest.Fault{Endpoint: "upsert", Status: http.StatusRequestEntityTooLarge, ErrorCode: "REQUEST_ENTITY_TOO_LARGE"})
	return nil, errors.New("read: connection reset by peer")
}
