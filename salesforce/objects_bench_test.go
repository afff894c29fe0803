package salesforce_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/salesforce"
	"github.com/crmsync/crmsync/salesforce/salesforcetest"
	"github.com/stretchr/testify/require"
)

// benchFixture is setup for a benchmark: a fake with room for many calls.
func benchFixture(b *testing.B) *fixture {
	b.Helper()
	clk := newClock()
	srv, err := salesforcetest.New(salesforcetest.Config{Now: clk.Now, DailyLimit: 1 << 40})
	require.NoError(b, err)
	require.NoError(b, srv.Start())
	b.Cleanup(srv.Close)
	c, err := salesforce.New(salesforce.Config{InstanceURL: srv.URL, AccessToken: srv.Token(), Now: clk.Now, RetryWait: time.Millisecond})
	require.NoError(b, err)
	return &fixture{clk: clk, srv: srv, c: c}
}

func totalCalls(s *salesforcetest.Server) int {
	n := 0
	for _, v := range s.Calls() {
		n += v
	}
	return n
}

// BenchmarkStormRead reads a storm of 10,000 new contacts over 500 new
// accounts (accounts first, then contacts with AccountId) as the sync
// does, and reports the API calls per record.
func BenchmarkStormRead(b *testing.B) {
	f := benchFixture(b)
	since := f.clk.Now().Add(-time.Minute)
	accounts, contacts := f.srv.SeedStorm(500, 10000)
	records := len(accounts) + len(contacts)
	b.ResetTimer()
	for range b.N {
		before := totalCalls(f.srv)
		n := 0
		for _, obj := range []struct {
			name   string
			fields []string
		}{{"Account", []string{"Name", "Website"}}, {"Contact", []string{"FirstName", "LastName", "Email", "AccountId"}}} {
			q := crmsync.ChangeQuery{Object: obj.name, Since: since, Fields: obj.fields}
			for {
				p, err := f.c.Changes(ctx, q)
				require.NoError(b, err)
				n += len(p.Records)
				if p.Next == "" {
					break
				}
				q.PageToken = p.Next
			}
		}
		require.Equal(b, records, n)
		b.ReportMetric(float64(totalCalls(f.srv)-before)/float64(records), "calls/record")
	}
}

// BenchmarkContactRolesWrite writes 1,000 opportunities, each with one
// contact role, setting two other contacts as their roles (2,000 roles
// created, 1,000 deleted), and reports the API calls per opportunity.
func BenchmarkContactRolesWrite(b *testing.B) {
	f := benchFixture(b)
	contacts := f.srv.SeedContacts(3)
	const n = 1000
	b.ResetTimer()
	for i := range b.N {
		b.StopTimer()
		fs := make([]crmsync.Fields, n)
		for j := range fs {
			fs[j] = crmsync.Fields{"Name": fmt.Sprintf("Deal %d-%d", i, j), "StageName": "Prospecting", "CloseDate": "2026-06-30"}
		}
		opps := f.srv.SeedRecords("Opportunity", fs...)
		ops := make([]crmsync.WriteOp, n)
		for j, o := range opps {
			_, err := f.srv.AddContactRole(o, contacts[2], "", false)
			require.NoError(b, err)
			ops[j] = crmsync.WriteOp{Kind: crmsync.Update, ID: o, Fields: crmsync.Fields{
				"Amount": float64(j), salesforce.ContactRolesField: []string{contacts[0], contacts[1]}}}
		}
		before := totalCalls(f.srv)
		b.StartTimer()
		for start := 0; start < n; start += salesforce.MaxBatch {
			res, err := f.c.Write(ctx, "Opportunity", ops[start:start+salesforce.MaxBatch])
			require.NoError(b, err)
			for _, r := range res {
				require.NoError(b, r.Err)
			}
		}
		b.StopTimer()
		b.ReportMetric(float64(totalCalls(f.srv)-before)/n, "calls/opportunity")
		b.StartTimer()
	}
}
