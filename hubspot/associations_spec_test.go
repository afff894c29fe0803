package hubspot_test

import (
	"context"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/hubspot"
	"github.com/crmsync/crmsync/hubspot/hubspottest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestAssociationAndDealExchangesMatchSpecs drives the client over
// companies, deals and associations and checks every request and response
// against HubSpot's companies, deals and associations v4 specs.
func TestAssociationAndDealExchangesMatchSpecs(t *testing.T) {
	specs := map[string]*openAPI{
		"/crm/v4/":                  loadSpec(t, "crm-associations-v4.openapi.json"),
		"/crm/v3/objects/0-3":       loadSpec(t, "crm-deals-v3.openapi.json"),
		"/crm/v3/objects/companies": loadSpec(t, "crm-companies-v3.openapi.json"),
		"/crm/v3/objects/contacts":  loadSpec(t, "crm-contacts-v3.openapi.json"),
		"/crm/v3/properties/":       loadSpec(t, "crm-properties-v3.openapi.json"),
	}
	clk := newClock()
	srv, rec := recordedFake(t, hubspottest.Config{RateLimit: -1, SearchRateLimit: -1, Now: clk.Now})
	srv.DefineProperty("companies", hubspottest.Property{Name: "sf_account_id", Unique: true})
	g := srv.SeedGraph(2, 3, 1)
	bare := srv.Seed("deals", map[string]string{"dealname": "bare", "dealstage": "closedwon"})[0]
	c := newClient(t, srv)
	ctx := context.Background()
	since := clk.Now()

	res, err := c.Write(ctx, "companies", []crmsync.WriteOp{{Kind: crmsync.Upsert, MatchField: "sf_account_id", MatchValue: "001A", Fields: crmsync.Fields{"name": "Acme"}}})
	require.NoError(t, err)
	require.NoError(t, res[0].Err)
	// Deals go by their type id, as the deals spec names them.
	res, err = c.Write(ctx, "0-3", []crmsync.WriteOp{
		{Kind: crmsync.Create, Key: "d1", Fields: crmsync.Fields{"dealname": "New", "dealstage": "qualifiedtobuy", hubspot.FieldCompanies: res[0].ID, hubspot.FieldContacts: []string{g.Contacts[0]}}},
		{Kind: crmsync.Update, ID: g.Deals[0], Fields: crmsync.Fields{"amount": "10", hubspot.FieldCompanies: g.Companies[1], hubspot.FieldContacts: []string{g.Contacts[2]}}},
		{Kind: crmsync.Update, ID: g.Deals[0], Key: "x", Fields: crmsync.Fields{"dealstage": "nope"}}, // 207
	})
	require.NoError(t, err)
	require.NoError(t, res[0].Err)
	res, err = c.Write(ctx, "contacts", []crmsync.WriteOp{{Kind: crmsync.Update, ID: g.Contacts[1], Fields: crmsync.Fields{hubspot.FieldCompanies: "999999"}}}) // 207
	require.NoError(t, err)
	require.Error(t, res[0].Err)
	clk.Advance(time.Second)
	_, err = c.Changes(ctx, crmsync.ChangeQuery{Object: "0-3", Since: since, Fields: []string{"dealname", hubspot.FieldCompanies, hubspot.FieldContacts}})
	require.NoError(t, err)
	_, err = c.Lookup(ctx, "0-3", "id", []string{bare}, []string{"dealname", hubspot.FieldContacts}) // 207: no associations
	require.NoError(t, err)
	_, err = c.Lookup(ctx, "companies", "id", g.Companies, []string{"name", "domain"})
	require.NoError(t, err)
	_, err = c.Schema(ctx, "0-3")
	require.NoError(t, err)

	seen := map[string]bool{}
	for _, e := range rec.exchanges("") {
		path := strings.TrimPrefix(e.Path, "/hs")
		var spec *openAPI
		for prefix, s := range specs {
			if strings.HasPrefix(path, prefix) {
				spec = s
			}
		}
		require.NotNil(t, spec, "no spec for %s", path)
		label, errs := spec.validateExchange(t, e)
		if label == "" {
			t.Errorf("%s %s is not in the spec", e.Method, e.Path)
			continue
		}
		seen[label] = true
		for _, m := range errs {
			t.Errorf("%s: %s", label, m)
		}
	}
	for _, w := range []string{
		"POST /crm/v4/associations/{fromObjectType}/{toObjectType}/batch/read 200",
		"POST /crm/v4/associations/{fromObjectType}/{toObjectType}/batch/read 207",
		"POST /crm/v4/associations/{fromObjectType}/{toObjectType}/batch/create 201",
		"POST /crm/v4/associations/{fromObjectType}/{toObjectType}/batch/create 207",
		"POST /crm/v4/associations/{fromObjectType}/{toObjectType}/batch/archive 204",
		"POST /crm/v3/objects/0-3/batch/create 201",
		"POST /crm/v3/objects/0-3/batch/update 207",
		"POST /crm/v3/objects/0-3/search 200",
		"POST /crm/v3/objects/0-3/batch/read 200",
		"POST /crm/v3/objects/companies/batch/upsert 200",
		"POST /crm/v3/objects/companies/batch/read 200",
	} {
		assert.True(t, seen[w], "no exchange checked for %s", w)
	}
	if t.Failed() {
		labels := make([]string, 0, len(seen))
		for l := range seen {
			labels = append(labels, l)
		}
		sort.Strings(labels)
		t.Logf("checked: %v", labels)
	}
}
