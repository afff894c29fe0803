package playbook

import (
	"context"
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/hubspot/hubspottest"
)

// A create that landed in Salesforce but whose call answered with an error
// no retry fixes (every op's outcome unknown) is not parked, and the record
// without an email is matched through its link field on the next read: no
// duplicate.
//
// This keeps a wrapper: no fake behaviour produces the situation through
// the real clients. The sync creates by upsert on the link field, which
// both clients send again after a lost response (hubspottest's AfterServe
// faults, a reset connection): the repeat finds the record and the outcome
// is known. A permanent whole-call error after the write landed is what
// the core must still survive from a client; the wrapper plays it.
func TestCoreLandedWriteWithLostLinkMakesNoDuplicate(t *testing.T) {
	o, _, sw := wrapped(fast(t))
	h := newHarness(t, o)
	hsID := h.f.hs.Seed("contacts", map[string]string{"firstname": "Ada", "lastname": "NoEmail"})[0]
	lost := true
	sw.set(func(w *wrapCRM) {
		w.write = func(ctx context.Context, next crmsync.CRM, object string, ops []crmsync.WriteOp) ([]crmsync.WriteResult, error) {
			res, err := next.Write(ctx, object, ops)
			if lost && err == nil {
				lost = false
				return nil, crmsync.Permanent(errors.New("response lost after the write landed"))
			}
			return res, err
		}
	})
	h.pass()
	h.pass()
	assert.Len(t, h.liveHS(), 1, "HubSpot contacts")
	sf := h.liveSF()
	require.Len(t, sf, 1, "Salesforce contacts")
	assert.Equal(t, 0, len(h.deadLetters()), "a write whose outcome is unknown is not parked")
	links, err := h.st.LinksByA(context.Background(), h.key, []string{hsID})
	require.NoError(t, err)
	assert.Equal(t, sf[0].ID, links[hsID].BID, "the pair is linked")
}

// A record whose link field already names a record of the other side, with
// no link row (the state a create leaves when it landed but its response
// was lost: the new HubSpot contact holds the Salesforce id, the Salesforce
// contact not yet the HubSpot one), is matched through that field: neither
// has an email, and nothing is created again.
func TestCoreLinkFieldRecoversAMissingLink(t *testing.T) {
	h := newHarness(t, fast(t))
	sfID := h.f.sf.Seed(crmsync.Fields{"FirstName": "Ada", "LastName": "NoEmail"})[0]
	hsID := h.f.hs.Seed("contacts", map[string]string{"firstname": "Ada", "lastname": "NoEmail", hubspotLinkField: sfID})[0]
	h.pass()
	h.pass()
	assert.Len(t, h.liveHS(), 1, "HubSpot contacts")
	require.Len(t, h.liveSF(), 1, "Salesforce contacts")
	l, ok := linkOfA(t, h, hsID)
	require.True(t, ok, "the pair is linked")
	assert.Equal(t, sfID, l.BID)
	r, _ := h.f.sf.Get(sfID)
	assert.Equal(t, hsID, r.Fields[salesforceLinkField], "the Salesforce contact now names the HubSpot one")
}

// A client that returns per-record results together with an error (the
// old HubSpot batch split) still has its per-record outcomes honoured: the
// good record is linked and only the refused one is parked.
//
// This keeps a wrapper: the CRM contract now says a client returns a nil
// error whenever it has one result per op, and both real clients do, so no
// fake behaviour produces results plus an error. The core still takes such
// a client at its per-record word. TestCoreBatchRefusalParksOnlyTheBadRecord
// is the same story through the real client.
func TestCorePerRecordResultsWinOverCallError(t *testing.T) {
	o, hw, _ := wrapped(fast(t))
	h := newHarness(t, o)
	h.f.sf.Seed(crmsync.Fields{"LastName": "Good", "Email": "good@x.example"}, crmsync.Fields{"LastName": "Bad", "Email": "bad@x.example"})
	h.f.hs.FailRecords("VALIDATION_ERROR", "bad@x.example")
	hw.set(func(w *wrapCRM) {
		w.write = func(ctx context.Context, next crmsync.CRM, object string, ops []crmsync.WriteOp) ([]crmsync.WriteResult, error) {
			res, err := next.Write(ctx, object, ops)
			if err == nil {
				for _, r := range res {
					if r.Err != nil {
						return res, r.Err
					}
				}
			}
			return res, err
		}
	})
	h.pass()
	assert.Equal(t, 1, len(h.deadLetters()), "only the refused record is parked")
	byEmail := h.hsByEmail()
	good, ok := byEmail["good@x.example"]
	require.True(t, ok, "the good record reached HubSpot")
	links, err := h.st.LinksByA(context.Background(), h.key, []string{good.ID})
	require.NoError(t, err)
	assert.NotEmpty(t, links[good.ID].BID, "the good record is linked")
}

// HubSpot refuses a whole batch (400) that holds a good record and a bad
// one: the good record is written and linked, only the bad one is parked,
// and the next pass makes no duplicate.
func TestCoreBatchRefusalParksOnlyTheBadRecord(t *testing.T) {
	h := newHarness(t, fast(t))
	h.f.sf.Seed(crmsync.Fields{"LastName": "Good", "Email": "good@x.example"}, crmsync.Fields{"LastName": "Bad", "Email": "bad@x.example"})
	h.f.hs.FailRecords("VALIDATION_ERROR", "bad@x.example")
	h.f.hs.Fail(hubspottest.Fault{Kind: hubspottest.BatchRefusal, Endpoint: "batch/upsert", Status: 400})
	h.pass()
	require.Equal(t, 1, len(h.deadLetters()), "only the refused record is parked")
	good, ok := h.hsByEmail()["good@x.example"]
	require.True(t, ok, "the good record reached HubSpot")
	links, err := h.st.LinksByA(context.Background(), h.key, []string{good.ID})
	require.NoError(t, err)
	assert.NotEmpty(t, links[good.ID].BID, "the good record is linked")
	h.pass()
	assert.Len(t, h.liveHS(), 1, "no duplicate in HubSpot")
	assert.Len(t, h.liveSF(), 2, "no duplicate in Salesforce")
}
