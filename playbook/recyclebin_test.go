package playbook

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The reference workflow reads HubSpot's recycle bin, which the API cannot
// filter by archive time, on its own cadence: the first pass reads it, the
// quiet passes after it do not (issue: 50 calls a pass for 5,000 archived
// contacts). Salesforce's deletions are read by window on every pass.
func TestRecycleBinIsNotReadEveryPass(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	ids := h.f.hs.SeedContacts(3)
	require.NoError(t, h.f.hs.Archive("contacts", ids[0]))
	h.pass()
	first := h.f.hs.Calls("list")
	require.Positive(t, first, "the first pass reads the bin")
	h.pass()
	h.pass()
	assert.Equal(t, first, h.f.hs.Calls("list"), "quiet passes read HubSpot's recycle bin again")
}
