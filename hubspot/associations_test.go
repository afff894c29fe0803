package hubspot_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/hubspot"
	"github.com/crmsync/crmsync/hubspot/hubspottest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// changesAll reads every page of a change query.
func changesAll(t *testing.T, c *hubspot.Client, q crmsync.ChangeQuery) []crmsync.Record {
	t.Helper()
	var out []crmsync.Record
	for {
		p, err := c.Changes(context.Background(), q)
		require.NoError(t, err)
		out = append(out, p.Records...)
		if p.Next == "" {
			return out
		}
		q.PageToken = p.Next
	}
}

func byID(recs []crmsync.Record) map[string]crmsync.Record {
	m := map[string]crmsync.Record{}
	for _, r := range recs {
		m[r.ID] = r
	}
	return m
}

func TestChangesFillAssociationFieldsOneBatchReadPerPage(t *testing.T) {
	srv := fastFake(t)
	c := newClient(t, srv)
	g := srv.SeedGraph(3, 250, 0)
	lone := srv.SeedContacts(1)[0]
	recs := changesAll(t, c, crmsync.ChangeQuery{Object: "contacts", Fields: []string{"email", hubspot.FieldCompanies}})
	require.Len(t, recs, 251)
	m := byID(recs)
	for i, id := range g.Contacts {
		assert.Equal(t, g.Companies[i%3], m[id].Fields[hubspot.FieldCompanies], "contact %s", id)
	}
	v, ok := m[lone].Fields[hubspot.FieldCompanies]
	assert.True(t, ok, "a requested association field is present")
	assert.Nil(t, v)
	// Two pages (200 + 51): one association read each, never one per record.
	assert.Equal(t, 2, srv.Calls("associations/batch/read"))
	assert.Equal(t, 2, srv.Calls("search"))

	// Without the pseudo-field, no association read and no key.
	recs = changesAll(t, c, crmsync.ChangeQuery{Object: "contacts", Fields: []string{"email"}})
	_, ok = recs[0].Fields[hubspot.FieldCompanies]
	assert.False(t, ok)
	assert.Equal(t, 2, srv.Calls("associations/batch/read"))
}

func TestDealAssociationsCompanyAndSortedContacts(t *testing.T) {
	srv := fastFake(t, hubspottest.WithAssociationPage(2))
	c := newClient(t, srv)
	g := srv.SeedGraph(2, 5, 2)
	// Deal 0 gets every contact (5, more than a page of 2), in shuffled order.
	for _, i := range []int{4, 2, 3, 1} {
		require.NoError(t, srv.Associate("deals", g.Deals[0], "contacts", g.Contacts[i]))
	}
	// A non-primary company does not count as the primary.
	require.NoError(t, srv.Associate("deals", g.Deals[1], "companies", g.Companies[0]))
	bare := srv.Seed("deals", map[string]string{"dealname": "bare", "dealstage": "closedwon"})[0]

	fields := []string{"dealname", hubspot.FieldCompanies, hubspot.FieldContacts}
	recs, err := c.Lookup(context.Background(), "deals", "id", []string{g.Deals[0], g.Deals[1], bare}, fields)
	require.NoError(t, err)
	m := byID(recs)
	want := slices.Clone(g.Contacts)
	slices.Sort(want)
	assert.Equal(t, want, m[g.Deals[0]].Fields[hubspot.FieldContacts])
	assert.Equal(t, g.Companies[0], m[g.Deals[0]].Fields[hubspot.FieldCompanies])
	assert.Equal(t, []string{g.Contacts[1]}, m[g.Deals[1]].Fields[hubspot.FieldContacts])
	assert.Equal(t, g.Companies[1], m[g.Deals[1]].Fields[hubspot.FieldCompanies])
	assert.Nil(t, m[bare].Fields[hubspot.FieldContacts])
	assert.Nil(t, m[bare].Fields[hubspot.FieldCompanies])
	assert.Equal(t, "bare", m[bare].Fields["dealname"])
	// companies: 1 call; contacts: 1 call + 2 more pages for deal 0.
	assert.Equal(t, 4, srv.Calls("associations/batch/read"))
}

func TestLookupReadsAssociationsInBatchesOf1000(t *testing.T) {
	srv := fastFake(t)
	c := newClient(t, srv)
	g := srv.SeedGraph(10, 1200, 0)
	recs, err := c.Lookup(context.Background(), "contacts", "id", g.Contacts, []string{"email", hubspot.FieldCompanies})
	require.NoError(t, err)
	require.Len(t, recs, 1200)
	m := byID(recs)
	for i, id := range g.Contacts {
		require.Equal(t, g.Companies[i%10], m[id].Fields[hubspot.FieldCompanies])
	}
	assert.Equal(t, 12, srv.Calls("batch/read"))
	assert.Equal(t, 2, srv.Calls("associations/batch/read"))
}

func TestAssociationReadAcceptsNumericToObjectID(t *testing.T) {
	srv := fastFake(t)
	c := newClient(t, srv)
	g := srv.SeedGraph(1, 1, 0)
	srv.Fail(hubspottest.Fault{Kind: hubspottest.Raw, Endpoint: "associations/batch/read", Status: 200, ContentType: "application/json",
		Body: []byte(`{"status":"COMPLETE","startedAt":"2026-03-02T09:00:00.000Z","completedAt":"2026-03-02T09:00:00.000Z","results":[` +
			`{"from":{"id":"` + g.Contacts[0] + `"},"to":[{"toObjectId":` + g.Companies[0] + `,"associationTypes":[` +
			`{"category":"HUBSPOT_DEFINED","typeId":279,"label":null},{"category":"HUBSPOT_DEFINED","typeId":1,"label":"Primary"}]}]}]}`)})
	recs, err := c.Lookup(context.Background(), "contacts", "id", g.Contacts, []string{hubspot.FieldCompanies})
	require.NoError(t, err)
	require.Len(t, recs, 1)
	assert.Equal(t, g.Companies[0], recs[0].Fields[hubspot.FieldCompanies])
}

func TestWriteMovesPrimaryCompaniesInBatches(t *testing.T) {
	srv := fastFake(t)
	c := newClient(t, srv)
	g := srv.SeedGraph(2, 100, 0)
	ctx := context.Background()

	// Re-parent all 100 contacts to the other company: one read of the
	// current associations, one create, one archive; no record write.
	ops := make([]crmsync.WriteOp, len(g.Contacts))
	for i, id := range g.Contacts {
		ops[i] = crmsync.WriteOp{Kind: crmsync.Update, ID: id, Fields: crmsync.Fields{hubspot.FieldCompanies: g.Companies[(i+1)%2]}}
	}
	res, err := c.Write(ctx, "contacts", ops)
	require.NoError(t, err)
	for i, r := range res {
		require.NoError(t, r.Err, "op %d", i)
		assert.Equal(t, g.Contacts[i], r.ID)
	}
	for i, id := range g.Contacts {
		assert.Equal(t, g.Companies[(i+1)%2], srv.PrimaryCompany("contacts", id))
		require.Len(t, srv.Associations("contacts", id, "companies"), 1, "the old primary company is no longer associated")
	}
	assert.Equal(t, 1, srv.Calls("associations/batch/read"))
	assert.Equal(t, 1, srv.Calls("associations/batch/create"))
	assert.Equal(t, 1, srv.Calls("associations/batch/archive"))
	assert.Equal(t, 0, srv.Calls("batch/update"))
	assert.Equal(t, g.Companies[1], ops[0].Fields[hubspot.FieldCompanies], "the caller's op is left as it was")

	// Fields and a company together; a create with its company; a clear.
	res, err = c.Write(ctx, "contacts", []crmsync.WriteOp{
		{Kind: crmsync.Update, ID: g.Contacts[0], Fields: crmsync.Fields{"firstname": "Ada", hubspot.FieldCompanies: g.Companies[0]}},
		{Kind: crmsync.Create, Fields: crmsync.Fields{"email": "new@example.com", hubspot.FieldCompanies: g.Companies[1]}},
		{Kind: crmsync.Update, ID: g.Contacts[2], Fields: crmsync.Fields{hubspot.FieldCompanies: nil}},
	})
	require.NoError(t, err)
	for _, r := range res {
		require.NoError(t, r.Err)
	}
	assert.True(t, res[1].Created)
	rec, _ := srv.Get("contacts", g.Contacts[0])
	assert.Equal(t, "Ada", rec.Properties["firstname"])
	assert.Equal(t, g.Companies[0], srv.PrimaryCompany("contacts", g.Contacts[0]))
	assert.Equal(t, g.Companies[1], srv.PrimaryCompany("contacts", res[1].ID))
	assert.Empty(t, srv.Associations("contacts", g.Contacts[2], "companies"))
	rec, _ = srv.Get("contacts", res[1].ID)
	assert.Equal(t, "new@example.com", rec.Properties["email"])

	// Read back through the client: what was written is what is read.
	recs, err := c.Lookup(ctx, "contacts", "id", []string{g.Contacts[0], res[1].ID, g.Contacts[2]}, []string{hubspot.FieldCompanies})
	require.NoError(t, err)
	m := byID(recs)
	assert.Equal(t, g.Companies[0], m[g.Contacts[0]].Fields[hubspot.FieldCompanies])
	assert.Equal(t, g.Companies[1], m[res[1].ID].Fields[hubspot.FieldCompanies])
	assert.Nil(t, m[g.Contacts[2]].Fields[hubspot.FieldCompanies])
}

func TestWriteDealContactsAsASet(t *testing.T) {
	srv := fastFake(t)
	c := newClient(t, srv)
	g := srv.SeedGraph(2, 4, 1)
	deal := g.Deals[0]
	require.NoError(t, srv.Associate("deals", deal, "contacts", g.Contacts[1]))
	// Now {c0, c1}; want {c1, c3} and the other company as primary.
	res, err := c.Write(context.Background(), "deals", []crmsync.WriteOp{{Kind: crmsync.Update, ID: deal, Fields: crmsync.Fields{
		"amount": 2500.5, hubspot.FieldContacts: []string{g.Contacts[3], g.Contacts[1]}, hubspot.FieldCompanies: g.Companies[1]}}})
	require.NoError(t, err)
	require.NoError(t, res[0].Err)
	var got []string
	for _, a := range srv.Associations("deals", deal, "contacts") {
		got = append(got, a.ToID)
	}
	assert.Equal(t, []string{g.Contacts[1], g.Contacts[3]}, got)
	assert.Equal(t, g.Companies[1], srv.PrimaryCompany("deals", deal))
	rec, _ := srv.Get("deals", deal)
	assert.Equal(t, "2500.5", rec.Properties["amount"])
	// []any (as decoded from JSON) is a set too; nil clears it.
	res, err = c.Write(context.Background(), "deals", []crmsync.WriteOp{{Kind: crmsync.Update, ID: deal, Fields: crmsync.Fields{hubspot.FieldContacts: []any{g.Contacts[2]}}}})
	require.NoError(t, err)
	require.NoError(t, res[0].Err)
	require.Len(t, srv.Associations("deals", deal, "contacts"), 1)
	res, err = c.Write(context.Background(), "deals", []crmsync.WriteOp{{Kind: crmsync.Update, ID: deal, Fields: crmsync.Fields{hubspot.FieldContacts: nil}}})
	require.NoError(t, err)
	require.NoError(t, res[0].Err)
	assert.Empty(t, srv.Associations("deals", deal, "contacts"))
}

func TestWriteAssociationFailuresArePerRecord(t *testing.T) {
	srv := fastFake(t)
	c := newClient(t, srv)
	g := srv.SeedGraph(1, 4, 0)
	other := srv.Seed("companies", map[string]string{"name": "Other"})[0]
	srv.FailAssociations("INTERNAL_ERROR", g.Contacts[2])
	res, err := c.Write(context.Background(), "contacts", []crmsync.WriteOp{
		{Kind: crmsync.Update, ID: g.Contacts[0], Fields: crmsync.Fields{hubspot.FieldCompanies: other}},
		{Kind: crmsync.Update, ID: g.Contacts[1], Fields: crmsync.Fields{hubspot.FieldCompanies: "999999"}},      // no such company
		{Kind: crmsync.Update, ID: g.Contacts[3], Fields: crmsync.Fields{hubspot.FieldCompanies: []string{"1"}}}, // not an id
		{Kind: crmsync.Update, ID: g.Contacts[2], Fields: crmsync.Fields{"firstname": "Grace", hubspot.FieldCompanies: other}},
	})
	require.NoError(t, err)
	require.Len(t, res, 4)
	assert.NoError(t, res[0].Err)
	assert.Equal(t, other, srv.PrimaryCompany("contacts", g.Contacts[0]))

	require.Error(t, res[1].Err)
	assert.True(t, crmsync.IsPermanent(res[1].Err), "a company that does not exist cannot be fixed by retrying")
	var ae *hubspot.AssociationError
	require.ErrorAs(t, res[1].Err, &ae)
	assert.Equal(t, hubspot.FieldCompanies, ae.Field)
	assert.Equal(t, g.Companies[0], srv.PrimaryCompany("contacts", g.Contacts[1]), "the old primary stays when the new one fails")

	require.Error(t, res[2].Err)
	assert.True(t, crmsync.IsPermanent(res[2].Err))
	assert.Equal(t, g.Companies[0], srv.PrimaryCompany("contacts", g.Contacts[3]))

	require.Error(t, res[3].Err)
	assert.False(t, crmsync.IsPermanent(res[3].Err), "an internal error may be retried")
	assert.Equal(t, g.Contacts[2], res[3].ID, "the record was written")
	rec, _ := srv.Get("contacts", g.Contacts[2])
	assert.Equal(t, "Grace", rec.Properties["firstname"])
	assert.NotContains(t, res[1].Err.Error(), "999999", "errors carry no field values")
}

func TestWriteAssociationCallFailureReachesEachOp(t *testing.T) {
	srv := fastFake(t)
	c := newClient(t, srv, func(cfg *hubspot.Config) { cfg.MaxRetries = -1 })
	g := srv.SeedGraph(2, 2, 0)
	srv.Fail(hubspottest.Fault{Kind: hubspottest.ServerError, Endpoint: "associations/batch/create", Status: 503})
	res, err := c.Write(context.Background(), "contacts", []crmsync.WriteOp{
		{Kind: crmsync.Update, ID: g.Contacts[0], Fields: crmsync.Fields{hubspot.FieldCompanies: g.Companies[1]}},
		{Kind: crmsync.Update, ID: g.Contacts[1], Fields: crmsync.Fields{hubspot.FieldCompanies: g.Companies[0]}},
	})
	require.NoError(t, err)
	for _, r := range res {
		require.Error(t, r.Err)
		assert.False(t, crmsync.IsPermanent(r.Err))
	}
	// Nothing was archived: the old primaries stay until a retry succeeds.
	assert.Equal(t, g.Companies[0], srv.PrimaryCompany("contacts", g.Contacts[0]))
	assert.Equal(t, 0, srv.Calls("associations/batch/archive"))
	res, err = c.Write(context.Background(), "contacts", []crmsync.WriteOp{
		{Kind: crmsync.Update, ID: g.Contacts[0], Fields: crmsync.Fields{hubspot.FieldCompanies: g.Companies[1]}}})
	require.NoError(t, err)
	require.NoError(t, res[0].Err)
	assert.Equal(t, g.Companies[1], srv.PrimaryCompany("contacts", g.Contacts[0]))
}

func TestSchemaListsAssociationFields(t *testing.T) {
	srv := fastFake(t)
	c := newClient(t, srv)
	find := func(s crmsync.Schema, name string) *crmsync.FieldSchema {
		for i := range s.Fields {
			if s.Fields[i].Name == name {
				return &s.Fields[i]
			}
		}
		return nil
	}
	s, err := c.Schema(context.Background(), "contacts")
	require.NoError(t, err)
	f := find(s, hubspot.FieldCompanies)
	require.NotNil(t, f)
	assert.Equal(t, crmsync.FieldSchema{Name: hubspot.FieldCompanies, Type: crmsync.TypeReference, RefObject: "companies"}, *f)
	assert.Nil(t, find(s, hubspot.FieldContacts))

	s, err = c.Schema(context.Background(), "deals")
	require.NoError(t, err)
	require.NotNil(t, find(s, hubspot.FieldCompanies))
	f = find(s, hubspot.FieldContacts)
	require.NotNil(t, f)
	assert.Equal(t, crmsync.FieldSchema{Name: hubspot.FieldContacts, Type: crmsync.TypeReferences, RefObject: "contacts"}, *f)
	for _, name := range []string{"dealname", "dealstage", "pipeline", "amount", "closedate", "hubspot_owner_id"} {
		assert.NotNil(t, find(s, name), name)
	}
	assert.Equal(t, crmsync.TypeEnum, find(s, "dealstage").Type)
	assert.Equal(t, crmsync.TypeNumber, find(s, "amount").Type)

	s, err = c.Schema(context.Background(), "companies")
	require.NoError(t, err)
	assert.Nil(t, find(s, hubspot.FieldCompanies))
	assert.NotNil(t, find(s, "domain"))
}

func TestCompaniesAndDealsThroughTheCRMInterface(t *testing.T) {
	clk := newClock()
	srv := fastFake(t, hubspottest.WithClock(clk.Now))
	c := newClient(t, srv)
	ctx := context.Background()
	srv.DefineProperty("companies", hubspottest.Property{Name: "sf_account_id", Unique: true})
	since := clk.Now()
	res, err := c.Write(ctx, "companies", []crmsync.WriteOp{
		{Kind: crmsync.Upsert, MatchField: "sf_account_id", MatchValue: "001A", Fields: crmsync.Fields{"name": "Acme", "domain": "acme.example"}},
		{Kind: crmsync.Create, Fields: crmsync.Fields{"city": "Lyon"}}, // neither name nor domain
	})
	require.NoError(t, err)
	require.NoError(t, res[0].Err)
	assert.True(t, res[0].Created)
	require.Error(t, res[1].Err)
	assert.True(t, crmsync.IsPermanent(res[1].Err))
	// The upsert again finds it: no duplicate.
	res2, err := c.Write(ctx, "companies", []crmsync.WriteOp{{Kind: crmsync.Upsert, MatchField: "sf_account_id", MatchValue: "001A", Fields: crmsync.Fields{"name": "Acme Inc"}}})
	require.NoError(t, err)
	require.NoError(t, res2[0].Err)
	assert.False(t, res2[0].Created)
	assert.Equal(t, res[0].ID, res2[0].ID)

	res, err = c.Write(ctx, "deals", []crmsync.WriteOp{{Kind: crmsync.Create, Fields: crmsync.Fields{
		"dealname": "Big", "dealstage": "contractsent", "amount": "1500.00", "closedate": time.Date(2026, 4, 1, 0, 0, 0, 0, time.UTC),
		hubspot.FieldCompanies: res[0].ID}}})
	require.NoError(t, err)
	require.NoError(t, res[0].Err)
	deal := res[0].ID
	clk.Advance(time.Second)
	recs := changesAll(t, c, crmsync.ChangeQuery{Object: "deals", Since: since, Fields: []string{"dealname", "dealstage", "pipeline", "amount", hubspot.FieldCompanies}})
	require.Len(t, recs, 1)
	assert.Equal(t, deal, recs[0].ID)
	assert.Equal(t, "default", recs[0].Fields["pipeline"])
	assert.Equal(t, res2[0].ID, recs[0].Fields[hubspot.FieldCompanies])

	require.NoError(t, c.Archive(ctx, "deals", []string{deal}))
	clk.Advance(time.Second)
	arch := changesAll(t, c, crmsync.ChangeQuery{Object: "deals", Archived: true, Since: since, Fields: []string{"dealname", hubspot.FieldCompanies}})
	require.Len(t, arch, 1)
	assert.True(t, arch[0].Archived)
	assert.Equal(t, "Big", arch[0].Fields["dealname"])
	// An archived deal's associations are hidden, as the API reads them.
	assert.Empty(t, srv.Associations("deals", deal, "companies"))
}

func TestCompanyMergeMovesContactsAndSearchLagHoldsDeals(t *testing.T) {
	clk := newClock()
	srv := fastFake(t, hubspottest.WithClock(clk.Now), hubspottest.WithSearchLag(time.Hour, time.Hour))
	c := newClient(t, srv)
	ctx := context.Background()
	g := srv.SeedGraph(2, 4, 0)
	// Companies merge (HubSpot mints a new id): every contact of either
	// now has the new company as its primary.
	merged, err := srv.Merge("companies", g.Companies[0], g.Companies[1])
	require.NoError(t, err)
	recs, err := c.Lookup(ctx, "contacts", "id", g.Contacts, []string{hubspot.FieldCompanies})
	require.NoError(t, err)
	require.Len(t, recs, 4)
	for _, r := range recs {
		assert.Equal(t, merged, r.Fields[hubspot.FieldCompanies], "contact %s", r.ID)
	}
	// A deal written now is not in search yet (index lag), as contacts.
	since := clk.Now()
	res, err := c.Write(ctx, "deals", []crmsync.WriteOp{{Kind: crmsync.Create, Fields: crmsync.Fields{"dealname": "Lagging", "dealstage": "closedwon", hubspot.FieldCompanies: merged}}})
	require.NoError(t, err)
	require.NoError(t, res[0].Err)
	clk.Advance(time.Second)
	assert.Empty(t, changesAll(t, c, crmsync.ChangeQuery{Object: "deals", Since: since, Fields: []string{"dealname"}}))
	srv.SettleSearch()
	got := changesAll(t, c, crmsync.ChangeQuery{Object: "deals", Since: since, Fields: []string{"dealname", hubspot.FieldCompanies}})
	require.Len(t, got, 1)
	assert.Equal(t, merged, got[0].Fields[hubspot.FieldCompanies])
}

func TestAssociationCallsSurviveRateLimitsAndLostResponses(t *testing.T) {
	srv := fastFake(t)
	c := newClient(t, srv)
	g := srv.SeedGraph(2, 3, 0)
	ctx := context.Background()
	// A 429 on the read and a create whose response is lost after it
	// landed: both are sent again (association creates are idempotent).
	srv.Fail(hubspottest.Fault{Kind: hubspottest.RateLimit, Endpoint: "associations/batch/read"},
		hubspottest.Fault{Kind: hubspottest.ServerError, Status: 502, Endpoint: "associations/batch/create", AfterServe: true})
	ops := make([]crmsync.WriteOp, len(g.Contacts))
	for i, id := range g.Contacts {
		ops[i] = crmsync.WriteOp{Kind: crmsync.Update, ID: id, Fields: crmsync.Fields{hubspot.FieldCompanies: g.Companies[1]}}
	}
	res, err := c.Write(ctx, "contacts", ops)
	require.NoError(t, err)
	for i, r := range res {
		require.NoError(t, r.Err, "op %d", i)
		assert.Equal(t, g.Companies[1], srv.PrimaryCompany("contacts", g.Contacts[i]))
		assert.Len(t, srv.Associations("contacts", g.Contacts[i], "companies"), 1)
	}
	assert.Equal(t, 2, srv.Calls("associations/batch/read"))
	assert.Equal(t, 2, srv.Calls("associations/batch/create"))
	assert.Equal(t, map[string]int64{"associations/batch/read": 2, "associations/batch/create": 2, "associations/batch/archive": 1}, c.Stats())
}
