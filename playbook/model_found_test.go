package playbook

import (
	"context"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/salesforce/salesforcetest"
)

// This file holds focused tests of defects TestModel's hostile world
// found (the seeds are in modelSeeds).

// TestSalesforceMergeIntoNewDuplicateKeepsOnePerson: a Salesforce user
// creates a duplicate of a synced contact and merges the old one into it
// before the next pass. The pass must relink the person's HubSpot contact
// to the winner, not create a second HubSpot contact for the winner and
// leave the first unlinked. (Found by TestModel, seed 10.)
func TestSalesforceMergeIntoNewDuplicateKeepsOnePerson(t *testing.T) {
	h := newHarness(t, fast(t))
	old := h.f.sf.Seed(crmsync.Fields{"Email": "ada@example.com", "FirstName": "Ada", "LastName": "Lovelace"})[0]
	h.pass()
	hs := h.hsByEmail()["ada@example.com"]
	if hs.ID == "" {
		t.Fatal("the contact did not reach HubSpot; the test tested nothing")
	}
	dup := h.f.sf.Seed(crmsync.Fields{"Email": "ada@work.example.com", "FirstName": "Ada", "LastName": "Lovelace"})[0]
	must(t, h.f.sf.Merge(dup, old))
	time.Sleep(3 * time.Millisecond)
	h.pass()
	h.pass()
	if live := h.liveHS(); len(live) != 1 {
		t.Errorf("HubSpot has %d live contacts for one person (%v), want 1", len(live), live)
	}
	r, _ := h.f.hs.Get("contacts", hs.ID)
	if r.Archived || r.Properties["crmsync_archived"] == "true" {
		t.Errorf("HubSpot contact %s is archived or flagged (%v, %q): a merge archives nobody", hs.ID, r.Archived, r.Properties["crmsync_archived"])
	}
	links, err := h.st.LinksByA(context.Background(), h.key, []string{hs.ID})
	if err != nil {
		t.Fatal(err)
	}
	if got := links[hs.ID].BID; got != dup {
		t.Errorf("HubSpot contact %s is linked to %q, want the merge winner %s", hs.ID, got, dup)
	}
}

// refuseNextSalesforceUpdate makes Salesforce refuse the next collections
// update call whole, as RefuseBatches does: the client parks its records.
func refuseNextSalesforceUpdate(h *harness) {
	h.f.sf.Inject(salesforcetest.Fault{Endpoint: "update", Status: 400, ErrorCode: "JSON_PARSER_ERROR"})
}

// replayAll marks every parked or failed-again letter for replay.
func replayAll(t *testing.T, h *harness) int {
	n := 0
	for _, d := range h.deadLetters() {
		if d.Status == crmsync.DeadParked || d.Status == crmsync.DeadFailedAgain {
			must(t, h.st.SetDeadLetterStatus(context.Background(), d.ID, crmsync.DeadReplay, time.Now()))
			n++
		}
	}
	return n
}

// TestReplayedArchiveFlagIsWritten: a HubSpot contact is archived; the
// write of the archive flag to its Salesforce counterpart is refused whole
// and parked. Once a person replays the letter, the flag must be written.
// (Found by TestModel, seed 183: the replay reads the archived source
// again and writes nothing.)
func TestReplayedArchiveFlagIsWritten(t *testing.T) {
	h := newHarness(t, fast(t))
	ids := h.f.hs.SeedContacts(1)
	h.pass()
	sf := h.sfByEmail()["contact"+ids[0]+"@example.com"]
	if len(sf) != 1 {
		t.Fatalf("counterpart missing: %v", sf)
	}
	must(t, h.f.hs.Archive("contacts", ids[0]))
	h.sync.RequestArchivedRead(h.key, "hubspot")
	refuseNextSalesforceUpdate(h)
	time.Sleep(3 * time.Millisecond)
	h.pass()
	if n := replayAll(t, h); n != 1 {
		t.Fatalf("%d letters parked, want the refused flag write; the test tested nothing", n)
	}
	h.pass()
	h.pass()
	if r, _ := h.f.sf.Get(sf[0].ID); r.Fields["Archived__c"] != true {
		t.Errorf("after the replay Salesforce %s has Archived__c = %v, want true", sf[0].ID, r.Fields["Archived__c"])
	}
}

// TestReplayedResolutionIsApplied: a person resolves a held conflict; the
// write of the choice to Salesforce is refused whole and parked. Once the
// letter is replayed, both sides must hold the chosen value. (Found by
// TestModel, seed 1038: the replay reads the pair again, sees no change,
// and the choice is never applied.)
func TestReplayedResolutionIsApplied(t *testing.T) {
	h := newHarness(t, fast(t))
	ids := h.f.hs.SeedContacts(1)
	h.pass()
	sf := h.sfByEmail()["contact"+ids[0]+"@example.com"]
	if len(sf) != 1 {
		t.Fatalf("counterpart missing: %v", sf)
	}
	must(t, h.f.hs.Edit("contacts", ids[0], map[string]string{"firstname": "Augusta"}))
	must(t, h.f.sf.Edit(sf[0].ID, crmsync.Fields{"FirstName": "Ada"}))
	time.Sleep(3 * time.Millisecond)
	h.pass()
	ctx := context.Background()
	held, err := h.st.ListConflicts(ctx, crmsync.ConflictFilter{Key: h.key, State: crmsync.ConflictHeld})
	if err != nil || len(held) != 1 {
		t.Fatalf("held conflicts = %v (%v), want the firstname conflict; the test tested nothing", held, err)
	}
	must(t, h.st.ResolveConflict(ctx, held[0].ID, crmsync.Resolution{Pick: "hubspot"}, time.Now()))
	refuseNextSalesforceUpdate(h)
	h.pass()
	if n := replayAll(t, h); n != 1 {
		t.Fatalf("%d letters parked, want the refused resolution write; the test tested nothing", n)
	}
	h.pass()
	h.pass()
	if r, _ := h.f.sf.Get(sf[0].ID); r.Fields["FirstName"] != "Augusta" {
		t.Errorf("after the replay Salesforce %s has FirstName %v, want the chosen Augusta", sf[0].ID, r.Fields["FirstName"])
	}
	if r, _ := h.f.hs.Get("contacts", ids[0]); r.Properties["firstname"] != "Augusta" {
		t.Errorf("after the replay HubSpot %s has firstname %q, want the chosen Augusta", ids[0], r.Properties["firstname"])
	}
}

// TestArchiveBetweenBinReadsIsFlagged: HubSpot's recycle bin is read once
// an hour; a contact archived just after one bin read, with passes every
// ten minutes, must still be flagged in Salesforce by the next bin read.
// (Found by TestModel, seed 9: the bin read kept only the records archived
// inside the pass's own window, so an archive older than the last ten
// minutes was never seen.)
func TestArchiveBetweenBinReadsIsFlagged(t *testing.T) {
	clk := newTestClock()
	h := newHarness(t, clocked(fast(t), clk, 0))
	ids := h.f.hs.Seed("contacts", map[string]string{"email": "bin@x.example", "firstname": "Bin", "lastname": "Reader"})
	clk.Advance(time.Second)
	h.pass() // reads the bin
	sf := h.sfByEmail()["bin@x.example"]
	if len(sf) != 1 {
		t.Fatalf("counterpart missing: %v", sf)
	}
	clk.Advance(time.Minute)
	must(t, h.f.hs.Archive("contacts", ids[0]))
	for range 8 { // 80 minutes of passes; the bin is read again after an hour
		clk.Advance(10 * time.Minute)
		h.pass()
	}
	if r, _ := h.f.sf.Get(sf[0].ID); r.Fields["Archived__c"] != true {
		t.Errorf("80 minutes after HubSpot %s was archived, Salesforce %s has Archived__c = %v, want true", ids[0], sf[0].ID, r.Fields["Archived__c"])
	}
}

// oneByOne is a client whose write calls take one record each, so that a
// pass's writes to it run as concurrent calls.
type oneByOne struct{ hubspotWrap }

func (o oneByOne) Limits() crmsync.Limits {
	l := o.wrapCRM.Limits()
	l.WriteBatch = 1
	return l
}

// TestFieldGoneUnderConcurrentWritesIsDroppedForBoth: a HubSpot property
// is deleted after the pass read the schema; two write calls in flight at
// once both name it and both are refused with PROPERTY_DOESNT_EXIST. Both
// must be sent again without it; neither record may be parked. (Found by
// TestModel, seed 849691698064352509 of a run without merges and
// refusals: the call whose refusal came second found the property already
// dropped by the other, took that as "nothing to drop", and parked its
// record.)
func TestFieldGoneUnderConcurrentWritesIsDroppedForBoth(t *testing.T) {
	hw := &wrapCRM{}
	o := fast(t)
	o.sync = func(c *crmsync.SyncConfig) {
		hw.CRM = c.A
		c.A = oneByOne{hubspotWrap{hw}}
		c.WriteConcurrency = 2
	}
	h := newHarness(t, o)
	ids := h.f.sf.Seed(
		crmsync.Fields{"Email": "ada@example.com", "FirstName": "Ada", "LastName": "Lovelace"},
		crmsync.Fields{"Email": "grace@example.com", "FirstName": "Grace", "LastName": "Hopper"})
	h.pass()
	if len(h.liveHS()) != 2 {
		t.Fatal("the contacts did not reach HubSpot; the test tested nothing")
	}
	must(t, h.f.sf.EditMany(ids, crmsync.Fields{"Deal_Stage__c": "proposal"}))
	var once sync.Once
	var arrived atomic.Int32
	both := make(chan struct{})
	hw.set(func(w *wrapCRM) {
		w.write = func(ctx context.Context, next crmsync.CRM, object string, ops []crmsync.WriteOp) ([]crmsync.WriteResult, error) {
			if n := arrived.Add(1); n <= 2 {
				// The property goes away; the first two calls meet, so
				// that both are refused before either is sent again.
				once.Do(func() { must(t, h.f.hs.DeleteProperty("contacts", "sf_deal_stage")) })
				if n == 2 {
					close(both)
				}
				select {
				case <-both:
				case <-time.After(2 * time.Second):
					t.Error("the two write calls did not run at once")
				}
			}
			return next.Write(ctx, object, ops)
		}
	})
	time.Sleep(3 * time.Millisecond)
	h.pass()
	if arrived.Load() < 2 {
		t.Fatalf("%d write calls to HubSpot, want two in flight at once; the test tested nothing", arrived.Load())
	}
	for _, d := range h.deadLetters() {
		t.Errorf("dead letter %d for %s %s: %s", d.ID, d.System, d.RecordID, d.Error)
	}
}

// TestSalesforceMergeAfterTheBinReadKeepsOnePerson: Salesforce's clock
// runs behind the sync's. While a pass runs, after it read the recycle bin
// and before it reads Salesforce's changes, a Salesforce user creates a
// duplicate of a synced contact and merges the old one into it: the
// winner is stamped inside the pass's window, so the pass reads it live,
// unlinked and with no HubSpot match, while the loser's deletion waits for
// the next bin read. The winner takes over the loser's link (Salesforce
// names a merge only on its deleted loser): no second HubSpot contact is
// made, and the person's HubSpot contact ends linked to the winner. (Found
// by TestModel, seed 1644050213795592144, with a crash between the bin
// read and the resumed run's live read.)
func TestSalesforceMergeAfterTheBinReadKeepsOnePerson(t *testing.T) {
	clk := newTestClock()
	o, user := withUser(clocked(fast(t), clk, 0))
	o.sf = append(o.sf, func(c *salesforcetest.Config) { c.ClockSkew = -30 * time.Second })
	h := newHarness(t, o)
	old := h.f.sf.Seed(crmsync.Fields{"Email": "mb@example.com", "FirstName": "Ada", "LastName": "Lovelace"})[0]
	clk.Advance(time.Minute)
	h.pass()
	hs := h.hsByEmail()["mb@example.com"]
	if hs.ID == "" {
		t.Fatal("the contact did not reach HubSpot; the test tested nothing")
	}
	clk.Advance(10 * time.Minute)
	var binRead bool
	var winner atomic.Value
	user.arm(func(r *http.Request) bool {
		if isCall(r, "/queryAll") {
			binRead = true
			return false
		}
		if !binRead || !isCall(r, "/query") {
			return false
		}
		w := h.f.sf.Seed(crmsync.Fields{"Email": "mb@work.example.com", "FirstName": "Ada", "LastName": "Lovelace"})[0]
		if err := h.f.sf.Merge(w, old); err != nil {
			panic(err)
		}
		winner.Store(w)
		return true
	})
	h.sync.RequestArchivedRead(h.key, "salesforce")
	h.pass()
	dup, _ := winner.Load().(string)
	if dup == "" {
		t.Fatal("the user did not merge during the pass; the test tested nothing")
	}
	for range 2 {
		clk.Advance(time.Hour)
		h.sync.RequestArchivedRead(h.key, "salesforce")
		h.pass()
	}
	assert.Len(t, h.liveHS(), 1, "one live HubSpot contact for the person")
	l, ok := linkOfA(t, h, hs.ID)
	require.True(t, ok, "the person's HubSpot contact keeps a link")
	assert.Equal(t, dup, l.BID, "the person's HubSpot contact is linked to the merge winner")
	r, _ := h.f.hs.Get("contacts", hs.ID)
	assert.NotEqual(t, "true", r.Properties["crmsync_archived"], "a merge archives nobody")
}

// TestHubSpotContactRestoredDuringThePassIsMatched: the same person is
// made on both sides, unlinked, and the HubSpot contact is archived. A
// pass reads the Salesforce contact and finds no live HubSpot match, so it
// creates one; a HubSpot user restores the archived contact while the
// pass runs, before the create is sent. HubSpot refuses the create
// (CONFLICT: the email is taken, "Existing ID" the restored contact).
// That refusal names the person's record: the pass must link the two, not
// park a letter whose replay can only be refused again, and the next
// passes must not make the person twice. So it is when the run dies at
// the step that settles the refusal, after or before its checkpoint, and
// resumes. (Found by TestModel, seed 9528541840705584500.)
func TestHubSpotContactRestoredDuringThePassIsMatched(t *testing.T) {
	for _, tc := range crashCases {
		t.Run(tc.name, func(t *testing.T) {
			clk := newTestClock()
			cs := &stepCrashStore{prefix: "back-matched:", drop: tc.drop}
			o, user := withUser(clocked(fast(t), clk, 0))
			h := newHarness(t, withCrashStore(o, cs))
			h.pass() // reads the recycle bin: the next pass does not
			clk.Advance(time.Minute)
			hsID := h.f.hs.Seed("contacts", map[string]string{"email": "back@x.example", "firstname": "Ken", "lastname": "Allen"})[0]
			must(t, h.f.hs.Archive("contacts", hsID))
			sfID := h.f.sf.Seed(crmsync.Fields{"Email": "back@x.example", "FirstName": "Alan", "LastName": "Dijkstra"})[0]
			clk.Advance(time.Minute)
			var restored atomic.Bool
			user.arm(func(r *http.Request) bool {
				if r.Method == http.MethodPost && isCall(r, "/batch/upsert") {
					must(t, h.f.hs.Restore("contacts", hsID))
					restored.Store(true)
					return true
				}
				return false
			})
			h.passOrCrash(cs, tc.crash)
			require.True(t, restored.Load(), "no create was sent to HubSpot; the test tested nothing")
			for _, d := range h.deadLetters() {
				t.Errorf("dead letter %d for %s %s: %s", d.ID, d.System, d.RecordID, d.Error)
			}
			for range 3 {
				clk.Advance(5 * time.Minute)
				h.pass()
			}
			assert.Equal(t, []string{hsID}, h.liveHS(), "live HubSpot contacts")
			sf := h.sfByEmail()["back@x.example"]
			require.Len(t, sf, 1, "live Salesforce contacts with the email")
			assert.Equal(t, sfID, sf[0].ID)
			assert.Equal(t, hsID, sf[0].Fields[salesforceLinkField], "Salesforce contact's link to HubSpot")
			hs, ok := h.f.hs.Get("contacts", hsID)
			require.True(t, ok)
			assert.Equal(t, sfID, hs.Properties[hubspotLinkField], "HubSpot contact's link to Salesforce")
			assert.Empty(t, h.deadLetters(), "dead letters after the passes")
		})
	}
}

// TestHubSpotConflictWithAnotherPersonsContactIsParked: Salesforce allows
// two contacts with one email, HubSpot does not. A second Salesforce
// contact takes the email of a synced one; HubSpot refuses its create
// (CONFLICT, the synced contact's id). That contact is read back, but it
// is linked to the first Salesforce contact: the refusal is no match
// appearing during the pass, and it stays parked for a person, once, with
// the HubSpot contact still linked to the first. So it is when the run
// dies at the step that parks it, after or before its checkpoint.
func TestHubSpotConflictWithAnotherPersonsContactIsParked(t *testing.T) {
	for _, tc := range crashCases {
		t.Run(tc.name, func(t *testing.T) {
			clk := newTestClock()
			cs := &stepCrashStore{prefix: "back-matched:", drop: tc.drop}
			h := newHarness(t, withCrashStore(clocked(fast(t), clk, 0), cs))
			first := h.f.sf.Seed(crmsync.Fields{"Email": "twice@x.example", "FirstName": "Ada", "LastName": "Lovelace"})[0]
			clk.Advance(time.Minute)
			h.pass()
			hs := h.hsByEmail()["twice@x.example"]
			require.NotEmpty(t, hs.ID, "the contact did not reach HubSpot; the test tested nothing")
			clk.Advance(time.Minute)
			second := h.f.sf.Seed(crmsync.Fields{"Email": "twice@x.example", "FirstName": "Ada", "LastName": "King"})[0]
			clk.Advance(time.Minute)
			h.passOrCrash(cs, tc.crash)
			for range 2 {
				letters := h.deadLetters()
				require.Len(t, letters, 1, "dead letters")
				assert.Equal(t, second, letters[0].RecordID)
				assert.Equal(t, crmsync.DeadParked, letters[0].Status)
				assert.Contains(t, letters[0].Error, "existing id "+hs.ID)
				assert.Equal(t, []string{hs.ID}, h.liveHS(), "live HubSpot contacts")
				got, ok := h.f.hs.Get("contacts", hs.ID)
				require.True(t, ok)
				assert.Equal(t, first, got.Properties[hubspotLinkField], "HubSpot contact's link")
				clk.Advance(5 * time.Minute)
				h.pass()
			}
		})
	}
}

// The same person is made on both sides, unlinked. The pass matches the
// two; as its write to the Salesforce contact goes out, a Salesforce user
// merges that contact into a duplicate they just made, so the write is
// refused (ENTITY_IS_DELETED). The pair is linked all the same, so that
// reading the merge moves the HubSpot contact's link to the survivor: the
// next passes must neither make the person a new Salesforce contact nor
// give the survivor a second HubSpot contact. (Found by TestModel, seed
// 7635489558236698318.)
func TestSalesforceContactMergedAwayAsItsMatchIsWrittenIsFollowed(t *testing.T) {
	clk := newTestClock()
	o, user := withUser(clocked(fast(t), clk, 0))
	h := newHarness(t, o)
	h.pass()
	clk.Advance(time.Minute)
	hsID := h.f.hs.Seed("contacts", map[string]string{"email": "merged@x.example", "firstname": "Grace", "lastname": "Hopper", "phone": "+1 555 0101"})[0]
	loser := h.f.sf.Seed(crmsync.Fields{"Email": "merged@x.example", "FirstName": "Grace", "LastName": "Hopper"})[0]
	clk.Advance(time.Minute)
	var survivor atomic.Value
	user.arm(func(r *http.Request) bool {
		if r.Method != http.MethodPatch || !isCall(r, "/composite/sobjects") {
			return false
		}
		master := h.f.sf.Seed(crmsync.Fields{"Email": "merged.too@x.example", "FirstName": "Grace", "LastName": "Hopper"})[0]
		must(t, h.f.sf.Merge(master, loser))
		survivor.Store(master)
		return true
	})
	h.pass()
	master, ok := survivor.Load().(string)
	require.True(t, ok, "no update was sent to Salesforce; the test tested nothing")
	for range 3 {
		clk.Advance(5 * time.Minute)
		h.pass()
	}
	assert.Equal(t, []string{hsID}, h.liveHS(), "live HubSpot contacts")
	var live []string
	for _, r := range h.liveSF() {
		live = append(live, r.ID)
	}
	assert.Equal(t, []string{master}, live, "live Salesforce contacts")
	hs, ok := h.f.hs.Get("contacts", hsID)
	require.True(t, ok)
	assert.Equal(t, master, hs.Properties[hubspotLinkField], "HubSpot contact's link to Salesforce")
	sf, ok := h.f.sf.Get(master)
	require.True(t, ok)
	assert.Equal(t, hsID, sf.Fields[salesforceLinkField], "the survivor's link to HubSpot")
}
