package hubspottest_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"

	"github.com/crmsync/crmsync/hubspot/hubspottest"
	"github.com/stretchr/testify/require"
)

// benchFake returns a fake without limits holding n seeded contacts
// (ids 101.., emails contact101@example.com..) and its handler.
func benchFake(b *testing.B, n int) http.Handler {
	b.Helper()
	s, err := hubspottest.New(hubspottest.Config{RateLimit: -1, SearchRateLimit: -1, DailyLimit: -1})
	require.NoError(b, err)
	s.SeedContacts(n)
	return s.Handler()
}

func serve(b *testing.B, h http.Handler, path string, body any) map[string]any {
	b.Helper()
	raw, err := json.Marshal(body)
	require.NoError(b, err)
	req := httptest.NewRequest(http.MethodPost, path, bytes.NewReader(raw))
	req.Header.Set("Authorization", "Bearer "+hubspottest.DefaultToken)
	req.Header.Set("Content-Type", "application/json")
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	require.Less(b, w.Code, 300, "%s: status %d: %s", path, w.Code, w.Body.String())
	var out map[string]any
	require.NoError(b, json.Unmarshal(w.Body.Bytes(), &out))
	return out
}

// BenchmarkUpsert10k upserts a batch of 100 existing contacts by email in a
// portal of 10,000.
func BenchmarkUpsert10k(b *testing.B) {
	const n = 10_000
	h := benchFake(b, n)
	var inputs []map[string]any
	for i := range 100 {
		k := 101 + n - 1 - i*37
		inputs = append(inputs, map[string]any{
			"id": "contact" + strconv.Itoa(k) + "@example.com", "idProperty": "email",
			"properties": map[string]string{"firstname": "Bench" + strconv.Itoa(i)},
		})
	}
	body := map[string]any{"inputs": inputs}
	b.ResetTimer()
	for range b.N {
		out := serve(b, h, "/crm/v3/objects/contacts/batch/upsert", body)
		got := len(out["results"].([]any))
		require.Equal(b, 100, got, "results = %d, want 100", got)
	}
}

// BenchmarkSearchKeyset10k pages through 10,000 contacts as the client does:
// lastmodifieddate GTE since and hs_object_id GT the last id, sorted by
// hs_object_id, 200 a page. One iteration is a whole pass (50 searches).
func BenchmarkSearchKeyset10k(b *testing.B) {
	const n = 10_000
	h := benchFake(b, n)
	b.ResetTimer()
	for range b.N {
		last, seen := "", 0
		for {
			filters := []map[string]any{{"propertyName": "lastmodifieddate", "operator": "GTE", "value": "1000"}} // 1 s past the epoch: HubSpot answers a filter at the epoch with 500
			if last != "" {
				filters = append(filters, map[string]any{"propertyName": "hs_object_id", "operator": "GT", "value": last})
			}
			out := serve(b, h, "/crm/v3/objects/contacts/search", map[string]any{
				"filterGroups": []any{map[string]any{"filters": filters}},
				"sorts":        []any{map[string]any{"propertyName": "hs_object_id", "direction": "ASCENDING"}},
				"properties":   []string{"email", "firstname", "lastname"},
				"limit":        200,
			})
			res := out["results"].([]any)
			seen += len(res)
			if len(res) == 0 || out["paging"] == nil {
				break
			}
			last = res[len(res)-1].(map[string]any)["id"].(string)
		}
		require.Equal(b, n, seen, "saw %d contacts, want %d", seen, n)
	}
}
