package playbook

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/store/memory"
)

// A store whose contacts were linked by the single pair (-objects
// contacts, links under the plain key) switching to the graph (-objects
// all): the people pair finds those links and creates nothing, whether or
// not the records have an email to match on; an edit after the switch
// reaches the linked record.
func TestGraphAdoptsSinglePairLinks(t *testing.T) {
	f, closeFn, err := startFakes(nil, nil)
	require.NoError(t, err)
	t.Cleanup(closeFn)
	hc, sc, err := f.clients(clientOptions{HubSpotLimiter: unlimited(t), HubSpotSearch: unlimited(t), SalesforceLimiter: unlimited(t)})
	require.NoError(t, err)
	st := memory.New()
	eng, err := crmsync.NewEngine(crmsync.Config{Store: st})
	require.NoError(t, err)
	ctx := context.Background()

	hsIDs := f.hs.Seed("contacts",
		map[string]string{"email": "ada@example.com", "firstname": "Ada", "lastname": "Lovelace", "lifecyclestage": "customer"},
		map[string]string{"firstname": "No", "lastname": "Email", "lifecyclestage": "customer"})
	f.sf.SeedRecords("Contact", crmsync.Fields{"LastName": "Hopper", "FirstName": "Grace", "Email": "grace@example.com"},
		crmsync.Fields{"LastName": "Nomail", "FirstName": "Sf"})

	single, err := newJob(options{objects: "contacts"}, hc, sc, nil, nil)
	require.NoError(t, err)
	time.Sleep(5 * time.Millisecond)
	_, _, err = single.RunOnce(ctx, eng, "acme")
	require.NoError(t, err)
	hsBefore, sfBefore := len(f.hs.All("contacts")), len(f.sf.All())
	require.Equal(t, 4, hsBefore, "the single pair synced both ways")

	// Archived in HubSpot after the single pair's pass: with its link the
	// graph carries the archive; without it, its Salesforce counterpart
	// would look new and be created again in HubSpot.
	require.NoError(t, f.hs.Archive("contacts", hsIDs[1]))
	// Edited on one side only after the single pair's pass: with its link
	// (and base) the graph sees one change and carries it; no conflict.
	require.NoError(t, f.hs.Edit("contacts", hsIDs[0], map[string]string{"lastname": "King"}))
	// Edited on both sides: the single pair would hold it for a person;
	// so does the graph, which needs the base the single pair stored.
	var graceSF string
	for _, r := range f.sf.All() {
		if r.Fields["Email"] == "grace@example.com" {
			graceSF = r.ID
		}
	}
	require.NotEmpty(t, graceSF)
	var graceHS string
	for _, r := range f.hs.All("contacts") {
		if r.Properties["email"] == "grace@example.com" {
			graceHS = r.ID
		}
	}
	require.NotEmpty(t, graceHS)
	require.NoError(t, f.hs.Edit("contacts", graceHS, map[string]string{"firstname": "Gracie"}))
	require.NoError(t, f.sf.Edit(graceSF, crmsync.Fields{"FirstName": "Amazing Grace"}))

	graph, err := newJob(options{objects: "all"}, hc, sc, nil, nil)
	require.NoError(t, err)
	for range 2 {
		time.Sleep(5 * time.Millisecond)
		_, _, err := graph.RunOnce(ctx, eng, "acme")
		require.NoError(t, err)
	}
	assert.Equal(t, hsBefore, len(f.hs.All("contacts")), "no HubSpot contact created by the graph")
	got, _ := f.hs.Get("contacts", hsIDs[1])
	assert.True(t, got.Archived, "the archived contact stays archived")
	archivedSF := 0
	for _, r := range f.sf.All() {
		if r.Fields[salesforceLinkField] == hsIDs[1] {
			archivedSF++
			assert.Equal(t, true, r.Fields["Archived__c"], "the archive reached Salesforce through the link")
		}
	}
	assert.Equal(t, 1, archivedSF)
	assert.Equal(t, sfBefore, len(f.sf.All()), "no Salesforce record created by the graph")

	held, err := st.ListConflicts(ctx, crmsync.ConflictFilter{State: crmsync.ConflictHeld})
	require.NoError(t, err)
	require.Len(t, held, 1, "the edit on both sides is held, nothing else")
	assert.Equal(t, "firstname", held[0].Field)
	assert.Equal(t, crmsync.PairKey("acme", "contacts"), held[0].Key)
	var last []string
	for _, r := range f.sf.All() {
		if r.Fields[salesforceLinkField] == hsIDs[0] {
			last = append(last, r.Fields["LastName"].(string))
		}
	}
	assert.Equal(t, []string{"King"}, last)
	assert.Equal(t, sfBefore, len(f.sf.All()))
}
