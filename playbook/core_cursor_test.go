package playbook

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/hubspot"
	"github.com/crmsync/crmsync/hubspot/hubspottest"
)

// sfPhoneOf reads a synced contact's phone on Salesforce.
func sfPhoneOf(h *harness, email string) string {
	for _, r := range h.liveSF() {
		if e, _ := r.Fields["Email"].(string); e == email {
			v, _ := r.Fields["Phone"].(string)
			return v
		}
	}
	return ""
}

// lagged runs the harness on clk with HubSpot's search lagging every write
// by searchLag (the fake's WithSearchLag, on clk), and a HubSpot client
// whose ChangeLag is changeLag.
func lagged(t *testing.T, clk *testClock, searchLag, changeLag time.Duration) *harness {
	o := clocked(fast(t), clk, 0)
	o.hs = append(o.hs, hubspottest.WithSearchLag(searchLag, searchLag))
	h := newHarness(t, o)
	h.useHubSpot(func(c *hubspot.Config) { c.ChangeLag, c.Now = changeLag, clk.Now },
		func(c *crmsync.SyncConfig) { c.Now = clk.Now })
	return h
}

// HubSpot stamps run 90 s behind the sync host (the fake's clock skew): an
// edit made after a pass is stamped before that pass's window end, and only
// the overlap finds it.
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

// A change that HubSpot's search lists late (the fake's search lag, 4
// minutes here, longer than the 2-minute overlap) is still read: the cursor
// stops at the window end less the client's change lag (5 minutes).
func TestCoreCursorStopsShortOfTheChangeLag(t *testing.T) {
	clk := newTestClock()
	h := lagged(t, clk, 4*time.Minute, 5*time.Minute)
	id := h.f.hs.Seed("contacts", map[string]string{"email": "late@x.example", "lastname": "Late"})[0]
	h.f.hs.SettleSearch()
	clk.Advance(time.Second)
	h.pass()
	require.Len(t, h.liveSF(), 1)
	// Quiet for a while: the pair's stamps fall behind both windows, so
	// that only HubSpot's search can bring the edit.
	clk.Advance(20 * time.Minute)
	h.pass()

	clk.Advance(time.Minute)
	require.NoError(t, h.f.hs.Edit("contacts", id, map[string]string{"phone": "+1 555 0101"}))
	clk.Advance(3 * time.Minute)
	h.pass()
	require.Equal(t, "", sfPhoneOf(h, "late@x.example"), "search has not listed the edit yet")
	clk.Advance(7 * time.Minute)
	h.pass()
	assert.Equal(t, "+1 555 0101", sfPhoneOf(h, "late@x.example"), "the late-listed edit reached Salesforce")
}

// A side that fails part-way keeps its cursor: pages read before the
// failure do not move it, and the resumed run finishes the side. HubSpot's
// search answers the second page with 503s until the client gives up.
func TestCoreCursorHoldsWhenASideFailsPartWay(t *testing.T) {
	clk := newTestClock()
	o := clocked(fast(t), clk, 0)
	prev := o.sync
	o.sync = func(c *crmsync.SyncConfig) { prev(c); c.PageSize = 2 }
	// A step that fails once ends the run (left open, resumed by the next).
	o.engine = func(c *crmsync.Config) {
		c.Retry = &crmsync.RetryPolicy{MaxAttempts: 1, InitialInterval: time.Millisecond, MaxInterval: time.Millisecond}
	}
	h := newHarness(t, o)
	for i := range 3 {
		h.f.hs.Seed("contacts", map[string]string{"email": fmt.Sprintf("p%d@x.example", i), "lastname": "Paged"})
		clk.Advance(time.Second)
	}
	// The first search (page one) goes through; the second (page two)
	// fails on every try of the client (1 + 4 retries).
	h.f.hs.Fail(hubspottest.Fault{Kind: hubspottest.Latency, Endpoint: "search", Latency: time.Millisecond},
		hubspottest.Fault{Kind: hubspottest.ServerError, Endpoint: "search", Status: 503, Count: 5})
	clk.Advance(time.Second)
	_, _, err := h.sync.RunOnce(context.Background(), h.eng, h.key)
	require.Error(t, err)
	require.Len(t, h.liveSF(), 2, "the first page was handled")
	_, err = h.st.GetCursor(context.Background(), h.key, "hubspot")
	assert.True(t, errors.Is(err, crmsync.ErrNotFound), "the HubSpot cursor did not move over the pages read before the failure (got %v)", err)
	clk.Advance(time.Second)
	h.pass()
	assert.Len(t, h.liveSF(), 3, "the resumed run finished the side")
	cur, err := h.st.GetCursor(context.Background(), h.key, "hubspot")
	require.NoError(t, err)
	assert.NotEmpty(t, cur)
}

// A change listed later than the change lag (the fake's search lags every
// write by 50 minutes, past the main cursor) is found by the delayed window,
// which checks older changes on a slower cadence (within about two
// DelayedLag at most: see sync_tail.go).
func TestCoreDelayedWindowFindsAVeryLateChange(t *testing.T) {
	clk := newTestClock()
	h := lagged(t, clk, 50*time.Minute, 5*time.Minute)
	id := h.f.hs.Seed("contacts", map[string]string{"email": "hour@x.example", "lastname": "Hour"})[0]
	h.f.hs.SettleSearch()
	clk.Advance(time.Second)
	h.pass()
	require.Len(t, h.liveSF(), 1)
	clk.Advance(3 * time.Minute)
	h.pass() // quiet: Salesforce's cursor moves past the pair

	clk.Advance(30 * time.Second)
	require.NoError(t, h.f.hs.Edit("contacts", id, map[string]string{"phone": "+1 555 0199"}))
	for _, d := range []time.Duration{2 * time.Minute, 20 * time.Minute, 30 * time.Minute} {
		clk.Advance(d)
		h.pass()
	}
	require.Equal(t, "", sfPhoneOf(h, "hour@x.example"), "the edit is listed by now, but behind the main window")
	// Quiet ticks, two hours more: the delayed window falls due and is
	// checked by count. The window a check covers holds a record listed
	// there that no pass read at its stamp (the passes read the contact at
	// its link write-back, before the window): the check reads the window.
	for range 24 {
		clk.Advance(5 * time.Minute)
		h.pass()
	}
	assert.Equal(t, "+1 555 0199", sfPhoneOf(h, "hour@x.example"), "the delayed window found the late edit")
}

// busySpellThenLateEdit syncs eight contacts (b0…b7@x.example), then runs
// a busy spell: eight passes, each reading an edit of one of them, so that
// the records known in the hour have bounds minutes apart. Then contact
// late (an index) is edited so that search lists the edit later than the
// change lag, and the schedule goes on quietly until every main window has
// passed the edit: only a delayed window can find it. It returns late's
// email.
func busySpellThenLateEdit(t *testing.T, h *harness, clk *testClock, late int) string {
	t.Helper()
	var ids []string
	for i := range 8 {
		ids = append(ids, h.f.hs.Seed("contacts", map[string]string{"email": fmt.Sprintf("b%d@x.example", i), "lastname": "Busy"})[0])
	}
	h.f.hs.SettleSearch()
	clk.Advance(time.Second)
	h.pass()
	require.Len(t, h.liveSF(), 8)
	for i := range ids {
		// An edit half a minute after a pass is listed before the next,
		// which reads it with its own bound.
		clk.Advance(30 * time.Second)
		require.NoError(t, h.f.hs.Edit("contacts", ids[i], map[string]string{"phone": fmt.Sprintf("+1 555 %04d", i)}))
		clk.Advance(4*time.Minute + 30*time.Second)
		h.pass()
	}
	// An edit a minute and a half after a pass is listed after the next
	// pass and stamped before the one after's window.
	clk.Advance(90 * time.Second)
	require.NoError(t, h.f.hs.Edit("contacts", ids[late], map[string]string{"phone": "+1 555 0199"}))
	clk.Advance(3*time.Minute + 30*time.Second)
	h.pass()
	for range 3 {
		clk.Advance(5 * time.Minute)
		h.pass()
	}
	email := fmt.Sprintf("b%d@x.example", late)
	require.NotEqual(t, "+1 555 0199", sfPhoneOf(h, email), "the main windows do not list the late edit; the test tests nothing")
	return email
}

// After a busy spell, an edit to the first record it read is listed late,
// and the schedule goes quiet: the delayed windows reach it within three
// hours of quiet ticks. The graph model drew stories where checks by count
// followed one another for hours (see the closing note of the stop that
// added this); this guards the common shape.
func TestCoreDelayedWindowReachesALateEditAfterABusySpell(t *testing.T) {
	clk := newTestClock()
	h := lagged(t, clk, 4*time.Minute, time.Minute)
	email := busySpellThenLateEdit(t, h, clk, 0)
	for range 36 { // three hours of quiet ticks
		clk.Advance(5 * time.Minute)
		h.pass()
	}
	assert.Equal(t, "+1 555 0199", sfPhoneOf(h, email), "the delayed window found the late edit")
}

// The same, but the late edit is to the record the spell read last, so
// that every record known in the delayed window has a bound before the
// late edit's. A check by count vouches for a window only up to the first
// bound of a record known there, so the records whose bounds stop it short
// are read by id first: found unchanged, they stop nothing; found edited
// inside the window, it is read at once. Without that, each hourly check
// advanced one bound, and the late edit waited about two hours per pass of
// the spell before it (98 quiet ticks here).
func TestCoreDelayedWindowVouchesForTheRecordsItKnows(t *testing.T) {
	clk := newTestClock()
	h := lagged(t, clk, 4*time.Minute, time.Minute)
	email := busySpellThenLateEdit(t, h, clk, 7)
	// The first delayed window due holds the late edit; the record's read
	// by id finds it edited there, and the window is read at once.
	for range 16 { // 80 minutes of quiet ticks
		clk.Advance(5 * time.Minute)
		h.pass()
	}
	assert.Equal(t, "+1 555 0199", sfPhoneOf(h, email), "the delayed window found the late edit")
}
