package playbook

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/crmsync/crmsync"
)

// A HubSpot contact whose Salesforce match is linked to another HubSpot
// contact, since archived: the pass links the new contact to the match and
// creates no second Salesforce contact with the same email.
func TestCoreContactTakesOverAMatchWhosePartnerIsGone(t *testing.T) {
	h := newHarness(t, fast(t))
	h.f.sf.Seed(crmsync.Fields{"LastName": "Dijkstra", "Email": "dup@x.example"})
	h.pass()
	match := sfByEmailOne(t, h, "dup@x.example")
	first := h.liveHS()
	require.Len(t, first, 1, "the Salesforce contact came to HubSpot")

	require.NoError(t, h.f.hs.Archive("contacts", first[0]))
	second := h.f.hs.Seed("contacts", map[string]string{"email": "dup@x.example", "firstname": "Dennis", "lastname": "Ritchie"})[0]
	h.pass()
	h.pass()

	assert.Len(t, h.sfByEmail()["dup@x.example"], 1, "no second Salesforce contact with the email")
	l, ok := linkOfA(t, h, second)
	require.True(t, ok, "the new contact is linked")
	assert.Equal(t, match.ID, l.BID, "the new contact is linked to the existing match")
}
