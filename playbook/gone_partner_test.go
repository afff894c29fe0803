package playbook

import (
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/crmsync/crmsync"
)

// A Salesforce namesake of a synced contact is deleted before any pass
// reads it, and then the synced Salesforce contact is deleted too. When the
// recycle-bin read meets both, the deleted namesake does not take over the
// HubSpot contact's link (its partner is gone, but a deleted record has
// nothing to sync): the link stays on its record, and the HubSpot contact
// is flagged archived. (Found by TestModel, seed 3591491679719791502.)
func TestCoreDeletedNamesakeDoesNotTakeALinkWhosePartnerIsGone(t *testing.T) {
	clk := newTestClock()
	h := newHarness(t, clocked(fast(t), clk, 0))
	hsID := h.f.hs.Seed("contacts", map[string]string{"email": "gp@x.example", "lastname": "Gone"})[0]
	clk.Advance(time.Second)
	h.pass()
	sf := sfByEmailOne(t, h, "gp@x.example")
	clk.Advance(10 * time.Minute)
	namesake := h.f.sf.Seed(crmsync.Fields{"LastName": "Gone", "Email": "gp@x.example"})[0]
	clk.Advance(time.Second)
	require.NoError(t, h.f.sf.Delete(namesake))
	clk.Advance(time.Second)
	require.NoError(t, h.f.sf.Delete(sf.ID))
	for range 3 {
		clk.Advance(time.Hour)
		h.sync.RequestArchivedRead(h.key, "salesforce")
		h.pass()
	}
	l, ok := linkOfA(t, h, hsID)
	require.True(t, ok, "the HubSpot contact keeps a link")
	assert.Equal(t, sf.ID, l.BID, "the link stays on the deleted counterpart, not the namesake %s", namesake)
	r, ok := h.f.hs.Get("contacts", hsID)
	require.True(t, ok)
	assert.Equal(t, sf.ID, r.Properties[hubspotLinkField], "the HubSpot link field names the counterpart")
	assert.Equal(t, "true", r.Properties["crmsync_archived"], "the HubSpot contact is flagged archived")
}

// A Salesforce namesake of a synced contact is deleted; while the pass
// that reads it from the recycle bin runs, a Salesforce user merges the
// synced contact into a new duplicate, after the bin read and before the
// pass looks for the HubSpot match's partner. Salesforce cannot say where a
// merged-away id went, so the partner looks gone: the deleted namesake
// still does not take over the HubSpot contact's link. The merge's
// survivor takes the link over when its loser is read, and no second
// HubSpot contact is made for the survivor. (Found by TestModel, seed
// 9158109218129102852.)
func TestMergeDeletedNamesakeDoesNotTakeTheSurvivorsLink(t *testing.T) {
	clk := newTestClock()
	o, user := withUser(clocked(fast(t), clk, 0))
	h := newHarness(t, o)
	hsID := h.f.hs.Seed("contacts", map[string]string{"email": "gs@x.example", "lastname": "Survivor"})[0]
	clk.Advance(time.Second)
	h.pass()
	loser := sfByEmailOne(t, h, "gs@x.example")
	clk.Advance(10 * time.Minute)
	namesake := h.f.sf.Seed(crmsync.Fields{"LastName": "Survivor", "Email": "gs@x.example"})[0]
	clk.Advance(time.Second)
	require.NoError(t, h.f.sf.Delete(namesake))
	clk.Advance(time.Second)
	var binRead bool
	var winner atomic.Value
	user.arm(func(r *http.Request) bool {
		if isCall(r, "/queryAll") {
			binRead = true
			return false
		}
		if !binRead {
			return false
		}
		w := h.f.sf.Seed(crmsync.Fields{"LastName": "Survivor", "Email": "gs.dup@x.example"})[0]
		if err := h.f.sf.Merge(w, loser.ID); err != nil {
			panic(err)
		}
		winner.Store(w)
		return true
	})
	h.sync.RequestArchivedRead(h.key, "salesforce")
	h.pass()
	survivor, _ := winner.Load().(string)
	require.NotEmpty(t, survivor, "the user merged during the pass")
	for range 2 {
		clk.Advance(time.Hour)
		h.sync.RequestArchivedRead(h.key, "salesforce")
		h.pass()
	}
	l, ok := linkOfA(t, h, hsID)
	require.True(t, ok, "the HubSpot contact keeps a link")
	assert.Equal(t, survivor, l.BID, "the link moved to the survivor, not the namesake %s", namesake)
	r, ok := h.f.hs.Get("contacts", hsID)
	require.True(t, ok)
	assert.Equal(t, survivor, r.Properties[hubspotLinkField], "the HubSpot link field names the survivor")
	assert.Len(t, h.liveHS(), 1, "one HubSpot contact for the person")
}

// A Salesforce namesake of a synced contact is deleted before any pass
// reads it. While the pass that reads it from the recycle bin runs (after
// the pass read HubSpot), a HubSpot user merges a duplicate into the synced
// HubSpot contact: a new record, the linked id among its merged ids, not
// linked yet. The bin read matches the namesake to the merge's record, which
// is not free: it takes the link of the id merged into it when it is read.
// So the deleted namesake neither takes it nor flags it archived, and no
// link stays on the merged-away id. (Found by TestModel, seed
// 2470156931339589678.)
func TestMergeDeletedNamesakeDoesNotTakeAHubSpotMergeRecord(t *testing.T) {
	clk := newTestClock()
	o, user := withUser(clocked(fast(t), clk, 0))
	h := newHarness(t, o)
	hsID := h.f.hs.Seed("contacts", map[string]string{"email": "hm@x.example", "lastname": "Merged"})[0]
	clk.Advance(time.Second)
	h.pass()
	sf := sfByEmailOne(t, h, "hm@x.example")
	clk.Advance(10 * time.Minute)
	namesake := h.f.sf.Seed(crmsync.Fields{"LastName": "Merged", "Email": "hm@x.example"})[0]
	clk.Advance(time.Second)
	require.NoError(t, h.f.sf.Delete(namesake))
	clk.Advance(time.Second)
	var merged atomic.Value
	user.arm(func(r *http.Request) bool {
		if !isCall(r, "/queryAll") {
			return false
		}
		dup := h.f.hs.Seed("contacts", map[string]string{"email": "hm.dup@x.example", "lastname": "Dup"})[0]
		id, err := h.f.hs.Merge("contacts", hsID, dup)
		if err != nil {
			panic(err)
		}
		merged.Store(id)
		return true
	})
	h.sync.RequestArchivedRead(h.key, "salesforce")
	h.pass()
	newID, _ := merged.Load().(string)
	require.NotEmpty(t, newID, "the user merged during the pass")
	for range 2 {
		clk.Advance(time.Hour)
		h.sync.RequestArchivedRead(h.key, "salesforce")
		h.pass()
	}
	_, stale := linkOfA(t, h, hsID)
	assert.False(t, stale, "no link stays on the merged-away id %s", hsID)
	l, ok := linkOfA(t, h, newID)
	require.True(t, ok, "the merge's record %s is linked", newID)
	assert.Equal(t, sf.ID, l.BID, "the merge's record took the link of %s, not the namesake %s", hsID, namesake)
	r, ok := h.f.hs.Get("contacts", newID)
	require.True(t, ok)
	assert.Equal(t, sf.ID, r.Properties[hubspotLinkField], "the HubSpot link field names the counterpart")
	assert.NotEqual(t, "true", r.Properties["crmsync_archived"], "the merge's record is not flagged archived")
	assert.Len(t, h.liveSF(), 1, "one Salesforce contact for the person")
}
