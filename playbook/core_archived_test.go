package playbook

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/crmsync/crmsync"
)

// binCRM is a client whose archived reads list the whole bin (what the
// HubSpot client will say through WholeBinReader).
type binCRM struct{ *wrapCRM }

func (binCRM) ArchivedReadsWholeBin() bool { return true }

// HubSpot's recycle bin is read on its own cadence, not on every pass, and
// at once when asked (a deletion event); Salesforce's deleted records, read
// by window, are read on every pass.
func TestCoreWholeBinIsReadOnItsOwnCadence(t *testing.T) {
	clk := newTestClock()
	hw, sw := &wrapCRM{}, &wrapCRM{}
	var hsBin, sfBin atomic.Int32
	count := func(n *atomic.Int32) func(context.Context, crmsync.CRM, crmsync.ChangeQuery) (crmsync.Page, error) {
		return func(ctx context.Context, next crmsync.CRM, q crmsync.ChangeQuery) (crmsync.Page, error) {
			if q.Archived && q.PageToken == "" {
				n.Add(1)
			}
			return next.Changes(ctx, q)
		}
	}
	hw.changes, sw.changes = count(&hsBin), count(&sfBin)
	o := clocked(fast(t), clk, 0)
	o.sync = func(c *crmsync.SyncConfig) {
		c.Now = clk.Now
		hw.CRM, sw.CRM = c.A, c.B
		c.A, c.B = binCRM{hw}, sw
	}
	h := newHarness(t, o)
	ids := h.f.hs.Seed("contacts", map[string]string{"email": "bin@x.example", "lastname": "Bin"})
	clk.Advance(time.Second)
	h.pass()
	require.Equal(t, int32(1), hsBin.Load(), "the first pass reads the bin")

	clk.Advance(time.Minute)
	sfBefore := sfBin.Load()
	h.pass()
	assert.Equal(t, int32(1), hsBin.Load(), "a pass a minute later does not read the bin again")
	assert.Greater(t, sfBin.Load(), sfBefore, "Salesforce's deleted records are read on every pass")

	require.NoError(t, h.f.hs.Archive("contacts", ids[0]))
	h.sync.RequestArchivedRead(h.key, "hubspot")
	clk.Advance(time.Minute)
	h.pass()
	assert.Equal(t, int32(2), hsBin.Load(), "a requested read runs at once")
	assert.Equal(t, true, sfByEmailOne(t, h, "bin@x.example").Fields["Archived__c"], "the archive reached Salesforce")

	clk.Advance(time.Minute)
	h.pass()
	assert.Equal(t, int32(2), hsBin.Load())
	clk.Advance(time.Hour)
	h.pass()
	assert.Equal(t, int32(3), hsBin.Load(), "an hour later the bin is read again")
}
