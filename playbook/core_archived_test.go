package playbook

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// HubSpot's recycle bin is read on its own cadence, not on every pass, and
// at once when asked (a deletion event); Salesforce's deleted records, read
// by window, are read on every pass. The real HubSpot client reads its bin
// whole (ArchivedReadsWholeBin) through the list API, counted by the fake.
func TestCoreWholeBinIsReadOnItsOwnCadence(t *testing.T) {
	clk := newTestClock()
	h := newHarness(t, clocked(fast(t), clk, 0))
	bin := func() int { return h.f.hs.Calls("list") }
	sfDeleted := func() int { c := h.f.sf.Calls(); return c["queryAll"] + c["deleted"] }
	ids := h.f.hs.Seed("contacts", map[string]string{"email": "bin@x.example", "lastname": "Bin"})
	clk.Advance(time.Second)
	h.pass()
	reads := bin()
	require.Positive(t, reads, "the first pass reads the bin")

	clk.Advance(time.Minute)
	sfBefore := sfDeleted()
	h.pass()
	assert.Equal(t, reads, bin(), "a pass a minute later does not read the bin again")
	assert.Greater(t, sfDeleted(), sfBefore, "Salesforce's deleted records are read on every pass")

	require.NoError(t, h.f.hs.Archive("contacts", ids[0]))
	h.sync.RequestArchivedRead(h.key, "hubspot")
	clk.Advance(time.Minute)
	h.pass()
	assert.Greater(t, bin(), reads, "a requested read runs at once")
	reads = bin()
	assert.Equal(t, true, sfByEmailOne(t, h, "bin@x.example").Fields["Archived__c"], "the archive reached Salesforce")

	clk.Advance(time.Minute)
	h.pass()
	assert.Equal(t, reads, bin())
	clk.Advance(time.Hour)
	h.pass() // the delayed window, due too, takes its turn first
	clk.Advance(5 * time.Minute)
	h.pass()
	assert.Greater(t, bin(), reads, "an hour later the bin is read again")
}
