package playbook

import (
	"context"
	"fmt"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/hubspot"
	"github.com/crmsync/crmsync/hubspot/hubspottest"
	"github.com/crmsync/crmsync/salesforce"
	"github.com/crmsync/crmsync/salesforce/salesforcetest"
)

// wrapCRM is a thin test-only wrapper around a real client, for the few
// situations no fake behaviour produces (each use says which and why).
// Its hooks, when set, replace the calls; they get the real client to call
// through.
type wrapCRM struct {
	crmsync.CRM
	mu      sync.Mutex
	write   func(ctx context.Context, next crmsync.CRM, object string, ops []crmsync.WriteOp) ([]crmsync.WriteResult, error)
	changes func(ctx context.Context, next crmsync.CRM, q crmsync.ChangeQuery) (crmsync.Page, error)
	count   func(ctx context.Context, next crmsync.ChangeCounter, q crmsync.ChangeQuery) (int, error)
}

// set changes the hook under the lock.
func (w *wrapCRM) set(f func(w *wrapCRM)) {
	w.mu.Lock()
	defer w.mu.Unlock()
	f(w)
}

func (w *wrapCRM) Write(ctx context.Context, object string, ops []crmsync.WriteOp) ([]crmsync.WriteResult, error) {
	w.mu.Lock()
	wr := w.write
	w.mu.Unlock()
	if wr != nil {
		return wr(ctx, w.CRM, object, ops)
	}
	return w.CRM.Write(ctx, object, ops)
}

func (w *wrapCRM) Changes(ctx context.Context, q crmsync.ChangeQuery) (crmsync.Page, error) {
	w.mu.Lock()
	ch := w.changes
	w.mu.Unlock()
	if ch != nil {
		return ch(ctx, w.CRM, q)
	}
	return w.CRM.Changes(ctx, q)
}

// hubspotWrap and salesforceWrap are what a sync sees of a wrapCRM: each
// has exactly the optional interfaces of its real client (wrapped checks
// it), so that wrapping changes nothing but what the hooks change. (One
// wrapper with every optional method said a Salesforce id lived on as
// itself when asked as an IDResolver, and hid Salesforce's merge winners
// and both clients' budgets.)
type hubspotWrap struct{ *wrapCRM }

func (w hubspotWrap) ResolveID(ctx context.Context, object, id string) (string, error) {
	return w.CRM.(crmsync.IDResolver).ResolveID(ctx, object, id)
}

func (w hubspotWrap) ChangeLag() time.Duration { return w.CRM.(crmsync.ChangeLagger).ChangeLag() }

func (w hubspotWrap) ArchivedReadsWholeBin() bool {
	return w.CRM.(crmsync.WholeBinReader).ArchivedReadsWholeBin()
}

func (w hubspotWrap) CountChanges(ctx context.Context, q crmsync.ChangeQuery) (int, error) {
	c := w.CRM.(crmsync.ChangeCounter)
	w.mu.Lock()
	cnt := w.count
	w.mu.Unlock()
	if cnt != nil {
		return cnt(ctx, c, q)
	}
	return c.CountChanges(ctx, q)
}

func (w hubspotWrap) APIBudget() (crmsync.APIBudget, bool) {
	return w.CRM.(crmsync.BudgetReporter).APIBudget()
}

type salesforceWrap struct{ *wrapCRM }

func (w salesforceWrap) FiltersOwnWrites() bool {
	return w.CRM.(crmsync.OwnWriteFilter).FiltersOwnWrites()
}

func (w salesforceWrap) MergedAway(ctx context.Context, object string, winners []string) (map[string][]string, error) {
	return w.CRM.(crmsync.MergedAwayLister).MergedAway(ctx, object, winners)
}

func (w salesforceWrap) APIBudget() (crmsync.APIBudget, bool) {
	return w.CRM.(crmsync.BudgetReporter).APIBudget()
}

// optionalInterfaces are the optional interfaces of a CRM client.
var optionalInterfaces = []reflect.Type{
	reflect.TypeFor[crmsync.IDResolver](), reflect.TypeFor[crmsync.ChangeLagger](),
	reflect.TypeFor[crmsync.WholeBinReader](), reflect.TypeFor[crmsync.ChangeCounter](),
	reflect.TypeFor[crmsync.OwnWriteFilter](), reflect.TypeFor[crmsync.MergedAwayLister](),
	reflect.TypeFor[crmsync.BudgetReporter](),
}

// optional names the optional interfaces c implements.
func optional(c crmsync.CRM) []string {
	var out []string
	for _, it := range optionalInterfaces {
		if reflect.TypeOf(c).Implements(it) {
			out = append(out, it.Name())
		}
	}
	return out
}

// wrapFor returns what the sync is given for w: the wrapper type of w's
// real client, with the same optional interfaces (it panics otherwise: a
// wrapper that adds or hides one changes the sync's behaviour unseen).
func wrapFor(w *wrapCRM) crmsync.CRM {
	var out crmsync.CRM = w
	switch w.CRM.(type) {
	case *hubspot.Client:
		out = hubspotWrap{w}
	case *salesforce.Client:
		out = salesforceWrap{w}
	}
	if got, want := optional(out), optional(w.CRM); !slices.Equal(got, want) {
		panic(fmt.Sprintf("wrapCRM: the wrapper of a %T has optional interfaces %v, the client %v", w.CRM, got, want))
	}
	return out
}

// wrapped builds a harness whose sync talks to the clients through wrappers.
func wrapped(o harnessOpts) (harnessOpts, *wrapCRM, *wrapCRM) {
	hw, sw := &wrapCRM{}, &wrapCRM{}
	prev := o.sync
	o.sync = func(c *crmsync.SyncConfig) {
		hw.CRM, sw.CRM = c.A, c.B
		c.A, c.B = wrapFor(hw), wrapFor(sw)
		if prev != nil {
			prev(c)
		}
	}
	return o, hw, sw
}

// userTransport lets the world act while a pass runs: when a request the
// armed hook matches goes out, the hook runs first (a user merges, hides a
// field, ...) and the request then reaches the fake as usual. The clients
// and the fakes stay the real ones; this only chooses the moment.
type userTransport struct {
	base http.RoundTripper
	mu   sync.Mutex
	hook func(r *http.Request) bool // reports true when it acted (it is then disarmed)
}

// arm sets the hook that acts once, on the first request it accepts.
func (u *userTransport) arm(hook func(r *http.Request) bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.hook = hook
}

func (u *userTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	u.mu.Lock()
	if u.hook != nil && u.hook(r) {
		u.hook = nil
	}
	u.mu.Unlock()
	return u.base.RoundTrip(r)
}

// withUser routes both clients through a userTransport.
func withUser(o harnessOpts) (harnessOpts, *userTransport) {
	u := &userTransport{base: http.DefaultTransport}
	o.clients.HTTPClient = &http.Client{Transport: u}
	return o, u
}

// isCall reports whether r is a call to an API path ending in suffix
// ("/batch/update", "/query").
func isCall(r *http.Request, suffix string) bool {
	return strings.HasSuffix(r.URL.Path, suffix)
}

// useHubSpot replaces the harness's HubSpot client with one built from cfg
// (its ChangeLag or Now, say), and rebuilds the sync on it with hook.
func (h *harness) useHubSpot(cfg func(*hubspot.Config), hook func(*crmsync.SyncConfig)) {
	h.t.Helper()
	c := hubspot.Config{Token: h.f.hsToken, BaseURL: h.f.hsURL, Limiter: unlimited(h.t), SearchLimiter: unlimited(h.t),
		RetryInitial: 10 * time.Millisecond}
	cfg(&c)
	hc, err := hubspot.New(c)
	if err != nil {
		h.t.Fatal(err)
	}
	h.hc = hc
	pol := contactsPolicy()
	sc := crmsync.SyncConfig{A: h.hc, B: h.sc, ObjectA: "contacts", ObjectB: "Contact", Policy: &pol,
		LinkFieldA: hubspotLinkField, LinkFieldB: salesforceLinkField}
	if hook != nil {
		hook(&sc)
	}
	if h.sync, err = crmsync.NewSync(sc); err != nil {
		h.t.Fatal(err)
	}
}

// deadLetters lists the key's letters in any state.
func (h *harness) deadLetters() []crmsync.DeadLetter {
	h.t.Helper()
	dl, err := h.st.ListDeadLetters(context.Background(), crmsync.DeadLetterQuery{Key: h.key})
	if err != nil {
		h.t.Fatal(err)
	}
	return dl
}

// liveHS and liveSF list the fakes' live records.
func (h *harness) liveHS() []string {
	var ids []string
	for _, r := range h.f.hs.All("contacts") {
		if !r.Archived {
			ids = append(ids, r.ID)
		}
	}
	return ids
}

func (h *harness) liveSF() []crmsync.Record {
	var out []crmsync.Record
	for _, r := range h.f.sf.All() {
		if !r.Archived {
			out = append(out, r)
		}
	}
	return out
}

// testClock is a fake clock shared by the sync and both fakes. It starts at
// the real time, since the Salesforce client checks its deleted-records
// window (15 days) on its own clock.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func newTestClock() *testClock {
	return &testClock{t: time.Now().UTC().Truncate(time.Second)}
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// clocked runs the sync and both fakes on clk; HubSpot's stamps run skew
// ahead of it (negative: behind), the fake's own clock skew.
func clocked(o harnessOpts, clk *testClock, skew time.Duration) harnessOpts {
	o.hs = append(o.hs, hubspottest.WithClock(clk.Now), hubspottest.WithClockSkew(skew))
	o.sf = append(o.sf, func(c *salesforcetest.Config) { c.Now = clk.Now })
	prev := o.sync
	o.sync = func(c *crmsync.SyncConfig) {
		c.Now = clk.Now
		if prev != nil {
			prev(c)
		}
	}
	return o
}
