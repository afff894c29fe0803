package playbook

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/crmsync/crmsync"
)

// settle brings the key to quiet once contacts are seeded in HubSpot: a
// second later the backfill pass links them (linked, if not zero, is how
// many contacts Salesforce must then hold), and five minutes later a pass
// reads the backfill's write-backs to HubSpot.
func settle(t *testing.T, h *harness, clk *testClock, linked int) {
	t.Helper()
	clk.Advance(time.Second)
	h.pass()
	if linked != 0 {
		require.Len(t, h.liveSF(), linked)
	}
	clk.Advance(5 * time.Minute)
	h.pass()
}

// quietAfterBurst links n contacts, edits burst of them in HubSpot, runs
// the pass that syncs the burst, and returns the harness and its clock.
func quietAfterBurst(t *testing.T, n, burst int, o harnessOpts, clk *testClock) (*harness, []string) {
	t.Helper()
	h := newHarness(t, o)
	ids := h.f.hs.SeedContacts(n)
	settle(t, h, clk, n)
	clk.Advance(5 * time.Minute)
	for i, id := range ids[:burst] {
		require.NoError(t, h.f.hs.Edit("contacts", id, map[string]string{"firstname": fmt.Sprintf("Burst%d", i)}))
	}
	clk.Advance(time.Second)
	rep := h.pass()
	require.Equal(t, burst, rep.Directions["hubspot->salesforce"].Updated, "the burst's pass synced the burst")
	return h, ids
}

// The first quiet tick after a burst costs what any quiet tick costs (at
// most 6 calls in all), not a re-read of the burst: neither HubSpot's
// records stamped just before the burst pass's window end nor the
// Salesforce records that pass wrote are read again.
func TestCoreFirstQuietTickAfterABurstIsCheap(t *testing.T) {
	clk := newTestClock()
	h, _ := quietAfterBurst(t, 1000, 600, clocked(fast(t), clk, 0), clk)
	for tick := 1; tick <= 3; tick++ {
		clk.Advance(5 * time.Minute)
		rep := h.pass()
		assert.LessOrEqual(t, sumCalls(rep.APICalls), 6, "quiet tick %d after the burst: calls %v, read %v", tick, rep.APICalls, rep.Read)
		assert.Equal(t, 0, rep.Read["salesforce"], "quiet tick %d read Salesforce records", tick)
	}
}

// Every quiet tick after a burst costs at most 6 calls, the ticks whose
// delayed window (SyncConfig.DelayedLag) falls due included: an hour after
// the backfill's write-backs and an hour after the burst, the delayed
// window holds hundreds of records the passes read already, and it is
// checked by one count rather than read again page by page.
func TestCoreEveryQuietTickAfterABurstIsCheap(t *testing.T) {
	clk := newTestClock()
	h, _ := quietAfterBurst(t, 1000, 600, clocked(fast(t), clk, 0), clk)
	var delayed int
	for tick := 1; tick <= 30; tick++ { // two and a half hours
		clk.Advance(5 * time.Minute)
		rep := h.pass()
		assert.LessOrEqual(t, sumCalls(rep.APICalls), 6, "quiet tick %d after the burst: calls %v, read %v", tick, rep.APICalls, rep.Read)
		assert.Equal(t, 0, rep.Read["hubspot"]+rep.Read["salesforce"], "quiet tick %d read records", tick)
		if _, ok := rep.Window.Delayed["hubspot"]; ok {
			delayed++
		}
	}
	assert.GreaterOrEqual(t, delayed, 2, "the delayed window fell due each hour")
}

// A person edits a Salesforce contact after the pass read Salesforce's
// window and before the pass's own write to the same contact lands: the
// write makes the sync's user the contact's last modifier, so the next
// pass's change read (which leaves out the sync's own writes) cannot list
// it. The pass reads back what it wrote and finds the edit.
func TestCoreReadBackFindsAnEditMadeBeforeTheSyncsWrite(t *testing.T) {
	clk := newTestClock()
	o, user := withUser(clocked(fast(t), clk, 0))
	h := newHarness(t, o)
	hsID := h.f.hs.Seed("contacts", map[string]string{"email": "race@x.example", "lastname": "Race"})[0]
	settle(t, h, clk, 1)
	sfID := h.liveSF()[0].ID

	clk.Advance(time.Minute)
	require.NoError(t, h.f.hs.Edit("contacts", hsID, map[string]string{"firstname": "Racer"}))
	user.arm(func(r *http.Request) bool {
		if r.Method != http.MethodPatch || !isCall(r, "/composite/sobjects") {
			return false
		}
		require.NoError(t, h.f.sf.Edit(sfID, crmsync.Fields{"Deal_Stage__c": "negotiation"}))
		return true
	})
	// The HubSpot edit is older than the next pass's window, so that
	// only Salesforce can bring the person's edit.
	clk.Advance(4 * time.Minute)
	h.pass()
	got, ok := h.f.sf.Get(sfID)
	require.True(t, ok)
	require.Equal(t, "Racer", got.Fields["FirstName"], "the pass wrote the HubSpot edit")
	for range 2 {
		clk.Advance(5 * time.Minute)
		h.pass()
	}
	assert.Equal(t, "negotiation", h.hsByEmail()["race@x.example"].Properties["sf_deal_stage"],
		"the Salesforce edit made before the sync's write reached HubSpot")
}

// A record HubSpot's search lists late, stamped inside the tail of a
// burst's pass (before the newest record that pass read there), is not in
// what the pass kept: the next pass's count of the tail is one more than it
// expects, and it reads the tail again. The wrapper hides the record from
// the burst pass's search, as an index that has not caught up does.
func TestCoreTailCountFindsALateListedRecord(t *testing.T) {
	clk := newTestClock()
	h, _, email := burstHidingOneRecord(t, clk)

	clk.Advance(5 * time.Minute)
	rep := h.pass()
	assert.Equal(t, "+1 555 0123", sfPhoneOf(h, email), "the record listed late reached Salesforce on the next tick")
	assert.Equal(t, 1, rep.Directions["hubspot->salesforce"].Updated, "only the late record was written")
}

// burstHidingOneRecord seeds 50 linked contacts, then edits one (the late
// record: its phone) and, a second later, 20 others (the burst), and runs
// the burst's pass with the late record hidden from HubSpot's search, as an
// index that has not caught up does. It returns the harness, the contact
// ids and the late record's email.
func burstHidingOneRecord(t *testing.T, clk *testClock) (*harness, []string, string) {
	t.Helper()
	o, hw, _ := wrapped(clocked(fast(t), clk, 0))
	h := newHarness(t, o)
	ids := h.f.hs.SeedContacts(50)
	settle(t, h, clk, 0)

	clk.Advance(5 * time.Minute)
	late := ids[0]
	require.NoError(t, h.f.hs.Edit("contacts", late, map[string]string{"phone": "+1 555 0123"}))
	clk.Advance(time.Second)
	for _, id := range ids[1:21] {
		require.NoError(t, h.f.hs.Edit("contacts", id, map[string]string{"firstname": "Burst"}))
	}
	hw.set(func(w *wrapCRM) {
		w.changes = func(ctx context.Context, next crmsync.CRM, q crmsync.ChangeQuery) (crmsync.Page, error) {
			pg, err := next.Changes(ctx, q)
			pg.Records = slices.DeleteFunc(pg.Records, func(r crmsync.Record) bool { return r.ID == late })
			return pg, err
		}
	})
	clk.Advance(time.Second)
	rep := h.pass()
	require.Equal(t, 20, rep.Directions["hubspot->salesforce"].Updated, "the burst's pass synced the burst, not the hidden record")
	hw.set(func(w *wrapCRM) { w.changes = nil })
	rec, ok := h.f.hs.Get("contacts", late)
	require.True(t, ok)
	email := rec.Properties["email"]
	require.Empty(t, sfPhoneOf(h, email))
	return h, ids, email
}

// A record listed late in a tail, while a record the pass kept there
// leaves (merged away, named by the merged record this pass reads past the
// tail): the count of the tail loses the one that left and gains the late
// one. The pass saw the first leave, so it expects one fewer: the count is
// one more than it expects, and it reads the tail again rather than leave
// the late record to the delayed window an hour later.
func TestCoreTailCountSeesALateRecordBehindOneMergedAway(t *testing.T) {
	clk := newTestClock()
	h, ids, email := burstHidingOneRecord(t, clk)

	// A user merges a new duplicate into one of the burst's records: the
	// burst's record leaves search, the merged record is stamped now.
	clk.Advance(time.Minute)
	dup := h.f.hs.SeedContacts(1)[0]
	winner, err := h.f.hs.Merge("contacts", ids[1], dup)
	require.NoError(t, err)

	clk.Advance(4 * time.Minute)
	rep := h.pass()
	_, tail := rep.Window.Tail["hubspot"]
	require.True(t, tail, "the pass counted the burst's tail (window %+v)", rep.Window)
	assert.Equal(t, "+1 555 0123", sfPhoneOf(h, email), "the record listed late reached Salesforce on the next tick")
	link, err := h.st.LinksByA(context.Background(), h.key, []string{winner})
	require.NoError(t, err)
	assert.Contains(t, link, winner, "the merged record took over the link")
}

// HubSpot's hourly reads, the delayed window's and the recycle bin's, fall
// due together: on a quiet tick they take turns, so that a quiet tick
// costs HubSpot at most its change read, one more read and the schema (3
// calls; Salesforce's 3 make 6).
func TestCoreHourlyReadsTakeTurnsOnQuietTicks(t *testing.T) {
	clk := newTestClock()
	h := newHarness(t, clocked(fast(t), clk, 0))
	h.f.hs.SeedContacts(20)
	settle(t, h, clk, 20)
	var delayed, bin int
	for tick := 1; tick <= 26; tick++ { // over two hours
		clk.Advance(5 * time.Minute)
		rep := h.pass()
		assert.LessOrEqual(t, rep.APICalls["hubspot"], 3, "quiet tick %d: calls %v", tick, rep.APICalls)
		if _, ok := rep.Window.Delayed["hubspot"]; ok {
			delayed++
		}
		if !rep.Window.SkipArchived["hubspot"] {
			bin++
		}
	}
	assert.GreaterOrEqual(t, delayed, 2, "the delayed window was read each hour")
	assert.GreaterOrEqual(t, bin, 2, "the recycle bin was read each hour")
}

// hideFromSearch makes the wrapped HubSpot client's search leave out
// record id, from its change reads and its counts, as an index that has
// not caught up with the record's last edit does; show ends it.
func hideFromSearch(h *harness, hw *wrapCRM, id string) (show func()) {
	stamp := func() time.Time {
		r, _ := h.f.hs.Get("contacts", id)
		return r.UpdatedAt
	}
	hw.set(func(w *wrapCRM) {
		w.changes = func(ctx context.Context, next crmsync.CRM, q crmsync.ChangeQuery) (crmsync.Page, error) {
			pg, err := next.Changes(ctx, q)
			pg.Records = slices.DeleteFunc(pg.Records, func(r crmsync.Record) bool { return r.ID == id })
			return pg, err
		}
		w.count = func(ctx context.Context, next crmsync.ChangeCounter, q crmsync.ChangeQuery) (int, error) {
			n, err := next.CountChanges(ctx, q)
			if at := stamp(); !at.Before(q.Since) && (q.Until.IsZero() || at.Before(q.Until)) {
				n--
			}
			return n, err
		}
	})
	return func() { hw.set(func(w *wrapCRM) { w.changes, w.count = nil, nil }) }
}

// lateListed sets up a record search lists late: 30 linked contacts; x and
// y are edited, x is read by the next pass and y (its phone) is hidden
// from search until every main window has passed its stamp. It returns
// y's email.
func lateListed(t *testing.T, h *harness, hw *wrapCRM, clk *testClock, x, y string) string {
	t.Helper()
	clk.Advance(5 * time.Minute)
	require.NoError(t, h.f.hs.Edit("contacts", x, map[string]string{"firstname": "Xavier"}))
	require.NoError(t, h.f.hs.Edit("contacts", y, map[string]string{"phone": "+1 555 0142"}))
	show := hideFromSearch(h, hw, y)
	for range 3 { // the overlap and the change lag are 3 minutes
		clk.Advance(5 * time.Minute)
		h.pass()
	}
	show()
	r, ok := h.f.hs.Get("contacts", y)
	require.True(t, ok)
	email := r.Properties["email"]
	clk.Advance(5 * time.Minute)
	h.pass()
	require.Empty(t, sfPhoneOf(h, email), "the main windows passed y's stamp before search listed it")
	return email
}

// (a) A record search lists only after every main window passed its stamp
// is found by the delayed check: counted from the window's start on, it is
// one more than the records the passes read there, and the check reads its
// window at once.
func TestCoreDelayedCheckFindsALateListedRecord(t *testing.T) {
	clk := newTestClock()
	o, hw, _ := wrapped(clocked(fast(t), clk, 0))
	h := newHarness(t, o)
	ids := h.f.hs.SeedContacts(30)
	settle(t, h, clk, 0)
	email := lateListed(t, h, hw, clk, ids[0], ids[1])
	found := false
	for tick := 0; tick < 30 && !found; tick++ { // two and a half hours
		clk.Advance(5 * time.Minute)
		rep := h.pass()
		if found = sfPhoneOf(h, email) != ""; found {
			_, checked := rep.Window.DelayedCheck["hubspot"]
			assert.True(t, checked, "the delayed check found the record (window %+v)", rep.Window)
		}
	}
	assert.True(t, found, "the record listed late reached Salesforce")
}

// (b) A record listed late whose count a record leaving meanwhile cancels:
// x, read by the passes, is archived after a bin read and before the
// delayed check whose window holds y's edit, so that the check counts as
// many records as the passes read (y in, x out). The check waits for the
// next bin read, which finds x archived: the count is one more than the
// records still there, and the window is read. The edits come after the
// delayed windows passed the backfill's write-backs, so that y is not
// known in the window that holds its edit (a record known there whose
// bound caps the check is read by id first, and y's edit found so).
func TestCoreDelayedCheckSeesALateRecordBehindOneThatLeft(t *testing.T) {
	clk := newTestClock()
	o, hw, _ := wrapped(clocked(fast(t), clk, 0))
	h := newHarness(t, o)
	ids := h.f.hs.SeedContacts(30)
	settle(t, h, clk, 0)
	x, y := ids[0], ids[1]
	other, ok := h.f.hs.Get("contacts", ids[2])
	require.True(t, ok)
	for tick := 0; ; tick++ {
		require.Less(t, tick, 40, "the delayed windows did not pass the backfill's write-backs in three hours")
		v, err := h.st.GetCursor(context.Background(), h.key, "hubspot:delayed")
		require.NoError(t, err)
		d, err := time.Parse(time.RFC3339Nano, v)
		require.NoError(t, err)
		if d.After(other.UpdatedAt) {
			break
		}
		clk.Advance(5 * time.Minute)
		h.pass()
	}
	email := lateListed(t, h, hw, clk, x, y)
	r, ok := h.f.hs.Get("contacts", y)
	require.True(t, ok)
	var archived, waited, found bool
	for tick := 0; tick < 40 && !found; tick++ { // over three hours
		clk.Advance(5 * time.Minute)
		rep := h.pass()
		found = sfPhoneOf(h, email) != ""
		_, confirming := rep.Window.Confirm["hubspot"]
		switch binRead := !rep.Window.SkipArchived["hubspot"]; {
		case archived && confirming && binRead:
			waited = true
			assert.True(t, found, "the bin read's confirmation found x gone and read the window")
		case !archived && binRead:
			v, err := h.st.GetCursor(context.Background(), h.key, "hubspot:delayed")
			require.NoError(t, err)
			d, err := time.Parse(time.RFC3339Nano, v)
			require.NoError(t, err)
			if d.After(other.UpdatedAt) && !d.After(r.UpdatedAt) {
				// The next check's window holds y's edit.
				require.NoError(t, h.f.hs.Archive("contacts", x))
				archived = true
			}
		}
		if archived && !waited {
			assert.False(t, found, "the count alone cannot tell y (x left)")
		}
	}
	assert.True(t, archived && waited, "a delayed check waited for a bin read after x left")
	assert.True(t, found, "the record listed late reached Salesforce")
}

// (c) A record of a tail edited again after the pass that read it, by a
// CRM clock 90 s behind the host's, gets a stamp no later than the newest
// the pass read there (the virtual clock stands still: the same stamp): a
// count of the tail cannot tell it. The passes measured the lag on their
// writes (the backfill's link write-backs), so the next pass reads, rather
// than counts, the stretch of the tail from the window's end less that
// lag: it finds the edit on the next tick, not an hour later.
func TestCoreTailReadsWhatASkewedClockCanStampAgain(t *testing.T) {
	clk := newTestClock()
	h := newHarness(t, clocked(fast(t), clk, -90*time.Second))
	ids := h.f.hs.SeedContacts(20)
	settle(t, h, clk, 20)

	clk.Advance(5 * time.Minute)
	for i, id := range ids[:10] {
		require.NoError(t, h.f.hs.Edit("contacts", id, map[string]string{"firstname": fmt.Sprintf("Burst%d", i)}))
	}
	rep := h.pass()
	require.Equal(t, 10, rep.Directions["hubspot->salesforce"].Updated, "the pass read and wrote the burst")
	again := ids[0]
	require.NoError(t, h.f.hs.Edit("contacts", again, map[string]string{"phone": "+1 555 0177"}))
	r, ok := h.f.hs.Get("contacts", again)
	require.True(t, ok)
	email := r.Properties["email"]
	clk.Advance(5 * time.Minute)
	rep = h.pass()
	assert.Equal(t, "+1 555 0177", sfPhoneOf(h, email), "the next tick found the edit stamped inside its tail (window %+v)", rep.Window)
}
