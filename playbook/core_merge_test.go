package playbook

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/crmsync/crmsync"
)

func linkOfA(t *testing.T, h *harness, id string) (crmsync.Link, bool) {
	t.Helper()
	ls, err := h.st.LinksByA(context.Background(), h.key, []string{id})
	require.NoError(t, err)
	l, ok := ls[id]
	return l, ok
}

func hsArchivedFlag(h *harness, id string) string {
	r, _ := h.f.hs.Get("contacts", id)
	return r.Properties["crmsync_archived"]
}

// A Salesforce merge loser (deleted, MergedInto set) whose winner is
// already linked: its HubSpot counterpart is not archived, and the pass
// reports it for a person.
func TestCoreSalesforceMergeLoserIsNotArchived(t *testing.T) {
	h := newHarness(t, fast(t))
	ids := h.f.hs.Seed("contacts", map[string]string{"email": "l@x.example", "lastname": "Loser"},
		map[string]string{"email": "w@x.example", "lastname": "Winner"})
	h.pass()
	loser, winner := sfByEmailOne(t, h, "l@x.example"), sfByEmailOne(t, h, "w@x.example")
	must(t, h.f.sf.Edit(winner.ID, crmsync.Fields{"Title": "Merged"}))
	require.NoError(t, h.f.sf.Merge(winner.ID, loser.ID))
	rep := h.pass()
	h.pass()
	assert.NotEqual(t, "true", hsArchivedFlag(h, ids[0]), "the loser's HubSpot counterpart is not flagged archived")
	found := false
	for _, sk := range rep.Skips {
		if sk.RecordID == loser.ID && strings.Contains(sk.Reason, "a person") {
			found = true
		}
	}
	assert.True(t, found, "the pass reports the merge for a person: %+v", rep.Skips)
	l, ok := linkOfA(t, h, ids[1])
	require.True(t, ok)
	assert.Equal(t, winner.ID, l.BID, "the winner keeps its link")
}

// A Salesforce merge loser whose winner has no link: the loser's HubSpot
// counterpart is relinked to the winner, not archived, and nothing is
// created.
func TestCoreSalesforceMergeRelinksToAnUnlinkedWinner(t *testing.T) {
	h := newHarness(t, fast(t))
	hsID := h.f.hs.Seed("contacts", map[string]string{"email": "l2@x.example", "lastname": "Loser"})[0]
	// The winner's create in HubSpot is refused: it stays unlinked.
	h.f.hs.FailRecords("VALIDATION_ERROR", "w2@x.example")
	h.f.sf.Seed(crmsync.Fields{"LastName": "Winner", "Email": "w2@x.example"})
	h.pass()
	loser, winner := sfByEmailOne(t, h, "l2@x.example"), sfByEmailOne(t, h, "w2@x.example")
	require.NoError(t, h.f.sf.Merge(winner.ID, loser.ID))
	h.pass()
	h.f.hs.ClearFaults()
	h.pass()
	assert.NotEqual(t, "true", hsArchivedFlag(h, hsID), "the loser's counterpart is not flagged archived")
	l, ok := linkOfA(t, h, hsID)
	require.True(t, ok)
	assert.Equal(t, winner.ID, l.BID, "the HubSpot record is linked to the winner")
	assert.Len(t, h.liveHS(), 1, "nothing was created in HubSpot")
}

// A HubSpot merge makes a new record whose hs_merged_object_ids names the
// linked old id: the link moves to the new id; Salesforce gets neither a
// duplicate nor an archive flag.
func TestCoreHubSpotMergeMovesTheLink(t *testing.T) {
	h := newHarness(t, fast(t))
	old := h.f.hs.Seed("contacts", map[string]string{"email": "m@x.example", "lastname": "Merged"})[0]
	h.pass()
	sf := sfByEmailOne(t, h, "m@x.example")
	// A duplicate a user made in HubSpot since, merged into the linked one.
	dup := h.f.hs.Seed("contacts", map[string]string{"email": "m.dup@x.example", "lastname": "Dup", "phone": "7"})[0]
	newID, err := h.f.hs.Merge("contacts", old, dup)
	require.NoError(t, err)
	h.pass()
	h.pass()
	assert.Len(t, h.liveSF(), 1, "no duplicate in Salesforce")
	r, _ := h.f.sf.Get(sf.ID)
	assert.NotEqual(t, true, r.Fields["Archived__c"], "Salesforce's record is not flagged archived")
	assert.Equal(t, "7", r.Fields["Phone"], "the merged record's values reached Salesforce")
	l, ok := linkOfA(t, h, newID)
	require.True(t, ok, "the new id is linked")
	assert.Equal(t, sf.ID, l.BID)
}

// An update sent to a merged-away id lands on the merged record (the
// HubSpot client follows the old id and reports the new one): the link
// moves to the id the write reports. The user merges in HubSpot while the
// pass writes: after the pass read the old record, before its update. The
// update goes to the page's other side (a Salesforce edit read alone) or
// to its source side (the HubSpot record read in the same pass, written
// back with Salesforce's edit).
func TestCoreWriteToAMergedIDRelinks(t *testing.T) {
	for _, source := range []bool{false, true} {
		t.Run(fmt.Sprintf("source side %v", source), func(t *testing.T) {
			clk := newTestClock()
			o, user := withUser(clocked(fast(t), clk, 0))
			h := newHarness(t, o)
			old := h.f.hs.Seed("contacts", map[string]string{"email": "r@x.example", "lastname": "Redirect"})[0]
			clk.Advance(time.Second)
			h.pass()
			sf := sfByEmailOne(t, h, "r@x.example")
			if !source {
				// Quiet: HubSpot's window moves past the pair's stamps.
				clk.Advance(10 * time.Minute)
				h.pass()
			}
			var merged atomic.Value
			user.arm(func(r *http.Request) bool {
				if !isCall(r, "/contacts/batch/update") {
					return false
				}
				dup := h.f.hs.Seed("contacts", map[string]string{"email": "r.dup@x.example", "lastname": "Dup"})[0]
				id, err := h.f.hs.Merge("contacts", old, dup)
				if err != nil {
					panic(err)
				}
				merged.Store(id)
				return true
			})
			must(t, h.f.sf.Edit(sf.ID, crmsync.Fields{"Phone": "8"}))
			clk.Advance(time.Second)
			rep := h.pass()
			require.Equal(t, source, rep.Read["hubspot"] > 0, "HubSpot's record read in the pass")
			newID, _ := merged.Load().(string)
			require.NotEmpty(t, newID, "the user merged during the pass")
			r, _ := h.f.hs.Get("contacts", newID)
			require.Equal(t, "8", r.Properties["phone"], "the write landed on the merged record")
			l, ok := linkOfA(t, h, newID)
			require.True(t, ok, "the link moved to the id the write reported")
			assert.Equal(t, sf.ID, l.BID)
			clk.Advance(time.Second)
			h.pass()
			assert.Len(t, h.liveSF(), 1, "no duplicate in Salesforce")
		})
	}
}

// A Salesforce merge into a winner that is new (made since the last pass,
// never linked), seen in the same pass as the merge: the loser's HubSpot
// counterpart is relinked to the winner; the winner is not created in
// HubSpot as a second person, and nothing waits for a person.
func TestCoreSalesforceMergeIntoANewWinnerInOnePass(t *testing.T) {
	h := newHarness(t, fast(t))
	hsID := h.f.hs.Seed("contacts", map[string]string{"email": "l3@x.example", "lastname": "Loser"})[0]
	h.pass()
	loser := sfByEmailOne(t, h, "l3@x.example")
	winner := h.f.sf.Seed(crmsync.Fields{"LastName": "Winner", "Email": "w3@x.example", "Phone": "9"})[0]
	require.NoError(t, h.f.sf.Merge(winner, loser.ID))
	rep := h.pass()
	h.pass()
	assert.Len(t, h.liveHS(), 1, "the winner was not created in HubSpot")
	assert.NotEqual(t, "true", hsArchivedFlag(h, hsID), "the loser's counterpart is not flagged archived")
	l, ok := linkOfA(t, h, hsID)
	require.True(t, ok)
	assert.Equal(t, winner, l.BID, "the HubSpot record is linked to the winner")
	r, _ := h.f.hs.Get("contacts", hsID)
	assert.Equal(t, "9", r.Properties["phone"], "the winner's values reached HubSpot")
	for _, sk := range rep.Skips {
		assert.NotContains(t, sk.Reason, "a person", "nothing waits for a person: %+v", sk)
	}
}

// A HubSpot merge whose old id HubSpot also lists in its recycle bin, with
// nothing saying it was merged: the sync asks where the id lives now (a
// single GET follows merges) before it flags the counterpart archived, and
// moves the link to the new record instead.
//
// This keeps a wrapper: whether real HubSpot lists merged-away ids as
// archived is unconfirmed, and the fake does not (hubspottest's package
// docs); the wrapper lists the old id in the bin as HubSpot might.
func TestCoreHubSpotMergedIDInTheBinIsNotArchived(t *testing.T) {
	o, hw, _ := wrapped(fast(t))
	h := newHarness(t, o)
	old := h.f.hs.Seed("contacts", map[string]string{"email": "m4@x.example", "lastname": "Merged"})[0]
	h.pass()
	sf := sfByEmailOne(t, h, "m4@x.example")
	dup := h.f.hs.Seed("contacts", map[string]string{"email": "m4.dup@x.example", "lastname": "Dup", "phone": "5"})[0]
	newID, err := h.f.hs.Merge("contacts", old, dup)
	require.NoError(t, err)
	gone := time.Now().UTC()
	hw.set(func(w *wrapCRM) {
		w.changes = func(ctx context.Context, next crmsync.CRM, q crmsync.ChangeQuery) (crmsync.Page, error) {
			pg, err := next.Changes(ctx, q)
			if err == nil && q.Archived && q.PageToken == "" {
				pg.Records = append(pg.Records, crmsync.Record{ID: old, Archived: true, ModifiedAt: gone, CreatedAt: gone,
					Fields: crmsync.Fields{"email": "m4@x.example", "lastname": "Merged", hubspotLinkField: sf.ID}})
			}
			return pg, err
		}
	})
	h.sync.RequestArchivedRead(h.key, "hubspot")
	for range 2 {
		rep := h.pass()
		assert.Zero(t, rep.Directions["hubspot->salesforce"].Archived, "no archive flag sent to Salesforce, even for a moment")
	}
	r, _ := h.f.sf.Get(sf.ID)
	assert.NotEqual(t, true, r.Fields["Archived__c"], "Salesforce's record is not flagged archived")
	assert.Equal(t, "5", r.Fields["Phone"], "the merged record's values reached Salesforce")
	assert.Len(t, h.liveSF(), 1, "no duplicate in Salesforce")
	l, ok := linkOfA(t, h, newID)
	require.True(t, ok, "the new id is linked")
	assert.Equal(t, sf.ID, l.BID)
}

func linkOfB(t *testing.T, h *harness, id string) (crmsync.Link, bool) {
	t.Helper()
	ls, err := h.st.LinksByB(context.Background(), h.key, []string{id})
	require.NoError(t, err)
	l, ok := ls[id]
	return l, ok
}

// A person made on both sides before the first pass, whose pairing write
// to Salesforce is refused and parked: the pair is linked all the same
// (both records exist, and the link fields name each other), so a
// Salesforce merge of that record into a new winner moves the HubSpot
// record to the winner; Salesforce gets no second record for the person.
func TestCoreSalesforceMergeOfAParkedPairRelinksToTheWinner(t *testing.T) {
	h := newHarness(t, fast(t))
	hsID := h.f.hs.Seed("contacts", map[string]string{"email": "p4@x.example", "lastname": "Parked", "firstname": "Ann"})[0]
	sfID := h.f.sf.Seed(crmsync.Fields{"LastName": "Parked", "Email": "p4@x.example", "Phone": "5"})[0]
	h.f.sf.FailRecords("FIELD_CUSTOM_VALIDATION_EXCEPTION", "refused by a validation rule", 0, sfID)
	h.pass()
	require.NotEmpty(t, h.deadLetters(), "the pairing write to Salesforce is parked")
	h.f.sf.ClearFaults()
	winner := h.f.sf.Seed(crmsync.Fields{"LastName": "Winner", "Email": "w4@x.example", "Phone": "9"})[0]
	require.NoError(t, h.f.sf.Merge(winner, sfID))
	h.pass()
	h.pass()
	l, ok := linkOfA(t, h, hsID)
	require.True(t, ok, "the HubSpot record is linked")
	assert.Equal(t, winner, l.BID, "the HubSpot record is linked to the winner")
	assert.Len(t, h.liveSF(), 1, "Salesforce got no second record for the person")
	assert.Len(t, h.liveHS(), 1, "the winner was not created in HubSpot")
}
