package playbook

import (
	"context"
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/hubspot/hubspottest"
	"github.com/stretchr/testify/require"
)

// auditRows returns the key's audit rows of kind about record id.
func auditRows(t *testing.T, h *harness, kind, id string) []crmsync.AuditEntry {
	t.Helper()
	rows, err := h.st.QueryAudit(context.Background(), crmsync.AuditQuery{Key: h.key, Kind: kind, RecordID: id, Limit: 1000})
	require.NoError(t, err)
	return rows
}

// heldFirstnameConflict syncs one contact, edits its first name on both
// sides and returns the ids and the held conflict a pass saves for it.
func heldFirstnameConflict(t *testing.T, h *harness) (hsID, sfID string, c crmsync.Conflict) {
	t.Helper()
	ids := h.f.hs.SeedContacts(1)
	h.pass()
	sf := h.sfByEmail()["contact"+ids[0]+"@example.com"]
	require.Len(t, sf, 1, "counterpart missing")
	must(t, h.f.hs.Edit("contacts", ids[0], map[string]string{"firstname": "Augusta"}))
	must(t, h.f.sf.Edit(sf[0].ID, crmsync.Fields{"FirstName": "Ada"}))
	time.Sleep(3 * time.Millisecond)
	h.pass()
	held, err := h.st.ListConflicts(context.Background(), crmsync.ConflictFilter{Key: h.key, State: crmsync.ConflictHeld})
	require.NoError(t, err)
	require.Len(t, held, 1, "want the firstname conflict held")
	return ids[0], sf[0].ID, held[0]
}

// TestReplayedResolutionAuditedOnce: a person's choice whose write was
// refused and replayed is written once and audited once: one write row
// for the Salesforce record, one conflict row that says it was applied,
// and the letter reads replayed.
func TestReplayedResolutionAuditedOnce(t *testing.T) {
	h := newHarness(t, fast(t))
	ctx := context.Background()
	hsID, sfID, c := heldFirstnameConflict(t, h)
	writesBefore := len(auditRows(t, h, crmsync.AuditWrite, sfID))
	must(t, h.st.ResolveConflict(ctx, c.ID, crmsync.Resolution{Pick: "hubspot"}, time.Now()))
	refuseNextSalesforceUpdate(h)
	h.pass()
	require.Equal(t, 1, replayAll(t, h), "want the refused resolution write parked")
	rep := h.pass()
	h.pass()

	r, _ := h.f.sf.Get(sfID)
	require.Equal(t, "Augusta", r.Fields["FirstName"], "Salesforce %s after the replay", sfID)
	require.Equal(t, 1, rep.Resolved, "resolutions applied by the replaying pass")
	require.Len(t, auditRows(t, h, crmsync.AuditWrite, sfID), writesBefore+1, "write rows for Salesforce %s", sfID)
	applied := 0
	for _, row := range auditRows(t, h, crmsync.AuditConflict, hsID) {
		var d struct {
			Conflict string `json:"conflict"`
			Applied  bool   `json:"applied"`
		}
		require.NoError(t, json.Unmarshal(row.Detail, &d))
		if d.Conflict == c.ID && d.Applied {
			applied++
		}
	}
	require.Equal(t, 1, applied, "conflict rows saying the choice was applied")
	got, err := h.st.GetConflict(ctx, c.ID)
	require.NoError(t, err)
	require.Equal(t, crmsync.ConflictApplied, got.State)
	for _, d := range h.deadLetters() {
		require.Equal(t, crmsync.DeadReplayed, d.Status, "letter %d", d.ID)
	}
}

// TestReplayedResolutionFailingAgain: a replayed resolution write that is
// refused again leaves its letter failed again (no second letter), is not
// counted as a new dead letter (the first refusal is), and the choice
// stays pending until a later replay applies it.
func TestReplayedResolutionFailingAgain(t *testing.T) {
	h := newHarness(t, fast(t))
	ctx := context.Background()
	_, sfID, c := heldFirstnameConflict(t, h)
	must(t, h.st.ResolveConflict(ctx, c.ID, crmsync.Resolution{Pick: "hubspot"}, time.Now()))
	refuseNextSalesforceUpdate(h)
	rep := h.pass()
	require.Equal(t, 1, rep.DeadLetters(), "the refused resolution write is a dead letter of the pass")
	require.Zero(t, rep.Resolved)
	require.Equal(t, 1, replayAll(t, h), "want the refused resolution write parked")
	refuseNextSalesforceUpdate(h)
	rep = h.pass()
	letters := h.deadLetters()
	require.Len(t, letters, 1, "a second letter was parked for the same write")
	require.Equal(t, crmsync.DeadFailedAgain, letters[0].Status)
	require.Zero(t, rep.DeadLetters(), "a letter that failed again is no new dead letter")
	got, err := h.st.GetConflict(ctx, c.ID)
	require.NoError(t, err)
	require.Equal(t, crmsync.ConflictChosen, got.State, "the choice must stay pending")

	h.pass() // not replayed: the refused write is not sent again
	require.Len(t, h.deadLetters(), 1)
	require.Equal(t, 1, replayAll(t, h))
	h.pass()
	r, _ := h.f.sf.Get(sfID)
	require.Equal(t, "Augusta", r.Fields["FirstName"], "Salesforce %s after the second replay", sfID)
}

// TestReplayFailingAgainIsNoNewDeadLetter: the report of a pass whose
// replay of a letter is refused again counts no new dead letter (the
// letter is updated, none is parked).
func TestReplayFailingAgainIsNoNewDeadLetter(t *testing.T) {
	h := newHarness(t, fast(t))
	ctx := context.Background()
	ids := h.f.hs.Seed("contacts", map[string]string{"email": "a@example.com", "firstname": "A"}) // no LastName
	rep := h.pass()
	require.Equal(t, 1, rep.DeadLetters(), "the refused create is parked")
	dl := lettersFor(t, h, ids[0])
	require.Len(t, dl, 1)
	must(t, h.st.SetDeadLetterStatus(ctx, dl[0].ID, crmsync.DeadReplay, time.Now()))
	rep = h.pass() // still invalid
	require.Equal(t, crmsync.DeadFailedAgain, lettersFor(t, h, ids[0])[0].Status)
	require.Equal(t, 1, rep.Replayed)
	require.Zero(t, rep.DeadLetters(), "the letter failed again; no new one was parked")
}

// refuseNextHubSpotUpdate makes HubSpot refuse the next batch update call
// whole: the client parks its records.
func refuseNextHubSpotUpdate(h *harness) {
	h.f.hs.Fail(hubspottest.Fault{Kind: hubspottest.BatchRefusal, Endpoint: "batch/update"})
}

// TestReplayedArchiveOfSalesforceDeletion: a Salesforce contact is
// deleted; HubSpot refuses the write of the archive flag to its
// counterpart whole and it is parked. The replay must still write the
// flag, though the deleted source cannot be read by id.
func TestReplayedArchiveOfSalesforceDeletion(t *testing.T) {
	h := newHarness(t, fast(t))
	sfIDs := h.f.sf.Seed(crmsync.Fields{"Email": "del@example.com", "FirstName": "Del", "LastName": "Eted"})
	h.pass()
	hs := h.hsByEmail()["del@example.com"]
	require.NotEmpty(t, hs.ID, "counterpart missing")
	must(t, h.f.sf.Delete(sfIDs[0]))
	h.sync.RequestArchivedRead(h.key, "salesforce")
	refuseNextHubSpotUpdate(h)
	h.pass()
	letters := h.deadLetters()
	require.Len(t, letters, 1, "want the refused flag write parked")
	require.True(t, slices.Contains([]string{hs.ID, sfIDs[0]}, letters[0].RecordID))
	require.Equal(t, 1, replayAll(t, h))
	h.pass()
	r, _ := h.f.hs.Get("contacts", hs.ID)
	require.Equal(t, "true", r.Properties["crmsync_archived"], "HubSpot %s after the replay", hs.ID)
}

// TestTwoReplayedResolutionsFailingAgain: a person resolves two held
// conflicts of one contact; both choices' writes to Salesforce are refused
// and parked, replayed and refused again. Each letter must fail again on
// its own, so both are there to replay and both choices reach Salesforce.
// (Found by TestModel, seed 15542935109994244973: both refusals updated the
// first letter, the second was taken as done and its choice never written.)
func TestTwoReplayedResolutionsFailingAgain(t *testing.T) {
	h := newHarness(t, fast(t))
	ctx := context.Background()
	ids := h.f.hs.SeedContacts(1)
	h.pass()
	sf := h.sfByEmail()["contact"+ids[0]+"@example.com"]
	require.Len(t, sf, 1, "counterpart missing")
	must(t, h.f.hs.Edit("contacts", ids[0], map[string]string{"firstname": "Augusta", "lastname": "King"}))
	must(t, h.f.sf.Edit(sf[0].ID, crmsync.Fields{"FirstName": "Ada", "LastName": "Byron"}))
	time.Sleep(3 * time.Millisecond)
	h.pass()
	held, err := h.st.ListConflicts(ctx, crmsync.ConflictFilter{Key: h.key, State: crmsync.ConflictHeld})
	require.NoError(t, err)
	require.Len(t, held, 2, "want the firstname and lastname conflicts held")
	for _, c := range held {
		must(t, h.st.ResolveConflict(ctx, c.ID, crmsync.Resolution{Pick: "hubspot"}, time.Now()))
	}
	refuseNextSalesforceUpdate(h)
	h.pass()
	require.Equal(t, 2, replayAll(t, h), "want both refused resolution writes parked")
	refuseNextSalesforceUpdate(h)
	h.pass()
	letters := h.deadLetters()
	require.Len(t, letters, 2, "no letter is added for a replay that failed again")
	for _, d := range letters {
		require.Equal(t, crmsync.DeadFailedAgain, d.Status, "letter %d", d.ID)
	}
	require.Equal(t, 2, replayAll(t, h), "want both letters to replay again")
	h.pass()
	h.pass()
	r, _ := h.f.sf.Get(sf[0].ID)
	require.Equal(t, "Augusta", r.Fields["FirstName"], "Salesforce %s FirstName after the replay", sf[0].ID)
	require.Equal(t, "King", r.Fields["LastName"], "Salesforce %s LastName after the replay", sf[0].ID)
}
