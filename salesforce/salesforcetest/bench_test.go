package salesforcetest_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/salesforce/salesforcetest"
	"github.com/stretchr/testify/require"
)

// benchOrg returns an org of n contacts, each with an external id hs-K and
// email contactK@example.com, stamped a millisecond apart, and its handler.
func benchOrg(b *testing.B, n int) (*salesforcetest.Server, http.Handler) {
	b.Helper()
	var tick atomic.Int64
	start := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	s, err := salesforcetest.New(salesforcetest.Config{DailyLimit: 1 << 40,
		Now: func() time.Time { return start.Add(time.Duration(tick.Add(1)) * time.Millisecond) }})
	require.NoError(b, err)
	fs := make([]crmsync.Fields, n)
	for i := range fs {
		fs[i] = crmsync.Fields{"LastName": fmt.Sprintf("Last%d", i), "Email": fmt.Sprintf("contact%d@example.com", i),
			"HubSpot_Id__c": fmt.Sprintf("hs-%d", i)}
	}
	s.Seed(fs...)
	return s, s.Handler()
}

func sfServe(b *testing.B, h http.Handler, method, path, body string) []byte {
	b.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer fake-salesforce-token")
	req.Header.Set("Content-Type", "application/json")
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	require.Equal(b, http.StatusOK, w.Code, "%s: status %d: %s", path, w.Code, w.Body.String())
	return w.Body.Bytes()
}

// BenchmarkUpsert10k upserts 200 existing contacts by external id in an org
// of 10,000.
func BenchmarkUpsert10k(b *testing.B) {
	const n = 10_000
	_, h := benchOrg(b, n)
	var recs []string
	for i := range 200 {
		k := n - 1 - i*37
		recs = append(recs, fmt.Sprintf(`{"attributes":{"type":"Contact"},"HubSpot_Id__c":"hs-%d","LastName":"Bench%d","Email":"contact%d@example.com"}`, k, i, k))
	}
	body := `{"allOrNone":false,"records":[` + strings.Join(recs, ",") + `]}`
	b.ResetTimer()
	for range b.N {
		raw := sfServe(b, h, http.MethodPatch, "/services/data/v60.0/composite/sobjects/Contact/HubSpot_Id__c", body)
		var res []struct {
			Success bool `json:"success"`
		}
		err := json.Unmarshal(raw, &res)
		require.NoError(b, err, "upsert: %v %s", err, raw[:min(len(raw), 300)])
		require.Len(b, res, 200, "upsert: %v %s", err, raw[:min(len(raw), 300)])
		require.True(b, res[0].Success, "upsert: %v %s", err, raw[:min(len(raw), 300)])
		require.True(b, res[199].Success, "upsert: %v %s", err, raw[:min(len(raw), 300)])
	}
}

func querySize(b *testing.B, raw []byte) int {
	b.Helper()
	var out struct {
		TotalSize int `json:"totalSize"`
	}
	require.NoError(b, json.Unmarshal(raw, &out))
	return out.TotalSize
}

// BenchmarkQueryIn200Of10k looks up 200 emails with one IN query in an org
// of 10,000.
func BenchmarkQueryIn200Of10k(b *testing.B) {
	const n = 10_000
	_, h := benchOrg(b, n)
	var vals []string
	for i := range 200 {
		vals = append(vals, fmt.Sprintf("'Contact%d@Example.com'", n-1-i*37))
	}
	q := "SELECT Id, Email, HubSpot_Id__c FROM Contact WHERE Email IN (" + strings.Join(vals, ", ") + ")"
	path := "/services/data/v60.0/query?q=" + url.QueryEscape(q)
	b.ResetTimer()
	for range b.N {
		got := querySize(b, sfServe(b, h, http.MethodGet, path, ""))
		require.Equal(b, 200, got, "totalSize = %d, want 200", got)
	}
}

// BenchmarkChanges10k runs the client's change query (window on
// SystemModstamp, ordered by SystemModstamp and Id) over 10,000 contacts.
func BenchmarkChanges10k(b *testing.B) {
	const n = 10_000
	_, h := benchOrg(b, n)
	q := "SELECT Id, SystemModstamp, IsDeleted, Email, LastName FROM Contact WHERE SystemModstamp >= 2026-03-02T09:00:00.000+0000" +
		" AND (SystemModstamp > 2026-03-02T09:00:00.000+0000 OR (SystemModstamp = 2026-03-02T09:00:00.000+0000 AND Id > '003'))" +
		" ORDER BY SystemModstamp, Id LIMIT 2000"
	path := "/services/data/v60.0/query?q=" + url.QueryEscape(q)
	b.ResetTimer()
	for range b.N {
		got := querySize(b, sfServe(b, h, http.MethodGet, path, ""))
		require.Equal(b, 2000, got, "totalSize = %d, want 2000", got)
	}
}
