package playbook

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/hubspot"
	"github.com/crmsync/crmsync/hubspot/hubspottest"
	"github.com/crmsync/crmsync/store/sqlite"
	"github.com/crmsync/crmsync/trigger"
)

// Triggers: edit-to-other-side latency and a bulk import's webhook storm,
// on the fakes at HubSpot's published limits (100 calls per 10 s, 5
// searches per s), in real time.
//
//	go test -run '^$' -bench 'Live' -benchtime 1x -timeout 30m ./playbook/
//
// CRMSYNC_LIVE_N (default 1000) single edits, one every random gap
// (exponential, mean CRMSYNC_LIVE_GAP_MS, default 1000 ms), on random
// sides; CRMSYNC_LIVE_BULK_N (default 10000) contacts imported into
// HubSpot within 10 s. CRMSYNC_LIVE_SEARCH_LAG_MS, if set, makes the
// HubSpot fake's search lag each write by up to that much.

// liveWorld is a world on fakes at HubSpot's real limits, with a store,
// a sync and an engine.
type liveWorld struct {
	w    *world
	f    *fakes
	sc   crmsync.CRM
	st   *sqlite.Store
	s    *crmsync.Sync
	eng  *crmsync.Engine
	stop func()
}

func newLiveWorld(b *testing.B, extra ...hubspottest.Option) *liveWorld {
	b.Helper()
	hsLim, _ := hubspot.NewLimiter(100, 10*time.Second, 10)
	searchLim, _ := hubspot.NewLimiter(5, time.Second, 5)
	sfLim, _ := crmsync.NewThrottle(crmsync.ThrottleConfig{InFlight: 25})
	opts := append([]hubspottest.Option{hubspottest.WithRateLimit(100, 10*time.Second), hubspottest.WithSearchRateLimit(5, time.Second)}, extra...)
	f, closeFn, err := startFakes(opts, nil)
	if err != nil {
		b.Fatal(err)
	}
	hc, sc, err := f.clients(clientOptions{HubSpotLimiter: hsLim, HubSpotSearch: searchLim, SalesforceLimiter: sfLim})
	if err != nil {
		b.Fatal(err)
	}
	st, err := sqlite.Open(context.Background(), sqlite.Config{Path: filepath.Join(b.TempDir(), "crmsync.db")})
	if err != nil {
		b.Fatal(err)
	}
	pol := contactsPolicy()
	s, err := crmsync.NewSync(crmsync.SyncConfig{A: hc, B: sc, ObjectA: "contacts", ObjectB: "Contact", Policy: &pol,
		LinkFieldA: hubspotLinkField, LinkFieldB: salesforceLinkField})
	if err != nil {
		b.Fatal(err)
	}
	eng, err := crmsync.NewEngine(crmsync.Config{Store: st, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	return &liveWorld{w: &world{f: f}, f: f, sc: sc, st: st, s: s, eng: eng, stop: func() { st.Close(); closeFn() }}
}

func (lw *liveWorld) calls() int {
	n := 0
	for _, c := range lw.f.hs.CallCounts() {
		n += c
	}
	for _, c := range lw.f.sf.Calls() {
		n += c
	}
	return n
}

func BenchmarkLiveLatency(b *testing.B) {
	n := envInt("CRMSYNC_LIVE_N", 1000)
	gap := time.Duration(envInt("CRMSYNC_LIVE_GAP_MS", 1000)) * time.Millisecond
	var extra []hubspottest.Option
	if lag := envInt("CRMSYNC_LIVE_SEARCH_LAG_MS", 0); lag > 0 {
		extra = append(extra, hubspottest.WithSearchLag(0, time.Duration(lag)*time.Millisecond))
	}
	for range b.N {
		b.StopTimer()
		lw := newLiveWorld(b, extra...)
		if err := lw.w.seed(3 * n); err != nil {
			b.Fatal(err)
		}
		if _, _, err := lw.s.RunOnce(context.Background(), lw.eng, "team"); err != nil {
			b.Fatal(err)
		}
		c := liveTuning
		// CRMSYNC_LIVE_CDC=1: Salesforce's trigger is its change events
		// (the fake's Pub/Sub API) instead of the probe.
		c.ChangeEvents = envInt("CRMSYNC_LIVE_CDC", 0) == 1
		var failed atomic.Int64
		c.OnPass = func(p trigger.Pass, writes int, err error) {
			if err != nil {
				failed.Add(1)
			}
		}
		l, err := startLive(context.Background(), lw.f, lw.sc, syncPasses(lw.s, lw.eng), lw.st, "team", c)
		if err != nil {
			b.Fatal(err)
		}
		before := lw.calls()
		b.StartTimer()
		edits, err := lw.w.playEditsGaps(context.Background(), rand.New(rand.NewPCG(15, 1)), n, gap, 60*time.Second)
		b.StopTimer()
		passes := l.co.Passes()
		l.Stop()
		if err != nil {
			b.Fatal(err)
		}
		var lat []time.Duration
		lost := 0
		for _, e := range edits {
			if e.Crossed > 0 {
				lat = append(lat, e.Crossed)
			} else {
				lost++
			}
		}
		p50, p99 := percentile(lat, 50), percentile(lat, 99)
		b.ReportMetric(p50.Seconds(), "p50-s")
		b.ReportMetric(p99.Seconds(), "p99-s")
		b.ReportMetric(float64(lost), "lost")
		fmt.Printf("\nlive latency: %d edits (mean gap %s), p50 %s, p99 %s, max %s, not crossed %d; %d passes, %d failed, %d API calls, HubSpot 429s %d\n",
			n, gap, p50.Round(10*time.Millisecond), p99.Round(10*time.Millisecond), percentile(lat, 100).Round(10*time.Millisecond),
			lost, passes, failed.Load(), lw.calls()-before, lw.f.hs.RateLimited())
		lw.stop()
	}
}

// playEditsGaps is playEdits with random (exponential) gaps of mean gap.
func (w *world) playEditsGaps(ctx context.Context, rng *rand.Rand, n int, gap, timeout time.Duration) ([]edit, error) {
	return w.playEditsWith(ctx, rng, n, func() time.Duration { return time.Duration(rng.ExpFloat64() * float64(gap)) }, timeout, nil)
}

func BenchmarkLiveBulkImport(b *testing.B) {
	n := envInt("CRMSYNC_LIVE_BULK_N", 10_000)
	var rows [2]struct {
		calls, passes int
		wall          time.Duration
	}
	for range b.N {
		for k, live := range []bool{false, true} {
			b.StopTimer()
			lw := newLiveWorld(b)
			if _, _, err := lw.s.RunOnce(context.Background(), lw.eng, "team"); err != nil {
				b.Fatal(err)
			}
			var l *liveSync
			c := liveTuning
			c.ProbeEvery = time.Hour // the import is on HubSpot; see BENCHMARKS.md on Salesforce echoes
			if live {
				var err error
				if l, err = startLive(context.Background(), lw.f, lw.sc, syncPasses(lw.s, lw.eng), lw.st, "team", c); err != nil {
					b.Fatal(err)
				}
			}
			before := lw.calls()
			b.StartTimer()
			start := time.Now()
			// The import: n contacts in 10 s, 100 every 100 ms.
			for i := 0; i < n; i += 100 {
				recs := make([]map[string]string, 0, 100)
				for j := i; j < min(i+100, n); j++ {
					recs = append(recs, map[string]string{"email": fmt.Sprintf("import%d@bulk.example.com", j), "firstname": "Imported", "lastname": fmt.Sprint("Contact", j)})
				}
				lw.f.hs.Seed("contacts", recs...)
				time.Sleep(10 * time.Second / time.Duration((n+99)/100))
			}
			if live {
				deadline := time.Now().Add(10 * time.Minute)
				for len(lw.f.sf.All()) < n && time.Now().Before(deadline) {
					time.Sleep(100 * time.Millisecond)
				}
				time.Sleep(2 * c.Quiet) // let the last events settle
				for l.co.Passes() > 0 && lw.busy() && time.Now().Before(deadline) {
					time.Sleep(100 * time.Millisecond)
				}
				rows[k].passes = int(l.co.Passes())
				l.Stop()
			} else {
				time.Sleep(5 * time.Millisecond)
				if _, _, err := lw.s.RunOnce(context.Background(), lw.eng, "team"); err != nil {
					b.Fatal(err)
				}
				rows[k].passes = 1
			}
			rows[k].wall = time.Since(start)
			b.StopTimer()
			if got := len(lw.f.sf.All()); got != n {
				b.Fatalf("live=%v: Salesforce has %d contacts, want %d", live, got, n)
			}
			rows[k].calls = lw.calls() - before
			lw.stop()
		}
	}
	ratio := float64(rows[1].calls) / float64(rows[0].calls)
	b.ReportMetric(float64(rows[1].passes), "passes")
	b.ReportMetric(ratio, "calls-ratio")
	fmt.Printf("\nbulk import of %d contacts in 10 s: batched storm (one pass after the import) %d calls in %s; on webhooks %d calls in %d passes, %s: %.3fx the calls\n",
		n, rows[0].calls, rows[0].wall.Round(100*time.Millisecond), rows[1].calls, rows[1].passes, rows[1].wall.Round(100*time.Millisecond), ratio)
}

// busy reports whether the key has a live lease (a pass in flight).
func (lw *liveWorld) busy() bool {
	l, err := lw.st.GetLease(context.Background(), "team")
	return err == nil && l.Run != "" && l.Expires.After(time.Now())
}
