package crmsync_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/crmsync/crmsync"
)

func newRoutedPeople(t *testing.T) (*memCRM, *crmsync.Routed) {
	t.Helper()
	clk := &fixedClock{t: time.Date(2026, 5, 4, 9, 0, 0, 0, time.UTC)}
	sf := newMemCRM("salesforce", clk.Now)
	r, err := crmsync.NewRouted(crmsync.RoutedConfig{CRM: sf,
		Objects: []crmsync.RoutedObject{
			{Name: "Lead", Fields: map[string]string{"AccountId": "", "Title__c": "Title"}, Defaults: crmsync.Fields{"Company": "[not provided]"}},
			{Name: "Contact"},
		},
		Route: func(src crmsync.Record) string { return src.Fields["route"].(string) }})
	require.NoError(t, err)
	return sf, r
}

func TestRoutedReadsEveryObjectInTurn(t *testing.T) {
	sf, r := newRoutedPeople(t)
	assert.Equal(t, "Lead+Contact", r.Object())
	sf.put("Lead", crmsync.Fields{"Email": "l@x.test", "Title": "CTO"})
	sf.put("Contact", crmsync.Fields{"Email": "c@x.test", "Title__c": "CFO", "AccountId": "001"})
	ctx := context.Background()
	var got []crmsync.Record
	q := crmsync.ChangeQuery{Object: r.Object(), Fields: []string{"Email", "Title__c", "AccountId"}}
	for pages := 0; ; pages++ {
		require.Less(t, pages, 5)
		pg, err := r.Changes(ctx, q)
		require.NoError(t, err)
		got = append(got, pg.Records...)
		if pg.Next == "" {
			break
		}
		q.PageToken = pg.Next
	}
	require.Len(t, got, 2)
	assert.Equal(t, crmsync.Fields{"Email": "l@x.test", "Title__c": "CTO"}, got[0].Fields, "a Lead's fields in the policy's names, none it does not have")
	assert.Equal(t, crmsync.Fields{"Email": "c@x.test", "Title__c": "CFO", "AccountId": "001"}, got[1].Fields)

	_, err := r.Changes(ctx, crmsync.ChangeQuery{PageToken: "9|x"})
	require.ErrorContains(t, err, "page token not made by Routed")
}

func TestRoutedLookupAndWrites(t *testing.T) {
	sf, r := newRoutedPeople(t)
	ctx := context.Background()
	lead := sf.put("Lead", crmsync.Fields{"Email": "ada@x.test"})
	contact := sf.put("Contact", crmsync.Fields{"Email": "ada@x.test"})
	sf.convert("Lead", lead, contact)

	byEmail, err := r.Lookup(ctx, r.Object(), "Email", []string{"ada@x.test"}, nil)
	require.NoError(t, err)
	require.Len(t, byEmail, 1, "a converted Lead is no match for a new record")
	assert.Equal(t, contact, byEmail[0].ID)
	byID, err := r.Lookup(ctx, r.Object(), "id", []string{lead}, nil)
	require.NoError(t, err)
	require.Len(t, byID, 1, "by id, the converted Lead is found (the sync relinks it)")
	assert.Equal(t, contact, byID[0].MergedInto)

	src := crmsync.Record{ID: "hs-1", Fields: crmsync.Fields{"route": "Lead"}}
	bad := crmsync.Record{ID: "hs-2", Fields: crmsync.Fields{"route": "Account"}}
	res, err := r.Write(ctx, r.Object(), []crmsync.WriteOp{
		{Kind: crmsync.Upsert, MatchField: "HubSpot_Id__c", MatchValue: "hs-1", Fields: crmsync.Fields{"Email": "new@x.test", "AccountId": "001", "Title__c": "CEO"}, Source: &src},
		{Kind: crmsync.Upsert, MatchField: "HubSpot_Id__c", MatchValue: "hs-2", Fields: crmsync.Fields{"Email": "two@x.test"}, Source: &bad},
		{Kind: crmsync.Update, ID: contact, Fields: crmsync.Fields{"Title__c": "CFO"}},
		{Kind: crmsync.Update, ID: lead, Fields: crmsync.Fields{"Email": "x@x.test"}},
		{Kind: crmsync.Update, ID: "003gone", Fields: crmsync.Fields{"Email": "y@x.test"}},
	})
	require.NoError(t, err)
	require.NoError(t, res[0].Err)
	created := sf.get("Lead", res[0].ID)
	assert.Equal(t, crmsync.Fields{"HubSpot_Id__c": "hs-1", "Email": "new@x.test", "Title": "CEO", "Company": "[not provided]"}, created.Fields,
		"routed to Lead: renamed, defaults filled, a field the Lead lacks left out")
	require.Error(t, res[1].Err)
	assert.True(t, crmsync.IsPermanent(res[1].Err), "a route to an object not configured is refused for that record")
	assert.ErrorContains(t, res[1].Err, `"Account"`)
	require.NoError(t, res[2].Err)
	assert.Equal(t, "CFO", sf.get("Contact", contact).Fields["Title__c"], "an update goes to the record's own object")
	require.Error(t, res[3].Err, "the CRM refuses a write to a converted Lead, per record")
	require.ErrorIs(t, res[4].Err, crmsync.ErrRecordGone, "an update of a record no object has (deleted since it was read) is no verdict to park")
	assert.True(t, crmsync.IsPermanent(res[4].Err))
}

// mergingCRM is a memCRM that answers MergedAway from losers (winner id ->
// the ids merged into it, whatever the object) and records each call.
type mergingCRM struct {
	*memCRM
	losers map[string][]string
	asked  []mergedAwayCall
}

type mergedAwayCall struct {
	Object  string
	Winners []string
}

func (m *mergingCRM) MergedAway(_ context.Context, object string, winners []string) (map[string][]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.asked = append(m.asked, mergedAwayCall{Object: object, Winners: slices.Clone(winners)})
	out := map[string][]string{}
	for _, w := range winners {
		if ls := m.losers[w]; len(ls) > 0 {
			out[w] = ls
		}
	}
	return out, nil
}

func TestRoutedMergedAwayAsksEachObjectForItsWinners(t *testing.T) {
	sf, _ := newRoutedPeople(t)
	m := &mergingCRM{memCRM: sf}
	r, err := crmsync.NewRouted(crmsync.RoutedConfig{CRM: m,
		Objects: []crmsync.RoutedObject{{Name: "Lead"}, {Name: "Contact"}},
		Route:   func(crmsync.Record) string { return "Lead" }})
	require.NoError(t, err)
	ctx := context.Background()
	lead := sf.put("Lead", crmsync.Fields{"Email": "l@x.test"})
	contact := sf.put("Contact", crmsync.Fields{"Email": "c@x.test"})
	q := crmsync.ChangeQuery{Object: r.Object()}
	for pages := 0; ; pages++ { // Routed sees lead and contact
		require.Less(t, pages, 5)
		pg, err := r.Changes(ctx, q)
		require.NoError(t, err)
		if pg.Next == "" {
			break
		}
		q.PageToken = pg.Next
	}
	unseen := sf.put("Contact", crmsync.Fields{"Email": "u@x.test"})
	m.losers = map[string][]string{lead: {"sf-Lea-old"}, contact: {"sf-Con-old1", "sf-Con-old2"}}

	got, err := r.MergedAway(ctx, r.Object(), []string{contact, lead, unseen, "003gone", contact})
	require.NoError(t, err)
	assert.Equal(t, map[string][]string{lead: {"sf-Lea-old"}, contact: {"sf-Con-old1", "sf-Con-old2"}}, got)
	assert.Equal(t, []mergedAwayCall{
		{Object: "Lead", Winners: []string{lead}},
		{Object: "Contact", Winners: []string{contact, unseen}},
	}, m.asked, "one call per object with its own winners, an id not seen found by lookup, one no object has left out")
}

func TestRoutedMergedAwayWithoutALister(t *testing.T) {
	sf, r := newRoutedPeople(t)
	id := sf.put("Contact", crmsync.Fields{"Email": "c@x.test"})
	sf.mu.Lock()
	before := sf.calls
	sf.mu.Unlock()
	got, err := r.MergedAway(context.Background(), r.Object(), []string{id})
	require.NoError(t, err)
	assert.Empty(t, got)
	sf.mu.Lock()
	defer sf.mu.Unlock()
	assert.Equal(t, before, sf.calls, "a client that lists no merges is not asked anything")
}
