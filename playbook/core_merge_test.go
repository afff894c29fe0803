package playbook

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/crmsync/crmsync"
)

// mergedInto marks deleted records read from w as merged into a winner
// (what the Salesforce client will do from MasterRecordId).
func mergedInto(w *wrapCRM, losers map[string]string) {
	w.set(func(w *wrapCRM) {
		w.changes = func(ctx context.Context, next crmsync.CRM, q crmsync.ChangeQuery) (crmsync.Page, error) {
			pg, err := next.Changes(ctx, q)
			for i, r := range pg.Records {
				if win, ok := losers[r.ID]; ok && r.Archived {
					pg.Records[i].MergedInto = win
				}
			}
			return pg, err
		}
	})
}

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
	o, _, sw := wrapped(fast(t))
	h := newHarness(t, o)
	ids := h.f.hs.Seed("contacts", map[string]string{"email": "l@x.example", "lastname": "Loser"},
		map[string]string{"email": "w@x.example", "lastname": "Winner"})
	h.pass()
	loser, winner := sfByEmailOne(t, h, "l@x.example"), sfByEmailOne(t, h, "w@x.example")
	mergedInto(sw, map[string]string{loser.ID: winner.ID})
	require.NoError(t, h.f.sf.Delete(loser.ID))
	must(t, h.f.sf.Edit(winner.ID, crmsync.Fields{"Title": "Merged"}))
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
	o, _, sw := wrapped(fast(t))
	h := newHarness(t, o)
	hsID := h.f.hs.Seed("contacts", map[string]string{"email": "l2@x.example", "lastname": "Loser"})[0]
	// The winner's create in HubSpot is refused: it stays unlinked.
	h.f.hs.FailRecords("VALIDATION_ERROR", "w2@x.example")
	h.f.sf.Seed(crmsync.Fields{"LastName": "Winner", "Email": "w2@x.example"})
	h.pass()
	loser, winner := sfByEmailOne(t, h, "l2@x.example"), sfByEmailOne(t, h, "w2@x.example")
	mergedInto(sw, map[string]string{loser.ID: winner.ID})
	require.NoError(t, h.f.sf.Delete(loser.ID))
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
	o, hw, _ := wrapped(fast(t))
	h := newHarness(t, o)
	old := h.f.hs.Seed("contacts", map[string]string{"email": "m@x.example", "lastname": "Merged"})[0]
	h.pass()
	sf := sfByEmailOne(t, h, "m@x.example")
	// HubSpot's merge: a new record, the old one gone.
	newID := h.f.hs.Seed("contacts", map[string]string{"email": "m@x.example", "lastname": "Merged", "phone": "7"})[0]
	require.NoError(t, h.f.hs.Archive("contacts", old))
	hw.set(func(w *wrapCRM) {
		w.changes = func(ctx context.Context, next crmsync.CRM, q crmsync.ChangeQuery) (crmsync.Page, error) {
			pg, err := next.Changes(ctx, q)
			for i, r := range pg.Records {
				if r.ID == newID {
					pg.Records[i].MergedFrom = []string{old}
				}
			}
			return pg, err
		}
	})
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
// moves to the id the write reports.
func TestCoreWriteToAMergedIDRelinks(t *testing.T) {
	o, hw, _ := wrapped(fast(t))
	h := newHarness(t, o)
	old := h.f.hs.Seed("contacts", map[string]string{"email": "r@x.example", "lastname": "Redirect"})[0]
	h.pass()
	sf := sfByEmailOne(t, h, "r@x.example")
	newID := h.f.hs.Seed("contacts", map[string]string{"email": "r@x.example", "lastname": "Redirect"})[0]
	var mu sync.Mutex
	hw.set(func(w *wrapCRM) {
		// The new record is not listed yet (search lag); the old id still
		// resolves to it on a read by id; a write to the old id goes to it.
		w.changes = func(ctx context.Context, next crmsync.CRM, q crmsync.ChangeQuery) (crmsync.Page, error) {
			pg, err := next.Changes(ctx, q)
			pg.Records = slices.DeleteFunc(pg.Records, func(r crmsync.Record) bool { return r.ID == newID || r.ID == old })
			return pg, err
		}
		w.write = func(ctx context.Context, next crmsync.CRM, object string, ops []crmsync.WriteOp) ([]crmsync.WriteResult, error) {
			mu.Lock()
			defer mu.Unlock()
			ops = slices.Clone(ops)
			for i := range ops {
				if ops[i].Kind == crmsync.Update && ops[i].ID == old {
					ops[i].ID = newID
				}
			}
			return next.Write(ctx, object, ops)
		}
	})
	must(t, h.f.sf.Edit(sf.ID, crmsync.Fields{"Phone": "8"}))
	h.pass()
	r, _ := h.f.hs.Get("contacts", newID)
	require.Equal(t, "8", r.Properties["phone"], "the write landed on the merged record")
	l, ok := linkOfA(t, h, newID)
	require.True(t, ok, "the link moved to the id the write reported")
	assert.Equal(t, sf.ID, l.BID)
}
