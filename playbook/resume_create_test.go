package playbook

import (
	"context"
	"testing"
	"time"

	"github.com/crmsync/crmsync"
	"github.com/stretchr/testify/require"
)

// TestResumedCreateKeepsOwnersEdit: a create (an upsert on the link field)
// lands, and the run crashes before its write step is stored. Before the
// run resumes, a rep edits the new Salesforce contact: a field Salesforce
// owns and a most-recent one. The resumed run must not send the same
// upsert over the rep's edit: it finds the record landed, links it and
// merges with it, so the edit stays on Salesforce and reaches HubSpot.
func TestResumedCreateKeepsOwnersEdit(t *testing.T) {
	o, _, sw := wrapped(fast(t))
	h := newHarness(t, o)
	ctx := context.Background()
	ids := h.f.hs.Seed("contacts", map[string]string{"email": "a@example.com", "firstname": "A", "lastname": "Alpha",
		"sf_deal_stage": "prospecting"})

	// The create lands; the process dies before the write step is stored.
	crashCtx, crash := context.WithCancel(ctx)
	var creates int
	sw.set(func(w *wrapCRM) {
		w.write = func(ctx context.Context, next crmsync.CRM, object string, ops []crmsync.WriteOp) ([]crmsync.WriteResult, error) {
			res, err := next.Write(ctx, object, ops)
			if err == nil && len(ops) > 0 && ops[0].Kind == crmsync.Upsert {
				creates++
				crash()
				return nil, context.Canceled
			}
			return res, err
		}
	})
	time.Sleep(3 * time.Millisecond)
	first, err := h.eng.Run(crashCtx, h.key, h.sync)
	require.Error(t, err, "the crashed run reported success")
	require.Equal(t, 1, creates, "the crashed run sent no create")
	sw.set(func(w *wrapCRM) { w.write = nil })

	sf := h.sfByEmail()["a@example.com"]
	require.Len(t, sf, 1, "the create did not land")
	sfID := sf[0].ID

	// A rep works the new contact before the run resumes.
	time.Sleep(3 * time.Millisecond)
	must(t, h.f.sf.Edit(sfID, crmsync.Fields{"Deal_Stage__c": "negotiation", "LastName": "Rep"}))
	time.Sleep(3 * time.Millisecond)

	resumed, err := h.eng.Run(ctx, h.key, h.sync)
	require.NoError(t, err)
	require.Equal(t, first.ID, resumed.ID, "the crashed run was not resumed")

	check := func(when string) {
		t.Helper()
		sf := h.sfByEmail()["a@example.com"]
		require.Len(t, sf, 1, "%s: Salesforce contacts with the email", when)
		require.Equal(t, sfID, sf[0].ID, when)
		require.Equal(t, "negotiation", sf[0].Fields["Deal_Stage__c"], "%s: the rep's stage (owned by Salesforce) was overwritten", when)
		require.Equal(t, "Rep", sf[0].Fields["LastName"], "%s: the rep's later last name was overwritten", when)
	}
	check("after the resumed run")
	h.pass()
	check("after the next run")
	hs, ok := h.f.hs.Get("contacts", ids[0])
	require.True(t, ok)
	require.Equal(t, "negotiation", hs.Properties["sf_deal_stage"], "the rep's stage did not reach HubSpot")
	require.Equal(t, "Rep", hs.Properties["lastname"], "the rep's last name did not reach HubSpot")
	require.Equal(t, sfID, hs.Properties[hubspotLinkField], "the HubSpot contact is not linked to the landed record")
	h.checkNoDuplicates()
	require.Empty(t, h.deadLetters())
}
