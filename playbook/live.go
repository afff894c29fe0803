package playbook

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/hubspot/hubspottest"
	"github.com/crmsync/crmsync/hubspot/webhook"
	"github.com/crmsync/crmsync/salesforce/pubsub"
	"github.com/crmsync/crmsync/salesforce/salesforcetest"
	"github.com/crmsync/crmsync/store/storespec"
	"github.com/crmsync/crmsync/trigger"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// liveConfig tunes a live sync: passes on triggers instead of only on a
// schedule.
type liveConfig struct {
	// Quiet, MaxWait and Poll are the Coalescer's (package trigger).
	Quiet, MaxWait, Poll time.Duration
	// ProbeEvery is how often Salesforce is probed for changes newer than
	// the last probe (one query); zero means 1s. Not with ChangeEvents.
	ProbeEvery time.Duration
	// ChangeEvents makes Salesforce's trigger its Change Data Capture
	// events, read from the fake's Pub/Sub API (package
	// salesforce/pubsub) with the replay id kept in the store, instead of
	// the probe: what an org with CDC does.
	ChangeEvents bool
	// WebhookBatch is the HubSpot fake's events per webhook request; zero
	// means 100.
	WebhookBatch int
	// Every, if positive, also runs a pass on this schedule (the safety net).
	Every time.Duration
	// OnPass is told about each pass that ran, with how many writes it made.
	OnPass func(p trigger.Pass, writes int, err error)
	Logger *slog.Logger
}

// liveTuning is the Coalescer tuning of -live and of the benchmarks: a
// second of quiet lets a user's few clicks share a pass, and a long
// MaxWait lets a bulk import (events for many seconds) end before its one
// pass, since every pass reads its whole overlap window again.
var liveTuning = liveConfig{Quiet: time.Second, MaxWait: 30 * time.Second, Poll: time.Second, ProbeEvery: time.Second}

// liveSync syncs one key whenever the CRMs say something changed: the
// HubSpot fake sends signed webhooks to a webhook.Handler, Salesforce is
// probed, and both feed a trigger.Coalescer whose passes are the usual
// sync passes under the key's lease.
type liveSync struct {
	co   *trigger.Coalescer
	hook *httptest.Server
	hs   *hubspottest.Server
	wg   sync.WaitGroup
	stop context.CancelFunc
	// closeConn closes the Pub/Sub connection (ChangeEvents).
	closeConn func()
}

// passFunc runs one pass of key and reports how many writes it made.
type passFunc func(ctx context.Context, key string) (writes int, info crmsync.RunInfo, err error)

// syncPasses runs the passes of a Sync.
func syncPasses(s *crmsync.Sync, eng *crmsync.Engine) passFunc {
	return func(ctx context.Context, key string) (int, crmsync.RunInfo, error) {
		rep, info, err := s.RunOnce(ctx, eng, key)
		if rep == nil {
			return 0, info, err
		}
		return rep.Writes(), info, err
	}
}

// jobPasses runs the passes of the main job (a Sync or a Graph).
func jobPasses(j *job, eng *crmsync.Engine) passFunc {
	return func(ctx context.Context, key string) (int, crmsync.RunInfo, error) {
		rep, info, err := j.RunOnce(ctx, eng, key)
		if rep == nil {
			return 0, info, err
		}
		return rep.Writes(), info, err
	}
}

// startLive starts the live sync of key until stop is called.
func startLive(ctx context.Context, f *fakes, sfCRM crmsync.CRM, pass passFunc, st crmsync.Store, key string, c liveConfig) (*liveSync, error) {
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.ProbeEvery <= 0 {
		c.ProbeEvery = time.Second
	}
	var ts crmsync.TriggerStore
	if t, ok := st.(crmsync.TriggerStore); ok {
		ts = t
	}
	co, err := trigger.New(trigger.Config{
		Quiet: c.Quiet, MaxWait: c.MaxWait, Poll: c.Poll, Store: ts, Logger: c.Logger,
		Run: func(ctx context.Context, p trigger.Pass) error {
			for {
				writes, info, err := pass(ctx, p.Key)
				if c.OnPass != nil && !errors.Is(err, crmsync.ErrBusy) {
					c.OnPass(p, writes, err)
				}
				// A resumed run (one a crash interrupted) finishes the
				// window it began with; the trigger is about changes up
				// to now, so a new pass follows.
				if err != nil || info.Attempts <= 1 {
					return err
				}
			}
		},
	})
	if err != nil {
		return nil, err
	}
	appSource := fmt.Sprintf("app:%d", hubspottest.DefaultAppID)
	h, err := webhook.New(webhook.Config{
		Secret:  hubspottest.DefaultClientSecret,
		Key:     func(portal int64) (string, bool) { return key, portal == hubspottest.DefaultPortalID },
		Trigger: co.Record,
		// The sync's own writes to HubSpot come back as webhooks from
		// its app: they announce nothing new.
		IgnoreSources: []string{appSource},
		Logger:        c.Logger,
	})
	if err != nil {
		return nil, err
	}
	l := &liveSync{co: co, hook: httptest.NewServer(h), hs: f.hs}
	if err := f.hs.SendWebhooks(hubspottest.WebhookConfig{URL: l.hook.URL + "/hubspot/webhooks", BatchSize: c.WebhookBatch}); err != nil {
		l.hook.Close()
		return nil, err
	}
	ctx, l.stop = context.WithCancel(ctx)
	l.wg.Add(2)
	go func() { defer l.wg.Done(); co.Run(ctx) }()
	if c.ChangeEvents {
		sub, closeConn, err := changeEvents(f, st, key, sfCRM.System(), co, c.Logger)
		if err != nil {
			l.stop()
			l.wg.Done()
			l.wg.Wait()
			l.hs.StopWebhooks()
			l.hook.Close()
			return nil, err
		}
		l.closeConn = closeConn
		go func() { defer l.wg.Done(); _ = sub.Run(ctx) }()
	} else {
		go func() {
			defer l.wg.Done()
			probe(ctx, sfCRM, "Contact", c.ProbeEvery, func() {
				co.Trigger(ctx, trigger.Event{Key: key, System: sfCRM.System(), Reason: "probe"})
			}, c.Logger)
		}()
	}
	if c.Every > 0 {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			t := time.NewTicker(c.Every)
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
					co.Trigger(ctx, trigger.Event{Key: key, Reason: "schedule"})
				}
			}
		}()
	}
	return l, nil
}

// Stop stops sending webhooks, probing and starting passes, and waits for
// the pass in flight.
func (l *liveSync) Stop() {
	l.hs.StopWebhooks()
	l.stop()
	l.wg.Wait()
	l.hook.Close()
	if l.closeConn != nil {
		l.closeConn()
	}
}

// changeEvents subscribes to the Salesforce fake's change events (its
// Pub/Sub API, started here if it is not yet) for the synced objects; each
// response is a trigger for key, a gap or overflow a full one. The replay
// id is kept in st, so a restart resumes where it stopped.
func changeEvents(f *fakes, st crmsync.Store, key, system string, co *trigger.Coalescer, log *slog.Logger) (*pubsub.Subscriber, func(), error) {
	pos, ok := st.(crmsync.PositionStore)
	if !ok {
		return nil, nil, errors.New("live: change events need a store that keeps positions (crmsync.PositionStore)")
	}
	if f.sf.PubSubAddr() == "" {
		if err := f.sf.StartPubSub(salesforcetest.PubSubConfig{}); err != nil {
			return nil, nil, fmt.Errorf("live: salesforce pub/sub: %w", err)
		}
	}
	conn, err := grpc.NewClient(f.sf.PubSubAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, nil, fmt.Errorf("live: salesforce pub/sub: %w", err)
	}
	sub, err := pubsub.New(pubsub.Config{
		Conn: conn,
		Credentials: func(context.Context, string) (pubsub.Credentials, error) {
			return pubsub.Credentials{AccessToken: f.sf.Token(), InstanceURL: f.sfURL, TenantID: f.sf.OrgID()}, nil
		},
		Topic:     "/data/ChangeEvents",
		Objects:   []string{"Account", "Contact", "Lead", "Opportunity", "OpportunityContactRole"},
		Positions: pos,
		Stream:    "salesforce-cdc:" + key,
		Trigger: func(ctx context.Context, _ []string, full bool) {
			co.Trigger(ctx, trigger.Event{Key: key, System: system, Full: full, Reason: "change event"})
		},
		Logger: log,
	})
	if err != nil {
		_ = conn.Close()
		return nil, nil, err
	}
	return sub, func() { _ = conn.Close() }, nil
}

// probe asks crm every interval whether any record of object changed since
// the last probe (one query of one record), and calls changed if so. It
// is the Salesforce side's trigger where no change events are subscribed.
func probe(ctx context.Context, crm crmsync.CRM, object string, every time.Duration, changed func(), log *slog.Logger) {
	since := time.Now()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		until := time.Now()
		p, err := crm.Changes(ctx, crmsync.ChangeQuery{Object: object, Since: since, Until: until, Fields: []string{"Id"}, PageSize: 1})
		if err != nil {
			if ctx.Err() == nil {
				log.Warn("probe for changes", "crm", crm.System(), "object", object, "err", err)
			}
			continue
		}
		since = until
		if len(p.Records) > 0 {
			changed()
		}
	}
}

// edit is one simulated user edit and when it showed on the other side.
type edit struct {
	Side    string // where the user edited: hubspot or salesforce
	Pair    int    // index into the world's shared contacts
	Value   string
	At      time.Time
	Crossed time.Duration // zero until seen on the other side
}

// editOne makes one user edit of the phone of a shared contact, on side,
// with a value never used before, and returns it.
func (w *world) editOne(side string, pair, n int) (edit, error) {
	e := edit{Side: side, Pair: pair, Value: fmt.Sprintf("+1 212 555 %04d x%d", pair%10000, n), At: time.Now()}
	i := w.shared[pair]
	if side == "hubspot" {
		return e, w.f.hs.Edit("contacts", w.hsIDs[i], map[string]string{"phone": e.Value})
	}
	return e, w.f.sf.Edit(w.sfIDs[i], crmsync.Fields{"Phone": e.Value})
}

// crossed reports whether e's value shows on the other side.
func (w *world) crossed(e edit) bool {
	i := w.shared[e.Pair]
	if e.Side == "hubspot" {
		r, ok := w.f.sf.Get(w.sfIDs[i])
		return ok && r.Fields["Phone"] == e.Value
	}
	r, ok := w.f.hs.Get("contacts", w.hsIDs[i])
	return ok && r.Properties["phone"] == e.Value
}

// playEdits makes n single edits of random shared contacts on random
// sides, one every gap (each contact at most once), and waits until each
// crossed to the other side or timeout passed after the last edit.
// report, if set, is told about each edit that crossed.
func (w *world) playEdits(ctx context.Context, rng *rand.Rand, n int, gap, timeout time.Duration, report func(edit)) ([]edit, error) {
	return w.playEditsWith(ctx, rng, n, func() time.Duration { return gap }, timeout, report)
}

// playEditsWith is playEdits with the gap after each edit drawn from gap.
func (w *world) playEditsWith(ctx context.Context, rng *rand.Rand, n int, gap func() time.Duration, timeout time.Duration, report func(edit)) ([]edit, error) {
	if n > len(w.shared) {
		return nil, fmt.Errorf("%d edits need as many shared contacts; the world has %d", n, len(w.shared))
	}
	pairs := rng.Perm(len(w.shared))[:n]
	var mu sync.Mutex
	var edits []edit
	done := make(chan struct{})
	go func() { // watch the other sides
		defer close(done)
		t := time.NewTicker(10 * time.Millisecond)
		defer t.Stop()
		var deadline time.Time
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			mu.Lock()
			open := 0
			for k := range edits {
				if edits[k].Crossed == 0 {
					if w.crossed(edits[k]) {
						edits[k].Crossed = max(time.Since(edits[k].At), time.Nanosecond)
						if report != nil {
							report(edits[k])
						}
					} else {
						open++
					}
				}
			}
			all := len(edits) == n
			mu.Unlock()
			if all && deadline.IsZero() {
				deadline = time.Now().Add(timeout)
			}
			if all && (open == 0 || time.Now().After(deadline)) {
				return
			}
		}
	}()
	for k, pair := range pairs {
		side := "hubspot"
		if rng.IntN(2) == 1 {
			side = "salesforce"
		}
		e, err := w.editOne(side, pair, k)
		if err != nil {
			return nil, err
		}
		mu.Lock()
		edits = append(edits, e)
		mu.Unlock()
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(gap()):
		}
	}
	<-done
	mu.Lock()
	defer mu.Unlock()
	return slices.Clone(edits), ctx.Err()
}

// percentile returns the p-th percentile (0 to 100) of ds, nearest rank.
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	k := int(p/100*float64(len(s))+0.5) - 1
	return s[min(max(k, 0), len(s)-1)]
}

// runLive is the main job's -live mode on the in-process fakes: a first
// pass, then passes on triggers while simulated users edit one contact at
// a time on either side; each edit is shown with the time it took to
// cross. The schedule (-every, 5 minutes by default) stays as the safety
// net.
func runLive(ctx context.Context, o options, stdout io.Writer, out *reportWriter, st storespec.Store, spec storespec.Spec, s *job, eng *crmsync.Engine, w *world, sfCRM crmsync.CRM) error {
	rep, info, err := s.RunOnce(ctx, eng, o.key)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return errors.New(errText(err, info.ID))
	}
	if err := out.report("first pass (initial sync)", rep); err != nil {
		return err
	}
	every := o.every
	if every <= 0 {
		every = 5 * time.Minute
	}
	c := liveTuning
	c.Every = every
	c.ChangeEvents = true
	c.OnPass = func(p trigger.Pass, writes int, err error) {
		if err != nil || o.json {
			return
		}
		out.con.clear()
		fmt.Fprintf(stdout, "  pass on %d event(s) from %s: %d written\n", p.Events, strings.Join(p.Systems, "+"), writes)
	}
	l, err := startLive(ctx, w.f, sfCRM, jobPasses(s, eng), st, o.key, c)
	if err != nil {
		return err
	}
	defer l.Stop()
	fmt.Fprintf(stdout, "\nlive: HubSpot sends signed webhooks to %s, Salesforce sends change events (Pub/Sub API), a pass runs %s as well; simulated users edit a phone every %s; Ctrl-C stops\n",
		l.hook.URL, "every "+every.String(), o.liveGap)
	n := o.liveEdits
	if n == 0 || n > len(w.shared) {
		n = len(w.shared)
	}
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 15))
	edits, err := w.playEdits(ctx, rng, n, o.liveGap, 30*time.Second, func(e edit) {
		i := w.shared[e.Pair]
		from, to, id := "HubSpot", "Salesforce", w.hsIDs[i]
		if e.Side == "salesforce" {
			from, to, id = "Salesforce", "HubSpot", w.sfIDs[i]
		}
		if !o.json {
			out.con.clear()
			fmt.Fprintf(stdout, "edit in %s of contact %s: in %s after %s\n", from, id, to, e.Crossed.Round(10*time.Millisecond))
		}
	})
	if err != nil && ctx.Err() == nil {
		return err
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
	fmt.Fprintf(stdout, "\n%d edit(s) crossed in p50 %s, p99 %s (%d not yet); %d triggered pass(es) started\n%s\n",
		len(lat), percentile(lat, 50).Round(10*time.Millisecond), percentile(lat, 99).Round(10*time.Millisecond), lost, l.co.Passes(), storeNote(spec, true))
	return nil
}
