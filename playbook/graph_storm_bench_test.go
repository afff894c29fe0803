package playbook

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/store/memory"
)

// BenchmarkGraphStorm: 10,000 new HubSpot contacts across 500 new
// companies (each contact with its primary company) synced to Salesforce
// by one run of the playbook's graph, through the real clients against
// the fakes with no rate limits (the calls are counted; their pacing is
// BenchmarkStorm's subject). Every call either fake received counts,
// associations included.
//
//	go test -run '^$' -bench GraphStorm -benchtime 1x ./playbook/
//
// CRMSYNC_GRAPH_STORM_N (default 10000) contacts, a twentieth as many companies.
func BenchmarkGraphStorm(b *testing.B) {
	n := envInt("CRMSYNC_GRAPH_STORM_N", 10_000)
	for range b.N {
		calls, records, hs, sf, wall := graphStorm(b, n)
		b.ReportMetric(float64(calls)/float64(records), "calls/record")
		b.ReportMetric(wall.Seconds(), "wall-s")
		fmt.Printf("\n| records | companies | contacts | API calls | hubspot | salesforce | calls per record | wall |\n|---:|---:|---:|---:|---:|---:|---:|---:|\n| %d | %d | %d | %d | %d | %d | %.4f | %s |\n",
			records, n/20, n, calls, hs, sf, float64(calls)/float64(records), wall.Round(10*time.Millisecond))
	}
}

func graphStorm(b *testing.B, n int) (calls, records, hsCalls, sfCalls int, wall time.Duration) {
	b.Helper()
	f, closeFn, err := startFakes(nil, nil)
	require.NoError(b, err)
	defer closeFn()
	g := f.hs.SeedGraph(n/20, n, 0)
	time.Sleep(5 * time.Millisecond)
	th := func() crmsync.Limiter {
		t, err := crmsync.NewThrottle(crmsync.ThrottleConfig{InFlight: 8})
		require.NoError(b, err)
		return t
	}
	hc, sc, err := f.clients(clientOptions{HubSpotLimiter: th(), HubSpotSearch: th(), SalesforceLimiter: th()})
	require.NoError(b, err)
	graph, err := NewGraph(hc, sc, GraphConfig{})
	require.NoError(b, err)
	eng, err := crmsync.NewEngine(crmsync.Config{Store: memory.New()})
	require.NoError(b, err)
	sum := func(m map[string]int) int {
		t := 0
		for _, v := range m {
			t += v
		}
		return t
	}
	hs0, sf0 := sum(f.hs.CallCounts()), sum(f.sf.CallCounts())
	start := time.Now()
	rep, _, err := graph.RunOnce(context.Background(), eng, "storm")
	require.NoError(b, err)
	wall = time.Since(start)
	hsCalls, sfCalls = sum(f.hs.CallCounts())-hs0, sum(f.sf.CallCounts())-sf0
	require.Equal(b, len(g.Companies), rep.Pairs["companies"].Directions["hubspot->salesforce"].Created, "%s", rep.Summary())
	require.Equal(b, len(g.Contacts), rep.Pairs["contacts"].Directions["hubspot->salesforce"].Created, "%s", rep.Summary())
	// The references arrived: every Salesforce contact names an account.
	withAccount := 0
	for _, r := range f.sf.All() {
		if objectOf(r.ID) == "Contact" && r.Fields["AccountId"] != nil && r.Fields["AccountId"] != "" {
			withAccount++
		}
	}
	require.Equal(b, len(g.Contacts), withAccount)
	return hsCalls + sfCalls, len(g.Companies) + len(g.Contacts), hsCalls, sfCalls, wall
}
