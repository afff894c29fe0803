package salesforcetest

import (
	"encoding/json"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// postmanDir returns Salesforce's Postman request collection in ../shared/specs
// beside the repository, or skips the test.
func postmanDir(t *testing.T) string {
	t.Helper()
	dir := filepath.Join("..", "..", "..", "shared", "specs", "salesforce", "postman", "salesforce_apis")
	if _, err := os.Stat(dir); err != nil {
		t.Skipf("Salesforce Postman collection not found at %s (shared/specs is not beside the repository): %v", dir, err)
	}
	return dir
}

// TestPostmanRequests replays requests of Salesforce's Postman collection
// against the fake: every one the fake covers must be answered on its path.
func TestPostmanRequests(t *testing.T) {
	dir := postmanDir(t)
	s, clk := newFake(t)
	ids := s.SeedN(3)
	clk.Advance(time.Hour)
	require.NoError(t, s.Delete(ids[2]))
	start := url.QueryEscape(clk.Now().Add(-2 * time.Hour).Format(time.RFC3339))
	end := url.QueryEscape(clk.Now().Format(time.RFC3339))
	tests := []struct {
		file string
		fill func(string) string
		body string
	}{
		{"rest/query.json", func(u string) string { return strings.Replace(u, "name+from+Account", "Id+from+Contact", 1) }, ""},
		{"rest/queryall.json", func(u string) string { return strings.Replace(u, "name+from+Account", "Id+from+Contact", 1) }, ""},
		{"rest/sobject_describe.json", nil, ""},
		{"rest/sobject_rows.json", nil, ""},
		{"rest/limit.json", nil, ""},
		{"rest/versions.json", nil, ""},
		{"rest/sobject_get_deleted.json", func(u string) string {
			return strings.Replace(u, "start=&end=", "start="+start+"&end="+end, 1)
		}, ""},
		{"composite/sobject_collections_create.json", nil, `{"allOrNone":false,"records":[{"attributes":{"type":"Contact"},"LastName":"Postman"}]}`},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			b, err := os.ReadFile(filepath.Join(dir, tt.file))
			require.NoError(t, err)
			var req struct {
				Method string `json:"method"`
				URL    string `json:"url"`
			}
			require.NoError(t, json.Unmarshal(b, &req))
			u := strings.NewReplacer("{{_endpoint}}", "", "{{version}}", "66.0", "<SOBJECT_API_NAME>", "Contact", "<RECORD_ID>", ids[0]).Replace(req.URL)
			if tt.fill != nil {
				u = tt.fill(u)
			}
			st, _, v := call(t, s, req.Method, u, tt.body, nil)
			require.Equal(t, http.StatusOK, st, "%s %s = %d %v", req.Method, u, st, v)
		})
	}
}

// keysOf returns the keys of a JSON object.
func keysOf(t *testing.T, v any) map[string]bool {
	t.Helper()
	m, ok := v.(map[string]any)
	require.True(t, ok, "not a JSON object: %T", v)
	out := map[string]bool{}
	for k := range m {
		out[k] = true
	}
	return out
}

func readJSON(t *testing.T, path string) any {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	var v any
	require.NoError(t, json.Unmarshal(b, &v))
	return v
}

// TestShapesMatchRecordings checks that the fake's bodies use the keys of
// recorded Salesforce responses, and invents none.
func TestShapesMatchRecordings(t *testing.T) {
	dir := filepath.Join(postmanDir(t), "..", "..", "fixtures", "restforce")
	s, _ := newFake(t)
	ids := s.SeedN(2001)
	subset := func(name string, got, want map[string]bool, extra ...string) {
		t.Helper()
		for _, e := range extra {
			want[e] = true
		}
		for k := range got {
			assert.True(t, want[k], "%s: the fake sends key %q that the recording lacks", name, k)
		}
	}
	// Query pages.
	_, v := query(t, s, "SELECT Id FROM Contact")
	subset("query", keysOf(t, v), keysOf(t, readJSON(t, filepath.Join(dir, "query_paginated_first_page_response.json"))))
	rec := v.(map[string]any)["records"].([]any)[0]
	rrec := readJSON(t, filepath.Join(dir, "query_paginated_first_page_response.json")).(map[string]any)["records"].([]any)[0]
	subset("query record attributes", keysOf(t, rec.(map[string]any)["attributes"]), keysOf(t, rrec.(map[string]any)["attributes"]))
	// Errors.
	_, v = query(t, s, "SELECT Nope FROM Contact")
	subset("error", keysOf(t, v.([]any)[0]), keysOf(t, readJSON(t, filepath.Join(dir, "query_error_response.json")).([]any)[0]), "fields")
	// Describe fields.
	_, _, v = call(t, s, "GET", "/services/data/v66.0/sobjects/Contact/describe", "", nil)
	recorded := readJSON(t, filepath.Join(dir, "sobject_describe_success_response.json"))
	rfield := keysOf(t, recorded.(map[string]any)["fields"].([]any)[0])
	for _, f := range v.(map[string]any)["fields"].([]any) {
		subset("describe field", keysOf(t, f), rfield)
	}
	// Retrieve: the recorded record has the same system fields.
	_, _, v = call(t, s, "GET", "/services/data/v66.0/sobjects/Contact/"+ids[0], "", nil)
	got := keysOf(t, v)
	for _, k := range []string{"attributes", "Id", "IsDeleted"} {
		assert.True(t, got[k], "retrieve: key %s missing from the fake or the recording", k)
		assert.True(t, keysOf(t, readJSON(t, filepath.Join(dir, "sobject_find_success_response.json")))[k], "retrieve: key %s missing from the fake or the recording", k)
	}
	// Token.
	resp, err := http.PostForm(s.URL+"/services/oauth2/token", url.Values{"grant_type": {"refresh_token"}, "client_id": {"fake-client-id"}, "refresh_token": {"fake-refresh-token"}})
	require.NoError(t, err)
	defer resp.Body.Close()
	var tok any
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&tok))
	subset("token", keysOf(t, tok), keysOf(t, readJSON(t, filepath.Join(dir, "auth_success_response.json"))), "token_type", "scope")
	// getDeleted.
	now := time.Now()
	_, _, v = call(t, s, "GET", "/services/data/v66.0/sobjects/Contact/deleted/?start="+url.QueryEscape(now.Add(-time.Hour).Format(time.RFC3339))+"&end="+url.QueryEscape(now.Format(time.RFC3339)), "", nil)
	subset("getDeleted", keysOf(t, v), keysOf(t, readJSON(t, filepath.Join(dir, "get_deleted_success_response.json"))))
}
