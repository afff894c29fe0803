package hubspottest_test

import (
	"strconv"
	"testing"
	"time"

	"github.com/crmsync/crmsync/hubspot/hubspottest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func types(r []hubspottest.AssociationType) []int {
	var out []int
	for _, t := range r {
		out = append(out, t.TypeID)
	}
	return out
}

func TestAssociationsBothDirectionsAndPrimaryMoves(t *testing.T) {
	srv := fake(t)
	co := srv.Seed("companies", map[string]string{"name": "A"}, map[string]string{"name": "B"})
	ct := srv.SeedContacts(1)[0]
	primary := hubspottest.AssociationType{Category: hubspottest.HubSpotDefined, TypeID: hubspottest.ContactToCompanyPrimary}
	require.NoError(t, srv.Associate("contacts", ct, "companies", co[0], primary))

	got := srv.Associations("contact", ct, "0-2")
	require.Len(t, got, 1)
	assert.Equal(t, []int{hubspottest.ContactToCompanyPrimary, hubspottest.ContactToCompany}, types(got[0].Types))
	back := srv.Associations("companies", co[0], "contacts")
	require.Len(t, back, 1)
	assert.Equal(t, ct, back[0].ToID)
	assert.Equal(t, []int{hubspottest.CompanyToContactPrimary, hubspottest.CompanyToContact}, types(back[0].Types))
	rec, _ := srv.Get("contacts", ct)
	assert.Equal(t, co[0], rec.Properties["associatedcompanyid"])

	// A new primary takes it from the old company, which stays associated unlabeled.
	require.NoError(t, srv.Associate("contacts", ct, "companies", co[1], primary))
	assert.Equal(t, co[1], srv.PrimaryCompany("contacts", ct))
	got = srv.Associations("contacts", ct, "companies")
	require.Len(t, got, 2)
	assert.Equal(t, []int{hubspottest.ContactToCompany}, types(got[0].Types))
	assert.Equal(t, []int{hubspottest.CompanyToContact}, types(srv.Associations("companies", co[0], "contacts")[0].Types))
	rec, _ = srv.Get("contacts", ct)
	assert.Equal(t, co[1], rec.Properties["associatedcompanyid"])
}

func TestAssociationsV4BatchEndpoints(t *testing.T) {
	srv := fake(t, hubspottest.WithAssociationPage(2))
	tok := srv.Token
	co := srv.Seed("companies", map[string]string{"name": "A"})[0]
	deal := srv.Seed("deals", map[string]string{"dealname": "D", "dealstage": "qualifiedtobuy"})[0]
	cts := srv.SeedContacts(3)

	// Create: deal → primary company, deal → 3 contacts; one bad input.
	in := []any{
		map[string]any{"from": map[string]string{"id": deal}, "to": map[string]string{"id": co}, "types": []any{map[string]any{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 5}}},
		map[string]any{"from": map[string]string{"id": deal}, "to": map[string]string{"id": "999999"}, "types": []any{map[string]any{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 5}}},
	}
	r := call(t, srv, "POST", "/crm/v4/associations/deals/companies/batch/create", tok, map[string]any{"inputs": in})
	require.Equal(t, 207, r.status)
	assert.EqualValues(t, 1, r.body["numErrors"])
	e := r.body["errors"].([]any)[0].(map[string]any)
	assert.Equal(t, "VALIDATION_ERROR", e["category"])
	assert.Equal(t, []any{deal}, e["context"].(map[string]any)["fromObjectId"])
	res := r.body["results"].([]any)[0].(map[string]any)
	assert.Equal(t, []any{"Primary"}, res["labels"])
	assert.Equal(t, "0-3", res["fromObjectTypeId"])

	var ins []any
	for _, c := range cts {
		ins = append(ins, map[string]any{"from": map[string]string{"id": deal}, "to": map[string]string{"id": c}, "types": []any{map[string]any{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 3}}})
	}
	r = call(t, srv, "POST", "/crm/v4/associations/deal/contact/batch/create", tok, map[string]any{"inputs": ins})
	require.Equal(t, 201, r.status)

	// Read pages per from id; an id without associations is a 207 error.
	r = call(t, srv, "POST", "/crm/v4/associations/deals/contacts/batch/read", tok, map[string]any{"inputs": []any{map[string]string{"id": deal}, map[string]string{"id": co}}})
	require.Equal(t, 207, r.status)
	e = r.body["errors"].([]any)[0].(map[string]any)
	assert.Equal(t, "OBJECT_NOT_FOUND", e["category"])
	assert.Equal(t, "crm.associations.NO_ASSOCIATIONS_FOUND", e["subCategory"])
	res = r.body["results"].([]any)[0].(map[string]any)
	tos := res["to"].([]any)
	require.Len(t, tos, 2)
	assert.Equal(t, cts[0], tos[0].(map[string]any)["toObjectId"])
	after := res["paging"].(map[string]any)["next"].(map[string]any)["after"].(string)
	r = call(t, srv, "POST", "/crm/v4/associations/deals/contacts/batch/read", tok, map[string]any{"inputs": []any{map[string]string{"id": deal, "after": after}}})
	require.Equal(t, 200, r.status)
	res = r.body["results"].([]any)[0].(map[string]any)
	require.Len(t, res["to"], 1)
	assert.Nil(t, res["paging"])

	// Archive removes every association of the pair, both ways.
	r = call(t, srv, "POST", "/crm/v4/associations/contacts/deals/batch/archive", tok, map[string]any{"inputs": []any{
		map[string]any{"from": map[string]string{"id": cts[1]}, "to": []any{map[string]string{"id": deal}}}}})
	require.Equal(t, 204, r.status)
	var left []string
	for _, a := range srv.Associations("deals", deal, "contacts") {
		left = append(left, a.ToID)
	}
	assert.Equal(t, []string{cts[0], cts[2]}, left)
	assert.Equal(t, 1, srv.Calls("associations/batch/archive"))
	assert.Equal(t, 2, srv.Calls("associations/batch/create"))
}

func TestAssociationBatchLimits(t *testing.T) {
	srv := fake(t)
	read := make([]any, hubspottest.AssociationReadBatch+1)
	for i := range read {
		read[i] = map[string]string{"id": strconv.Itoa(i + 1)}
	}
	r := call(t, srv, "POST", "/crm/v4/associations/contacts/companies/batch/read", srv.Token, map[string]any{"inputs": read})
	assert.Equal(t, 400, r.status)
	assert.Equal(t, "Batch input size exceeds limit of 1000", r.body["message"])
	create := make([]any, hubspottest.AssociationWriteBatch+1)
	for i := range create {
		create[i] = map[string]any{"from": map[string]string{"id": "1"}, "to": map[string]string{"id": "2"}, "types": []any{map[string]any{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 279}}}
	}
	r = call(t, srv, "POST", "/crm/v4/associations/contacts/companies/batch/create", srv.Token, map[string]any{"inputs": create})
	assert.Equal(t, 400, r.status)
	r = call(t, srv, "POST", "/crm/v4/associations/contacts/companies/batch/read", srv.Token, map[string]any{"inputs": read[:1000]})
	assert.Equal(t, 207, r.status)
}

func TestAssociationsHiddenWhileArchivedAndMovedByMerge(t *testing.T) {
	srv := fake(t)
	g := srv.SeedGraph(2, 4, 1)
	require.Len(t, g.Contacts, 4)
	assert.Equal(t, g.Companies[1], srv.PrimaryCompany("contacts", g.Contacts[1]))
	assert.Equal(t, g.Companies[0], srv.PrimaryCompany("deals", g.Deals[0]))

	require.NoError(t, srv.Archive("companies", g.Companies[0]))
	assert.Empty(t, srv.Associations("contacts", g.Contacts[0], "companies"))
	assert.Empty(t, srv.Associations("companies", g.Companies[0], "contacts"))
	require.NoError(t, srv.Restore("companies", g.Companies[0]))
	assert.Equal(t, g.Companies[0], srv.PrimaryCompany("contacts", g.Contacts[0]))

	// Contacts 0 (primary company 0) and 1 (primary company 1) merge: the
	// new record keeps the primary's primary company and both companies.
	n, err := srv.Merge("contacts", g.Contacts[0], g.Contacts[1])
	require.NoError(t, err)
	assert.Equal(t, g.Companies[0], srv.PrimaryCompany("contacts", n))
	assert.Len(t, srv.Associations("contacts", n, "companies"), 2)
	var deals []string
	for _, a := range srv.Associations("deals", g.Deals[0], "contacts") {
		deals = append(deals, a.ToID)
	}
	assert.Equal(t, []string{n}, deals)
}

func TestDealAndCompanyRequiredProperties(t *testing.T) {
	srv := fake(t)
	r := call(t, srv, "POST", "/crm/v3/objects/deals", srv.Token, map[string]any{"properties": map[string]string{"dealname": "x"}})
	assert.Equal(t, 400, r.status)
	r = call(t, srv, "POST", "/crm/v3/objects/deals", srv.Token, map[string]any{"properties": map[string]string{"dealname": "x", "dealstage": "closedwon", "amount": "1500.00"}})
	require.Equal(t, 201, r.status)
	assert.Equal(t, "default", r.body["properties"].(map[string]any)["pipeline"])
	r = call(t, srv, "POST", "/crm/v3/objects/companies", srv.Token, map[string]any{"properties": map[string]string{"city": "Paris"}})
	assert.Equal(t, 400, r.status)
	r = call(t, srv, "POST", "/crm/v3/objects/companies", srv.Token, map[string]any{"properties": map[string]string{"domain": "example.com"}})
	assert.Equal(t, 201, r.status)
}

func TestAssociationChangesTouchRecordsOnlyWhenAsked(t *testing.T) {
	for _, touch := range []bool{false, true} {
		t.Run(map[bool]string{false: "default", true: "touch"}[touch], func(t *testing.T) {
			now := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
			opts := []hubspottest.Option{hubspottest.WithClock(func() time.Time { return now })}
			if touch {
				opts = append(opts, hubspottest.WithAssociationsTouch())
			}
			srv := fake(t, opts...)
			g := srv.SeedGraph(1, 1, 1)
			now = now.Add(time.Minute)
			require.NoError(t, srv.Associate("deals", g.Deals[0], "contacts", srv.SeedContacts(1)[0]))
			deal, _ := srv.Get("deals", g.Deals[0])
			assert.Equal(t, touch, deal.UpdatedAt.Equal(now), "deal stamp moved")
			// A contact's primary company is a property HubSpot keeps
			// (associatedcompanyid): changing it always touches the contact.
			co := srv.Seed("companies", map[string]string{"name": "B"})[0]
			now = now.Add(time.Minute)
			require.NoError(t, srv.Associate("contacts", g.Contacts[0], "companies", co,
				hubspottest.AssociationType{Category: hubspottest.HubSpotDefined, TypeID: hubspottest.ContactToCompanyPrimary}))
			ct, _ := srv.Get("contacts", g.Contacts[0])
			assert.Equal(t, now, ct.UpdatedAt)
			assert.Equal(t, co, ct.Properties["associatedcompanyid"])
		})
	}
}

func TestAssociationInputsTakeNumericIDs(t *testing.T) {
	srv := fake(t)
	co := srv.Seed("companies", map[string]string{"name": "A"})[0]
	ct := srv.SeedContacts(1)[0]
	coN, _ := strconv.Atoi(co)
	ctN, _ := strconv.Atoi(ct)
	r := call(t, srv, "POST", "/crm/v4/associations/0-1/0-2/batch/create", srv.Token, map[string]any{"inputs": []any{
		map[string]any{"from": map[string]int{"id": ctN}, "to": map[string]int{"id": coN}, "types": []any{map[string]any{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 279}}}}})
	require.Equal(t, 201, r.status)
	require.Len(t, srv.Associations("contacts", ct, "companies"), 1)
	r = call(t, srv, "POST", "/crm/v4/associations/contact/company/batch/archive", srv.Token, map[string]any{"inputs": []any{
		map[string]any{"from": map[string]int{"id": ctN}, "to": []any{map[string]int{"id": coN}}}}})
	require.Equal(t, 204, r.status)
	assert.Empty(t, srv.Associations("contacts", ct, "companies"))
}

func TestAssociationCapPerRecord(t *testing.T) {
	srv := fake(t, hubspottest.WithAssociationCap(2))
	co := srv.Seed("companies", map[string]string{"name": "A"})[0]
	cts := srv.SeedContacts(3)
	var in []any
	for _, c := range cts {
		in = append(in, map[string]any{"from": map[string]string{"id": co}, "to": map[string]string{"id": c}, "types": []any{map[string]any{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 280}}})
	}
	r := call(t, srv, "POST", "/crm/v4/associations/companies/contacts/batch/create", srv.Token, map[string]any{"inputs": in})
	require.Equal(t, 207, r.status)
	e := r.body["errors"].([]any)[0].(map[string]any)
	assert.Equal(t, "crm.associations.TOO_MANY_ASSOCIATIONS", e["subCategory"])
	assert.Equal(t, []any{cts[2]}, e["context"].(map[string]any)["toObjectId"])
	assert.Len(t, srv.Associations("companies", co, "contacts"), 2)
	// A new type on a pair already associated is not a new record.
	require.Equal(t, 201, call(t, srv, "POST", "/crm/v4/associations/companies/contacts/batch/create", srv.Token, map[string]any{"inputs": in[:1]}).status)
}
