package main

import (
	"context"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/hubspot"
	"github.com/crmsync/crmsync/hubspot/hubspottest"
	"github.com/crmsync/crmsync/playbook"
	"github.com/crmsync/crmsync/salesforce"
	"github.com/crmsync/crmsync/salesforce/salesforcetest"
	"github.com/crmsync/crmsync/store/sqlite"
)

// A conflict the playbook's graph holds on its contacts pair, end to end:
// the graph runs against the fakes through the real clients on an SQLite
// store; the CLI lists the conflict under -key acme, a person resolves it
// by id, and the next graph run applies the choice.
func TestCLIResolvesAGraphPairConflict(t *testing.T) {
	ctx := context.Background()
	hs, err := hubspottest.New(hubspottest.Config{})
	require.NoError(t, err)
	for _, p := range playbook.HubSpotProperties() {
		hs.DefineProperty("contacts", p)
	}
	for object, props := range playbook.GraphProperties() {
		for _, p := range props {
			hs.DefineProperty(object, p)
		}
	}
	_, sfLink := playbook.LinkFields()
	sf, err := salesforcetest.New(salesforcetest.Config{ExternalIDField: sfLink, Fields: playbook.SalesforceFields()})
	require.NoError(t, err)
	hsSrv, sfSrv := httptest.NewServer(hs.Handler()), httptest.NewServer(sf.Handler())
	t.Cleanup(hsSrv.Close)
	t.Cleanup(sfSrv.Close)
	hc, err := hubspot.New(hubspot.Config{Token: hubspottest.DefaultToken, BaseURL: hsSrv.URL})
	require.NoError(t, err)
	sc, err := salesforce.New(salesforce.Config{AccessToken: sf.Token(), InstanceURL: sfSrv.URL, DefaultFields: []string{"Id"}})
	require.NoError(t, err)
	g, err := playbook.NewGraph(hc, sc, playbook.GraphConfig{})
	require.NoError(t, err)
	path := filepath.Join(t.TempDir(), "crmsync.db")
	st, err := sqlite.Open(ctx, sqlite.Config{Path: path})
	require.NoError(t, err)
	defer st.Close()
	eng, err := crmsync.NewEngine(crmsync.Config{Store: st})
	require.NoError(t, err)
	pass := func() {
		t.Helper()
		time.Sleep(5 * time.Millisecond) // edits land before the window ends
		_, _, err := g.RunOnce(ctx, eng, "acme")
		require.NoError(t, err)
	}

	id := hs.Seed("contacts", map[string]string{"email": "al@example.com", "firstname": "Al", "lastname": "Kay", "lifecyclestage": "customer"})[0]
	pass()
	var sfID string
	for _, r := range sf.All() {
		if r.Fields[sfLink] == id {
			sfID = r.ID
		}
	}
	require.NotEmpty(t, sfID)
	require.NoError(t, hs.Edit("contacts", id, map[string]string{"firstname": "Alan"}))
	require.NoError(t, sf.Edit(sfID, crmsync.Fields{"FirstName": "Albert"}))
	pass()

	held, err := st.ListConflicts(ctx, crmsync.ConflictFilter{State: crmsync.ConflictHeld})
	require.NoError(t, err)
	require.Len(t, held, 1, "the edit on both sides is held")
	require.Equal(t, crmsync.PairKey("acme", "contacts"), held[0].Key)

	res := invoke(ctx, path, "conflicts", "list", "-key", "acme", "-format", "csv")
	require.Equal(t, 0, res.code, res.stderr)
	assert.Contains(t, res.stdout, held[0].ID)
	res = invoke(ctx, path, "conflicts", "resolve", held[0].ID, "-pick", "salesforce")
	require.Equal(t, 0, res.code, res.stderr)

	pass()
	got, ok := hs.Get("contacts", id)
	require.True(t, ok)
	assert.Equal(t, "Albert", got.Properties["firstname"], "the choice reached HubSpot")
	res = invoke(ctx, path, "status", "-key", "acme", "-format", "json")
	require.Equal(t, 0, res.code, res.stderr)
	assert.Contains(t, res.stdout, `"open_conflicts": 0`)
}
