package playbook

import (
	"context"
	"testing"

	"github.com/crmsync/crmsync/hubspot/hubspottest"
)

// TestPermanentReadFailureDoesNotBrickTheKey: one HubSpot search answered
// with a 4xx fails the pass's read step permanently. Once the API answers
// again, the next passes must sync as usual. (Found by TestModel: a 401 on
// the OAuth token refresh left the key's run open with the stored failure,
// and every later pass resumed it and failed the same way, for ever.)
func TestPermanentReadFailureDoesNotBrickTheKey(t *testing.T) {
	h := newHarness(t, fast(t))
	h.f.hs.SeedContacts(3)
	h.f.hs.Fail(hubspottest.Fault{Kind: hubspottest.ServerError, Status: 400, Endpoint: "search", Count: 1})
	if _, _, err := h.sync.RunOnce(context.Background(), h.eng, h.key); err == nil {
		t.Fatal("the pass with the 400 succeeded; the test tested nothing")
	}
	for i := range 3 {
		if _, info, err := h.sync.RunOnce(context.Background(), h.eng, h.key); err != nil {
			t.Fatalf("pass %d after the fault (run %s): %v", i+1, info.ID, err)
		}
	}
	if got := len(h.f.sf.All()); got != 3 {
		t.Errorf("Salesforce has %d contacts, want 3", got)
	}
}
