package playbook

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/salesforce/salesforcetest"
)

func sfByEmailOne(t *testing.T, h *harness, email string) crmsync.Record {
	t.Helper()
	rs := h.sfByEmail()[email]
	require.Len(t, rs, 1, "Salesforce contacts with the email")
	return rs[0]
}

// After a write to an existing link, the link's base snapshot holds the
// written value: a later edit on the other side of a most-recent field is
// an ordinary change, not a conflict.
func TestCoreBaseOfALinkFollowsItsWrites(t *testing.T) {
	h := newHarness(t, fast(t))
	hsID := h.f.hs.Seed("contacts", map[string]string{"email": "base@x.example", "lastname": "Base", "phone": "1"})[0]
	h.pass()
	sf := sfByEmailOne(t, h, "base@x.example")
	must(t, h.f.hs.Edit("contacts", hsID, map[string]string{"phone": "2"}))
	h.pass()
	require.Equal(t, "2", sfByEmailOne(t, h, "base@x.example").Fields["Phone"])
	must(t, h.f.sf.Edit(sf.ID, crmsync.Fields{"Phone": "3"}))
	rep := h.pass()
	r, _ := h.f.hs.Get("contacts", hsID)
	assert.Equal(t, "3", r.Properties["phone"], "Salesforce's later edit reached HubSpot")
	assert.Equal(t, 0, rep.Held, "no conflict held")
}

// The same revert of an owned field, made again and again for each new
// edit of the non-owner, is sent each time: the idempotency key holds the
// source record's version.
func TestCoreRepeatedRevertOfAnOwnedFieldIsSentEachTime(t *testing.T) {
	h := newHarness(t, fast(t))
	h.f.hs.Seed("contacts", map[string]string{"email": "own@x.example", "lastname": "Own", "lifecyclestage": "lead"})
	h.pass()
	sf := sfByEmailOne(t, h, "own@x.example")
	for i := range 3 {
		must(t, h.f.sf.Edit(sf.ID, crmsync.Fields{"Lifecycle_Stage__c": "opportunity"}))
		h.pass()
		r, _ := h.f.sf.Get(sf.ID)
		require.Equal(t, "lead", r.Fields["Lifecycle_Stage__c"], "revert %d of Salesforce's edit of a field HubSpot owns", i+1)
	}
}

// A write refused and parked is not sent and parked again when the same
// source version is read again by a run that was resumed (the run stopped
// on Salesforce's daily limit, a 403 REQUEST_LIMIT_EXCEEDED, before it read
// Salesforce).
func TestCoreResumedRunChecksTheLedger(t *testing.T) {
	h := newHarness(t, fast(t))
	h.f.hs.FailRecords("VALIDATION_ERROR", "refused@x.example")
	h.f.sf.Seed(crmsync.Fields{"LastName": "Refused", "Email": "refused@x.example"})
	h.pass()
	require.Equal(t, 1, len(h.deadLetters()), "the refused create is parked")

	h.f.sf.Inject(salesforcetest.Fault{Endpoint: "query", Status: 403, ErrorCode: "REQUEST_LIMIT_EXCEEDED"})
	_, _, err := h.sync.RunOnce(context.Background(), h.eng, h.key)
	require.ErrorIs(t, err, crmsync.ErrDailyLimit)
	rep := h.pass() // resumes the run
	require.GreaterOrEqual(t, rep.Read["salesforce"], 1, "the overlap read the refused record again")
	assert.Equal(t, 1, len(h.deadLetters()), "parked once")
}

// A pair one of whose writes was refused keeps its old link base: a later
// read of the other side does not take the stale value there for a new
// edit, and the user's edit survives on both sides after the replay.
func TestCoreFailedWriteKeepsTheOldBase(t *testing.T) {
	h := newHarness(t, fast(t))
	hsID := h.f.hs.Seed("contacts", map[string]string{"email": "keep@x.example", "lastname": "Keep", "phone": "1"})[0]
	h.pass()
	sf := sfByEmailOne(t, h, "keep@x.example")
	h.f.sf.FailRecords("FIELD_CUSTOM_VALIDATION_EXCEPTION", "refused by a validation rule", 0, sf.ID)
	must(t, h.f.hs.Edit("contacts", hsID, map[string]string{"phone": "2"}))
	h.pass()
	dls := h.deadLetters()
	require.NotEmpty(t, len(dls), "the refused update is parked")
	h.f.sf.ClearFaults()
	must(t, h.f.sf.Edit(sf.ID, crmsync.Fields{"Title": "Touched"}))
	h.pass()
	r, _ := h.f.hs.Get("contacts", hsID)
	assert.Equal(t, "2", r.Properties["phone"], "HubSpot's edit is not reverted")
	for _, dl := range dls {
		require.NoError(t, h.st.SetDeadLetterStatus(context.Background(), dl.ID, crmsync.DeadReplay, dl.Created))
	}
	h.pass()
	h.pass()
	r, _ = h.f.hs.Get("contacts", hsID)
	assert.Equal(t, "2", r.Properties["phone"], "HubSpot keeps the user's edit after the replay")
	assert.Equal(t, "2", sfByEmailOne(t, h, "keep@x.example").Fields["Phone"], "Salesforce has the user's edit after the replay")
}
