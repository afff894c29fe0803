package playbook

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/hubspot"
	"github.com/crmsync/crmsync/hubspot/hubspottest"
	"github.com/crmsync/crmsync/salesforce/salesforcetest"
	"github.com/crmsync/crmsync/store/sqlite"
)

// BenchmarkQuietPass measures what a quiet tick costs after a burst: 10,000
// linked contacts at HubSpot's published limits (100 calls per 10 s, 5
// searches per s), a bulk edit of 2,000 of them in HubSpot, the pass that
// syncs the burst, then quiet ticks (-benchtime Nx) five minutes apart on a shared
// virtual clock (the fakes' stamps and the sync's window end read it; the
// rate limits run in real time). It reports the API calls and the wall time
// of the most expensive quiet tick; -v logs every tick's. Between ticks it
// waits out the rate windows in real time (rateWindowsClear), as the five
// minutes between real ticks would. The 11th tick's
// delayed window holds the backfill's write-backs, the 23rd's the burst.
//
//	go test -v -run '^$' -bench QuietPass -benchtime 14x ./playbook/
//
// CRMSYNC_QUIET_N and CRMSYNC_QUIET_BURST change the sizes.
// rateWindowsClear is how long after a tick's last call HubSpot's rate
// windows (100 calls per 10 s, 5 searches per s; a call holds its place
// until a window after it ended) no longer hold any of its calls.
const rateWindowsClear = 10*time.Second + 100*time.Millisecond

func BenchmarkQuietPass(b *testing.B) {
	n := envInt("CRMSYNC_QUIET_N", 10_000)
	burst := min(envInt("CRMSYNC_QUIET_BURST", 2_000), n)
	clock := newTestClock()

	hsLim, err := hubspot.NewLimiter(100, 10*time.Second, 10)
	if err != nil {
		b.Fatal(err)
	}
	searchLim, _ := hubspot.NewLimiter(5, time.Second, 5)
	sfLim, _ := crmsync.NewThrottle(crmsync.ThrottleConfig{InFlight: 25})
	f, closeFn, err := startFakes(
		[]hubspottest.Option{hubspottest.WithRateLimit(100, 10*time.Second), hubspottest.WithSearchRateLimit(5, time.Second), hubspottest.WithClock(clock.Now)},
		[]func(*salesforcetest.Config){func(c *salesforcetest.Config) { c.Now = clock.Now }})
	if err != nil {
		b.Fatal(err)
	}
	defer closeFn()
	hc, sc, err := f.clients(clientOptions{HubSpotLimiter: hsLim, HubSpotSearch: searchLim, SalesforceLimiter: sfLim})
	if err != nil {
		b.Fatal(err)
	}
	st, err := sqlite.Open(context.Background(), sqlite.Config{Path: filepath.Join(b.TempDir(), "crmsync.db")})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	pol := contactsPolicy()
	s, err := crmsync.NewSync(crmsync.SyncConfig{A: hc, B: sc, ObjectA: "contacts", ObjectB: "Contact", Policy: &pol,
		LinkFieldA: hubspotLinkField, LinkFieldB: salesforceLinkField, Now: clock.Now})
	if err != nil {
		b.Fatal(err)
	}
	eng, err := crmsync.NewEngine(crmsync.Config{Store: st, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	pass := func(what string) (calls int, wall time.Duration) {
		start := time.Now()
		rep, _, err := s.RunOnce(ctx, eng, "quiet")
		if err != nil {
			b.Fatalf("%s pass: %v", what, err)
		}
		wall = time.Since(start)
		if testing.Verbose() {
			b.Logf("%s pass: read %v, calls %v, %s", what, rep.Read, rep.APICalls, wall.Round(time.Millisecond))
		}
		return sumCalls(rep.APICalls), wall
	}

	ids := f.hs.SeedContacts(n)
	clock.Advance(time.Second)
	pass("backfill")
	if got := len(f.sf.All()); got != n {
		b.Fatalf("after the backfill Salesforce has %d contacts, want %d", got, n)
	}
	clock.Advance(5 * time.Minute)
	for i, id := range ids[:burst] {
		if err := f.hs.Edit("contacts", id, map[string]string{"firstname": fmt.Sprintf("Burst%d", i)}); err != nil {
			b.Fatal(err)
		}
	}
	clock.Advance(time.Second)
	burstCalls, burstWall := pass("burst")

	var maxCalls, ticks int
	var maxWall time.Duration
	for b.Loop() {
		// Ticks are five minutes apart: by then HubSpot's rate windows
		// (10 s at most, counted from each call's end) hold no call of the
		// tick before. Wait them out in real time, or a tick would wait
		// for the pacing of the one just before it.
		b.StopTimer()
		time.Sleep(rateWindowsClear)
		b.StartTimer()
		clock.Advance(5 * time.Minute)
		calls, wall := pass("quiet")
		maxCalls = max(maxCalls, calls)
		maxWall = max(maxWall, wall)
		ticks++
	}
	b.ReportMetric(float64(maxCalls), "calls/quiet-pass")
	b.ReportMetric(maxWall.Seconds(), "s/quiet-pass")
	b.Logf("%d linked contacts; burst of %d edits synced with %d calls in %s; worst of %d quiet ticks: %d calls, %s",
		n, burst, burstCalls, burstWall.Round(10*time.Millisecond), ticks, maxCalls, maxWall.Round(time.Millisecond))
}
