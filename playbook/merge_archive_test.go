package playbook

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/crmsync/crmsync"
)

// A Salesforce user merges a synced contact into a new duplicate, and a
// HubSpot user archives the contact's HubSpot counterpart before the next
// pass reads either change: the archive reaches the Salesforce survivor
// (the link's record now), the merge archives nobody, and no link stays on
// the merged-away id. (Found by TestModel, seed 17986694182707259292.)
func TestMergeSalesforceSurvivorGetsHubSpotArchive(t *testing.T) {
	clk := newTestClock()
	h := newHarness(t, clocked(fast(t), clk, 0))
	hsID := h.f.hs.Seed("contacts", map[string]string{"email": "ar@x.example", "lastname": "Archived"})[0]
	clk.Advance(time.Second)
	h.pass()
	clk.Advance(10 * time.Minute)
	loser := sfByEmailOne(t, h, "ar@x.example")
	winner := h.f.sf.Seed(crmsync.Fields{"LastName": "Archived", "Email": "ar.dup@x.example"})[0]
	require.NoError(t, h.f.sf.Merge(winner, loser.ID))
	require.NoError(t, h.f.hs.Archive("contacts", hsID))
	clk.Advance(time.Hour)
	h.sync.RequestArchivedRead(h.key, "hubspot")
	h.pass()
	// Later passes read the bin past the overlap: the archive is not read again.
	for range 2 {
		clk.Advance(2 * time.Hour)
		h.sync.RequestArchivedRead(h.key, "hubspot")
		h.pass()
	}
	r, _ := h.f.sf.Get(winner)
	assert.Equal(t, true, r.Fields["Archived__c"], "the survivor %s is flagged archived", winner)
	l, ok := linkOfA(t, h, hsID)
	require.True(t, ok, "the archived HubSpot contact keeps a link")
	assert.Equal(t, winner, l.BID, "the link points to the survivor")
}

// A HubSpot user merges a duplicate into a synced contact (a new record
// with a new id) and archives the merged record before the next pass reads
// it live: the bin read meets the new id with the linked old one in its
// merged ids. The link leaves the merged-away id, and the archive reaches
// the Salesforce counterpart. (Found by TestModel, seed
// 18153098168535346001.)
func TestMergeHubSpotMergedThenArchivedMovesTheLink(t *testing.T) {
	clk := newTestClock()
	h := newHarness(t, clocked(fast(t), clk, 0))
	old := h.f.hs.Seed("contacts", map[string]string{"email": "ma@x.example", "lastname": "Merged"})[0]
	clk.Advance(time.Second)
	h.pass()
	sf := sfByEmailOne(t, h, "ma@x.example")
	clk.Advance(10 * time.Minute)
	dup := h.f.hs.Seed("contacts", map[string]string{"email": "ma.dup@x.example", "lastname": "Dup"})[0]
	newID, err := h.f.hs.Merge("contacts", old, dup)
	require.NoError(t, err)
	require.NoError(t, h.f.hs.Archive("contacts", newID))
	for range 3 {
		clk.Advance(time.Hour)
		h.sync.RequestArchivedRead(h.key, "hubspot")
		h.pass()
	}
	_, stale := linkOfA(t, h, old)
	assert.False(t, stale, "no link stays on the merged-away id %s", old)
	r, _ := h.f.sf.Get(sf.ID)
	assert.Equal(t, true, r.Fields["Archived__c"], "the counterpart %s is flagged archived", sf.ID)
	l, ok := linkOfA(t, h, newID)
	require.True(t, ok, "the merged record %s is linked", newID)
	assert.Equal(t, sf.ID, l.BID)
}

// A HubSpot contact is archived before the sync ever links it; its
// Salesforce namesake is synced to a new HubSpot contact, which a user
// then merges with a duplicate (a new record, the linked id among its
// merged ids) and gives another email. When the recycle-bin read meets the
// old archived contact, the namesake is not free: its link's record
// resolves to the merge's record. The archive reaches nobody, the link
// moves to the merge's record, and no second Salesforce contact is made.
// (Found by TestModel, seed 18407355128004944343.)
func TestMergeArchivedNamesakeDoesNotTakeAMergedLink(t *testing.T) {
	clk := newTestClock()
	h := newHarness(t, clocked(fast(t), clk, 0))
	h.pass()
	clk.Advance(time.Minute)
	gone := h.f.hs.Seed("contacts", map[string]string{"email": "nm@x.example", "lastname": "Namesake"})[0]
	require.NoError(t, h.f.hs.Archive("contacts", gone))
	sfID := h.f.sf.Seed(crmsync.Fields{"LastName": "Namesake", "Email": "nm@x.example"})[0]
	clk.Advance(10 * time.Minute)
	h.pass()
	l, ok := linkOfB(t, h, sfID)
	require.True(t, ok, "the Salesforce contact is linked")
	require.NotEqual(t, gone, l.AID, "linked to a new HubSpot contact, not the archived one")
	clk.Advance(10 * time.Minute)
	dup := h.f.hs.Seed("contacts", map[string]string{"email": "nm.dup@x.example", "lastname": "Dup"})[0]
	merged, err := h.f.hs.Merge("contacts", l.AID, dup)
	require.NoError(t, err)
	clk.Advance(time.Second)
	// The merge's record no longer matches the namesake by email: only the
	// merged ids tie it to the link.
	require.NoError(t, h.f.hs.Edit("contacts", merged, map[string]string{"email": "nm.new@x.example"}))
	for range 3 {
		clk.Advance(time.Hour)
		h.sync.RequestArchivedRead(h.key, "hubspot")
		rep := h.pass()
		for _, sk := range rep.Skips {
			assert.NotContains(t, sk.Reason, gone, "the archived contact %s is never linked", gone)
		}
	}
	_, linked := linkOfA(t, h, gone)
	assert.False(t, linked, "the archived contact %s has no link", gone)
	r, _ := h.f.sf.Get(sfID)
	assert.NotEqual(t, true, r.Fields["Archived__c"], "the namesake %s is not flagged archived", sfID)
	l, ok = linkOfB(t, h, sfID)
	require.True(t, ok, "the namesake %s is linked", sfID)
	assert.Equal(t, merged, l.AID, "the link moved to the merge's record")
	var ids []string
	for _, rec := range h.f.sf.All() {
		ids = append(ids, rec.ID)
	}
	assert.Equal(t, []string{sfID}, ids, "one Salesforce contact for the person")
}
