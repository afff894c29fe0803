package playbook

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/hubspot"
	"github.com/crmsync/crmsync/hubspot/hubspottest"
	"github.com/crmsync/crmsync/store/sqlite"
	"golang.org/x/sync/errgroup"
)

// The write storm, side by side with the playbook's naive per-contact
// design. Both run against the fakes at HubSpot's published limits (100
// calls per 10 s, 5 searches per s), with time scaled by
// CRMSYNC_STORM_SCALE (1 = real time). Salesforce has no per-second limit,
// only its daily allocation and requests in flight.
//
//	go test -run '^$' -bench Storm -benchtime 1x ./examples/hubspot-salesforce/
//
// CRMSYNC_STORM_N (default 10000) contacts for the batched design and
// CRMSYNC_STORM_NAIVE_N (default 500) for the naive one: it makes three calls
// per contact, one of them to HubSpot, so at real limits 10,000 contacts
// would take over quarter of an hour.
func BenchmarkStorm(b *testing.B) {
	scale := envInt("CRMSYNC_STORM_SCALE", 1)
	n := envInt("CRMSYNC_STORM_N", 10_000)
	naiveN := envInt("CRMSYNC_STORM_NAIVE_N", 500)
	var rows [2]stormResult
	b.Run("batched", func(b *testing.B) {
		for range b.N {
			rows[0] = storm(b, n, scale, false)
		}
		rows[0].report(b)
	})
	b.Run("naive", func(b *testing.B) {
		for range b.N {
			rows[1] = storm(b, naiveN, scale, true)
		}
		rows[1].report(b)
	})
	if rows[0].n > 0 && rows[1].n > 0 {
		fmt.Printf("\n| design | contacts | API calls | calls/contact | wall | rate-limit bound | wall/bound |\n|---|---:|---:|---:|---:|---:|---:|\n%s\n%s\ncalls per contact, naive/batched: %.1fx; time per contact, naive/batched: %.1fx (time scale 1/%d)\n",
			rows[0].row("batched (crmsync)"), rows[1].row("naive per-contact"),
			rows[1].perRecord()/rows[0].perRecord(),
			(rows[1].wall.Seconds()/float64(rows[1].n))/(rows[0].wall.Seconds()/float64(rows[0].n)), scale)
	}
}

type stormResult struct {
	n                   int
	calls               int
	hsGeneral, hsSearch int
	wall, bound         time.Duration
}

func (r stormResult) perRecord() float64 { return float64(r.calls) / float64(r.n) }

func (r stormResult) report(b *testing.B) {
	b.ReportMetric(r.perRecord(), "calls/contact")
	b.ReportMetric(r.wall.Seconds()/r.bound.Seconds(), "wall/bound")
	b.ReportMetric(r.wall.Seconds(), "wall-s")
}

func (r stormResult) row(name string) string {
	return fmt.Sprintf("| %s | %d | %d | %.4f | %s | %s | %.2f |", name, r.n, r.calls, r.perRecord(),
		r.wall.Round(10*time.Millisecond), r.bound.Round(10*time.Millisecond), r.wall.Seconds()/r.bound.Seconds())
}

// windowBound is the exact least time calls take under n per rolling
// window: the k-th call (from 0) cannot start before floor(k/n) windows
// after the first, so the last starts floor((calls-1)/n) windows in.
func windowBound(calls, n int, window time.Duration) time.Duration {
	if calls <= n {
		return 0
	}
	return time.Duration((calls-1)/n) * window
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// storm imports n contacts into HubSpot and syncs them to Salesforce, and
// measures the calls made and the wall time against the lower bound that
// HubSpot's limits set for those calls.
func storm(b *testing.B, n, scale int, naive bool) stormResult {
	b.StopTimer()
	window, searchWindow := 10*time.Second/time.Duration(scale), time.Second/time.Duration(scale)
	hsLim, err := hubspot.NewLimiter(100, window, 10)
	if err != nil {
		b.Fatal(err)
	}
	searchLim, _ := hubspot.NewLimiter(5, searchWindow, 5)
	sfLim, _ := crmsync.NewThrottle(crmsync.ThrottleConfig{InFlight: 25})
	f, closeFn, err := startFakes([]hubspottest.Option{hubspottest.WithRateLimit(100, window), hubspottest.WithSearchRateLimit(5, searchWindow)}, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer closeFn()
	hc, sc, err := f.clients(clientOptions{HubSpotLimiter: hsLim, HubSpotSearch: searchLim, SalesforceLimiter: sfLim})
	if err != nil {
		b.Fatal(err)
	}
	f.hs.SeedContacts(n)
	time.Sleep(3 * time.Millisecond)
	b.StartTimer()
	start := time.Now()
	if naive {
		err = naiveSync(context.Background(), hc, sc, n)
	} else {
		err = batchedSync(b, hc, sc)
	}
	wall := time.Since(start)
	b.StopTimer()
	if err != nil {
		b.Fatal(err)
	}
	if got := len(f.sf.All()); got != n {
		b.Fatalf("Salesforce has %d contacts, want %d", got, n)
	}
	if rl := f.hs.RateLimited(); rl > 0 {
		b.Fatalf("HubSpot refused %d calls for rate", rl)
	}
	r := stormResult{n: n, wall: wall}
	for ep, c := range f.hs.CallCounts() {
		r.calls += c
		if ep == "search" {
			r.hsSearch += c
		} else {
			r.hsGeneral += c
		}
	}
	for _, c := range f.sf.Calls() {
		r.calls += c
	}
	// Each HubSpot limit alone needs this long for the calls made: n calls
	// may start at once, the rest n per window. The bound is the larger
	// (Salesforce sets no per-second bound).
	r.bound = max(windowBound(r.hsGeneral, 100, window), windowBound(r.hsSearch, 5, searchWindow))
	return r
}

func batchedSync(b *testing.B, hc *hubspot.Client, sc crmsync.CRM) error {
	st, err := sqlite.Open(context.Background(), sqlite.Config{Path: filepath.Join(b.TempDir(), "crmsync.db")})
	if err != nil {
		return err
	}
	defer st.Close()
	pol := contactsPolicy()
	s, err := crmsync.NewSync(crmsync.SyncConfig{A: hc, B: sc, ObjectA: "contacts", ObjectB: "Contact", Policy: &pol,
		LinkFieldA: hubspotLinkField, LinkFieldB: salesforceLinkField})
	if err != nil {
		return err
	}
	eng, err := crmsync.NewEngine(crmsync.Config{Store: st, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return err
	}
	_, _, err = s.RunOnce(context.Background(), eng, "storm")
	return err
}

// naiveSync follows the playbook's per-contact steps: for each new HubSpot
// contact, look it up in Salesforce by email, upsert it there, and write the
// Salesforce id back to HubSpot: one call each, four workers in parallel.
func naiveSync(ctx context.Context, hc *hubspot.Client, sc crmsync.CRM, n int) error {
	var contacts []crmsync.Record
	q := crmsync.ChangeQuery{Object: "contacts", Fields: []string{"email", "firstname", "lastname"}}
	for {
		p, err := hc.Changes(ctx, q)
		if err != nil {
			return err
		}
		contacts = append(contacts, p.Records...)
		if p.Next == "" {
			break
		}
		q.PageToken = p.Next
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(4)
	for _, c := range contacts {
		g.Go(func() error {
			email, _ := c.Fields["email"].(string)
			if _, err := sc.Lookup(gctx, "Contact", "Email", []string{email}, []string{"Id"}); err != nil {
				return err
			}
			res, err := sc.Write(gctx, "Contact", []crmsync.WriteOp{{Kind: crmsync.Upsert, MatchField: salesforceLinkField, MatchValue: c.ID,
				Fields: crmsync.Fields{"Email": email, "FirstName": c.Fields["firstname"], "LastName": c.Fields["lastname"]}}})
			if err != nil {
				return err
			}
			if res[0].Err != nil {
				return res[0].Err
			}
			_, err = hc.Write(gctx, "contacts", []crmsync.WriteOp{{Kind: crmsync.Update, ID: c.ID, Fields: crmsync.Fields{hubspotLinkField: res[0].ID}}})
			return err
		})
	}
	return g.Wait()
}

func TestWindowBound(t *testing.T) {
	for _, c := range []struct {
		calls, n     int
		window, want time.Duration
	}{
		{0, 100, 10 * time.Second, 0}, {100, 100, 10 * time.Second, 0}, {101, 100, 10 * time.Second, 10 * time.Second},
		{200, 100, 10 * time.Second, 10 * time.Second}, {201, 100, 10 * time.Second, 20 * time.Second},
		{6, 5, time.Second, time.Second}, {11, 5, time.Second, 2 * time.Second},
	} {
		if got := windowBound(c.calls, c.n, c.window); got != c.want {
			t.Errorf("windowBound(%d, %d, %s) = %s, want %s", c.calls, c.n, c.window, got, c.want)
		}
	}
}
