package hubspottest_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/crmsync/crmsync/hubspot/hubspottest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

type result struct {
	status int
	header http.Header
	body   map[string]any
}

func call(t *testing.T, srv *hubspottest.Server, method, path, token string, body ...any) result {
	t.Helper()
	var rd io.Reader
	if len(body) > 0 {
		b, err := json.Marshal(body[0])
		require.NoError(t, err)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, srv.URL+path, rd)
	require.NoError(t, err)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	r := result{status: resp.StatusCode, header: resp.Header}
	if len(raw) > 0 {
		require.NoError(t, json.Unmarshal(raw, &r.body), "%s %s: body is not JSON: %s", method, path, raw)
	}
	return r
}

func fake(t *testing.T, opts ...hubspottest.Option) *hubspottest.Server {
	return hubspottest.NewServer(t, append([]hubspottest.Option{hubspottest.WithoutRateLimits(), hubspottest.WithPrefix("/fake")}, opts...)...)
}

func ids(r result) []string {
	var out []string
	for _, x := range r.body["results"].([]any) {
		out = append(out, x.(map[string]any)["id"].(string))
	}
	sort.Strings(out)
	return out
}

func search(filters ...map[string]any) map[string]any {
	fs := make([]any, len(filters))
	for i, f := range filters {
		fs[i] = f
	}
	return map[string]any{"filterGroups": []any{map[string]any{"filters": fs}}, "limit": 100}
}

func TestSearchOperators(t *testing.T) {
	srv := fake(t)
	srv.DefineProperty("contacts", hubspottest.Property{Name: "score", Type: "number", FieldType: "number"})
	id := srv.Seed("contacts",
		map[string]string{"email": "a@x.com", "score": "5", "firstname": "Ann"},
		map[string]string{"email": "b@y.com", "score": "10"},
		map[string]string{"email": "c@x.com", "score": "20", "firstname": "Cid"},
	)
	f := func(prop, op, val string) map[string]any {
		return map[string]any{"propertyName": prop, "operator": op, "value": val}
	}
	tests := []struct {
		name string
		body map[string]any
		want []string
	}{
		{"EQ case-insensitive", search(f("email", "EQ", "A@X.COM")), []string{id[0]}},
		{"NEQ", search(f("email", "NEQ", "a@x.com")), []string{id[1], id[2]}},
		{"GT numeric", search(f("score", "GT", "9")), []string{id[1], id[2]}},
		{"GTE", search(f("score", "GTE", "10")), []string{id[1], id[2]}},
		{"LT", search(f("score", "LT", "10")), []string{id[0]}},
		{"LTE", search(f("score", "LTE", "10")), []string{id[0], id[1]}},
		{"BETWEEN", search(map[string]any{"propertyName": "score", "operator": "BETWEEN", "value": "6", "highValue": "20"}), []string{id[1], id[2]}},
		{"IN", search(map[string]any{"propertyName": "email", "operator": "IN", "values": []string{"b@y.com", "c@x.com"}}), []string{id[1], id[2]}},
		{"HAS_PROPERTY", search(map[string]any{"propertyName": "firstname", "operator": "HAS_PROPERTY"}), []string{id[0], id[2]}},
		{"NOT_HAS_PROPERTY", search(map[string]any{"propertyName": "firstname", "operator": "NOT_HAS_PROPERTY"}), []string{id[1]}},
		{"CONTAINS_TOKEN wildcard", search(f("email", "CONTAINS_TOKEN", "*@x.com")), []string{id[0], id[2]}},
		{"AND within group", search(f("email", "CONTAINS_TOKEN", "*@x.com"), f("score", "GT", "10")), []string{id[2]}},
		{"hs_object_id GT", search(f("hs_object_id", "GT", id[0])), []string{id[1], id[2]}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := call(t, srv, "POST", "/crm/v3/objects/contacts/search", srv.Token, tt.body)
			sort.Strings(tt.want)
			require.Equal(t, 200, r.status, "search = %d %v, want %v", r.status, r.body, tt.want)
			require.Equal(t, fmt.Sprint(tt.want), fmt.Sprint(ids(r)), "search = %d %v, want %v", r.status, r.body, tt.want)
			require.Equal(t, len(tt.want), int(r.body["total"].(float64)), "total = %v", r.body["total"])
		})
	}
	// OR across groups, and a sort given as a string.
	body := map[string]any{"filterGroups": []any{
		map[string]any{"filters": []any{f("email", "EQ", "a@x.com")}},
		map[string]any{"filters": []any{f("email", "EQ", "b@y.com")}},
	}, "sorts": []string{"-hs_object_id"}}
	r := call(t, srv, "POST", "/crm/v3/objects/contacts/search", srv.Token, body)
	res := r.body["results"].([]any)
	if len(res) != 2 || res[0].(map[string]any)["id"] != id[1] {
		t.Fatalf("OR search sorted descending = %v", r.body)
	}
}

func TestSearchEnforcesLimits(t *testing.T) {
	srv := fake(t, hubspottest.WithSearchCap(50))
	all := srv.SeedContacts(60)
	_ = srv.Archive("contacts", all[0])
	many := make([]map[string]any, 7)
	for i := range many {
		many[i] = map[string]any{"propertyName": "email", "operator": "HAS_PROPERTY"}
	}
	groups := make([]any, 6)
	for i := range groups {
		groups[i] = map[string]any{"filters": []any{many[0]}}
	}
	tests := []struct {
		name string
		body map[string]any
	}{
		{"limit over 200", map[string]any{"limit": 201}},
		{"seven filters in a group", search(many...)},
		{"six groups", map[string]any{"filterGroups": groups}},
		{"two sorts", map[string]any{"sorts": []any{map[string]any{"propertyName": "email", "direction": "ASCENDING"}, map[string]any{"propertyName": "createdate", "direction": "ASCENDING"}}}},
		{"unknown operator", search(map[string]any{"propertyName": "email", "operator": "ABOUT"})},
		{"past the cap", map[string]any{"limit": 20, "after": "40"}},
		{"body over 3000 chars", map[string]any{"query": strings.Repeat("q", 3001)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := call(t, srv, "POST", "/crm/v3/objects/contacts/search", srv.Token, tt.body)
			require.Equal(t, 400, r.status, "search = %d %v, want 400 VALIDATION_ERROR", r.status, r.body)
			require.Equal(t, "VALIDATION_ERROR", r.body["category"], "search = %d %v, want 400 VALIDATION_ERROR", r.status, r.body)
		})
	}
	r := call(t, srv, "POST", "/crm/v3/objects/contacts/search", srv.Token, map[string]any{"limit": 20, "after": "20"})
	if r.status != 200 || int(r.body["total"].(float64)) != 59 || len(r.body["results"].([]any)) != 20 {
		t.Fatalf("page 2 = %d total %v", r.status, r.body["total"])
	}
	next := r.body["paging"].(map[string]any)["next"].(map[string]any)["after"]
	require.Equal(t, "40", next, "next after = %v", next)
	r = call(t, srv, "POST", "/crm/v3/objects/contacts/search", srv.Token, map[string]any{})
	require.Equal(t, 10, len(r.body["results"].([]any)), "default limit = %d results, want 10", len(r.body["results"].([]any)))
	props := r.body["results"].([]any)[0].(map[string]any)["properties"].(map[string]any)
	for _, p := range []string{"createdate", "email", "firstname", "hs_object_id", "lastmodifieddate", "lastname"} {
		_, ok := props[p]
		assert.True(t, ok, "default properties lack %s: %v", p, props)
	}
}

func TestBatchSizeAndTraceIDRules(t *testing.T) {
	srv := fake(t)
	inputs := make([]map[string]any, 101)
	for i := range inputs {
		inputs[i] = map[string]any{"id": fmt.Sprint(i), "properties": map[string]string{}}
	}
	for _, ep := range []string{"read", "create", "update", "upsert", "archive"} {
		r := call(t, srv, "POST", "/crm/v3/objects/contacts/batch/"+ep, srv.Token, map[string]any{"inputs": inputs})
		assert.Equal(t, 400, r.status, "batch/%s with 101 inputs = %d, want 400", ep, r.status)
	}
	bad := map[string]any{"inputs": []any{
		map[string]any{"properties": map[string]string{"email": "ok@example.com"}},
		map[string]any{"properties": map[string]string{"email": "ok2@example.com", "lifecyclestage": "nope"}},
	}}
	r := call(t, srv, "POST", "/crm/v3/objects/contacts/batch/create", srv.Token, bad)
	require.Equal(t, 400, r.status, "batch without trace ids and a bad input = %d, %d records; want 400 and none written", r.status, len(srv.All("contacts")))
	require.Empty(t, srv.All("contacts"), "batch without trace ids and a bad input = %d, %d records; want 400 and none written", r.status, len(srv.All("contacts")))
	traced := map[string]any{"inputs": []any{
		map[string]any{"properties": map[string]string{"email": "ok@example.com"}, "objectWriteTraceId": "t1"},
		map[string]any{"properties": map[string]string{"email": "ok2@example.com", "lifecyclestage": "nope"}, "objectWriteTraceId": "t2"},
	}}
	r = call(t, srv, "POST", "/crm/v3/objects/contacts/batch/create", srv.Token, traced)
	require.Equal(t, 207, r.status, "traced batch = %d %v", r.status, r.body)
	require.Equal(t, 1.0, r.body["numErrors"], "traced batch = %d %v", r.status, r.body)
	require.Len(t, srv.All("contacts"), 1, "traced batch = %d %v", r.status, r.body)
	e := r.body["errors"].([]any)[0].(map[string]any)
	require.Equal(t, "VALIDATION_ERROR", e["category"], "207 error = %v", e)
	require.Equal(t, "[t2]", fmt.Sprint(e["context"].(map[string]any)["objectWriteTraceId"]), "207 error = %v", e)
}

func TestUniqueAndRequiredProperties(t *testing.T) {
	srv := fake(t)
	srv.DefineProperty("contacts", hubspottest.Property{Name: "sf_id", Unique: true})
	srv.DefineProperty("contacts", hubspottest.Property{Name: "plan", Required: true})
	srv.Seed("contacts", map[string]string{"email": "a@example.com", "sf_id": "003A", "plan": "x"})
	in := func(tid string, props map[string]string) map[string]any {
		return map[string]any{"properties": props, "objectWriteTraceId": tid}
	}
	r := call(t, srv, "POST", "/crm/v3/objects/contacts/batch/create", srv.Token, map[string]any{"inputs": []any{
		in("dup-email", map[string]string{"email": "A@example.com", "plan": "x"}),
		in("dup-sf", map[string]string{"email": "b@example.com", "sf_id": "003a", "plan": "x"}),
		in("no-plan", map[string]string{"email": "c@example.com"}),
		in("twin1", map[string]string{"email": "d@example.com", "plan": "x"}),
		in("twin2", map[string]string{"email": "d@example.com", "plan": "x"}),
		in("ok", map[string]string{"email": "e@example.com", "plan": "x"}),
	}})
	require.Equal(t, 207, r.status, "status = %d", r.status)
	got := map[string]string{}
	for _, x := range r.body["errors"].([]any) {
		e := x.(map[string]any)
		tid := e["context"].(map[string]any)["objectWriteTraceId"].([]any)[0].(string)
		got[tid] = e["category"].(string)
	}
	want := map[string]string{"dup-email": "CONFLICT", "dup-sf": "CONFLICT", "no-plan": "VALIDATION_ERROR", "twin2": "CONFLICT"}
	require.Equal(t, fmt.Sprint(want), fmt.Sprint(got), "per-record errors = %v, want %v", got, want)
	// Upsert by the unique property updates the existing record.
	r = call(t, srv, "POST", "/crm/v3/objects/contacts/batch/upsert", srv.Token, map[string]any{"inputs": []any{
		map[string]any{"id": "003A", "idProperty": "sf_id", "properties": map[string]string{"firstname": "Z"}},
		map[string]any{"id": "003B", "idProperty": "sf_id", "properties": map[string]string{"plan": "y"}},
	}})
	res := r.body["results"].([]any)
	require.Equal(t, 200, r.status, "upsert = %d %v", r.status, r.body)
	require.Equal(t, false, res[0].(map[string]any)["new"], "upsert = %d %v", r.status, r.body)
	require.Equal(t, true, res[1].(map[string]any)["new"], "upsert = %d %v", r.status, r.body)
	r = call(t, srv, "POST", "/crm/v3/objects/contacts/batch/upsert", srv.Token, map[string]any{"inputs": []any{
		map[string]any{"id": "x", "idProperty": "firstname", "properties": map[string]string{}},
	}})
	require.Equal(t, 400, r.status, "upsert on a non-unique property = %d, want 400", r.status)
}

func TestAuthPrefixAndSingleGet(t *testing.T) {
	srv := fake(t)
	id := srv.Seed("contacts", map[string]string{"email": "a@example.com"})[0]
	r := call(t, srv, "GET", "/crm/v3/objects/contacts/"+id, "")
	require.Equal(t, 401, r.status, "no token = %d %v", r.status, r.body)
	require.Equal(t, "INVALID_AUTHENTICATION", r.body["category"], "no token = %d %v", r.status, r.body)
	r = call(t, srv, "GET", "/crm/v3/objects/contacts/"+id, "nope")
	require.Equal(t, 401, r.status, "wrong token = %d", r.status)
	if r := call(t, srv, "GET", "/crm/v3/objects/contacts/"+id, srv.Token); r.status != 200 || r.body["id"] != id {
		t.Fatalf("get = %d %v", r.status, r.body)
	}
	if r := call(t, srv, "GET", "/crm/v3/objects/contacts/A@EXAMPLE.COM?idProperty=email", srv.Token); r.status != 200 || r.body["id"] != id {
		t.Fatalf("get by email = %d %v", r.status, r.body)
	}
	r = call(t, srv, "GET", "/crm/v3/objects/contacts/424242", srv.Token)
	require.Equal(t, 404, r.status, "missing = %d", r.status)
	u, _ := url.Parse(srv.URL)
	resp, err := http.Get(u.Scheme + "://" + u.Host + "/crm/v3/objects/contacts")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, 404, resp.StatusCode, "path without the prefix = %d, want 404", resp.StatusCode)
}

func TestRateAndDailyLimits(t *testing.T) {
	srv := hubspottest.NewServer(t, hubspottest.WithRateLimit(2, time.Minute), hubspottest.WithSearchRateLimit(1, time.Minute), hubspottest.WithDailyLimit(5))
	for i := 0; i < 2; i++ {
		if r := call(t, srv, "GET", "/crm/v3/properties/contacts", srv.Token); r.status != 200 || r.header.Get("X-HubSpot-RateLimit-Max") != "2" {
			t.Fatalf("call %d = %d %v", i, r.status, r.header)
		}
	}
	r := call(t, srv, "GET", "/crm/v3/properties/contacts", srv.Token)
	require.Equal(t, 429, r.status, "third call = %d %v", r.status, r.body)
	require.Equal(t, "TEN_SECONDLY_ROLLING", r.body["policyName"], "third call = %d %v", r.status, r.body)
	require.Equal(t, 200, call(t, srv, "POST", "/crm/v3/objects/contacts/search", srv.Token, map[string]any{}).status, "search shares the ten-second limit")
	r = call(t, srv, "POST", "/crm/v3/objects/contacts/search", srv.Token, map[string]any{})
	require.Equal(t, 429, r.status, "second search = %d %v", r.status, r.body)
	require.Equal(t, "SECONDLY", r.body["policyName"], "second search = %d %v", r.status, r.body)
	require.Equal(t, 2, srv.RateLimited(), "RateLimited = %d, DailyUsed = %d", srv.RateLimited(), srv.DailyUsed())
	require.Equal(t, 3, srv.DailyUsed(), "RateLimited = %d, DailyUsed = %d", srv.RateLimited(), srv.DailyUsed())
	srv.ExhaustDaily()
	r = call(t, srv, "POST", "/crm/v3/objects/contacts/search", srv.Token, map[string]any{})
	require.Equal(t, 429, r.status, "after the daily limit = %d %v", r.status, r.body)
	require.Equal(t, "DAILY", r.body["policyName"], "after the daily limit = %d %v", r.status, r.body)
	srv.ResetDaily()
	require.Equal(t, 0, srv.DailyUsed(), "ResetDaily did not reset")
	c := srv.CallCounts()
	require.Equal(t, 3, c["properties"], "CallCounts = %v", c)
	require.Equal(t, 3, c["search"], "CallCounts = %v", c)
}

func TestTokenEndpoint(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	srv := fake(t, hubspottest.WithClock(func() time.Time { return now }))
	post := func(form url.Values) (int, map[string]any) {
		resp, err := http.PostForm(srv.URL+"/oauth/v3/token", form)
		require.NoError(t, err)
		defer resp.Body.Close()
		var m map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&m)
		return resp.StatusCode, m
	}
	good := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {hubspottest.DefaultRefreshToken},
		"client_id": {hubspottest.DefaultClientID}, "client_secret": {hubspottest.DefaultClientSecret}}
	status, m := post(good)
	tok, _ := m["access_token"].(string)
	require.Equal(t, 200, status, "token = %d %v", status, m)
	require.NotEmpty(t, tok, "token = %d %v", status, m)
	require.Equal(t, 1800.0, m["expires_in"], "token = %d %v", status, m)
	require.Equal(t, "bearer", m["token_type"], "token = %d %v", status, m)
	r := call(t, srv, "GET", "/crm/v3/properties/contacts", tok)
	require.Equal(t, 200, r.status, "issued token refused: %d", r.status)
	now = now.Add(31 * time.Minute)
	r = call(t, srv, "GET", "/crm/v3/properties/contacts", tok)
	require.Equal(t, 401, r.status, "expired token = %d %v", r.status, r.body)
	require.Equal(t, "EXPIRED_AUTHENTICATION", r.body["category"], "expired token = %d %v", r.status, r.body)
	bad := url.Values{}
	for k, v := range good {
		bad[k] = v
	}
	bad.Set("refresh_token", "nope")
	status, m = post(bad)
	require.Equal(t, 400, status, "bad refresh = %d %v", status, m)
	require.Equal(t, "invalid_grant", m["error"], "bad refresh = %d %v", status, m)
	require.Equal(t, "BAD_REFRESH_TOKEN", m["status"], "bad refresh = %d %v", status, m)
}

func TestHooksAndStamps(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 123456789, time.UTC)
	srv := fake(t, hubspottest.WithClock(func() time.Time { return now }))
	id := srv.Seed("contacts", map[string]string{"email": "a@example.com"})[0]
	rec, ok := srv.Get("contacts", id)
	require.True(t, ok, "seeded = %+v", rec)
	require.Equal(t, "2026-01-01T00:00:00.123Z", rec.Properties["lastmodifieddate"], "seeded = %+v", rec)
	require.True(t, rec.UpdatedAt.Equal(now.Truncate(time.Millisecond)), "seeded = %+v", rec)
	now = now.Add(time.Second)
	require.NoError(t, srv.Edit("contacts", id, map[string]string{"firstname": "Z"}))
	rec, _ = srv.Get("contacts", id)
	require.Equal(t, "Z", rec.Properties["firstname"], "edited = %+v", rec)
	require.Equal(t, "2026-01-01T00:00:01.123Z", rec.Properties["lastmodifieddate"], "edited = %+v", rec)
	require.Error(t, srv.Edit("contacts", "nope", nil), "Edit of a missing record succeeded")
	_ = srv.Archive("contacts", id)
	r := call(t, srv, "GET", "/crm/v3/objects/contacts?archived=true&limit=5", srv.Token)
	require.Len(t, r.body["results"].([]any), 1, "archived list = %v", r.body)
	r = call(t, srv, "GET", "/crm/v3/objects/contacts", srv.Token)
	require.Empty(t, r.body["results"].([]any), "live list = %v", r.body)
	now = now.Add(time.Second)
	_ = srv.Restore("contacts", id)
	rec, _ = srv.Get("contacts", id)
	require.False(t, rec.Archived, "restored = %+v", rec)
	require.True(t, rec.UpdatedAt.Equal(now.Truncate(time.Millisecond)), "restored = %+v", rec)
}

func TestFaultsApplyInOrderToTheirEndpoint(t *testing.T) {
	srv := fake(t)
	srv.Fail(hubspottest.Fault{Kind: hubspottest.ServerError, Endpoint: "search", Count: 2, Status: 503},
		hubspottest.Fault{Kind: hubspottest.RateLimit, RetryAfter: 2 * time.Second})
	r := call(t, srv, "GET", "/crm/v3/properties/contacts", srv.Token)
	require.Equal(t, 429, r.status, "properties = %d %v", r.status, r.header)
	require.Equal(t, "2", r.header.Get("Retry-After"), "properties = %d %v", r.status, r.header)
	for i := 0; i < 2; i++ {
		if r := call(t, srv, "POST", "/crm/v3/objects/contacts/search", srv.Token, map[string]any{}); r.status != 503 {
			t.Fatalf("search %d = %d", i, r.status)
		}
	}
	r = call(t, srv, "POST", "/crm/v3/objects/contacts/search", srv.Token, map[string]any{})
	require.Equal(t, 200, r.status, "search after faults = %d", r.status)
}

func TestServeOnListener(t *testing.T) {
	srv, err := hubspottest.New(hubspottest.Config{Prefix: "/hubspot"})
	require.NoError(t, err)
	if _, err := hubspottest.New(hubspottest.Config{Prefix: "bad/"}); err == nil {
		t.Fatal("New accepted a bad prefix")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, l) }()
	srv.SeedContacts(3)
	want := srv.URLFor(l.Addr())
	req, _ := http.NewRequest("GET", want+"/crm/v3/objects/contacts", nil)
	req.Header.Set("Authorization", "Bearer "+srv.Token)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, 200, resp.StatusCode, "list on the listener = %d", resp.StatusCode)
	cancel()
	require.NoError(t, <-done, "Serve")
}

func TestMergeOverHTTP(t *testing.T) {
	srv := fake(t)
	ids := srv.Seed("contacts", map[string]string{"email": "a@example.com"}, map[string]string{"email": "b@example.com", "phone": "5"})
	r := call(t, srv, "POST", "/crm/v3/objects/contacts/merge", srv.Token, map[string]any{"primaryObjectId": ids[0], "objectIdToMerge": ids[1]})
	require.Equal(t, 200, r.status, "merge = %d %v", r.status, r.body)
	newID, _ := r.body["id"].(string)
	require.NotEmpty(t, newID, "merge made id %q, want a new one", newID)
	require.NotEqual(t, ids[0], newID, "merge made id %q, want a new one", newID)
	require.NotEqual(t, ids[1], newID, "merge made id %q, want a new one", newID)
	got := call(t, srv, "GET", "/crm/v3/objects/contacts/"+ids[1]+"?properties=email,phone,hs_merged_object_ids", srv.Token)
	props, _ := got.body["properties"].(map[string]any)
	if got.status != 200 || got.body["id"] != newID || props["email"] != "a@example.com" || props["phone"] != "5" ||
		props["hs_merged_object_ids"] != ids[0]+";"+ids[1] {
		t.Fatalf("GET old id = %d %v", got.status, got.body)
	}
	br := call(t, srv, "POST", "/crm/v3/objects/contacts/batch/read", srv.Token, map[string]any{"properties": []string{"email"}, "inputs": []any{map[string]any{"id": ids[0]}}})
	require.Equal(t, 207, br.status, "batch read of an old id = %d, want 207 not found", br.status)
	up := call(t, srv, "POST", "/crm/v3/objects/contacts/batch/update", srv.Token, map[string]any{"inputs": []any{map[string]any{"id": ids[0], "properties": map[string]any{"phone": "6"}, "objectWriteTraceId": "t"}}})
	require.Equal(t, 207, up.status, "batch update of an old id = %d, want 207 not found", up.status)
	s := call(t, srv, "POST", "/crm/v3/objects/contacts/search", srv.Token, map[string]any{"limit": 10})
	require.Equal(t, float64(1), s.body["total"], "search after merge = %v, want the new record only", s.body)
	l := call(t, srv, "GET", "/crm/v3/objects/contacts?archived=true", srv.Token)
	res, _ := l.body["results"].([]any)
	require.Empty(t, res, "archived list after merge = %v, want empty", l.body)
	bad := call(t, srv, "POST", "/crm/v3/objects/contacts/merge", srv.Token, map[string]any{"primaryObjectId": ids[0], "objectIdToMerge": newID})
	require.Equal(t, 404, bad.status, "merge of a merged-away id = %d", bad.status)
}

func TestSearchAtTheEpochIs500(t *testing.T) {
	srv := fake(t)
	srv.SeedContacts(1)
	for _, v := range []string{"0", "-62135596800000"} {
		r := call(t, srv, "POST", "/crm/v3/objects/contacts/search", srv.Token, map[string]any{
			"filterGroups": []any{map[string]any{"filters": []any{map[string]any{"propertyName": "lastmodifieddate", "operator": "GTE", "value": v}}}}})
		require.Equal(t, 500, r.status, "filter at %s = %d, want 500", v, r.status)
	}
	r := call(t, srv, "POST", "/crm/v3/objects/contacts/search", srv.Token, map[string]any{
		"filterGroups": []any{map[string]any{"filters": []any{map[string]any{"propertyName": "lastmodifieddate", "operator": "GTE", "value": "1000"}}}}})
	require.Equal(t, 200, r.status, "filter at 1 s = %d %v", r.status, r.body)
	require.Equal(t, float64(1), r.body["total"], "filter at 1 s = %d %v", r.status, r.body)
}

func TestUnknownPropertyErrorShape(t *testing.T) {
	srv := fake(t)
	id := srv.SeedContacts(1)[0]
	// Without trace ids HubSpot fails the whole batch, naming the properties.
	r := call(t, srv, "POST", "/crm/v3/objects/contacts/batch/update", srv.Token, map[string]any{"inputs": []any{map[string]any{"id": id, "properties": map[string]any{"zz": "1", "aa": "2"}}}})
	errs, _ := r.body["errors"].([]any)
	require.Equal(t, 400, r.status, "unknown properties = %d %v", r.status, r.body)
	require.Equal(t, "VALIDATION_ERROR", r.body["category"], "unknown properties = %d %v", r.status, r.body)
	require.Len(t, errs, 2, "unknown properties = %d %v", r.status, r.body)
	require.Contains(t, r.body["message"].(string), `"name":"aa"`, "unknown properties = %d %v", r.status, r.body)
	require.Contains(t, r.body["message"].(string), `"error":"PROPERTY_DOESNT_EXIST"`, "unknown properties = %d %v", r.status, r.body)
	e0, _ := errs[0].(map[string]any)
	require.Equal(t, "PROPERTY_DOESNT_EXIST", e0["code"], "errors[0] = %v", e0)
	require.Equal(t, "map[propertyName:[aa]]", fmt.Sprint(e0["context"]), "errors[0] = %v", e0)
	require.Error(t, srv.DeleteProperty("contacts", "nosuch"), "DeleteProperty of an unknown property succeeded")
}

func TestSearchLagIsStaleThenCatchesUp(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	srv := fake(t, hubspottest.WithClock(clock), hubspottest.WithSearchLag(time.Second, time.Second))
	id := srv.Seed("contacts", map[string]string{"email": "a@example.com", "firstname": "Old"})[0]
	search := func() []any {
		r := call(t, srv, "POST", "/crm/v3/objects/contacts/search", srv.Token, map[string]any{"properties": []string{"firstname"}})
		res, _ := r.body["results"].([]any)
		return res
	}
	n := len(search())
	require.Equal(t, 0, n, "search before the lag = %d results", n)
	now = now.Add(time.Second)
	n = len(search())
	require.Equal(t, 1, n, "search after the lag = %d results", n)
	require.NoError(t, srv.Edit("contacts", id, map[string]string{"firstname": "New"}))
	first := func() any { return search()[0].(map[string]any)["properties"].(map[string]any)["firstname"] }
	v := first()
	require.Equal(t, "Old", v, "search during the lag = %v, want the stale Old", v)
	g := call(t, srv, "GET", "/crm/v3/objects/contacts/"+id+"?properties=firstname", srv.Token)
	require.Equal(t, "New", g.body["properties"].(map[string]any)["firstname"], "GET during the lag = %v, want New at once", g.body)
	now = now.Add(time.Second)
	v = first()
	require.Equal(t, "New", v, "search after the lag = %v", v)
}

// A record search saw when SettleSearch ran stays listed, stale, while a
// later write waits for the index: settling does not make search forget
// what it had indexed.
func TestSearchLagAfterSettleIsStaleNotAbsent(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	srv := fake(t, hubspottest.WithClock(clock), hubspottest.WithSearchLag(time.Minute, time.Minute))
	id := srv.Seed("contacts", map[string]string{"email": "a@example.com", "firstname": "Old"})[0]
	search := func() []any {
		r := call(t, srv, "POST", "/crm/v3/objects/contacts/search", srv.Token, map[string]any{"properties": []string{"firstname"}})
		res, _ := r.body["results"].([]any)
		return res
	}
	require.Empty(t, search(), "search before the lag")
	srv.SettleSearch()
	require.Len(t, search(), 1, "search after SettleSearch")
	require.NoError(t, srv.Edit("contacts", id, map[string]string{"firstname": "New"}))
	res := search()
	require.Len(t, res, 1, "search during the lag of a write after SettleSearch: the record is listed")
	assert.Equal(t, "Old", res[0].(map[string]any)["properties"].(map[string]any)["firstname"], "search during the lag shows the stale state")
	now = now.Add(time.Minute)
	res = search()
	require.Len(t, res, 1, "search after the lag")
	assert.Equal(t, "New", res[0].(map[string]any)["properties"].(map[string]any)["firstname"], "search after the lag shows the write")
}
