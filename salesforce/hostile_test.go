package salesforce_test

import (
	"encoding/json"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/salesforce"
	"github.com/crmsync/crmsync/salesforce/salesforcetest"
)

// A whole collections call refused (400 with an error array, 413) is a
// known outcome for every record of the call: Write reports it in each
// record's result and returns a nil error (crmsync.CRM's Write contract).
func TestWriteBatchRefusalIsPerRecord(t *testing.T) {
	tests := []struct {
		name  string
		fault salesforcetest.Fault
		code  string
	}{
		{"400 error array", salesforcetest.Fault{Endpoint: "update", Status: http.StatusBadRequest,
			Body: `[{"message":"bad request","errorCode":"JSON_PARSER_ERROR"}]`}, "JSON_PARSER_ERROR"},
		{"413 too large", salesforcetest.Fault{Endpoint: "update", Status: http.StatusRequestEntityTooLarge,
			Body: `[{"message":"request too large","errorCode":"REQUEST_ENTITY_TOO_LARGE"}]`}, "REQUEST_ENTITY_TOO_LARGE"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := setup(t, nil, nil)
			ids := f.srv.SeedN(2)
			f.srv.Inject(tt.fault)
			ops := []crmsync.WriteOp{
				{Kind: crmsync.Update, ID: ids[0], Fields: crmsync.Fields{"Title": "A"}},
				{Kind: crmsync.Update, ID: ids[1], Fields: crmsync.Fields{"Title": "B"}},
			}
			res, err := f.c.Write(ctx, "Contact", ops)
			require.NoError(t, err, "a refused batch has a known outcome per record")
			require.Len(t, res, 2)
			for i, r := range res {
				var ae *salesforce.APIError
				require.True(t, errors.As(r.Err, &ae), "result %d = %v", i, r.Err)
				assert.Equal(t, tt.code, ae.ErrorCode)
				assert.True(t, crmsync.IsPermanent(r.Err), "result %d", i)
			}
		})
	}
}

// Ops refused before sending have a known outcome even when the one call
// sent fails as a whole: Write keeps their results instead of returning
// only the call's error.
func TestWriteKeepsLocalRefusalsWhenTheCallFails(t *testing.T) {
	f := setup(t, nil, func(c *salesforce.Config) { c.MaxRetries = -1 })
	ids := f.srv.SeedN(1)
	f.srv.Inject(salesforcetest.Fault{Endpoint: "update", Reset: true})
	res, err := f.c.Write(ctx, "Contact", []crmsync.WriteOp{
		{Kind: crmsync.Update, ID: ids[0], Fields: crmsync.Fields{"Title": "A"}},
		{Kind: crmsync.Update, ID: "not an id", Fields: crmsync.Fields{"Title": "B"}},
	})
	require.NoError(t, err)
	require.Len(t, res, 2)
	assert.Error(t, res[0].Err)
	assert.False(t, crmsync.IsPermanent(res[0].Err), "the dropped call's outcome is unknown: transient")
	assert.True(t, crmsync.IsPermanent(res[1].Err), "the malformed op is refused for good")
}

// Refused credentials and a spent daily share say nothing about the
// records: they stay whole-call errors.
func TestWriteWholeCallErrorsStay(t *testing.T) {
	f := setup(t, nil, nil)
	ids := f.srv.SeedN(1)
	op := []crmsync.WriteOp{{Kind: crmsync.Update, ID: ids[0], Fields: crmsync.Fields{"Title": "A"}}}
	f.srv.Inject(salesforcetest.Fault{Endpoint: "update", Reset: true, Times: 10})
	res, err := f.c.Write(ctx, "Contact", op)
	require.Error(t, err)
	assert.Nil(t, res)
	f.srv.ClearFaults()

	used, max := f.srv.APIUsage()
	_ = used
	f.srv.SetAPIUsage(max)
	res, err = f.c.Write(ctx, "Contact", op)
	require.Error(t, err)
	assert.Nil(t, res)
	assert.ErrorIs(t, err, crmsync.ErrDailyLimit)
}

// A field hidden by field-level security (or deleted) is absent from
// describe; a query naming it fails with a *crmsync.FieldError naming it
// (and never the query's values), and a record written with it fails alone
// with one. Restored, it works again.
func TestHiddenFieldIsFieldError(t *testing.T) {
	f := setup(t, nil, nil)
	ids := f.srv.Seed(crmsync.Fields{"LastName": "A", "Email": "secret@example.com", "Title": "CEO"},
		crmsync.Fields{"LastName": "B"})
	require.NoError(t, f.srv.HideField("Title"))

	s, err := f.c.Schema(ctx, "Contact")
	require.NoError(t, err)
	for _, fs := range s.Fields {
		assert.NotEqual(t, "Title", fs.Name, "describe is filtered by field-level security")
	}

	check := func(what string, err error) {
		t.Helper()
		var fe *crmsync.FieldError
		require.True(t, errors.As(err, &fe), "%s = %v, want a *crmsync.FieldError", what, err)
		assert.Equal(t, []string{"Title"}, fe.Fields, what)
		assert.Equal(t, "Contact", fe.Object, what)
		assert.Equal(t, "salesforce", fe.System, what)
		assert.True(t, crmsync.IsPermanent(err), "%s: retrying cannot fix it", what)
		assert.NotContains(t, err.Error(), "secret@example.com", what)
	}
	_, err = f.c.Changes(ctx, crmsync.ChangeQuery{Object: "Contact", Fields: []string{"Email", "Title"}})
	check("Changes", err)
	_, err = f.c.Lookup(ctx, "Contact", "Email", []string{"secret@example.com"}, []string{"Title"})
	check("Lookup", err)

	res, err := f.c.Write(ctx, "Contact", []crmsync.WriteOp{
		{Kind: crmsync.Update, ID: ids[0], Fields: crmsync.Fields{"Title": "CTO"}},
		{Kind: crmsync.Update, ID: ids[1], Fields: crmsync.Fields{"FirstName": "Bea"}},
	})
	require.NoError(t, err)
	check("Write", res[0].Err)
	require.NoError(t, res[1].Err, "the record without the hidden field is written")

	f.srv.RestoreField("Title")
	page, err := f.c.Changes(ctx, crmsync.ChangeQuery{Object: "Contact", Fields: []string{"Email", "Title"}})
	require.NoError(t, err)
	require.Len(t, page.Records, 2)
	res, err = f.c.Write(ctx, "Contact", []crmsync.WriteOp{{Kind: crmsync.Update, ID: ids[0], Fields: crmsync.Fields{"Title": "CTO"}}})
	require.NoError(t, err)
	require.NoError(t, res[0].Err)
}

// A merge loser is deleted with MasterRecordId = the winner: the archived
// read names the winner in Record.MergedInto; a plain delete names none;
// the winner shows as changed.
func TestMergedLoserNamesItsWinner(t *testing.T) {
	f := setup(t, nil, nil)
	ids := f.srv.SeedN(4)
	since := f.clk.Now()
	f.clk.Advance(time.Minute)
	require.NoError(t, f.srv.Merge(ids[0], ids[1], ids[2]))
	require.NoError(t, f.srv.Delete(ids[3]))
	f.clk.Advance(time.Minute)

	page, err := f.c.Changes(ctx, crmsync.ChangeQuery{Object: "Contact", Archived: true, Since: since})
	require.NoError(t, err)
	got := map[string]crmsync.Record{}
	for _, r := range page.Records {
		got[r.ID] = r
	}
	require.Len(t, got, 3)
	for _, id := range ids[1:3] {
		assert.True(t, got[id].Archived)
		assert.Equal(t, ids[0], got[id].MergedInto, "loser %s", id)
	}
	assert.True(t, got[ids[3]].Archived)
	assert.Empty(t, got[ids[3]].MergedInto, "a plain delete is no merge")

	live, err := f.c.Changes(ctx, crmsync.ChangeQuery{Object: "Contact", Since: since})
	require.NoError(t, err)
	require.Len(t, live.Records, 1, "the winner was updated by the merge")
	assert.Equal(t, ids[0], live.Records[0].ID)
}

// Salesforce numbers hold up to 18 digits; float64 holds 15 to 17. A value
// above 2^53 keeps its digits through the client, both ways, and reads as
// the same text in the merge's normal form; ordinary numbers stay float64.
func TestLargeNumbersKeepDigits(t *testing.T) {
	f := setup(t, nil, nil)
	const big = "123456789012345678" // > 2^53 = 9007199254740992
	ids := f.srv.Seed(crmsync.Fields{"LastName": "Big", "Score__c": json.Number(big)},
		crmsync.Fields{"LastName": "Small", "Score__c": 19.99})

	recs, err := f.c.Lookup(ctx, "Contact", "id", ids, []string{"Score__c"})
	require.NoError(t, err)
	require.Len(t, recs, 2)
	byID := map[string]crmsync.Record{}
	for _, r := range recs {
		byID[r.ID] = r
	}
	v, err := crmsync.Normalize(crmsync.TypeString, byID[ids[0]].Fields["Score__c"])
	require.NoError(t, err)
	assert.Equal(t, big, v, "digits above 2^53 are kept")
	assert.Equal(t, 19.99, byID[ids[1]].Fields["Score__c"], "ordinary numbers stay float64")

	const big2 = "123456789012345679"
	res, err := f.c.Write(ctx, "Contact", []crmsync.WriteOp{{Kind: crmsync.Update, ID: ids[1], Fields: crmsync.Fields{"Score__c": json.Number(big2)}}})
	require.NoError(t, err)
	require.NoError(t, res[0].Err)
	recs, err = f.c.Lookup(ctx, "Contact", "id", ids[1:], []string{"Score__c"})
	require.NoError(t, err)
	require.Len(t, recs, 1)
	v, err = crmsync.Normalize(crmsync.TypeString, recs[0].Fields["Score__c"])
	require.NoError(t, err)
	assert.Equal(t, big2, v)
}

// The fake's clock skew moves record stamps ahead of or behind the host's
// clock; the client reads them as the org wrote them.
func TestFakeClockSkew(t *testing.T) {
	for _, skew := range []time.Duration{90 * time.Second, -90 * time.Second} {
		t.Run(skew.String(), func(t *testing.T) {
			f := setup(t, func(c *salesforcetest.Config) { c.ClockSkew = skew }, nil)
			res, err := f.c.Write(ctx, "Contact", []crmsync.WriteOp{{Kind: crmsync.Create, Fields: crmsync.Fields{"LastName": "Skewed"}}})
			require.NoError(t, err)
			require.NoError(t, res[0].Err)
			page, err := f.c.Changes(ctx, crmsync.ChangeQuery{Object: "Contact", Since: f.clk.Now().Add(-3 * time.Minute)})
			require.NoError(t, err)
			require.Len(t, page.Records, 1)
			assert.True(t, page.Records[0].ModifiedAt.Equal(f.clk.Now().Add(skew)), "stamp %v, host now %v", page.Records[0].ModifiedAt, f.clk.Now())
			// A window ending at the host's now misses a record stamped ahead.
			page, err = f.c.Changes(ctx, crmsync.ChangeQuery{Object: "Contact", Since: f.clk.Now().Add(-3 * time.Minute), Until: f.clk.Now()})
			require.NoError(t, err)
			assert.Equal(t, skew < 0, len(page.Records) == 1)
		})
	}
}

// Many records sharing one stamp (a bulk update) are each read exactly once
// across pages, also when the query locator expires between pages.
func TestFakeEqualStamps(t *testing.T) {
	f := setup(t, func(c *salesforcetest.Config) { c.StampGranularity = time.Second }, nil)
	f.clk.Advance(700 * time.Millisecond)
	ids := f.srv.SeedN(250)
	f.clk.Advance(time.Minute)
	require.NoError(t, f.srv.EditMany(ids, crmsync.Fields{"Title": "Bulk"}))
	since := f.clk.Now().Add(-time.Second)
	seen := map[string]int{}
	var stamps = map[time.Time]bool{}
	q := crmsync.ChangeQuery{Object: "Contact", Since: since, PageSize: 200}
	for pages := 0; ; pages++ {
		require.Less(t, pages, 5)
		page, err := f.c.Changes(ctx, q)
		require.NoError(t, err)
		for _, r := range page.Records {
			seen[r.ID]++
			stamps[r.ModifiedAt] = true
			assert.Zero(t, r.ModifiedAt.Nanosecond(), "stamps truncated to the second")
		}
		if page.Next == "" {
			break
		}
		f.srv.ExpireQueryLocators()
		q.PageToken = page.Next
	}
	assert.Len(t, seen, 250)
	for id, n := range seen {
		assert.Equal(t, 1, n, "record %s read %d times", id, n)
	}
	assert.Len(t, stamps, 1, "a bulk update shares one stamp")

	// The records of one collections call share one stamp too.
	var ops []crmsync.WriteOp
	for i := range 3 {
		ops = append(ops, crmsync.WriteOp{Kind: crmsync.Create, Fields: crmsync.Fields{"LastName": "L" + string(rune('a'+i))}})
	}
	f.clk.Advance(time.Minute)
	res, err := f.c.Write(ctx, "Contact", ops)
	require.NoError(t, err)
	var created []string
	for _, r := range res {
		require.NoError(t, r.Err)
		created = append(created, r.ID)
	}
	recs, err := f.c.Lookup(ctx, "Contact", "id", created, nil)
	require.NoError(t, err)
	require.Len(t, recs, 3)
	for _, r := range recs {
		assert.True(t, r.ModifiedAt.Equal(recs[0].ModifiedAt))
	}
}

// Config.RefuseBatches refuses whole collections calls before any record
// is written; the client reports each refusal per record. The draws depend
// on the seed and the requests only.
func TestFakeRefuseBatches(t *testing.T) {
	f := setup(t, func(c *salesforcetest.Config) {
		c.RefuseBatches = 1
		c.RefuseStatuses = []int{http.StatusRequestEntityTooLarge}
	}, nil)
	ids := f.srv.SeedN(2)
	res, err := f.c.Write(ctx, "Contact", []crmsync.WriteOp{
		{Kind: crmsync.Update, ID: ids[0], Fields: crmsync.Fields{"Title": "A"}},
		{Kind: crmsync.Update, ID: ids[1], Fields: crmsync.Fields{"Title": "B"}},
	})
	require.NoError(t, err)
	for _, r := range res {
		var ae *salesforce.APIError
		require.True(t, errors.As(r.Err, &ae), "%v", r.Err)
		assert.Equal(t, http.StatusRequestEntityTooLarge, ae.Status)
		assert.Equal(t, "REQUEST_ENTITY_TOO_LARGE", ae.ErrorCode)
	}
	for _, id := range ids {
		r, _ := f.srv.Get(id)
		assert.Nil(t, r.Fields["Title"], "a refused batch writes nothing")
	}

	pattern := func(seed uint64) []bool {
		f := setup(t, func(c *salesforcetest.Config) {
			c.RefuseBatches, c.RandSeed = 0.5, seed
			c.RefuseStatuses = []int{http.StatusBadRequest}
		}, nil)
		ids := f.srv.SeedN(1)
		var out []bool
		for i := range 40 {
			res, err := f.c.Write(ctx, "Contact", []crmsync.WriteOp{{Kind: crmsync.Update, ID: ids[0], Fields: crmsync.Fields{"Title": "T" + string(rune('a'+i%26))}}})
			require.NoError(t, err)
			out = append(out, res[0].Err != nil)
		}
		return out
	}
	a, b := pattern(7), pattern(7)
	assert.Equal(t, a, b, "same seed, same requests: same refusals")
	assert.Contains(t, a, true)
	assert.Contains(t, a, false)
	assert.NotEqual(t, a, pattern(8))
}

// Hostile draws a skew within ±MaxSkew from its seed, the same for the same
// seed, and turns on coarse stamps and refused batches.
func TestFakeHostilePreset(t *testing.T) {
	skews := map[time.Duration]bool{}
	for seed := range uint64(20) {
		var a, b salesforcetest.Config
		salesforcetest.Hostile(seed)(&a)
		salesforcetest.Hostile(seed)(&b)
		require.Equal(t, a.ClockSkew, b.ClockSkew)
		assert.LessOrEqual(t, a.ClockSkew, salesforcetest.MaxSkew)
		assert.GreaterOrEqual(t, a.ClockSkew, -salesforcetest.MaxSkew)
		assert.Positive(t, a.RefuseBatches)
		assert.Positive(t, a.StampGranularity)
		skews[a.ClockSkew] = true
	}
	assert.Greater(t, len(skews), 10, "seeds draw different skews")

	// A hostile fake still serves the client.
	f := setup(t, salesforcetest.Hostile(3), nil)
	f.srv.SeedN(3)
	page, err := f.c.Changes(ctx, crmsync.ChangeQuery{Object: "Contact"})
	require.NoError(t, err)
	assert.Len(t, page.Records, 3)
}

// Merge refuses what SOAP merge refuses: more than two losers, a deleted
// or unknown record, the master among the losers.
func TestFakeMergeRules(t *testing.T) {
	f := setup(t, nil, nil)
	ids := f.srv.SeedN(5)
	assert.Error(t, f.srv.Merge(ids[0]))
	assert.Error(t, f.srv.Merge(ids[0], ids[1], ids[2], ids[3]), "a request holds 3 records at most")
	assert.Error(t, f.srv.Merge(ids[0], ids[0]))
	assert.Error(t, f.srv.Merge(ids[0], "003Fk0000000zzzAAA"))
	require.NoError(t, f.srv.Merge(ids[0], ids[1]))
	assert.Error(t, f.srv.Merge(ids[0], ids[1]), "a loser is deleted")
	assert.Error(t, f.srv.Merge(ids[1], ids[2]), "a deleted master")
	r, ok := f.srv.Get(ids[1])
	require.True(t, ok)
	assert.True(t, r.Archived)
	assert.Equal(t, ids[0], r.MergedInto)

	// The loser is in the deleted-records list too, and a live query does
	// not return it.
	recs, err := f.c.Lookup(ctx, "Contact", "id", ids[:2], nil)
	require.NoError(t, err)
	require.Len(t, recs, 1)
	assert.Equal(t, ids[0], recs[0].ID)
	f.clk.Advance(2 * time.Minute)
	page, err := f.c.Changes(ctx, crmsync.ChangeQuery{Object: "Contact", Archived: true, Since: f.clk.Now().Add(-time.Hour)})
	require.NoError(t, err)
	require.Len(t, page.Records, 1)
	assert.Equal(t, ids[0], page.Records[0].MergedInto)
	assert.Equal(t, 1, f.srv.Calls()["deleted"])
	// Undelete makes it a live record again, no longer merged.
	require.NoError(t, f.srv.Undelete(ids[1]))
	r, _ = f.srv.Get(ids[1])
	assert.Empty(t, r.MergedInto)
}

// Item 8 for Salesforce: the daily allocation is a rolling 24 hours learnt
// from the Sforce-Limit-Info header, with no reset at any midnight. A client
// whose share is spent stops sending, lets one call through a quarter of an
// hour later to learn the org's usage, and goes on once usage has fallen.
func TestDailyShareIsRollingNotMidnight(t *testing.T) {
	f := setup(t, func(c *salesforcetest.Config) { c.DailyLimit = 100 }, nil)
	f.srv.SetAPIUsage(49)
	_, err := f.c.Schema(ctx, "Contact")
	require.NoError(t, err)
	_, err = f.c.Schema(ctx, "Contact")
	require.ErrorIs(t, err, crmsync.ErrDailyLimit)

	f.srv.SetAPIUsage(10) // calls of yesterday roll out of the window
	f.clk.Advance(14 * time.Minute)
	_, err = f.c.Schema(ctx, "Contact")
	require.ErrorIs(t, err, crmsync.ErrDailyLimit, "before the recheck the client still stops")
	assert.Equal(t, 1, f.srv.Calls()["describe"])

	f.clk.Advance(time.Minute)
	_, err = f.c.Schema(ctx, "Contact")
	require.NoError(t, err, "the probe learns the lower usage")
	_, err = f.c.Schema(ctx, "Contact")
	require.NoError(t, err)
	assert.Equal(t, 3, f.srv.Calls()["describe"])
}

// A field the integration user may read but not write (read-only field-level
// security, a system field) is refused per record with
// INVALID_FIELD_FOR_INSERT_UPDATE: a *crmsync.FieldError names it.
func TestReadOnlyFieldIsFieldError(t *testing.T) {
	f := setup(t, nil, nil)
	ids := f.srv.SeedN(1)
	res, err := f.c.Write(ctx, "Contact", []crmsync.WriteOp{{Kind: crmsync.Update, ID: ids[0],
		Fields: crmsync.Fields{"Title": "X", "LastModifiedDate": "2026-03-02T09:00:00.000+0000"}}})
	require.NoError(t, err)
	var fe *crmsync.FieldError
	require.True(t, errors.As(res[0].Err, &fe), "%v", res[0].Err)
	assert.Equal(t, []string{"LastModifiedDate"}, fe.Fields)
	var re *salesforce.RecordError
	require.True(t, errors.As(res[0].Err, &re), "the record error stays in the chain")
	assert.Equal(t, "INVALID_FIELD_FOR_INSERT_UPDATE", re.StatusCode)
}
