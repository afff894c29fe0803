package playbook

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/crmsync/crmsync"
)

// hsPhone reads a synced HubSpot contact's phone on Salesforce.
func sfPhoneOf(h *harness, email string) string {
	for _, r := range h.liveSF() {
		if e, _ := r.Fields["Email"].(string); e == email {
			v, _ := r.Fields["Phone"].(string)
			return v
		}
	}
	return ""
}

// HubSpot stamps run 90 s behind the sync host: an edit made after a pass
// is stamped before that pass's window end, and only the overlap finds it.
func TestCoreOverlapCoversSkewedStamps(t *testing.T) {
	clk := newTestClock()
	h := newHarness(t, clocked(fast(t), clk, -90*time.Second))
	id := h.f.hs.Seed("contacts", map[string]string{"email": "skew@x.example", "lastname": "Skew"})[0]
	clk.Advance(time.Second)
	h.pass()
	require.Len(t, h.liveSF(), 1)
	clk.Advance(time.Second)
	h.pass() // quiet: both cursors move past the pair's stamps
	clk.Advance(10 * time.Second)
	require.NoError(t, h.f.hs.Edit("contacts", id, map[string]string{"phone": "+1 555 0100"}))
	clk.Advance(10 * time.Second)
	h.pass()
	assert.Equal(t, "+1 555 0100", sfPhoneOf(h, "skew@x.example"), "the edit stamped before the last window end reached Salesforce")
}

// A change that HubSpot lists late (search lag) is still read: the cursor
// stops at the window end less the CRM's change lag, not at the newest
// record seen.
func TestCoreCursorStopsShortOfTheChangeLag(t *testing.T) {
	clk := newTestClock()
	hw := &wrapCRM{}
	o := clocked(fast(t), clk, 0)
	o.sync = func(c *crmsync.SyncConfig) {
		c.Now = clk.Now
		hw.CRM = c.A
		c.A = &lagCRM{wrapCRM: hw, lag: 5 * time.Minute}
	}
	h := newHarness(t, o)
	ids := h.f.hs.Seed("contacts", map[string]string{"email": "late@x.example", "lastname": "Late"},
		map[string]string{"email": "early@x.example", "lastname": "Early"})
	clk.Advance(time.Second)
	rep := h.pass()
	require.Len(t, h.liveSF(), 2, "%+v", rep)
	// A later Salesforce edit moves Salesforce's cursor past the pair, so
	// that only HubSpot's read can find the late edit.
	clk.Advance(3 * time.Minute)
	for _, r := range h.liveSF() {
		if e, _ := r.Fields["Email"].(string); e == "early@x.example" {
			require.NoError(t, h.f.sf.Edit(r.ID, crmsync.Fields{"Title": "Quiet"}))
		}
	}
	clk.Advance(time.Second)
	h.pass()

	clk.Advance(time.Minute)
	require.NoError(t, h.f.hs.Edit("contacts", ids[0], map[string]string{"phone": "+1 555 0101"}))
	clk.Advance(4 * time.Minute)
	require.NoError(t, h.f.hs.Edit("contacts", ids[1], map[string]string{"phone": "+1 555 0102"}))
	clk.Advance(time.Minute)
	// Search has not indexed the first edit yet.
	hw.set(func(w *wrapCRM) {
		w.changes = func(ctx context.Context, next crmsync.CRM, q crmsync.ChangeQuery) (crmsync.Page, error) {
			pg, err := next.Changes(ctx, q)
			pg.Records = slices.DeleteFunc(pg.Records, func(r crmsync.Record) bool { return r.ID == ids[0] })
			return pg, err
		}
	})
	h.pass()
	require.Equal(t, "+1 555 0102", sfPhoneOf(h, "early@x.example"))
	hw.set(func(w *wrapCRM) { w.changes = nil })
	clk.Advance(15 * time.Minute)
	h.pass()
	assert.Equal(t, "+1 555 0101", sfPhoneOf(h, "late@x.example"), "the late-listed edit reached Salesforce")
}

// A side that fails part-way keeps its cursor: pages read before the
// failure do not move it, and the resumed run finishes the side.
func TestCoreCursorHoldsWhenASideFailsPartWay(t *testing.T) {
	clk := newTestClock()
	o, hw, _ := wrapped(clocked(fast(t), clk, 0))
	prev := o.sync
	o.sync = func(c *crmsync.SyncConfig) { prev(c); c.PageSize = 2 }
	h := newHarness(t, o)
	for i := range 3 {
		h.f.hs.Seed("contacts", map[string]string{"email": fmt.Sprintf("p%d@x.example", i), "lastname": "Paged"})
		clk.Advance(time.Second)
	}
	failed := false
	hw.set(func(w *wrapCRM) {
		w.changes = func(ctx context.Context, next crmsync.CRM, q crmsync.ChangeQuery) (crmsync.Page, error) {
			if q.PageToken != "" && !q.Archived && !failed {
				failed = true
				return crmsync.Page{}, fmt.Errorf("second page: %w", crmsync.ErrDailyLimit)
			}
			return next.Changes(ctx, q)
		}
	})
	clk.Advance(time.Second)
	_, _, err := h.sync.RunOnce(context.Background(), h.eng, h.key)
	require.ErrorIs(t, err, crmsync.ErrDailyLimit)
	_, err = h.st.GetCursor(context.Background(), h.key, "hubspot")
	assert.True(t, errors.Is(err, crmsync.ErrNotFound), "the HubSpot cursor did not move over the pages read before the failure (got %v)", err)
	clk.Advance(time.Second)
	h.pass()
	assert.Len(t, h.liveSF(), 3, "the resumed run finished the side")
	cur, err := h.st.GetCursor(context.Background(), h.key, "hubspot")
	require.NoError(t, err)
	assert.NotEmpty(t, cur)
}

// A change listed later than the change lag (an hour late, past the main
// cursor) is found by the delayed window, which re-reads older changes on
// a slower cadence.
func TestCoreDelayedWindowFindsAVeryLateChange(t *testing.T) {
	clk := newTestClock()
	hw := &wrapCRM{}
	o := clocked(fast(t), clk, 0)
	o.sync = func(c *crmsync.SyncConfig) {
		c.Now = clk.Now
		hw.CRM = c.A
		c.A = &lagCRM{wrapCRM: hw, lag: 5 * time.Minute}
	}
	h := newHarness(t, o)
	start := clk.Now()
	id := h.f.hs.Seed("contacts", map[string]string{"email": "hour@x.example", "lastname": "Hour"})[0]
	clk.Advance(time.Second)
	h.pass()
	require.Len(t, h.liveSF(), 1)
	clk.Advance(3 * time.Minute)
	h.pass() // quiet: Salesforce's cursor moves past the pair

	clk.Advance(30 * time.Second)
	require.NoError(t, h.f.hs.Edit("contacts", id, map[string]string{"phone": "+1 555 0199"}))
	// Search lists the edit only an hour later.
	hw.set(func(w *wrapCRM) {
		w.changes = func(ctx context.Context, next crmsync.CRM, q crmsync.ChangeQuery) (crmsync.Page, error) {
			pg, err := next.Changes(ctx, q)
			if clk.Now().Before(start.Add(time.Hour)) {
				pg.Records = slices.DeleteFunc(pg.Records, func(r crmsync.Record) bool { return r.ID == id })
			}
			return pg, err
		}
	})
	for _, d := range []time.Duration{2 * time.Minute, 20 * time.Minute, 30 * time.Minute} {
		clk.Advance(d)
		h.pass()
	}
	require.Equal(t, "", sfPhoneOf(h, "hour@x.example"), "the edit is not listed yet")
	clk.Advance(10 * time.Minute)
	h.pass()
	assert.Equal(t, "+1 555 0199", sfPhoneOf(h, "hour@x.example"), "the delayed window found the late edit")
}
