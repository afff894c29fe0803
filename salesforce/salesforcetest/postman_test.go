package salesforcetest

import (
	"encoding/json"
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
	if err := s.Delete(ids[2]); err != nil {
		t.Fatal(err)
	}
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
			if err != nil {
				t.Fatal(err)
			}
			var req struct {
				Method string `json:"method"`
				URL    string `json:"url"`
			}
			if err := json.Unmarshal(b, &req); err != nil {
				t.Fatal(err)
			}
			u := strings.NewReplacer("{{_endpoint}}", "", "{{version}}", "66.0", "<SOBJECT_API_NAME>", "Contact", "<RECORD_ID>", ids[0]).Replace(req.URL)
			if tt.fill != nil {
				u = tt.fill(u)
			}
			st, _, v := call(t, s, req.Method, u, tt.body, nil)
			if st != http.StatusOK {
				t.Fatalf("%s %s = %d %v", req.Method, u, st, v)
			}
		})
	}
}
