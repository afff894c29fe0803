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

// quietAfterBurst links n contacts, edits burst of them in HubSpot, runs
// the pass that syncs the burst, and returns the harness and its clock.
func quietAfterBurst(t *testing.T, n, burst int, o harnessOpts, clk *testClock) (*harness, []string) {
	t.Helper()
	h := newHarness(t, o)
	ids := h.f.hs.SeedContacts(n)
	clk.Advance(time.Second)
	h.pass()
	require.Len(t, h.liveSF(), n)
	clk.Advance(5 * time.Minute)
	h.pass()
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
	clk.Advance(time.Second)
	h.pass()
	require.Len(t, h.liveSF(), 1)
	sfID := h.liveSF()[0].ID
	clk.Advance(5 * time.Minute)
	h.pass()

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
	o, hw, _ := wrapped(clocked(fast(t), clk, 0))
	h := newHarness(t, o)
	ids := h.f.hs.SeedContacts(50)
	clk.Advance(time.Second)
	h.pass()
	clk.Advance(5 * time.Minute)
	h.pass()

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
	var email string
	for _, r := range h.f.hs.All("contacts") {
		if r.ID == late {
			email = r.Properties["email"]
		}
	}
	require.Empty(t, sfPhoneOf(h, email))

	clk.Advance(5 * time.Minute)
	rep = h.pass()
	assert.Equal(t, "+1 555 0123", sfPhoneOf(h, email), "the record listed late reached Salesforce on the next tick")
	assert.Equal(t, 1, rep.Directions["hubspot->salesforce"].Updated, "only the late record was written")
}

// HubSpot's hourly reads, the delayed window's and the recycle bin's, fall
// due together: on a quiet tick they take turns, so that a quiet tick
// costs HubSpot at most its change read, one more read and the schema (3
// calls; Salesforce's 3 make 6).
func TestCoreHourlyReadsTakeTurnsOnQuietTicks(t *testing.T) {
	clk := newTestClock()
	h := newHarness(t, clocked(fast(t), clk, 0))
	h.f.hs.SeedContacts(20)
	clk.Advance(time.Second)
	h.pass()
	require.Len(t, h.liveSF(), 20)
	clk.Advance(5 * time.Minute)
	h.pass() // reads the backfill's write-backs to HubSpot
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
