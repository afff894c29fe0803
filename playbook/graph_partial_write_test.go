package playbook

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"slices"
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
// and the client's repeat of the call is refused whole (413). The read-back
// by the link field finds the Opportunity: the deal is linked to it in the
// same pass, no letter is parked for a failure that did not happen, and
// the audit log says the write was found by the read-back. A sales rep
// then moves that Opportunity's stage, a field Salesforce owns, and a
// HubSpot user renames the deal. The rep's stage survives on both sides,
// the rename reaches Salesforce, the deal is linked to that Opportunity
// and nothing is duplicated.
//
// Found by TestGraphModel (seed 16531949909304811463): the deal stayed
// unlinked, so the rename's pass created it again, an upsert on the link
// field that landed on the Opportunity the lost write had made and wrote
// HubSpot's stage over the rep's. A create refused with no record made is
// now read back by its link field, and a record found is linked at once.
// Its letter then stayed parked though the write had landed; the refusal
// is now parked only if the read-back finds no record.
func TestGraphDealWhoseLandedCreateWasRefusedOnRepeat(t *testing.T) {
	lose := &loseThenRefuse{path: "/composite/sobjects/Opportunity/"}
	x := newGraphFixtureWith(t, func(f *fakes) http.RoundTripper {
		lose.base, lose.sf = http.DefaultTransport.(*http.Transport).Clone(), f.sf
		return lose
	})
	hs, sf := x.f.hs, x.f.sf
	deal := hs.Seed("deals", map[string]string{"dealname": "Acme renewal", "dealstage": "qualifiedtobuy", "amount": "12000", "closedate": "2026-12-15"})[0]
	lose.armed.Store(true)
	rep := x.pass()
	require.False(t, lose.armed.Load(), "the upsert's response was lost")
	opp := x.sfFor("Opportunity", deal)
	require.NotEmpty(t, opp.ID, "the lost upsert made the Opportunity")
	x.requireLandedCreateFound(deal, opp.ID)
	assert.Zero(t, rep.Pairs["deals"].DeadLetters(), "the pass counts no letter: %s", rep.Summary())

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

// requireLandedCreateFound checks, after the pass in which the upsert of
// the HubSpot deal landed as the Salesforce Opportunity opp and its repeat
// was refused, that the deal is linked to opp, that no letter stays open
// for the write that landed, and that the audit log says the write landed
// and was found by the read-back.
func (x *graphFixture) requireLandedCreateFound(deal, opp string) {
	t := x.t
	t.Helper()
	ls, err := x.st.LinksByA(t.Context(), crmsync.PairKey("acme", "deals"), []string{deal})
	require.NoError(t, err)
	require.Equal(t, opp, ls[deal].BID, "the read-back linked the deal to the Opportunity its lost upsert made")
	for _, d := range x.deadLetters() {
		require.False(t, d.Status == crmsync.DeadParked || d.Status == crmsync.DeadFailedAgain,
			"letter %d (%s %s) stays %s though the write landed: %s", d.ID, d.System, d.RecordID, d.Status, d.Error)
	}
	rows, err := x.st.QueryAudit(t.Context(), crmsync.AuditQuery{Key: "acme", Kind: crmsync.AuditWrite, RecordID: opp, Limit: 1000})
	require.NoError(t, err)
	found := 0
	for _, a := range rows {
		var det struct {
			Role    string `json:"role"`
			Outcome string `json:"outcome"`
			Refused string `json:"refused"`
		}
		require.NoError(t, json.Unmarshal(a.Detail, &det))
		if det.Role == "create" && det.Outcome == "found by read-back" && det.Refused != "" && slices.Contains(a.RecordIDs, deal) {
			found++
			ledger, err := x.st.LookupWrites(t.Context(), []string{a.IdemKey})
			require.NoError(t, err)
			require.Contains(t, ledger, a.IdemKey, "the write that landed has a ledger row")
			assert.Equal(t, opp, ledger[a.IdemKey].RecordID)
			assert.NotContains(t, string(ledger[a.IdemKey].Result), `"error"`, "the ledger row is of a write that landed")
		}
	}
	require.Equal(t, 1, found, "one audit row says the create landed, its repeat was refused and the read-back found it")
}

// A HubSpot deal's upsert is refused whole (413) and nothing lands: the
// read-back by its link field finds no Opportunity, so the refusal is
// real and its letter stays parked, pass after pass, with its ledger row,
// the deal unlinked and nothing made in Salesforce. So it is when the run
// dies as it parks the letter, after or before that step's checkpoint,
// and resumes: one letter, parked.
func TestGraphDealWhoseCreateWasRefusedStaysParked(t *testing.T) {
	for _, tc := range crashCases {
		t.Run(tc.name, func(t *testing.T) {
			cs := &stepCrashStore{prefix: "deals:back-letters:", drop: tc.drop}
			x := newGraphFixtureOpts(t, graphFixtureOptions{store: func(st crmsync.Store) crmsync.Store {
				cs.Store = st
				return cs
			}})
			hs, sf := x.f.hs, x.f.sf
			deal := hs.Seed("deals", map[string]string{"dealname": "Acme renewal", "dealstage": "qualifiedtobuy", "amount": "12000", "closedate": "2026-12-15"})[0]
			sf.Inject(salesforcetest.Fault{Endpoint: "upsert", Status: http.StatusRequestEntityTooLarge, ErrorCode: "REQUEST_ENTITY_TOO_LARGE"})
			if tc.crash {
				time.Sleep(5 * time.Millisecond)
				cs.crashRun(t, "the run dies as it parks the letter", func(ctx context.Context) (crmsync.RunInfo, error) {
					_, info, err := x.g.RunOnce(ctx, x.eng, "acme")
					return info, err
				})
			}
			x.pass()
			require.Empty(t, x.sfFor("Opportunity", deal).ID, "nothing landed")
			for range 2 {
				letters := x.deadLetters()
				require.Len(t, letters, 1, "the refused create is parked once")
				assert.Equal(t, crmsync.DeadParked, letters[0].Status, "the letter stays parked")
				assert.Equal(t, deal, letters[0].RecordID)
				var pl struct {
					Op *crmsync.WriteOp `json:"op"`
				}
				require.NoError(t, json.Unmarshal(letters[0].Payload, &pl))
				require.NotNil(t, pl.Op, "the letter carries the refused write")
				rows, err := x.st.LookupWrites(t.Context(), []string{pl.Op.Key})
				require.NoError(t, err)
				require.Contains(t, rows, pl.Op.Key, "the refusal has a ledger row")
				ls, err := x.st.LinksByA(t.Context(), crmsync.PairKey("acme", "deals"), []string{deal})
				require.NoError(t, err)
				assert.NotContains(t, ls, deal, "the deal is not linked")
				x.pass()
			}
			assert.Empty(t, x.sfFor("Opportunity", deal).ID, "nothing made in Salesforce")
		})
	}
}

// A refused create's letter is counted by the pass that parks it.
func TestGraphRefusedCreateCountsItsLetter(t *testing.T) {
	x := newGraphFixture(t)
	deal := x.f.hs.Seed("deals", map[string]string{"dealname": "Acme renewal", "dealstage": "qualifiedtobuy", "amount": "12000", "closedate": "2026-12-15"})[0]
	x.f.sf.Inject(salesforcetest.Fault{Endpoint: "upsert", Status: http.StatusRequestEntityTooLarge, ErrorCode: "REQUEST_ENTITY_TOO_LARGE"})
	rep := x.pass()
	require.Empty(t, x.sfFor("Opportunity", deal).ID, "nothing landed")
	assert.Equal(t, 1, rep.Pairs["deals"].DeadLetters(), "the pass counts the letter: %s", rep.Summary())
}

// The pass in which a deal's upsert landed unseen and its repeat was
// refused dies just after the write step's checkpoint, or just before it,
// and resumes: whichever way, the deal ends linked to the one Opportunity,
// with no letter left open and the landing audited once.
func TestGraphDealWhoseLandedCreateWasRefusedResumes(t *testing.T) {
	for _, tc := range []struct {
		name string
		drop bool
	}{
		{name: "crash after checkpoint"},
		{name: "crash before checkpoint", drop: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lose := &loseThenRefuse{path: "/composite/sobjects/Opportunity/"}
			cs := &stepCrashStore{prefix: "deals:write:", drop: tc.drop}
			x := newGraphFixtureOpts(t, graphFixtureOptions{
				sfTransport: func(f *fakes) http.RoundTripper {
					lose.base, lose.sf = http.DefaultTransport.(*http.Transport).Clone(), f.sf
					return lose
				},
				store: func(st crmsync.Store) crmsync.Store {
					cs.Store = st
					return cs
				},
			})
			hs := x.f.hs
			deal := hs.Seed("deals", map[string]string{"dealname": "Acme renewal", "dealstage": "qualifiedtobuy", "amount": "12000", "closedate": "2026-12-15"})[0]
			lose.armed.Store(true)
			time.Sleep(5 * time.Millisecond)
			info := cs.crashRun(t, "the run dies at the deal's write step", func(ctx context.Context) (crmsync.RunInfo, error) {
				_, info, err := x.g.RunOnce(ctx, x.eng, "acme")
				return info, err
			})
			require.False(t, lose.armed.Load(), "the upsert's response was lost")

			_, resumed, err := x.g.RunOnce(context.Background(), x.eng, "acme")
			require.NoError(t, err)
			require.Equal(t, info.ID, resumed.ID, "the dead run resumed")
			opp := x.sfFor("Opportunity", deal)
			require.NotEmpty(t, opp.ID, "the lost upsert made the Opportunity")
			if tc.drop {
				// The write step was not stored: the resumed run finds the
				// create landed before it is sent again (no refusal at all).
				ls, err := x.st.LinksByA(t.Context(), crmsync.PairKey("acme", "deals"), []string{deal})
				require.NoError(t, err)
				assert.Equal(t, opp.ID, ls[deal].BID)
				assert.Empty(t, x.deadLetters())
			} else {
				x.requireLandedCreateFound(deal, opp.ID)
			}
			x.pass()
			n := 0
			for _, r := range x.f.sf.All() {
				if objectOf(r.ID) == "Opportunity" && !r.Archived {
					n++
				}
			}
			assert.Equal(t, 1, n, "no duplicate Opportunity")
			for _, d := range x.deadLetters() {
				assert.NotEqual(t, crmsync.DeadParked, d.Status, "letter %d left parked", d.ID)
			}
		})
	}
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
