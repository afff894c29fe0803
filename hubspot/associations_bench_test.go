package hubspot_test

import (
	"context"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/hubspot"
	"github.com/crmsync/crmsync/hubspot/hubspottest"
	"github.com/stretchr/testify/require"
)

// BenchmarkAssociationStorm writes 10,000 new contacts across 500
// companies (each with its primary company) in Write calls of 100, then
// reads them all back with their companies through Changes, and reports
// the HubSpot calls per contact for each half and in all.
func BenchmarkAssociationStorm(b *testing.B) {
	const contacts, companies = 10_000, 500
	ctx := context.Background()
	for range b.N {
		b.StopTimer()
		srv := hubspottest.NewServer(b, hubspottest.WithoutRateLimits(), hubspottest.WithDailyLimit(-1))
		cos := srv.SeedGraph(companies, 0, 0).Companies
		l, err := crmsync.NewThrottle(crmsync.ThrottleConfig{})
		require.NoError(b, err)
		c, err := hubspot.New(hubspot.Config{Token: srv.Token, BaseURL: srv.URL, HTTPClient: &http.Client{Timeout: time.Minute},
			Limiter: l, SearchLimiter: l, DailyBudget: -1})
		require.NoError(b, err)
		since := time.Now().Add(-time.Second)
		b.StartTimer()

		for start := 0; start < contacts; start += 100 {
			ops := make([]crmsync.WriteOp, 100)
			for j := range ops {
				k := strconv.Itoa(start + j)
				ops[j] = crmsync.WriteOp{Kind: crmsync.Create, MatchField: "email", MatchValue: "storm" + k + "@example.com",
					Fields: crmsync.Fields{"email": "storm" + k + "@example.com", "firstname": "Storm" + k, hubspot.FieldCompanies: cos[(start+j)%companies]}}
			}
			res, err := c.Write(ctx, "contacts", ops)
			require.NoError(b, err)
			for _, r := range res {
				require.NoError(b, r.Err)
			}
		}
		writeCalls := c.Calls()

		q := crmsync.ChangeQuery{Object: "contacts", Since: since, Fields: []string{"email", "firstname", hubspot.FieldCompanies}}
		n := 0
		for {
			p, err := c.Changes(ctx, q)
			require.NoError(b, err)
			for _, r := range p.Records {
				require.NotNil(b, r.Fields[hubspot.FieldCompanies])
			}
			n += len(p.Records)
			if p.Next == "" {
				break
			}
			q.PageToken = p.Next
		}
		b.StopTimer()
		require.Equal(b, contacts, n)
		readCalls := c.Calls() - writeCalls
		b.ReportMetric(float64(writeCalls)/contacts, "write-calls/contact")
		b.ReportMetric(float64(readCalls)/contacts, "read-calls/contact")
		b.ReportMetric(float64(c.Calls())/contacts, "calls/contact")
		b.Logf("calls by endpoint: %v", c.Stats())
		srv.Close()
		b.StartTimer()
	}
}
