package playbook

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/crmsync/crmsync"
)

// A Salesforce merge moves a link to the survivor; then a Salesforce user
// deletes the survivor and a HubSpot user archives the counterpart before
// the next pass, and later restores it. Each deletion is read while the
// other record is already gone; the restored HubSpot contact still gets
// the archive flag for the deleted survivor. (Found by TestModel, seed
// 11725634526978072741.)
func TestMergeSurvivorDeletedWhileCounterpartArchivedThenRestored(t *testing.T) {
	clk := newTestClock()
	h := newHarness(t, clocked(fast(t), clk, 0))
	first := h.f.sf.Seed(crmsync.Fields{"LastName": "Hopper", "Email": "md@x.example"})[0]
	clk.Advance(3 * time.Second)
	h.pass()
	hs, ok := h.hsByEmail()["md@x.example"]
	require.True(t, ok, "the contact reached HubSpot")
	hsID := hs.ID
	clk.Advance(16 * time.Second)
	winner := h.f.sf.Seed(crmsync.Fields{"LastName": "Hopper", "Email": "md.dup@x.example"})[0]
	require.NoError(t, h.f.sf.Merge(winner, first))
	clk.Advance(31 * time.Second)
	h.pass()
	l, linked := linkOfA(t, h, hsID)
	require.True(t, linked)
	require.Equal(t, winner, l.BID, "the link moved to the survivor")
	clk.Advance(3 * time.Minute)
	require.NoError(t, h.f.sf.Delete(winner))
	clk.Advance(6 * time.Second)
	require.NoError(t, h.f.hs.Archive("contacts", hsID))
	// HubSpot's bin is read hourly: this pass does not read the archive.
	clk.Advance(9 * time.Second)
	h.pass()
	// Later passes move the cursors past the deletion before the restore.
	for range 3 {
		clk.Advance(90 * time.Second)
		h.pass()
	}
	require.NoError(t, h.f.hs.Restore("contacts", hsID))
	clk.Advance(40 * time.Second)
	h.pass()
	for range 2 {
		clk.Advance(time.Hour)
		h.pass()
	}
	assert.Equal(t, "true", hsArchivedFlag(h, hsID), "the restored %s is flagged archived: its counterpart %s is deleted", hsID, winner)
}
