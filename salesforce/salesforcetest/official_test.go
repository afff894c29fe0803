package salesforcetest_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/salesforce/salesforcetest"
)

// jsforce sends one request as jsforce's Connection does (its _baseUrl is
// instance_url + "/services/data/v" + version; JSON bodies with
// content-type application/json) and answers status and decoded body.
func jsforce(t *testing.T, srv *salesforcetest.Server, method, path, body string) (int, any) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, srv.URL+path, rd)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+srv.Token())
	if body != "" {
		req.Header.Set("content-type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	var out any
	if len(raw) > 0 {
		require.NoError(t, json.Unmarshal(raw, &out), "%s %s: body %s", method, path, raw)
	}
	return resp.StatusCode, out
}

func list(t *testing.T, v any) []any {
	t.Helper()
	l, ok := v.([]any)
	require.True(t, ok, "not a JSON array: %v", v)
	return l
}

func obj(t *testing.T, v any) map[string]any {
	t.Helper()
	m, ok := v.(map[string]any)
	require.True(t, ok, "not a JSON object: %v", v)
	return m
}

// TestJsforceRetrieveMany drives conn.retrieve("Contact", [ids], {fields})
// (API 42.0 and later): POST /composite/sobjects/Contact {"ids","fields"},
// answered with the records in request order and null for an id with no
// live record; and the GET form with ids and fields in the query.
func TestJsforceRetrieveMany(t *testing.T) {
	srv := salesforcetest.NewServer(t)
	ids := srv.Seed(crmsync.Fields{"LastName": "Lovelace", "Email": "ada@example.com"}, crmsync.Fields{"LastName": "Hopper", "Title": "RADM"})
	gone := srv.Seed(crmsync.Fields{"LastName": "Gone"})[0]
	require.NoError(t, srv.Delete(gone))

	req := `{"ids":["` + ids[1] + `","003Fk00000000ZZZZZ","` + ids[0] + `","` + gone + `"],"fields":["Id","LastName","Email","Title"]}`
	status, body := jsforce(t, srv, http.MethodPost, "/services/data/v50.0/composite/sobjects/Contact", req)
	require.Equal(t, http.StatusOK, status, "retrieve: %v", body)
	recs := list(t, body)
	require.Len(t, recs, 4)
	first := obj(t, recs[0])
	assert.Equal(t, ids[1], first["Id"])
	assert.Equal(t, "Hopper", first["LastName"])
	assert.Equal(t, "RADM", first["Title"])
	assert.Nil(t, first["Email"])
	assert.Equal(t, map[string]any{"type": "Contact", "url": "/services/data/v50.0/sobjects/Contact/" + ids[1]}, first["attributes"])
	assert.Nil(t, recs[1], "an id with no record")
	assert.Equal(t, "ada@example.com", obj(t, recs[2])["Email"])
	assert.Nil(t, recs[3], "a deleted record")
	assert.Len(t, obj(t, recs[2]), 5, "the fields asked for and attributes only")

	status, body = jsforce(t, srv, http.MethodGet, "/services/data/v66.0/composite/sobjects/Contact?ids="+ids[0]+","+ids[1]+"&fields=Id,Email", "")
	require.Equal(t, http.StatusOK, status, "retrieve (GET): %v", body)
	recs = list(t, body)
	require.Len(t, recs, 2)
	assert.Equal(t, "ada@example.com", obj(t, recs[0])["Email"])
	assert.Equal(t, ids[1], obj(t, recs[1])["Id"])

	// A field that does not exist fails the call, as in SOQL.
	status, body = jsforce(t, srv, http.MethodPost, "/services/data/v66.0/composite/sobjects/Contact", `{"ids":["`+ids[0]+`"],"fields":["Id","Nope__c"]}`)
	assert.Equal(t, http.StatusBadRequest, status)
	assert.Equal(t, "INVALID_FIELD", obj(t, list(t, body)[0])["errorCode"])
	// No ids is refused.
	status, body = jsforce(t, srv, http.MethodPost, "/services/data/v66.0/composite/sobjects/Contact", `{"ids":[],"fields":["Id"]}`)
	assert.Equal(t, http.StatusBadRequest, status)
	assert.NotEmpty(t, obj(t, list(t, body)[0])["errorCode"])

	assert.Equal(t, 4, srv.Calls()["retrieveMany"])
}

// TestJsforceDestroyMany drives conn.destroy("Contact", [ids], {allOrNone})
// (API 42.0 and later): DELETE /composite/sobjects?ids=a,b[&allOrNone=true],
// answered with one save result per id in request order.
func TestJsforceDestroyMany(t *testing.T) {
	srv := salesforcetest.NewServer(t)
	ids := srv.SeedN(3)
	gone := srv.SeedN(1)[0]
	require.NoError(t, srv.Delete(gone))

	status, body := jsforce(t, srv, http.MethodDelete, "/services/data/v50.0/composite/sobjects?ids="+ids[0]+","+gone+",003Fk00000000ZZZZZ,bad!", "")
	require.Equal(t, http.StatusOK, status, "destroy: %v", body)
	res := list(t, body)
	require.Len(t, res, 4)
	assert.Equal(t, map[string]any{"id": ids[0], "success": true, "errors": []any{}}, res[0])
	assert.Equal(t, false, obj(t, res[1])["success"])
	assert.Equal(t, "ENTITY_IS_DELETED", obj(t, list(t, obj(t, res[1])["errors"])[0])["statusCode"])
	assert.Equal(t, "INVALID_CROSS_REFERENCE_KEY", obj(t, list(t, obj(t, res[2])["errors"])[0])["statusCode"])
	assert.Equal(t, "MALFORMED_ID", obj(t, list(t, obj(t, res[3])["errors"])[0])["statusCode"])
	rec, ok := srv.Get(ids[0])
	require.True(t, ok)
	assert.True(t, rec.Archived, "the record is in the recycle bin")

	// allOrNone=true with one failure deletes nothing.
	status, body = jsforce(t, srv, http.MethodDelete, "/services/data/v66.0/composite/sobjects?ids="+ids[1]+","+gone+"&allOrNone=true", "")
	require.Equal(t, http.StatusOK, status)
	res = list(t, body)
	assert.Equal(t, "ALL_OR_NONE_OPERATION_ROLLED_BACK", obj(t, list(t, obj(t, res[0])["errors"])[0])["statusCode"])
	rec, _ = srv.Get(ids[1])
	assert.False(t, rec.Archived, "rolled back")

	// The deleted record is gone from query and in queryAll.
	status, body = jsforce(t, srv, http.MethodGet, "/services/data/v66.0/queryAll?q="+url.QueryEscape("SELECT Id, IsDeleted FROM Contact WHERE Id = '"+ids[0]+"'"), "")
	require.Equal(t, http.StatusOK, status)
	assert.Equal(t, true, obj(t, list(t, obj(t, body)["records"])[0])["IsDeleted"])

	// No ids, the restforce-recorded answer.
	status, body = jsforce(t, srv, http.MethodDelete, "/services/data/v66.0/composite/sobjects?ids=", "")
	assert.Equal(t, http.StatusBadRequest, status)
	assert.Equal(t, "REQUIRED_FIELD_MISSING", obj(t, list(t, body)[0])["errorCode"])
	assert.Equal(t, 3, srv.Calls()["delete"])
}

// TestAPIVersionRange checks that the fake serves the versions of its
// range, lists them, and refuses others with Salesforce's 404 NOT_FOUND.
func TestAPIVersionRange(t *testing.T) {
	srv := salesforcetest.NewServer(t, func(c *salesforcetest.Config) { c.MinAPIVersion, c.MaxAPIVersion = "50.0", "v66.0" })
	for _, v := range []string{"v50.0", "v58.0", "v66.0"} {
		status, body := jsforce(t, srv, http.MethodGet, "/services/data/"+v+"/limits", "")
		assert.Equal(t, http.StatusOK, status, "%s: %v", v, body)
	}
	for _, v := range []string{"v49.0", "v67.0", "v66.1", "66.0"} {
		status, body := jsforce(t, srv, http.MethodGet, "/services/data/"+v+"/limits", "")
		assert.Equal(t, http.StatusNotFound, status, v)
		assert.Equal(t, []any{map[string]any{"errorCode": "NOT_FOUND", "message": "The requested resource does not exist"}}, body, v)
	}
	status, body := jsforce(t, srv, http.MethodGet, "/services/data/", "")
	require.Equal(t, http.StatusOK, status)
	versions := list(t, body)
	require.Len(t, versions, 17)
	assert.Equal(t, "50.0", obj(t, versions[0])["version"])
	assert.Equal(t, "/services/data/v66.0", obj(t, versions[16])["url"])

	_, err := salesforcetest.New(salesforcetest.Config{MinAPIVersion: "67.0", MaxAPIVersion: "66.0"})
	assert.ErrorContains(t, err, "MinAPIVersion")
	_, err = salesforcetest.New(salesforcetest.Config{MaxAPIVersion: "66"})
	assert.ErrorContains(t, err, "MaxAPIVersion")
}

// TestQueryPageSize checks Config.QueryPageSize: it caps every query page,
// below Salesforce's smallest batchSize too, and Sforce-Query-Options asks
// for less within it.
func TestQueryPageSize(t *testing.T) {
	srv := salesforcetest.NewServer(t, func(c *salesforcetest.Config) { c.QueryPageSize = 3; c.Contacts = 7 })
	status, body := jsforce(t, srv, http.MethodGet, "/services/data/v66.0/query?q="+url.QueryEscape("SELECT Id FROM Contact"), "")
	require.Equal(t, http.StatusOK, status)
	page := obj(t, body)
	assert.EqualValues(t, 7, page["totalSize"])
	assert.Len(t, list(t, page["records"]), 3)
	seen := 3
	for next, _ := page["nextRecordsUrl"].(string); next != ""; next, _ = page["nextRecordsUrl"].(string) {
		status, body = jsforce(t, srv, http.MethodGet, next, "")
		require.Equal(t, http.StatusOK, status)
		page = obj(t, body)
		seen += len(list(t, page["records"]))
	}
	assert.Equal(t, 7, seen)
	_, err := salesforcetest.New(salesforcetest.Config{QueryPageSize: 2001})
	assert.ErrorContains(t, err, "QueryPageSize")
}

// TestJsforceSingleRecordCalls drives jsforce's one-record create, update,
// destroy and upsert (jsforce upserts one request per record, arrays
// included): POST /sobjects/Contact, PATCH and DELETE
// /sobjects/Contact/{id}, PATCH /sobjects/Contact/{extField}/{value}.
func TestJsforceSingleRecordCalls(t *testing.T) {
	srv := salesforcetest.NewServer(t)
	ext := srv.ExternalIDField()

	status, body := jsforce(t, srv, http.MethodPost, "/services/data/v50.0/sobjects/Contact", `{"LastName":"Lovelace","Email":"ada@example.com"}`)
	require.Equal(t, http.StatusCreated, status, "create: %v", body)
	id, _ := obj(t, body)["id"].(string)
	require.NotEmpty(t, id)
	assert.Equal(t, map[string]any{"id": id, "success": true, "errors": []any{}}, body)

	status, body = jsforce(t, srv, http.MethodPatch, "/services/data/v50.0/sobjects/Contact/"+id, `{"Title":"Countess"}`)
	assert.Equal(t, http.StatusNoContent, status, "update: %v", body)
	rec, _ := srv.Get(id)
	assert.Equal(t, "Countess", rec.Fields["Title"])

	status, body = jsforce(t, srv, http.MethodPatch, "/services/data/v50.0/sobjects/Contact/"+ext+"/hs-1", `{"LastName":"Hopper"}`)
	require.Equal(t, http.StatusCreated, status, "upsert new: %v", body)
	assert.Equal(t, true, obj(t, body)["created"])
	upID := obj(t, body)["id"].(string)
	status, body = jsforce(t, srv, http.MethodPatch, "/services/data/v50.0/sobjects/Contact/"+ext+"/hs-1", `{"Title":"RADM"}`)
	require.Equal(t, http.StatusOK, status, "upsert existing: %v", body)
	assert.Equal(t, map[string]any{"id": upID, "success": true, "errors": []any{}, "created": false}, body)
	status, _ = jsforce(t, srv, http.MethodPatch, "/services/data/v50.0/sobjects/Contact/Email/x", `{"Title":"RADM"}`)
	assert.Equal(t, http.StatusNotFound, status, "upsert on a field that is no external id")

	status, body = jsforce(t, srv, http.MethodPost, "/services/data/v50.0/sobjects/Contact", `{"Email":"no-last-name@example.com"}`)
	assert.Equal(t, http.StatusBadRequest, status)
	assert.Equal(t, "REQUIRED_FIELD_MISSING", obj(t, list(t, body)[0])["errorCode"])

	status, _ = jsforce(t, srv, http.MethodDelete, "/services/data/v50.0/sobjects/Contact/"+id, "")
	assert.Equal(t, http.StatusNoContent, status)
	rec, _ = srv.Get(id)
	assert.True(t, rec.Archived)
	status, body = jsforce(t, srv, http.MethodDelete, "/services/data/v50.0/sobjects/Contact/"+id, "")
	assert.Equal(t, http.StatusNotFound, status)
	assert.Equal(t, "ENTITY_IS_DELETED", obj(t, list(t, body)[0])["errorCode"])
	status, body = jsforce(t, srv, http.MethodPatch, "/services/data/v50.0/sobjects/Contact/003Fk00000000ZZZZZ", `{"Title":"x"}`)
	assert.Equal(t, http.StatusNotFound, status)
	assert.Equal(t, "NOT_FOUND", obj(t, list(t, body)[0])["errorCode"])
}

// TestJsforceUpdatedAndDescribeGlobal drives conn.sobject("Contact")
// .updated(start, end) (GET /sobjects/Contact/updated/?start=&end=) and
// conn.describeGlobal() (GET /sobjects).
func TestJsforceUpdatedAndDescribeGlobal(t *testing.T) {
	var mu sync.Mutex
	now := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	srv := salesforcetest.NewServer(t, salesforcetest.WithClock(clock))
	ids := srv.SeedContacts(3)
	require.NoError(t, srv.Delete(ids[2]))
	mu.Lock()
	now = now.Add(time.Hour)
	mu.Unlock()
	require.NoError(t, srv.Edit(ids[1], crmsync.Fields{"Title": "x"}))

	q := url.Values{"start": {"2026-03-02T09:30:00+00:00"}, "end": {"2026-03-02T10:30:00+00:00"}}
	status, body := jsforce(t, srv, http.MethodGet, "/services/data/v50.0/sobjects/Contact/updated/?"+q.Encode(), "")
	require.Equal(t, http.StatusOK, status, "%v", body)
	assert.Equal(t, []any{ids[1]}, obj(t, body)["ids"])
	assert.Equal(t, "2026-03-02T10:30:00.000+0000", obj(t, body)["latestDateCovered"])
	q.Set("start", "2026-01-01T00:00:00+00:00")
	status, body = jsforce(t, srv, http.MethodGet, "/services/data/v50.0/sobjects/Contact/updated/?"+q.Encode(), "")
	assert.Equal(t, http.StatusBadRequest, status)
	assert.Equal(t, "INVALID_REPLICATION_DATE", obj(t, list(t, body)[0])["errorCode"])

	status, body = jsforce(t, srv, http.MethodGet, "/services/data/v50.0/sobjects", "")
	require.Equal(t, http.StatusOK, status, "%v", body)
	sobjects := list(t, obj(t, body)["sobjects"])
	var names []string
	for _, o := range sobjects {
		names = append(names, obj(t, o)["name"].(string))
	}
	assert.Equal(t, []string{"Account", "Contact", "Lead", "Opportunity", "OpportunityContactRole"}, names)
}
