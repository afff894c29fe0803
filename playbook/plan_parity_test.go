package playbook

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/crmsync/crmsync"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// After a first pass, users edit both sides: a shared contact on each side
// (different fields), the same field on both (a held conflict), a name
// cleared in HubSpot (Salesforce refuses an empty LastName), new HubSpot
// contacts Salesforce refuses (a lifecycle stage its restricted picklist
// lacks, no last name, an address that is not one) and new contacts on
// each side. The plan counts what the pass then does; a last plan counts
// nothing, the refusals parked by the pass (in the write ledger) included.
func TestPlanAfterEditsOnBothSides(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the reference workflow")
	}
	ctx := context.Background()
	w, st, s, eng, log := planSetup(t, 90)
	_, _, err := s.RunOnce(ctx, eng, "default")
	require.NoError(t, err)

	hs, sf := w.HubSpot(), w.Salesforce()
	ids := w.w
	require.GreaterOrEqual(t, len(ids.shared), 4)
	require.NoError(t, hs.Edit("contacts", ids.hsIDs[0], map[string]string{"lifecyclestage": "customer"}))
	require.NoError(t, sf.Edit(ids.sfIDs[0], crmsync.Fields{"FirstName": "Augusta"}))
	require.NoError(t, hs.Edit("contacts", ids.hsIDs[1], map[string]string{"phone": "+44 20 7946 0001"}))
	require.NoError(t, sf.Edit(ids.sfIDs[1], crmsync.Fields{"Phone": "+1 650 555 0001"}))
	require.NoError(t, hs.Edit("contacts", ids.hsIDs[2], map[string]string{"lastname": ""}))
	require.NoError(t, sf.Edit(ids.sfIDs[3], crmsync.Fields{"Deal_Stage__c": "closedwon"}))
	hs.Seed("contacts",
		map[string]string{"email": "partner@hs.example.com", "firstname": "Pat", "lastname": "Partner", "lifecyclestage": "partner"},
		map[string]string{"email": "noname@hs.example.com", "firstname": "No"},
		map[string]string{"email": "not an address", "firstname": "Bad", "lastname": "Address"},
		map[string]string{"email": "new.subscriber@hs.example.com", "firstname": "New", "lastname": "Subscriber"})
	sf.Seed(crmsync.Fields{"Email": "new.lead@sf.example.com", "FirstName": "New", "LastName": "Lead", "Deal_Stage__c": "prospecting"})
	time.Sleep(5 * time.Millisecond)

	plan, err := s.Plan(ctx, st, "default", log)
	require.NoError(t, err)
	rep, _, err := s.RunOnce(ctx, eng, "default")
	require.NoError(t, err)
	assertPlanMatchesPass(t, "after edits on both sides", plan, rep)
	assert.GreaterOrEqual(t, plan.DeadLetters(), 4, "the refusals the schema shows")
	var refused []string
	for _, pw := range plan.Planned {
		if pw.Refused != "" {
			refused = append(refused, pw.Refused)
		}
	}
	all := strings.Join(refused, "\n")
	for _, want := range []string{"required field LastName is empty", "required field LastName missing", "restricted picklist", "not an email address"} {
		assert.Contains(t, all, want)
	}

	plan, err = s.Plan(ctx, st, "default", log)
	require.NoError(t, err)
	rep, _, err = s.RunOnce(ctx, eng, "default")
	require.NoError(t, err)
	assertPlanMatchesPass(t, "converged", plan, rep)
	assert.Zero(t, plan.Writes())
	assert.Zero(t, plan.DeadLetters(), "refusals parked before are not counted again")
}
