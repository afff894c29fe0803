package salesforce_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/salesforce"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestLookupByEmailAndID(t *testing.T) {
	f := setup(t, nil, nil)
	ids := f.srv.SeedN(5)
	recs, err := f.c.Lookup(ctx, "Contact", "Email", []string{"CONTACT2@example.com", "contact4@example.com", "nobody@example.com", ""}, []string{"Email"})
	require.NoError(t, err)
	got := map[string]bool{}
	for _, r := range recs {
		got[r.ID] = true
	}
	if len(recs) != 2 || !got[ids[1]] || !got[ids[3]] {
		t.Fatalf("Lookup(email) = %d records, want %s and %s", len(recs), ids[1], ids[3])
	}
	recs, err = f.c.Lookup(ctx, "Contact", "id", []string{ids[0], ids[4]}, nil)
	require.NoError(t, err, "Lookup(id) = %d", len(recs))
	require.Len(t, recs, 2, "Lookup(id) = %d, %v", len(recs), err)
	if recs, err := f.c.Lookup(ctx, "Contact", "Email", nil, nil); err != nil || recs != nil {
		t.Fatalf("Lookup(no values) = %v, %v", recs, err)
	}
	c := f.srv.Calls()["query"]
	assert.Equal(t, 2, c, "query calls = %d, want 2", c)
	_, err = f.c.Lookup(ctx, "Contact", "Email) OR (Id", []string{"x"}, nil)
	if assert.Error(t, err, "Lookup(bad field)") {
		assert.Contains(t, err.Error(), "invalid field name", "Lookup(bad field) = %v", err)
	}
}

func TestLookupBatches(t *testing.T) {
	f := setup(t, nil, nil)
	ids := f.srv.SeedN(450)
	var emails []string
	for i := range ids {
		emails = append(emails, fmt.Sprintf("contact%d@example.com", i+1))
	}
	recs, err := f.c.Lookup(ctx, "Contact", "Email", emails, []string{"Email"})
	require.NoError(t, err, "Lookup(450) = %d", len(recs))
	require.Len(t, recs, 450, "Lookup(450) = %d, %v", len(recs), err)
	c := f.srv.Calls()["query"]
	assert.Equal(t, 3, c, "query calls = %d, want 3 (200 values per query)", c)
}

func TestLookupSplitsLongURLs(t *testing.T) {
	f := setup(t, nil, func(c *salesforce.Config) { c.MaxURLLength = 4000 })
	var vals []string
	for i := range 100 {
		vals = append(vals, fmt.Sprintf("%03d-%s@example.com", i, strings.Repeat("é", 40)))
	}
	f.srv.Seed(crmsync.Fields{"LastName": "Long", "Email": vals[77]})
	recs, err := f.c.Lookup(ctx, "Contact", "Email", vals, nil)
	require.NoError(t, err, "Lookup = %d", len(recs))
	require.Len(t, recs, 1, "Lookup = %d, %v", len(recs), err)
	c := f.srv.Calls()["query"]
	assert.GreaterOrEqual(t, c, 5, "query calls = %d, want the 100 long values split over several URLs", c)
	_, err = f.c.Lookup(ctx, "Contact", "Email", []string{strings.Repeat("x", 5000)}, nil)
	assert.True(t, crmsync.IsPermanent(err), "Lookup(huge value) = %v, want permanent error", err)
}

func TestLookupInjection(t *testing.T) {
	f := setup(t, nil, nil)
	f.srv.SeedN(3)
	hostile := []string{
		`x' OR LastName != '`,
		`x\' OR Email != null OR Email = \'`,
		"x'\nOR Id != null",
		`\`, `'`, `\\'`, "a\x00b",
	}
	recs, err := f.c.Lookup(ctx, "Contact", "Email", hostile, nil)
	require.NoError(t, err, "Lookup(hostile)")
	require.Empty(t, recs, "hostile values matched %d records", len(recs))
	// The same odd values round-trip when they really are stored.
	ids := f.srv.Seed(crmsync.Fields{"LastName": "Odd", "Title": `it's a \ "test"`})
	recs, err = f.c.Lookup(ctx, "Contact", "Title", []string{`it's a \ "test"`}, nil)
	require.NoError(t, err, "Lookup(quoted title) = %d", len(recs))
	require.Len(t, recs, 1, "Lookup(quoted title) = %d, %v", len(recs), err)
	require.Equal(t, ids[0], recs[0].ID, "Lookup(quoted title) = %d, %v", len(recs), err)
}

func TestWriteCreateUpdateUpsert(t *testing.T) {
	f := setup(t, nil, nil)
	ids := f.srv.SeedN(2)
	synced := time.Date(2026, 2, 1, 12, 30, 45, 123e6, time.FixedZone("x", 3600))
	ops := []crmsync.WriteOp{
		{Kind: crmsync.Create, Fields: crmsync.Fields{"LastName": "New", "Email": "new@example.com", "Score__c": 12.5, "DoNotCall": true}},
		{Kind: crmsync.Update, ID: ids[0], Fields: crmsync.Fields{"Title": "CTO", "Last_Synced__c": synced}},
		{Kind: crmsync.Upsert, MatchField: "HubSpot_Id__c", MatchValue: "hs-1", Fields: crmsync.Fields{"LastName": "Up", "Lifecycle_Stage__c": "lead"}},
		{Kind: crmsync.Update, ID: ids[1], Fields: crmsync.Fields{"Phone": nil}},
	}
	res, err := f.c.Write(ctx, "Contact", ops)
	require.NoError(t, err)
	for i, r := range res {
		require.NoError(t, r.Err, "result %d = %+v", i, r)
		require.NotEmpty(t, r.ID, "result %d = %+v", i, r)
	}
	if !res[0].Created || res[1].Created || !res[2].Created || res[1].ID != ids[0] {
		t.Errorf("Created flags = %v %v %v", res[0].Created, res[1].Created, res[2].Created)
	}
	got, _ := f.srv.Get(ids[0])
	if got.Fields["Title"] != "CTO" || got.Fields["Last_Synced__c"] != "2026-02-01T11:30:45.123+0000" {
		t.Errorf("updated record: Title %v, Last_Synced__c %v", got.Fields["Title"], got.Fields["Last_Synced__c"])
	}
	// Upsert again: same record, not a duplicate.
	res, err = f.c.Write(ctx, "Contact", []crmsync.WriteOp{{Kind: crmsync.Upsert, MatchField: "HubSpot_Id__c", MatchValue: "hs-1", Fields: crmsync.Fields{"Title": "VP"}}})
	require.NoError(t, err, "second upsert = %+v", res)
	require.NoError(t, res[0].Err, "second upsert = %+v, %v", res, err)
	require.False(t, res[0].Created, "second upsert = %+v, %v", res, err)
	n := 0
	for _, r := range f.srv.All() {
		if r.Fields["HubSpot_Id__c"] == "hs-1" {
			n++
		}
	}
	require.Equal(t, 1, n, "%d records with hs-1, want 1", n)
	calls := f.srv.Calls()
	assert.Equal(t, 1, calls["create"], "calls = %v", calls)
	assert.Equal(t, 1, calls["update"], "calls = %v", calls)
	assert.Equal(t, 2, calls["upsert"], "calls = %v", calls)
}

func TestWritePerRecordErrors(t *testing.T) {
	f := setup(t, nil, nil)
	ids := f.srv.SeedN(3)
	f.srv.Seed(crmsync.Fields{"LastName": "Taken", "HubSpot_Id__c": "taken"})
	f.srv.FailRecords("UNABLE_TO_LOCK_ROW", "unable to obtain exclusive access to this record", 1, "contact2@example.com")
	ops := []crmsync.WriteOp{
		{Kind: crmsync.Create, Fields: crmsync.Fields{"Email": "nolast@example.com"}},
		{Kind: crmsync.Update, ID: ids[0], Fields: crmsync.Fields{"Lifecycle_Stage__c": "bogus"}},
		{Kind: crmsync.Update, ID: ids[1], Fields: crmsync.Fields{"Title": "locked"}},
		{Kind: crmsync.Update, ID: ids[2], Fields: crmsync.Fields{"HubSpot_Id__c": "taken"}},
		{Kind: crmsync.Create, Fields: crmsync.Fields{"LastName": "Fine"}},
		{Kind: crmsync.Update, ID: ids[2], Fields: crmsync.Fields{"Bad Field": 1}},
		{Kind: crmsync.Update, ID: ids[2], Fields: crmsync.Fields{"Title": struct{}{}}},
	}
	res, err := f.c.Write(ctx, "Contact", ops)
	require.NoError(t, err)
	want := []struct {
		code      string
		permanent bool
		fields    string
	}{
		{"REQUIRED_FIELD_MISSING", true, "LastName"},
		{"INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST", true, "Lifecycle_Stage__c"},
		{"UNABLE_TO_LOCK_ROW", false, ""},
		{"DUPLICATE_VALUE", true, ""},
	}
	for i, w := range want {
		var re *salesforce.RecordError
		if !errors.As(res[i].Err, &re) || re.StatusCode != w.code || crmsync.IsPermanent(res[i].Err) != w.permanent ||
			strings.Join(re.Fields, ",") != w.fields {
			t.Errorf("result %d = %v, want %s permanent=%v fields=%q", i, res[i].Err, w.code, w.permanent, w.fields)
		}
	}
	if res[4].Err != nil || !res[4].Created {
		t.Errorf("result 4 = %+v, want created", res[4])
	}
	for _, i := range []int{5, 6} {
		assert.True(t, crmsync.IsPermanent(res[i].Err), "result %d = %v, want a permanent local error", i, res[i].Err)
	}
	assert.NotContains(t, fmt.Sprint(res[1].Err), "bogus", "error text carries a record value: %v", res[1].Err)
	// The lock was transient: the retry lands.
	res, err = f.c.Write(ctx, "Contact", ops[2:3])
	require.NoError(t, err, "retry after lock = %+v", res)
	require.NoError(t, res[0].Err, "retry after lock = %+v, %v", res, err)
}

func TestWriteBatchesOf200(t *testing.T) {
	f := setup(t, nil, nil)
	var ops []crmsync.WriteOp
	for i := range 450 {
		ops = append(ops, crmsync.WriteOp{Kind: crmsync.Upsert, MatchField: "HubSpot_Id__c", MatchValue: fmt.Sprintf("hs-%d", i),
			Fields: crmsync.Fields{"LastName": fmt.Sprintf("L%d", i)}})
	}
	res, err := f.c.Write(ctx, "Contact", ops)
	require.NoError(t, err)
	for i, r := range res {
		require.NoError(t, r.Err, "result %d = %+v", i, r)
		require.True(t, r.Created, "result %d = %+v", i, r)
	}
	c := f.srv.Calls()["upsert"]
	assert.Equal(t, 3, c, "upsert calls = %d, want 3", c)
	n := len(f.srv.All())
	assert.Equal(t, 450, n, "%d records, want 450", n)
}

// A call refused as a whole for its content is a known outcome: each op's
// result carries the refusal (crmsync.CRM's Write contract), and an unknown
// field is named by a *crmsync.FieldError.
func TestWriteWholeCallFailure(t *testing.T) {
	f := setup(t, nil, nil)
	res, err := f.c.Write(ctx, "Contact", []crmsync.WriteOp{{Kind: crmsync.Create, Fields: crmsync.Fields{"LastName": "X", "Nope__c": 1}}})
	require.NoError(t, err, "Write(unknown field) = %v, %v, want one result", res, err)
	require.Len(t, res, 1, "Write(unknown field) = %v, %v, want one result", res, err)
	var ae *salesforce.APIError
	var fe *crmsync.FieldError
	if !errors.As(res[0].Err, &ae) || ae.Status != 400 || ae.ErrorCode != "INVALID_FIELD" || !crmsync.IsPermanent(res[0].Err) {
		t.Fatalf("Write(unknown field) = %v, want permanent 400 INVALID_FIELD", res[0].Err)
	}
	if !errors.As(res[0].Err, &fe) || strings.Join(fe.Fields, ",") != "Nope__c" || fe.Object != "Contact" || fe.System != "salesforce" {
		t.Fatalf("Write(unknown field) = %v, want a FieldError naming Nope__c", res[0].Err)
	}
	res, err = f.c.Write(ctx, "Contact", []crmsync.WriteOp{{Kind: crmsync.Upsert, MatchField: "Email", MatchValue: "a@b.c", Fields: crmsync.Fields{"LastName": "X"}}})
	require.NoError(t, err, "Write(upsert on non-external field) = %v", res)
	require.Len(t, res, 1, "Write(upsert on non-external field) = %v, %v", res, err)
	require.ErrorAs(t, res[0].Err, &ae, "Write(upsert on non-external field) = %v, %v", res, err)
	require.Equal(t, "NOT_FOUND", ae.ErrorCode, "Write(upsert on non-external field) = %v, %v", res, err)
	require.True(t, crmsync.IsPermanent(res[0].Err), "Write(upsert on non-external field) = %v, %v", res, err)
	assert.False(t, errors.As(res[0].Err, &fe), "NOT_FOUND is no field error: %v", res[0].Err)
}

func TestMergedAwayListsTheLosersOfEachWinner(t *testing.T) {
	f := setup(t, nil, nil)
	ids := f.srv.SeedN(4)
	require.NoError(t, f.srv.Merge(ids[0], ids[1]))
	require.NoError(t, f.srv.Merge(ids[0], ids[2]))
	require.NoError(t, f.srv.Delete(ids[3]))
	got, err := f.c.MergedAway(ctx, "Contact", []string{ids[0], ids[3], ids[0], ""})
	require.NoError(t, err)
	assert.ElementsMatch(t, []string{ids[1], ids[2]}, got[ids[0]], "the losers merged into %s", ids[0])
	assert.Empty(t, got[ids[3]], "a deleted record that no merge took names no winner")
	assert.Len(t, got, 1)
	assert.Equal(t, 1, f.srv.Calls()["queryAll"], "one queryAll call")
	none, err := f.c.MergedAway(ctx, "Opportunity", []string{ids[0]})
	require.NoError(t, err)
	assert.Empty(t, none, "Salesforce does not merge opportunities")
	assert.Equal(t, 1, f.srv.Calls()["queryAll"], "no call for an object Salesforce does not merge")
}
