package salesforcetest

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/internal/clocktest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func newFake(t *testing.T, opts ...func(*Config)) (*Server, *clocktest.Clock) {
	clk := clocktest.New(time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC))
	s := NewServer(t, append([]func(*Config){func(c *Config) { c.Now = clk.Now }}, opts...)...)
	return s, clk
}

// call sends a request with the fake's static token and decodes the JSON answer.
func call(t *testing.T, s *Server, method, path string, body string, hdr map[string]string) (int, http.Header, any) {
	t.Helper()
	req, err := http.NewRequest(method, s.URL+path, strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+s.Token())
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var v any
	if len(b) > 0 {
		require.NoError(t, json.Unmarshal(b, &v), "%s %s: body %q is not JSON", method, path, b)
	}
	return resp.StatusCode, resp.Header, v
}

func query(t *testing.T, s *Server, soql string) (int, any) {
	t.Helper()
	st, _, v := call(t, s, "GET", "/services/data/v66.0/query?q="+url.QueryEscape(soql), "", nil)
	return st, v
}

func errorCode(v any) string {
	arr, ok := v.([]any)
	if !ok || len(arr) == 0 {
		return ""
	}
	m, _ := arr[0].(map[string]any)
	code, _ := m["errorCode"].(string)
	return code
}

func TestID18(t *testing.T) {
	got := id18("001A0000006Vm9r")
	require.Equal(t, "001A0000006Vm9rIAC", got, "id18 = %s, want 001A0000006Vm9rIAC", got)
	id := newID(12345)
	require.Equal(t, 18, len(id), "newID = %s", id)
	require.True(t, strings.HasPrefix(id, "003"), "newID = %s", id)
	require.Equal(t, id, id18(id[:15]), "newID = %s", id)
}

func TestSOQLSubset(t *testing.T) {
	s, clk := newFake(t)
	a := s.Seed(crmsync.Fields{"LastName": "Alpha", "Email": "a@example.com", "Score__c": 10.0, "Title": `it's "q" \ x`})
	clk.Advance(time.Second)
	b := s.Seed(crmsync.Fields{"LastName": "Beta", "Email": "b@example.com", "Score__c": 20.0, "DoNotCall": true})
	clk.Advance(time.Second)
	c := s.Seed(crmsync.Fields{"LastName": "Gamma", "Score__c": 30.0})
	mid := "2026-03-02T09:00:01.000Z"
	tests := []struct {
		where string
		want  []string
	}{
		{"", []string{a[0], b[0], c[0]}},
		{"Email = 'A@EXAMPLE.COM'", []string{a[0]}},
		{"Email != null", []string{a[0], b[0]}},
		{"Email = null", []string{c[0]}},
		{"Email IN ('b@example.com', 'x@example.com')", []string{b[0]}},
		{"Email NOT IN ('b@example.com')", []string{a[0], c[0]}},
		{"Score__c > 10 AND Score__c <= 30", []string{b[0], c[0]}},
		{"(Score__c < 15 OR Score__c > 25) AND LastName != 'Gamma'", []string{a[0]}},
		{"NOT (DoNotCall = true)", []string{a[0], c[0]}},
		{"SystemModstamp >= " + mid, []string{b[0], c[0]}},
		{"SystemModstamp > 2026-03-02T09:00:01.000+00:00", []string{c[0]}},
		{"SystemModstamp < " + mid + " OR (SystemModstamp = " + mid + " AND Id > '" + b[0] + "')", []string{a[0]}},
		{"Title = 'it\\'s \\\"q\\\" \\\\ x'", []string{a[0]}},
		{"Id IN ('" + c[0] + "')", []string{c[0]}},
	}
	for _, tt := range tests {
		t.Run(tt.where, func(t *testing.T) {
			q := "SELECT Id, Email FROM Contact"
			if tt.where != "" {
				q += " WHERE " + tt.where
			}
			st, v := query(t, s, q+" ORDER BY SystemModstamp, Id")
			require.Equal(t, 200, st, "status %d: %v", st, v)
			var got []string
			for _, r := range v.(map[string]any)["records"].([]any) {
				got = append(got, r.(map[string]any)["Id"].(string))
			}
			require.Equal(t, fmt.Sprint(tt.want), fmt.Sprint(got), "ids = %v, want %v", got, tt.want)
		})
	}
	st, v := query(t, s, "SELECT Id FROM Contact ORDER BY Score__c DESC LIMIT 2")
	recs := v.(map[string]any)["records"].([]any)
	if st != 200 || len(recs) != 2 || recs[0].(map[string]any)["Id"] != c[0] {
		t.Fatalf("ORDER BY DESC LIMIT = %d %v", st, v)
	}
	bad := map[string]string{
		"SELECT FROM Contact":                             "MALFORMED_QUERY",
		"SELECT Id FROM Contact WHERE Email = 'x":         "MALFORMED_QUERY",
		"SELECT Id FROM Contact WHERE Email = 'a\\qb'":    "MALFORMED_QUERY",
		"SELECT Id FROM Contact WHERE Score__c = 'x'":     "MALFORMED_QUERY",
		"SELECT Id FROM Contact WHERE Email = 'x' AND":    "MALFORMED_QUERY",
		"SELECT Nope__c FROM Contact":                     "INVALID_FIELD",
		"SELECT Id FROM Contact WHERE Nope__c = 1":        "INVALID_FIELD",
		"SELECT Id FROM Case":                             "INVALID_TYPE",
		"SELECT Id FROM Contact WHERE Email = 'x' 'y'":    "MALFORMED_QUERY",
		"SELECT Id FROM Contact WHERE SystemModstamp > 1": "MALFORMED_QUERY",
	}
	for q, code := range bad {
		if st, v := query(t, s, q); st != 400 || errorCode(v) != code {
			t.Errorf("%s = %d %v, want 400 %s", q, st, v, code)
		}
	}
}

func TestQueryAllAndBatchSize(t *testing.T) {
	s, _ := newFake(t)
	ids := s.SeedN(2500)
	require.NoError(t, s.Delete(ids[0]))
	_, v := query(t, s, "SELECT Id FROM Contact")
	m := v.(map[string]any)
	if m["totalSize"] != 2499.0 || len(m["records"].([]any)) != 2000 || m["done"] != false {
		t.Fatalf("default batch: total %v, %d records", m["totalSize"], len(m["records"].([]any)))
	}
	next := m["nextRecordsUrl"].(string)
	require.True(t, strings.HasPrefix(next, "/services/data/v66.0/query/01g"), "nextRecordsUrl = %s", next)
	require.True(t, strings.HasSuffix(next, "-2000"), "nextRecordsUrl = %s", next)
	_, _, v = call(t, s, "GET", next, "", nil)
	if m := v.(map[string]any); len(m["records"].([]any)) != 499 || m["done"] != true {
		t.Fatalf("second page = %v records", len(m["records"].([]any)))
	}
	for size, want := range map[string]int{"300": 300, "50": 200, "9000": 2000} {
		_, _, v := call(t, s, "GET", "/services/data/v66.0/query?q="+url.QueryEscape("SELECT Id FROM Contact"), "", map[string]string{"Sforce-Query-Options": "batchSize=" + size})
		got := len(v.(map[string]any)["records"].([]any))
		assert.Equal(t, want, got, "batchSize=%s: %d records, want %d", size, got, want)
	}
	_, _, v = call(t, s, "GET", "/services/data/v66.0/queryAll?q="+url.QueryEscape("SELECT Id, IsDeleted FROM Contact WHERE IsDeleted = true"), "", nil)
	recs := v.(map[string]any)["records"].([]any)
	if len(recs) != 1 || recs[0].(map[string]any)["Id"] != ids[0] || recs[0].(map[string]any)["IsDeleted"] != true {
		t.Fatalf("queryAll deleted = %v", recs)
	}
	s.ExpireQueryLocators()
	if st, _, v := call(t, s, "GET", next, "", nil); st != 400 || errorCode(v) != "INVALID_QUERY_LOCATOR" {
		t.Fatalf("expired locator = %d %v", st, v)
	}
}

func TestAuthAndLimits(t *testing.T) {
	s, _ := newFake(t, func(c *Config) { c.DailyLimit = 3 })
	req, _ := http.NewRequest("GET", s.URL+"/services/data/v66.0/limits", nil)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, 401, resp.StatusCode, "no bearer = %d, want 401", resp.StatusCode)
	st, h, v := call(t, s, "GET", "/services/data/v66.0/limits", "", nil)
	require.Equal(t, 200, st, "limits = %d %q", st, h.Get("Sforce-Limit-Info"))
	require.Equal(t, "api-usage=1/3", h.Get("Sforce-Limit-Info"), "limits = %d %q", st, h.Get("Sforce-Limit-Info"))
	d := v.(map[string]any)["DailyApiRequests"].(map[string]any)
	require.Equal(t, 3.0, d["Max"], "DailyApiRequests = %v", d)
	require.Equal(t, 2.0, d["Remaining"], "DailyApiRequests = %v", d)
	call(t, s, "GET", "/services/data/v66.0/limits", "", nil)
	call(t, s, "GET", "/services/data/v66.0/limits", "", nil)
	st, h, v = call(t, s, "GET", "/services/data/v66.0/limits", "", nil)
	require.Equal(t, 403, st, "past the allocation = %d %v %q", st, v, h.Get("Sforce-Limit-Info"))
	require.Equal(t, "REQUEST_LIMIT_EXCEEDED", errorCode(v), "past the allocation = %d %v %q", st, v, h.Get("Sforce-Limit-Info"))
	require.Equal(t, "api-usage=3/3", h.Get("Sforce-Limit-Info"), "past the allocation = %d %v %q", st, v, h.Get("Sforce-Limit-Info"))
	st, _, _ = call(t, s, "GET", "/services/data/v66/limits", "", nil)
	assert.Equal(t, 404, st, "bad version = %d, want 404", st)
	assert.Equal(t, 6, s.Calls()["limits"], "Calls = %v", s.Calls())
}

func TestTokenGrants(t *testing.T) {
	s, clk := newFake(t, func(c *Config) { c.Username = "u@example.com" })
	post := func(form url.Values) (int, map[string]any) {
		resp, err := http.PostForm(s.URL+"/services/oauth2/token", form)
		require.NoError(t, err)
		defer resp.Body.Close()
		var m map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&m)
		return resp.StatusCode, m
	}
	st, m := post(url.Values{"grant_type": {"client_credentials"}, "client_id": {"fake-client-id"}, "client_secret": {"fake-client-secret"}})
	if st != 200 || m["instance_url"] != s.URL || m["access_token"] == "" {
		t.Fatalf("client_credentials = %d %v", st, m)
	}
	st, _ = post(url.Values{"grant_type": {"password"}})
	assert.Equal(t, 400, st, "password grant = %d, want 400", st)
	jwt := func(claims string) string {
		e := base64.RawURLEncoding
		return e.EncodeToString([]byte(`{"alg":"RS256"}`)) + "." + e.EncodeToString([]byte(claims)) + "." + e.EncodeToString([]byte("sig"))
	}
	exp := clk.Now().Unix()
	for claims, want := range map[string]int{
		fmt.Sprintf(`{"iss":"fake-client-id","sub":"u@example.com","aud":"https://login.salesforce.com","exp":%d}`, exp+60):  200,
		fmt.Sprintf(`{"iss":"fake-client-id","sub":"u@example.com","aud":"https://login.salesforce.com","exp":%d}`, exp+600): 400,
		fmt.Sprintf(`{"iss":"fake-client-id","sub":"u@example.com","aud":"https://login.salesforce.com","exp":%d}`, exp-1):   400,
		fmt.Sprintf(`{"iss":"other","sub":"u@example.com","aud":"https://login.salesforce.com","exp":%d}`, exp+60):           400,
		fmt.Sprintf(`{"iss":"fake-client-id","sub":"u@example.com","aud":"https://evil.example","exp":%d}`, exp+60):          400,
	} {
		st, m := post(url.Values{"grant_type": {"urn:ietf:params:oauth:grant-type:jwt-bearer"}, "assertion": {jwt(claims)}})
		assert.Equal(t, want, st, "jwt %s = %d %v, want %d", claims, st, m, want)
	}
	st, m = post(url.Values{"grant_type": {"refresh_token"}, "client_id": {"fake-client-id"}, "refresh_token": {"fake-refresh-token"}})
	require.Equal(t, 200, st, "refresh = %d %v", st, m)
	tok := m["access_token"].(string)
	s.ExpireSessions()
	req, _ := http.NewRequest("GET", s.URL+"/services/data/v66.0/limits", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, 401, resp.StatusCode, "expired token = %d, want 401", resp.StatusCode)
}

func TestCollections(t *testing.T) {
	s, clk := newFake(t)
	ids := s.SeedN(2)
	body := func(allOrNone bool, recs ...string) string {
		return fmt.Sprintf(`{"allOrNone":%v,"records":[%s]}`, allOrNone, strings.Join(recs, ","))
	}
	c := `{"attributes":{"type":"Contact"},`
	clk.Advance(time.Second)
	st, _, v := call(t, s, "POST", "/services/data/v66.0/composite/sobjects", body(false,
		c+`"LastName":"Ok","Email":"ok@example.com"}`,
		c+`"Email":"nolast@example.com"}`,
		c+`"LastName":"Pick","Lifecycle_Stage__c":"nope"}`,
		c+`"LastName":"Mail","Email":"not-an-email"}`,
		c+`"LastName":"Sys","SystemModstamp":"2020-01-01T00:00:00.000+0000"}`,
	), nil)
	require.Equal(t, 200, st, "create = %d %v", st, v)
	res := v.([]any)
	codes := []string{}
	for _, r := range res {
		m := r.(map[string]any)
		if m["success"] == true {
			codes = append(codes, "ok")
			continue
		}
		codes = append(codes, m["errors"].([]any)[0].(map[string]any)["statusCode"].(string))
	}
	want := "[ok REQUIRED_FIELD_MISSING INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST INVALID_EMAIL_ADDRESS INVALID_FIELD_FOR_INSERT_UPDATE]"
	require.Equal(t, want, fmt.Sprint(codes), "codes = %v, want %s", codes, want)
	newID := res[0].(map[string]any)["id"].(string)
	rec, ok := s.Get(newID)
	require.True(t, ok, "created record = %+v", rec)
	require.True(t, rec.ModifiedAt.Equal(clk.Now()), "created record = %+v", rec)
	require.Equal(t, "2026-03-02T09:00:01.000+0000", rec.Fields["SystemModstamp"], "created record = %+v", rec)

	// allOrNone rolls everything back.
	before := len(s.All())
	_, _, v = call(t, s, "POST", "/services/data/v66.0/composite/sobjects", body(true, c+`"LastName":"A"}`, c+`"Email":"x@example.com"}`), nil)
	first := v.([]any)[0].(map[string]any)["errors"].([]any)[0].(map[string]any)["statusCode"]
	require.Equal(t, "ALL_OR_NONE_OPERATION_ROLLED_BACK", first, "allOrNone: %v, %d records (want %d)", first, len(s.All()), before)
	require.Len(t, s.All(), before, "allOrNone: %v, %d records (want %d)", first, len(s.All()), before)

	// Over 200 records: the whole call is refused.
	var many []string
	for range 201 {
		many = append(many, c+`"LastName":"M"}`)
	}
	if st, _, v := call(t, s, "POST", "/services/data/v66.0/composite/sobjects", body(false, many...), nil); st != 400 || errorCode(v) != "EXCEEDED_ID_LIMIT" {
		t.Fatalf("201 records = %d %v", st, v)
	}
	if st, _, v := call(t, s, "POST", "/services/data/v66.0/composite/sobjects", `{"records":[{"LastName":"x"}]}`, nil); st != 400 || errorCode(v) != "INVALID_TYPE" {
		t.Fatalf("no attributes = %d %v", st, v)
	}
	if st, _, v := call(t, s, "POST", "/services/data/v66.0/composite/sobjects", `{"records":[`, nil); st != 400 || errorCode(v) != "JSON_PARSER_ERROR" {
		t.Fatalf("bad json = %d %v", st, v)
	}

	// Update: unknown, deleted, malformed ids; injected failures.
	require.NoError(t, s.Delete(ids[1]))
	s.FailRecords("UNABLE_TO_LOCK_ROW", "locked", 1, "contact1@example.com")
	_, _, v = call(t, s, "PATCH", "/services/data/v66.0/composite/sobjects", body(false,
		c+`"id":"`+ids[0]+`","Title":"x"}`,
		c+`"id":"`+ids[1]+`","Title":"x"}`,
		c+`"id":"bad","Title":"x"}`,
		c+`"id":"003Fk0000000999AAA","Title":"x"}`,
		c+`"id":"`+ids[0]+`","Title":"y"}`,
	), nil)
	codes = codes[:0]
	for _, r := range v.([]any) {
		m := r.(map[string]any)
		if m["success"] == true {
			codes = append(codes, "ok")
			continue
		}
		codes = append(codes, m["errors"].([]any)[0].(map[string]any)["statusCode"].(string))
	}
	got := fmt.Sprint(codes)
	require.Equal(t, "[UNABLE_TO_LOCK_ROW ENTITY_IS_DELETED MALFORMED_ID INVALID_CROSS_REFERENCE_KEY ok]", got, "update codes = %s", got)

	// Upsert: created, then matched; duplicates in one call fail both.
	up := "/services/data/v66.0/composite/sobjects/Contact/HubSpot_Id__c"
	_, _, v = call(t, s, "PATCH", up, body(false, c+`"HubSpot_Id__c":"h1","LastName":"U"}`), nil)
	m := v.([]any)[0].(map[string]any)
	require.Equal(t, true, m["created"], "upsert create = %v", m)
	require.Equal(t, true, m["success"], "upsert create = %v", m)
	_, _, v = call(t, s, "PATCH", up, body(false, c+`"HubSpot_Id__c":"H1","Title":"T"}`, c+`"HubSpot_Id__c":"d","LastName":"D"}`, c+`"HubSpot_Id__c":"d","LastName":"D"}`), nil)
	r := v.([]any)
	m = r[0].(map[string]any)
	require.Equal(t, false, m["created"], "upsert match = %v", m)
	require.Equal(t, true, m["success"], "upsert match = %v", m)
	for _, i := range []int{1, 2} {
		code := r[i].(map[string]any)["errors"].([]any)[0].(map[string]any)["statusCode"]
		assert.Equal(t, "DUPLICATE_EXTERNAL_ID", code, "duplicate ext id %d = %v", i, code)
	}
	st, _, v = call(t, s, "PATCH", "/services/data/v66.0/composite/sobjects/Contact/Email", body(false, c+`"Email":"a@b.co","LastName":"x"}`), nil)
	require.Equal(t, 404, st, "upsert on non-external field = %d %v", st, v)
	require.Equal(t, "NOT_FOUND", errorCode(v), "upsert on non-external field = %d %v", st, v)
}

func TestDescribeRetrieveDeleted(t *testing.T) {
	s, clk := newFake(t, func(c *Config) { c.ExternalIDField = "Ext_Id__c" })
	ids := s.SeedN(1)
	st, _, v := call(t, s, "GET", "/services/data/v66.0/sobjects/Contact/describe", "", nil)
	if st != 200 {
		t.Fatal(st)
	}
	found := false
	for _, f := range v.(map[string]any)["fields"].([]any) {
		m := f.(map[string]any)
		if m["name"] == "Ext_Id__c" {
			found = m["externalId"] == true && m["unique"] == true
		}
	}
	require.True(t, found, "describe lacks the configured external id field")
	st, _, v = call(t, s, "GET", "/services/data/v66.0/sobjects/Contact/"+ids[0]+"?fields=Email,Id", "", nil)
	if m := v.(map[string]any); st != 200 || m["Email"] != "contact1@example.com" || m["attributes"] == nil {
		t.Fatalf("retrieve = %d %v", st, v)
	}
	if st, _, _ := call(t, s, "GET", "/services/data/v66.0/sobjects/Contact/003Fk0000000999AAA", "", nil); st != 404 {
		t.Fatalf("retrieve unknown = %d", st)
	}
	clk.Advance(time.Hour)
	require.NoError(t, s.Delete(ids[0]))
	start := clk.Now().Add(-2 * time.Hour).Format(time.RFC3339)
	end := clk.Now().Add(time.Minute).Format(time.RFC3339)
	st, _, v = call(t, s, "GET", "/services/data/v66.0/sobjects/Contact/deleted/?start="+url.QueryEscape(start)+"&end="+url.QueryEscape(end), "", nil)
	m := v.(map[string]any)
	require.Equal(t, 200, st, "getDeleted = %d %v", st, v)
	require.Len(t, m["deletedRecords"].([]any), 1, "getDeleted = %d %v", st, v)
	require.NotEmpty(t, m["earliestDateAvailable"], "getDeleted = %d %v", st, v)
}

func TestFaultsAndServe(t *testing.T) {
	s, err := New(Config{Seed: 3})
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	defer func() {
		cancel()
		assert.NoError(t, <-done, "Serve")
	}()
	s.URL = "http://" + ln.Addr().String()
	s.Inject(Fault{Endpoint: "limits", Status: 503, Times: 2})
	for i, want := range []int{503, 503, 200} {
		st, _, _ := call(t, s, "GET", "/services/data/v66.0/limits", "", nil)
		assert.Equal(t, want, st, "call %d = %d, want %d", i, st, want)
	}
	n := len(s.All())
	assert.Equal(t, 3, n, "seeded %d, want 3", n)
	// A hanging request ends when the server closes.
	s.Inject(Fault{Endpoint: "limits", Hang: true})
	go func() {
		time.Sleep(50 * time.Millisecond)
		s.Close()
	}()
	req, _ := http.NewRequest("GET", s.URL+"/services/data/v66.0/limits", nil)
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
	}
	_, err = New(Config{DailyLimit: -1})
	if assert.Error(t, err, "New(negative)") {
		assert.Contains(t, err.Error(), "DailyLimit", "New(negative) = %v", err)
	}
	_, err = New(Config{ExternalIDField: "Email"})
	if assert.Error(t, err, "New(bad ext field)") {
		assert.Contains(t, err.Error(), "ExternalIDField", "New(bad ext field) = %v", err)
	}
}
