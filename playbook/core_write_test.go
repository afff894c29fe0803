package playbook

import (
	"context"
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/crmsync/crmsync"
)

// A create that landed in Salesforce but whose call answered with an error
// (every op's outcome unknown) is not parked, and the record without an
// email is matched through its link field on the next read: no duplicate.
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

// A client that returns per-record results together with an error (the
// old HubSpot batch split) still has its per-record outcomes honoured: the
// good record is linked and only the refused one is parked.
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
