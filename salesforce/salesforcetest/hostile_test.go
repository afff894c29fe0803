package salesforcetest

import (
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The wire shapes of a hidden field: describe omits it, a query naming it
// gets Salesforce's INVALID_FIELD message, retrieve refuses or omits it, and
// a collections record naming it fails alone.
func TestHiddenFieldWire(t *testing.T) {
	s, _ := newFake(t)
	ids := s.SeedN(2)
	require.NoError(t, s.HideField("title"))
	require.Error(t, s.HideField("Id"))
	require.Error(t, s.HideField("Nope__c"))

	_, _, v := call(t, s, "GET", "/services/data/v66.0/sobjects/Contact/describe", "", nil)
	for _, f := range v.(map[string]any)["fields"].([]any) {
		assert.NotEqual(t, "Title", f.(map[string]any)["name"])
	}

	st, v := query(t, s, "SELECT Id, Title FROM Contact WHERE Email = 'a@example.com'")
	assert.Equal(t, 400, st)
	assert.Equal(t, "INVALID_FIELD", errorCode(v))
	msg := v.([]any)[0].(map[string]any)["message"].(string)
	assert.Contains(t, msg, "ERROR at Row:1:Column:12")
	assert.Contains(t, msg, "No such column 'Title' on entity 'Contact'.")
	st, v = query(t, s, "SELECT Id FROM Contact WHERE Title = 'x'")
	assert.Equal(t, 400, st)
	assert.Equal(t, "INVALID_FIELD", errorCode(v))

	st, _, _ = call(t, s, "GET", "/services/data/v66.0/sobjects/Contact/"+ids[0]+"?fields=Title", "", nil)
	assert.Equal(t, 400, st)
	st, _, v = call(t, s, "GET", "/services/data/v66.0/sobjects/Contact/"+ids[0], "", nil)
	require.Equal(t, 200, st)
	assert.NotContains(t, v.(map[string]any), "Title")

	body := `{"allOrNone":false,"records":[{"attributes":{"type":"Contact"},"id":"` + ids[0] + `","Title":"X"},` +
		`{"attributes":{"type":"Contact"},"id":"` + ids[1] + `","FirstName":"Y"}]}`
	st, _, v = call(t, s, "PATCH", "/services/data/v66.0/composite/sobjects", body, nil)
	require.Equal(t, 200, st)
	rs := v.([]any)
	r0 := rs[0].(map[string]any)
	assert.Equal(t, false, r0["success"])
	e := r0["errors"].([]any)[0].(map[string]any)
	assert.Equal(t, "INVALID_FIELD", e["statusCode"])
	assert.Equal(t, "No such column 'Title' on sobject of type Contact", e["message"])
	assert.Equal(t, true, rs[1].(map[string]any)["success"])

	s.RestoreField("Title")
	st, _ = query(t, s, "SELECT Id, Title FROM Contact")
	assert.Equal(t, 200, st)
}

// A merge loser is in queryAll with MasterRecordId and in getDeleted; the
// master's SystemModstamp moves.
func TestMergeWire(t *testing.T) {
	s, clk := newFake(t)
	ids := s.SeedN(3)
	before, _ := s.Get(ids[0])
	clk.Advance(time.Hour)
	require.NoError(t, s.Merge(ids[0], ids[1], ids[2]))
	after, _ := s.Get(ids[0])
	assert.True(t, after.ModifiedAt.After(before.ModifiedAt))

	st, _, v := call(t, s, "GET", "/services/data/v66.0/queryAll?q="+url.QueryEscape(
		"SELECT Id, MasterRecordId FROM Contact WHERE IsDeleted = true AND MasterRecordId != null ORDER BY Id"), "", nil)
	require.Equal(t, 200, st)
	recs := v.(map[string]any)["records"].([]any)
	require.Len(t, recs, 2)
	for _, r := range recs {
		assert.Equal(t, ids[0], r.(map[string]any)["MasterRecordId"])
	}
	start := clk.Now().Add(-2 * time.Hour).Format(time.RFC3339)
	end := clk.Now().Add(time.Minute).Format(time.RFC3339)
	_, _, v = call(t, s, "GET", "/services/data/v66.0/sobjects/Contact/deleted/?start="+url.QueryEscape(start)+"&end="+url.QueryEscape(end), "", nil)
	var got []string
	for _, d := range v.(map[string]any)["deletedRecords"].([]any) {
		got = append(got, d.(map[string]any)["id"].(string))
	}
	assert.ElementsMatch(t, ids[1:], got)
}

// Injected batch refusals with an error code, and the Config checks of the
// hostile options.
func TestRefusalFaultAndConfig(t *testing.T) {
	s, _ := newFake(t)
	s.Inject(Fault{Endpoint: "create", Status: 413, ErrorCode: "REQUEST_ENTITY_TOO_LARGE"})
	st, _, v := call(t, s, "POST", "/services/data/v66.0/composite/sobjects",
		`{"allOrNone":false,"records":[{"attributes":{"type":"Contact"},"LastName":"X"}]}`, nil)
	assert.Equal(t, 413, st)
	assert.Equal(t, "REQUEST_ENTITY_TOO_LARGE", errorCode(v))
	assert.Empty(t, s.All())

	for _, c := range []Config{{RefuseBatches: 2}, {RefuseStatuses: []int{418}}, {StampGranularity: -1}} {
		_, err := New(c)
		assert.Error(t, err)
		assert.True(t, strings.HasPrefix(err.Error(), "salesforcetest: Config"), err.Error())
	}
}

// An upsert by a hidden external-id field is refused as a whole, as for a
// field that is no external id.
func TestHiddenExternalIDField(t *testing.T) {
	s, _ := newFake(t)
	require.NoError(t, s.HideField(s.ExternalIDField()))
	st, _, v := call(t, s, "PATCH", "/services/data/v66.0/composite/sobjects/Contact/"+s.ExternalIDField(),
		`{"allOrNone":false,"records":[{"attributes":{"type":"Contact"},"`+s.ExternalIDField()+`":"1","LastName":"X"}]}`, nil)
	assert.Equal(t, 404, st)
	assert.Equal(t, "NOT_FOUND", errorCode(v))
}
