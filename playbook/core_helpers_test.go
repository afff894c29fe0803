package playbook

import (
	"context"
	"sync"
	"time"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/hubspot/hubspottest"
	"github.com/crmsync/crmsync/salesforce/salesforcetest"
)

// wrapCRM is a thin test-only wrapper around a real client that injects one
// behaviour the fakes lack today. Each hook, when set, replaces the call; it
// gets the real client to call through.
type wrapCRM struct {
	crmsync.CRM
	mu      sync.Mutex
	write   func(ctx context.Context, next crmsync.CRM, object string, ops []crmsync.WriteOp) ([]crmsync.WriteResult, error)
	changes func(ctx context.Context, next crmsync.CRM, q crmsync.ChangeQuery) (crmsync.Page, error)
	lookup  func(ctx context.Context, next crmsync.CRM, object, field string, values, fields []string) ([]crmsync.Record, error)
	schema  func(ctx context.Context, next crmsync.CRM, object string) (crmsync.Schema, error)
}

func (w *wrapCRM) hooks() (wr func(context.Context, crmsync.CRM, string, []crmsync.WriteOp) ([]crmsync.WriteResult, error),
	ch func(context.Context, crmsync.CRM, crmsync.ChangeQuery) (crmsync.Page, error),
	lk func(context.Context, crmsync.CRM, string, string, []string, []string) ([]crmsync.Record, error),
	sc func(context.Context, crmsync.CRM, string) (crmsync.Schema, error)) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.write, w.changes, w.lookup, w.schema
}

// set changes the hooks under the lock.
func (w *wrapCRM) set(f func(w *wrapCRM)) {
	w.mu.Lock()
	defer w.mu.Unlock()
	f(w)
}

func (w *wrapCRM) Write(ctx context.Context, object string, ops []crmsync.WriteOp) ([]crmsync.WriteResult, error) {
	if wr, _, _, _ := w.hooks(); wr != nil {
		return wr(ctx, w.CRM, object, ops)
	}
	return w.CRM.Write(ctx, object, ops)
}

func (w *wrapCRM) Changes(ctx context.Context, q crmsync.ChangeQuery) (crmsync.Page, error) {
	if _, ch, _, _ := w.hooks(); ch != nil {
		return ch(ctx, w.CRM, q)
	}
	return w.CRM.Changes(ctx, q)
}

func (w *wrapCRM) Lookup(ctx context.Context, object, field string, values, fields []string) ([]crmsync.Record, error) {
	if _, _, lk, _ := w.hooks(); lk != nil {
		return lk(ctx, w.CRM, object, field, values, fields)
	}
	return w.CRM.Lookup(ctx, object, field, values, fields)
}

func (w *wrapCRM) Schema(ctx context.Context, object string) (crmsync.Schema, error) {
	if _, _, _, sc := w.hooks(); sc != nil {
		return sc(ctx, w.CRM, object)
	}
	return w.CRM.Schema(ctx, object)
}

// wrapped builds a harness whose sync talks to the clients through wrappers.
func wrapped(o harnessOpts) (harnessOpts, *wrapCRM, *wrapCRM) {
	hw, sw := &wrapCRM{}, &wrapCRM{}
	prev := o.sync
	o.sync = func(c *crmsync.SyncConfig) {
		hw.CRM, sw.CRM = c.A, c.B
		c.A, c.B = hw, sw
		if prev != nil {
			prev(c)
		}
	}
	return o, hw, sw
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

// testClock is a fake clock shared by the sync and both fakes.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func newTestClock() *testClock {
	return &testClock{t: time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)}
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
// ahead of it (negative: behind).
func clocked(o harnessOpts, clk *testClock, skew time.Duration) harnessOpts {
	o.hs = append(o.hs, hubspottest.WithClock(func() time.Time { return clk.Now().Add(skew) }))
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

// lagCRM is a client whose change reads lag its writes by lag (what the
// HubSpot client will say through ChangeLagger).
type lagCRM struct {
	*wrapCRM
	lag time.Duration
}

func (l *lagCRM) ChangeLag() time.Duration { return l.lag }
