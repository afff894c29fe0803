package playbook

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/store/sqlite"
	"github.com/crmsync/crmsync/trigger"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// seededHarness is a harness with a world of n contacts per side, synced once.
func seededHarness(t *testing.T, n int, o harnessOpts) (*harness, *world) {
	t.Helper()
	h := newHarness(t, o)
	w := &world{f: h.f}
	require.NoError(t, w.seed(n))
	h.pass()
	return h, w
}

// TestLiveEditsCross: with no schedule at all, single edits on both sides
// reach the other side, carried by webhooks (HubSpot) and the probe
// (Salesforce) alone.
func TestLiveEditsCross(t *testing.T) {
	h, w := seededHarness(t, 150, harnessOpts{})
	var mu sync.Mutex
	var passes int
	l, err := startLive(context.Background(), h.f, h.sc, syncPasses(h.sync, h.eng), h.st, h.key, liveConfig{
		Quiet: 50 * time.Millisecond, MaxWait: 500 * time.Millisecond, Poll: 100 * time.Millisecond, ProbeEvery: 100 * time.Millisecond,
		OnPass: func(p trigger.Pass, writes int, err error) {
			if !errors.Is(err, context.Canceled) { // Stop cancels the pass in flight
				assert.NoError(t, err)
			}
			mu.Lock()
			passes++
			mu.Unlock()
		},
	})
	require.NoError(t, err)
	defer l.Stop()

	edits, err := w.playEdits(context.Background(), rand.New(rand.NewPCG(7, 7)), 20, 30*time.Millisecond, 30*time.Second, nil)
	require.NoError(t, err)
	sides := map[string]int{}
	for _, e := range edits {
		sides[e.Side]++
		assert.NotZero(t, e.Crossed, "%s edit of pair %d never reached the other side", e.Side, e.Pair)
	}
	assert.Positive(t, sides["hubspot"])
	assert.Positive(t, sides["salesforce"])
	mu.Lock()
	defer mu.Unlock()
	assert.Less(t, passes, len(edits)*2, "edits close together share passes")
}

// TestLiveEditsCrossOnChangeEvents: the same with Salesforce's trigger its
// change events (the fake's Pub/Sub API) and no probe: a Salesforce edit
// crosses because its change event started a pass, and the replay id is
// kept in the store.
func TestLiveEditsCrossOnChangeEvents(t *testing.T) {
	h, w := seededHarness(t, 100, harnessOpts{})
	l, err := startLive(context.Background(), h.f, h.sc, syncPasses(h.sync, h.eng), h.st, h.key, liveConfig{
		Quiet: 50 * time.Millisecond, MaxWait: 500 * time.Millisecond, Poll: 100 * time.Millisecond, ChangeEvents: true,
		OnPass: func(p trigger.Pass, writes int, err error) {
			if !errors.Is(err, context.Canceled) {
				assert.NoError(t, err)
			}
		},
	})
	require.NoError(t, err)
	defer l.Stop()

	// The subscription starts at the newest event: wait until it asks
	// for events, so the edits below come after it.
	require.Eventually(t, func() bool { return h.f.sf.PubSubStats().Requested > 0 }, 10*time.Second, 5*time.Millisecond)
	// Salesforce edits only: no webhook starts a pass that would carry
	// them by chance.
	for n := range 5 {
		e, err := w.editOne("salesforce", n, n)
		require.NoError(t, err)
		require.Eventually(t, func() bool { return w.crossed(e) }, 20*time.Second, 10*time.Millisecond,
			"Salesforce edit %d never reached HubSpot", n)
	}
	pos, err := h.st.GetPosition(context.Background(), "salesforce-cdc:"+h.key)
	require.NoError(t, err, "the subscription keeps its replay id in the store")
	assert.NotEmpty(t, pos)
}

// TestKilledDuringBurstLosesNothing: a process receives a burst of
// webhooks, records them as triggers and dies in the middle of the pass
// they started. The next process, with no schedule, finds the triggers in
// the store and runs passes that write everything the events announced.
func TestKilledDuringBurstLosesNothing(t *testing.T) {
	path := filepath.Join(t.TempDir(), "crmsync.db")
	// A killed process leaves its lease; a short one keeps the test short.
	o, _, sw := wrapped(harnessOpts{storePath: path, engine: func(c *crmsync.Config) { c.LeaseTTL = 6 * time.Second }})
	h, w := seededHarness(t, 300, o)
	ctx := context.Background()

	// Process 1 dies at the pass's first write to Salesforce.
	ctx1, kill := context.WithCancel(ctx)
	var killedOnce sync.Once
	killed := make(chan struct{})
	sw.set(func(c *wrapCRM) {
		c.write = func(ctx context.Context, next crmsync.CRM, object string, ops []crmsync.WriteOp) ([]crmsync.WriteResult, error) {
			killedOnce.Do(func() { kill(); close(killed) })
			return nil, ctx1.Err()
		}
	})
	l1, err := startLive(ctx1, h.f, h.sc, syncPasses(h.sync, h.eng), h.st, h.key, liveConfig{
		Quiet: 200 * time.Millisecond, MaxWait: time.Second, Poll: time.Hour, ProbeEvery: time.Hour,
	})
	require.NoError(t, err)
	// The burst: 80 HubSpot users edit a phone each.
	var edits []edit
	for k := range 80 {
		e, err := w.editOne("hubspot", k, k)
		require.NoError(t, err)
		edits = append(edits, e)
	}
	waitCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	require.NoError(t, h.f.hs.WaitWebhooks(waitCtx), "every webhook answered")
	cancel()
	select {
	case <-killed:
	case <-time.After(30 * time.Second):
		t.Fatal("no pass reached a Salesforce write")
	}
	l1.Stop()
	pend, err := h.st.PendingTriggers(ctx, h.key, 0)
	require.NoError(t, err)
	require.NotEmpty(t, pend, "the burst's triggers outlive the process")
	for _, e := range edits {
		require.False(t, w.crossed(e), "nothing crossed before the kill")
	}
	runs, err := h.st.ListRuns(ctx, h.key, 1)
	require.NoError(t, err)
	require.Equal(t, crmsync.RunOpen, runs[0].Status, "the interrupted run stays open")

	// Process 2: a new store handle and engine on the same file; no
	// schedule, no new event.
	sw.set(func(c *wrapCRM) { c.write = nil })
	st2, err := sqlite.Open(ctx, sqlite.Config{Path: path})
	require.NoError(t, err)
	defer st2.Close()
	eng2, err := crmsync.NewEngine(crmsync.Config{Store: st2, LeaseTTL: 6 * time.Second, Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	var mu sync.Mutex
	var errs []error
	l2, err := startLive(ctx, h.f, h.sc, syncPasses(h.sync, eng2), st2, h.key, liveConfig{
		Quiet: 50 * time.Millisecond, MaxWait: 200 * time.Millisecond, Poll: 50 * time.Millisecond, ProbeEvery: time.Hour,
		OnPass: func(p trigger.Pass, writes int, err error) {
			mu.Lock()
			defer mu.Unlock()
			if err != nil && !errors.Is(err, crmsync.ErrBusy) {
				errs = append(errs, err)
			}
		},
	})
	require.NoError(t, err)
	defer l2.Stop()
	require.Eventually(t, func() bool {
		for _, e := range edits {
			if !w.crossed(e) {
				return false
			}
		}
		return true
	}, 60*time.Second, 50*time.Millisecond, "every edit the burst announced reaches Salesforce")
	require.Eventually(t, func() bool {
		pend, err := st2.PendingTriggers(ctx, h.key, 0)
		return err == nil && len(pend) == 0
	}, 30*time.Second, 50*time.Millisecond, "the triggers are cleared once done")
	mu.Lock()
	defer mu.Unlock()
	assert.Empty(t, errs)
}

// TestMainLive runs the main job's -live mode: edits made by simulated
// users on both sides cross over on triggers.
func TestMainLive(t *testing.T) {
	store := filepath.Join(t.TempDir(), "live.db")
	code, out, errOut := mainRun(t, nil, "-live", "-live-edits", "6", "-live-gap", "100ms", "-seed", "90", "-store", store)
	require.Equal(t, 0, code, "stderr: %s", errOut)
	assert.Contains(t, out, "first pass (initial sync)")
	assert.Contains(t, out, "HubSpot sends signed webhooks to http://127.0.0.1:")
	assert.Contains(t, out, "6 edit(s) crossed in p50")
	assert.Contains(t, out, "(0 not yet)")
	assert.Regexp(t, `; [1-9]\d* triggered pass\(es\) started`, out)
	assert.NotContains(t, out, "+1 212 555", "the edited values are not printed")
}

func TestMainLiveFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-live", "-plan"}, "drop -plan and -cron"},
		{[]string{"-live", "-cron", "*/5 * * * *"}, "drop -plan and -cron"},
		{[]string{"-live", "-live-gap", "0s"}, "want 0 or more edits and a positive gap"},
	} {
		code, _, errOut := mainRun(t, nil, tc.args...)
		assert.Equal(t, 2, code, "%v", tc.args)
		assert.Contains(t, errOut, tc.want, "%v", tc.args)
	}
	code, _, errOut := mainRun(t, map[string]string{"HUBSPOT_TOKEN": "x", "SALESFORCE_ACCESS_TOKEN": "y", "SALESFORCE_INSTANCE_URL": "http://127.0.0.1:1"},
		"-live", "-store", filepath.Join(t.TempDir(), "x.db"))
	assert.Equal(t, 2, code)
	assert.Contains(t, errOut, "-live needs the in-process fakes")
}
