package playbook

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/hubspot/hubspottest"
	"github.com/crmsync/crmsync/internal/rapidtest"
	"github.com/crmsync/crmsync/salesforce/salesforcetest"
)

// modelChecks is the number of fresh random cases TestModel runs when
// neither -rapid.checks nor RAPID_CHECKS says otherwise (-short runs a
// fifth); TestModelSeeds runs the fixed seeds besides (modelSeeds and the
// first modelSeedRange seeds), over 200 cases in all. The fixed set is
// the gate every change must pass; the few fresh seeds keep exploring on
// every run, and a hunt for new failures runs many more:
//
//	RAPID_CHECKS=1000 go test -race ./playbook -run 'TestModel$'
//
// A seed that fails is a defect: fix it, then add the seed to modelSeeds.
const modelChecks = 10

// modelSeedRange is how many of the first seeds (1, 2, …) TestModelSeeds
// runs besides modelSeeds: a fixed, reproducible set that does not depend
// on what the random seeds draw.
const modelSeedRange = 165

// TestModel is a model-based test of the reference workflow against both
// fakes in a hostile world. Each case plays a random story: users create,
// edit, clear, archive and restore contacts on both sides, change emails,
// create the same person on both sides and merge duplicates; sync passes
// run in between under random faults (429 bursts, 5xx, latency, timeouts,
// reset connections, lost write responses, per-record failures, expired
// sessions, the daily limit) and random crashes at step boundaries, after
// a checkpoint or instead of it (the next pass resumes the run with its id,
// in a restarted process).
//
// Time is virtual: one clock (vclock) drives both fakes' stamps and search
// lag, the clients and the sync's windows. Passes run 0–6 minutes apart,
// users act seconds apart, and a pass takes virtual time too (the clock
// moves at every HTTP request), so the sync's 2-minute overlap, the clock
// skew and the search lag are measured as in the real world. Each case
// draws each hostile behaviour, on with probability 3/4 (hostileWorld):
//
//   - search index lag of up to 5 s, 30 s, 90 s or 3 min (beyond the
//     HubSpot client's change lag of 1 minute): writes surface in search
//     out of order, and until then search answers with stale values;
//   - clock skew of each CRM's stamps within ±2 minutes;
//   - shared stamps (HubSpot's truncated to 10 ms, Salesforce's to 1 s);
//   - whole-batch refusals (400/409/413 and 400/413/500) of 5% or 15% of
//     batch writes on each side; a person replays the letters Salesforce's
//     client parks for them once the faults stop;
//   - slow passes: the clock moves 0.1–30 s at every request;
//   - users' actions during a pass (edits, creates, archives, merges),
//     fired at a drawn request, or at a drawn write (after the side's reads,
//     before its cursor moves);
//   - a schema change: a mapped HubSpot property deleted or a Salesforce
//     field hidden from the integration user, later restored; users do not
//     edit it while it is gone, and it must sync again after;
//   - merges: a user creates a duplicate of a synced person and merges the
//     two (HubSpot makes a new record; a Salesforce loser is deleted with
//     MasterRecordId).
//
// Then the faults stop, hidden fields come back, search settles and the
// clock moves two hours (past the delayed re-read's lag and the recycle
// bin's cadence), and quiet passes run until a new run writes nothing (at
// most maxQuietPasses besides those replaying letters a person marked: the
// first may finish a crashed run on its old window, and a contact created
// in one pass has the fields its owner left blank reverted in the next;
// batches are still refused whole at random, so a quiet write may be
// parked and its replay refused again); held conflicts are resolved and
// the settling repeats. Then the test checks what the workflow promises:
//
//   - both sides agree field by field as the policy says (held conflicts
//     excused);
//   - each owner's last edit of an owned field survived;
//   - no record was duplicated and every link is 1:1;
//   - every live record has its counterpart (or is in the dead-letter
//     queue because the other side refuses it);
//   - a merge archives nobody: the merged person's counterpart is live and
//     linked to the survivor;
//   - every write has exactly one audit row and one ledger row;
//   - every record that could not be written is in the dead-letter queue,
//     with an audit row, and nothing else is;
//   - a last pass writes nothing.
//
// The fake Salesforce refuses to clear a restricted picklist; a pair whose
// HubSpot side has no lifecycle stage while Salesforce has one is parked
// for good, and the test only asks that it be in the dead-letter queue.
//
// A tally (modelTally) fails the test if, over 20 cases or more, a fault
// or hostile behaviour never happened.
//
// A failure prints the story and the seed; replay it with
//
//	go test ./playbook -run 'TestModel$' -rapid.seed=N
//
// (MODEL_DEBUG=1 adds each pass's audit rows and both CRMs' final records.)
func TestModel(t *testing.T) {
	setDefaultChecks(t, modelChecks)
	var tally modelTally
	rapid.Check(t, modelCase(&tally))
	tally.report(t)
}

// modelCase is one case of TestModel, summed into tally.
func modelCase(tally *modelTally) func(*rapid.T) {
	return func(rt *rapid.T) {
		m := newModel(rt)
		m.play()
		m.quiesce()
		m.check()
		tally.add(m)
	}
}

// modelSeeds are cases CI runs every time, whatever the random seeds
// draw. Each of the first eight failed when the sync read from its cursor
// without the overlap (a Salesforce change stamped behind the cursor by
// clock skew, or made during a pass after its read, was never read), and
// each of the next twenty-four when the cursor moved to the pass's
// wall-clock end instead of its window's end less the change lag (a change
// made while the pass ran was skipped); 10 and 184 failed on the sync of
// 2026-11-30 (a Salesforce merge into a new duplicate duplicated the
// person in HubSpot; a replayed archive-flag letter wrote nothing: see
// model_found_test.go).
var modelSeeds = []uint64{
	12, 21, 55, 57, 87, 92, 120, 140, // no overlap
	1, 8, 9, 13, 14, 17, 22, 24, 25, 42, 50, 52, // wall-clock cursor
	54, 56, 61, 62, 70, 73, 84, 85, 88, 91, 96, 97,
	10, 184,
	// Random seeds that failed on the sync of 2026-11-30, each fixed since:
	// merges meeting archives and deletions (merge_archive_test.go,
	// merge_delete_test.go) and a replay refused again after its target was
	// created (letters_crash_test.go).
	17986694182707259292, 18153098168535346001, 11725634526978072741,
	10120510013884818669, 14114458521576032862, 7741156084130623218,
	12340126522249462687, 6469571360533782626,
	// An archived HubSpot contact matched a Salesforce contact whose linked
	// HubSpot contact a merge had taken away (a batch read misses the old
	// id): the match was taken as free, the link moved to the archived
	// contact and the merge's record was created again in Salesforce
	// (merge_archive_test.go).
	18407355128004944343,
	// A deleted Salesforce contact matched a HubSpot contact whose linked
	// Salesforce contact was deleted or merged away: the match was taken as
	// free, and the deleted contact took the link over (gone_partner_test.go).
	3591491679719791502, 9158109218129102852,
	// Two resolutions of one record parked two letters; their replays
	// failed again and both updated the first letter, so only one write was
	// replayed after (letters_replay_test.go in the root package).
	15542935109994244973,
	// A deleted Salesforce contact matched a HubSpot merge's record not
	// read yet, whose merged ids name a linked contact: the match was
	// taken as free, and the link stayed on the merged-away id
	// (gone_partner_test.go).
	2470156931339589678,
	// The fake HubSpot dropped a record from search while the sync's own
	// write to it waited for the index after SettleSearch, so the delayed
	// window's count came out short and hid a contact no pass had read
	// (hubspottest: TestSearchLagAfterSettleIsStaleNotAbsent).
	2361032296154957271, 7157491440422795397, 16999175892671303253,
	// The model's own batch refusals parked a quiet pass's write and
	// refused its replay again; with the delayed check's confirmation put
	// off by a tail, the settling ran out of passes (settle).
	10675610850831109983, 18068974850510240435,
	// A Salesforce merge after a pass's bin read (here between a crash and
	// the resumed run's live read), the winner stamped inside the window:
	// the winner was created again in HubSpot and the loser's link stayed
	// (model_found_test.go).
	1644050213795592144, 11322775749938846590,
	// A Salesforce user undeleted an unlinked contact during or after the
	// pass that created another for the same HubSpot person: the duplicate
	// is the user's, HubSpot refuses the undeleted one (CONFLICT, a dead
	// letter), and the model's duplicate-email check allows that pair only.
	1175499815641067394, 10052717442492591252,
	// A HubSpot merge's record listed late in a tail whose count lost a
	// record merged away into another merge's record the same pass read:
	// the count matched what the pass expected, the tail was not read
	// again, and the merge was relinked (and its owned field reverted)
	// only by the delayed window, after the settling (core_quiet_test.go:
	// TestCoreTailCountSeesALateRecordBehindOneMergedAway).
	14373853162475749543,
	// A person made on both sides whose pairing write to Salesforce was
	// refused (parked) stayed unlinked, though the link fields named each
	// other; a Salesforce merge of that contact into a new duplicate then
	// left the HubSpot contact behind, and it got a second Salesforce
	// contact (core_merge_test.go).
	16841917296463166311, 14878778884003350364,
	// A Salesforce contact was deleted; the pass that read the deletion
	// could not flag its HubSpot contact archived, a user having archived
	// that contact during the pass (the write found the record gone), and
	// no pass read the HubSpot archive before the user restored it: the
	// restored contact stayed live and unflagged, its counterpart deleted.
	// The link now records that both were gone (goneMarks).
	12648078830619156757,
	// The same person made on both sides, unlinked, the HubSpot contact
	// archived; a user restored it while the pass that found no live match
	// created one: HubSpot refused the create (CONFLICT, the restored
	// contact's id) and the refusal was parked, a letter no replay could
	// settle. The restored contact is now read back and matched
	// (model_found_test.go: TestHubSpotContactRestoredDuringThePassIsMatched).
	9528541840705584500,
	// The settling waits for the delayed window to cover the story; a
	// first version counted the passes waiting for a check's confirming
	// bin read against the limit, and these ran out of passes.
	16803557323050052988, 13058689668516776363,
	// A Salesforce user deleted and undeleted the person's contact while a
	// run the sync resumed after a crash (or a failed pass) created another
	// from what it had read before: the duplicate is the user's, and a
	// letter tells a person. The model's allowance counted from the pass
	// that resumed the run, not the run's first, and missed a create whose
	// first attempt landed unseen (its audit row says created false).
	13921218706323097134, 7125280733259028921,
	// A Salesforce user merged away the contact a pass had just matched,
	// as the pass wrote to it: the write was refused and the pair left
	// unlinked, so the merge had no link to move, and the next pass made
	// the person again on both sides. Such a pair is linked now
	// (model_found_test.go:
	// TestSalesforceContactMergedAwayAsItsMatchIsWrittenIsFollowed).
	7635489558236698318,
}

// TestModelSeeds runs TestModel's case for each seed of modelSeeds
// (-short: the first five), one subtest each; a failure prints the seed,
// replayed with
//
//	go test ./playbook -run 'TestModel$' -rapid.seed=N
func TestModelSeeds(t *testing.T) {
	seeds := slices.Clone(modelSeeds)
	for n := uint64(1); n <= modelSeedRange; n++ {
		if !slices.Contains(seeds, n) {
			seeds = append(seeds, n)
		}
	}
	checks := 1
	if testing.Short() {
		seeds, checks = seeds[:min(5, len(seeds))], 5 // rapid runs a fifth
	}
	var tally modelTally
	for _, seed := range seeds {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			rapidtest.Replay(t, seed, checks, modelCase(&tally))
		})
	}
	tally.report(t)
}

// modelTally sums what the cases exercised, so that a test that tests
// nothing shows.
type modelTally struct {
	cases, passes, crashes, dropped, lost, pairs, owned, letters, resolved int
	// The hostile behaviours: cases that drew each, and events.
	lagCases, longLagCases, skewCases, stampCases, slowCases          int
	refused, inPass, hides, restores, hsMerges, sfMerges, mergeChecks int
}

func (t *modelTally) add(m *model) {
	t.cases++
	t.passes += m.passes
	t.crashes += m.crashes
	t.dropped += m.dropped
	t.lost += int(m.tr.lost.Load())
	t.pairs += m.pairs
	t.owned += m.ownedChecked
	t.letters += m.letters
	t.resolved += m.resolved
	count := func(n *int, on bool) {
		if on {
			*n++
		}
	}
	count(&t.lagCases, m.w.lagMax > 0)
	count(&t.longLagCases, m.w.lagMax > time.Minute)
	count(&t.skewCases, m.w.skewHS != 0 || m.w.skewSF != 0)
	count(&t.stampCases, m.w.stampsHS > 0)
	count(&t.slowCases, m.w.reqStep > 0)
	t.refused += int(m.tr.refused.Load())
	t.inPass += m.inPassFired
	t.hides += m.hides
	t.restores += m.restores
	t.hsMerges += m.hsMerges
	t.sfMerges += m.sfMerges
	t.mergeChecks += m.mergesChecked
}

// report logs the tally and fails the test if, over 20 cases or more, a
// fault or hostile behaviour never happened.
func (t *modelTally) report(tb testing.TB) {
	tb.Helper()
	tb.Logf("%d cases: %d passes, %d crashes (%d before a checkpoint), %d lost write responses, %d pairs compared, %d owned edits checked, %d dead letters, %d conflicts resolved",
		t.cases, t.passes, t.crashes, t.dropped, t.lost, t.pairs, t.owned, t.letters, t.resolved)
	tb.Logf("hostile world: search lag in %d cases (beyond the change lag in %d), clock skew in %d, shared stamps in %d, slow passes in %d; %d batches refused whole, %d user actions during passes, %d fields hidden and %d restored, %d hubspot and %d salesforce merges (%d promises checked)",
		t.lagCases, t.longLagCases, t.skewCases, t.stampCases, t.slowCases, t.refused, t.inPass, t.hides, t.restores, t.hsMerges, t.sfMerges, t.mergeChecks)
	if t.cases < 20 {
		return
	}
	for _, c := range []struct {
		what string
		n    int
	}{
		{"crashes", t.crashes}, {"crashes before a checkpoint", t.dropped}, {"lost write responses", t.lost},
		{"pairs compared", t.pairs}, {"dead letters", t.letters}, {"conflicts resolved", t.resolved},
		{"search lag", t.lagCases}, {"search lag beyond the change lag", t.longLagCases}, {"clock skew", t.skewCases},
		{"shared stamps", t.stampCases}, {"slow passes", t.slowCases}, {"whole-batch refusals", t.refused},
		{"user actions during passes", t.inPass}, {"hidden fields", t.hides}, {"restored fields", t.restores},
		{"hubspot merges", t.hsMerges}, {"salesforce merges", t.sfMerges}, {"merge promises checked", t.mergeChecks},
	} {
		if c.n == 0 {
			tb.Errorf("over %d cases, no %s happened: the cases exercised too little", t.cases, c.what)
		}
	}
}

// setDefaultChecks sets -rapid.checks to n unless the command line or
// RAPID_CHECKS set it.
func setDefaultChecks(t *testing.T, n int) {
	if _, ok := os.LookupEnv("RAPID_CHECKS"); ok {
		return
	}
	set := false
	flag.Visit(func(f *flag.Flag) {
		if f.Name == "rapid.checks" {
			set = true
		}
	})
	if set {
		return
	}
	fl := flag.Lookup("rapid.checks")
	if fl == nil {
		t.Fatal("rapid registered no -rapid.checks flag")
	}
	old := fl.Value.String()
	if err := fl.Value.Set(fmt.Sprint(n)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fl.Value.Set(old) })
}

// model is one case: the fakes, the Store, the current process, and what
// the users did.
type model struct {
	// storyEnd is when the story stopped (quiesce): the delayed window
	// must reach it before the sync is settled.
	storyEnd time.Time
	t        *rapid.T
	f        *fakes
	st       *modelStore
	tr       *lossyTransport
	proc     *process
	key      string
	pageSize int
	emails   int
	restarts int
	crashes  int
	passes   int

	// What the case exercised, for the tally.
	dropped, pairs, ownedChecked, letters, resolved                          int
	inPassFired, hides, restores, hsMerges, sfMerges, mergesChecked, replays int

	// The hostile world: what the case drew, and the virtual clock.
	w     hostileWorld
	clock *vclock
	// mu guards what users' actions during a pass touch (the model's
	// records of what users did); rnd is the draws' source meanwhile.
	mu         sync.Mutex
	plan       *inPassPlan
	rnd        *rand.Rand
	during     bool
	inPassErrs []error
	// gone holds the fields hidden now, by "system/field"; mergedAway the
	// records merged into another; merges what each merge promises.
	gone, mergedAway map[string]bool
	merges           []mergeExpect

	// owned holds the last value users on a field's owning side wrote to
	// it, by "system/id" and field ("" for cleared).
	owned map[string]map[string]string
	// archivedEver holds the records users archived or deleted; hsEmails
	// the emails HubSpot users gave contacts.
	archivedEver, hsEmails map[string]bool
	// undeletedIn holds, by Salesforce id, the pass count when a user last
	// undeleted the record (a pass's own number while it runs); sfFirstIn
	// the first pass of the run after which each Salesforce record was
	// first seen (runFirst: each run's first pass; a run resumed after a
	// crash replays what it read before).
	undeletedIn, sfFirstIn map[string]int
	runFirst               map[crmsync.RunID]int
	log                    []string
}

func newModel(t *rapid.T) *model {
	w, clock := drawWorld(t), newVclock()
	f, closeFn, err := startFakes(w.hsOptions(clock), w.sfOptions(clock))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		f.hs.Close()
		f.sf.Close()
		closeFn()
	})
	m := &model{t: t, f: f, st: newModelStore(), key: "team-1", owned: map[string]map[string]string{}, archivedEver: map[string]bool{}, hsEmails: map[string]bool{},
		undeletedIn: map[string]int{}, sfFirstIn: map[string]int{}, runFirst: map[crmsync.RunID]int{},
		w: w, clock: clock, gone: map[string]bool{}, mergedAway: map[string]bool{}}
	m.logf("world: %s", w)
	base := http.DefaultTransport.(*http.Transport).Clone()
	m.tr = &lossyTransport{base: base, before: m.onRequest}
	t.Cleanup(base.CloseIdleConnections)
	m.pageSize = rapid.SampledFrom([]int{2, 3, 5, 0}).Draw(t, "pageSize")
	m.restart()
	return m
}

func (m *model) logf(format string, args ...any) {
	at := m.clock.Now().Sub(modelEpoch).Round(time.Second)
	if m.during {
		format = "(during the pass) " + format
	}
	m.log = append(m.log, fmt.Sprintf("[+%v] ", at)+fmt.Sprintf(format, args...))
}

// restart starts a new process on the same Store and fakes.
func (m *model) restart() {
	p, err := startProcess(m.f, m.st, m.tr, m.pageSize, m.clock.Now)
	if err != nil {
		m.t.Fatal(err)
	}
	m.proc = p
	m.restarts++
}

// play runs a random story of user actions, faults, crashes and passes.
func (m *model) play() {
	steps := rapid.IntRange(2, 7).Draw(m.t, "rounds")
	for i := range steps {
		// Passes run minutes apart; users act seconds apart.
		// (Users may act right after a pass, and a pass may start right
		// after their edits.)
		m.clock.Advance(time.Duration(rapid.IntRange(0, 240).Draw(m.t, fmt.Sprintf("pause%d", i))) * time.Second)
		m.schemaChange(i)
		n := rapid.IntRange(1, 4).Draw(m.t, fmt.Sprintf("actions%d", i))
		for range n {
			m.clock.Advance(time.Duration(rapid.IntRange(0, 20).Draw(m.t, "think")) * time.Second)
			m.userAction()
		}
		m.clock.Advance(time.Duration(rapid.IntRange(0, 120).Draw(m.t, "wait")) * time.Second)
		m.faultyPass(i)
	}
}

var (
	modelStages = []string{"subscriber", "lead", "marketingqualifiedlead", "opportunity", "customer"}
	modelOwners = []string{"005000000000001AAA", "005000000000002AAA", "005000000000003AAA"}
	hsOwnerIDs  = []string{"41235511", "41235512", "41235513"}
	closeDates  = []string{"2026-12-01", "2026-12-15", "2027-01-31"}
)

func (m *model) freshEmail() string {
	m.emails++
	return fmt.Sprintf("person%d@model.example.com", m.emails)
}

// hsField and sfField are the fields users edit on each side; owned says
// the side owns it.
type userField struct {
	name  string
	owned bool
	gen   func(m *model) any // nil: clear
}

func pick[T any](vals ...T) func(m *model) T {
	return func(m *model) T { return sample(m, vals, "value") }
}

var hsFields = []userField{
	{name: "email", gen: func(m *model) any { return m.freshEmail() }},
	{name: "firstname", gen: func(m *model) any { return pick(firstNames...)(m) }},
	{name: "lastname", gen: func(m *model) any { return pick(lastNames...)(m) }},
	{name: "phone", gen: func(m *model) any { return fmt.Sprintf("+1 415 555 %04d", m.intRange(0, 9999, "phone")) }},
	{name: "lifecyclestage", owned: true, gen: func(m *model) any { return pick(modelStages...)(m) }},
	{name: "hubspotscore", owned: true, gen: func(m *model) any { return fmt.Sprint(m.intRange(0, 100, "score")) }},
	{name: "sf_deal_stage", gen: func(m *model) any { return pick(dealStages...)(m) }},
	{name: "hubspot_owner_id", gen: func(m *model) any { return pick(hsOwnerIDs...)(m) }},
}

var sfFields = []userField{
	{name: "Email", gen: func(m *model) any { return m.freshEmail() }},
	{name: "FirstName", gen: func(m *model) any { return pick(firstNames...)(m) }},
	{name: "LastName", gen: func(m *model) any { return pick(lastNames...)(m) }},
	{name: "Phone", gen: func(m *model) any { return fmt.Sprintf("+44 20 7946 %04d", m.intRange(0, 9999, "phone")) }},
	{name: "Deal_Stage__c", owned: true, gen: func(m *model) any { return pick(dealStages...)(m) }},
	{name: "OwnerId", owned: true, gen: func(m *model) any { return pick(modelOwners...)(m) }},
	{name: "Close_Date__c", owned: true, gen: func(m *model) any { return pick(closeDates...)(m) }},
	{name: "Lifecycle_Stage__c", gen: func(m *model) any { return pick(modelStages...)(m) }},
}

// canClear says whether users on a side may clear a field: Salesforce
// requires LastName, so its users cannot clear it. (HubSpot users can: the
// sync then cannot write the contact to Salesforce, and must park it.)
func canClear(system, field string) bool { return !(system == "salesforce" && field == "LastName") }

func (m *model) noteOwned(system, id, field string, v any) {
	k := system + "/" + id
	if m.owned[k] == nil {
		m.owned[k] = map[string]string{}
	}
	s := ""
	if v != nil {
		s = fmt.Sprint(v)
	}
	m.owned[k][field] = s
}

func (m *model) liveHS() []hubspottest.Record {
	var out []hubspottest.Record
	for _, r := range m.f.hs.All("contacts") {
		if !r.Archived {
			out = append(out, r)
		}
	}
	return out
}

func (m *model) liveSF() []crmsync.Record {
	var out []crmsync.Record
	for _, r := range m.f.sf.All() {
		if !r.Archived {
			out = append(out, r)
		}
	}
	return out
}

// emailUsed reports whether a live record on the system has the email.
func (m *model) emailUsed(system, email string, except string) bool {
	if email == "" {
		return false
	}
	if system == "hubspot" {
		for _, r := range m.liveHS() {
			if r.ID != except && strings.EqualFold(r.Properties["email"], email) {
				return true
			}
		}
		return false
	}
	for _, r := range m.liveSF() {
		if e, _ := r.Fields["Email"].(string); r.ID != except && strings.EqualFold(e, email) {
			return true
		}
	}
	return false
}

// newHSContact draws a new HubSpot contact's properties; lastname may be
// missing (Salesforce will refuse the contact).
func (m *model) newHSContact(email string) map[string]string {
	p := map[string]string{"email": email, "firstname": pick(firstNames...)(m)}
	if m.intRange(0, 5, "noLastname") > 0 {
		p["lastname"] = pick(lastNames...)(m)
	}
	for _, f := range hsFields[3:] {
		if m.hidden("hubspot", f.name) {
			continue
		}
		if m.flip("set " + f.name) {
			p[f.name] = f.gen(m).(string)
		}
	}
	return p
}

func (m *model) newSFContact(email string) crmsync.Fields {
	fs := crmsync.Fields{"Email": email, "FirstName": pick(firstNames...)(m), "LastName": pick(lastNames...)(m)}
	for _, f := range sfFields[3:] {
		if m.hidden("salesforce", f.name) {
			continue
		}
		// Sales seldom set the marketing stage (HubSpot owns it, and the
		// fake Salesforce refuses to clear it again: see check).
		if f.name == "Lifecycle_Stage__c" && m.intRange(0, 4, "set stage") > 0 {
			continue
		}
		if m.flip("set " + f.name) {
			fs[f.name] = f.gen(m)
		}
	}
	return fs
}

func (m *model) createHS(p map[string]string) string {
	id := m.f.hs.Seed("contacts", p)[0]
	m.hsEmails[strings.ToLower(p["email"])] = true
	for _, f := range hsFields {
		if v, ok := p[f.name]; ok && f.owned {
			m.noteOwned("hubspot", id, f.name, v)
		}
	}
	return id
}

func (m *model) createSF(fs crmsync.Fields) string {
	id := m.f.sf.Seed(fs)[0]
	for _, f := range sfFields {
		if v, ok := fs[f.name]; ok && f.owned {
			m.noteOwned("salesforce", id, f.name, v)
		}
	}
	return id
}

// userAction plays one random user action.
func (m *model) userAction() {
	actions := []string{
		"hs create", "sf create", "both create",
		"hs edit", "hs edit", "sf edit", "sf edit",
		"both edit", "both edit",
		"hs archive", "hs restore", "sf delete", "sf undelete",
	}
	if m.w.merges {
		actions = append(actions, "hs merge", "sf merge")
	}
	switch action := sample(m, actions, "action"); action {
	case "hs merge":
		m.hsMerge()
	case "sf merge":
		m.sfMerge()
	case "hs create":
		id := m.createHS(m.newHSContact(m.freshEmail()))
		m.logf("hubspot user creates %s", id)
	case "sf create":
		id := m.createSF(m.newSFContact(m.freshEmail()))
		m.logf("salesforce user creates %s", id)
	case "both create":
		e := m.freshEmail()
		h, s := m.createHS(m.newHSContact(e)), m.createSF(m.newSFContact(e))
		m.logf("the same person is created in hubspot %s and salesforce %s", h, s)
	case "hs edit":
		live := m.liveHS()
		if len(live) == 0 {
			return
		}
		r := sample(m, live, "hs record")
		props := map[string]string{}
		for range m.intRange(1, 3, "fields") {
			f := sample(m, hsFields, "hs field")
			if m.hidden("hubspot", f.name) {
				continue // gone from the schema: users cannot edit it
			}
			v := ""
			if m.intRange(0, 3, "clear") != 0 || f.name == "email" {
				v = f.gen(m).(string)
			}
			props[f.name] = v
			if f.owned {
				m.noteOwned("hubspot", r.ID, f.name, v)
			}
		}
		if e, ok := props["email"]; ok {
			m.hsEmails[strings.ToLower(e)] = true
		}
		m.must(m.f.hs.Edit("contacts", r.ID, props))
		m.logf("hubspot user edits %s: %v", r.ID, keys(props))
	case "sf edit":
		live := m.liveSF()
		if len(live) == 0 {
			return
		}
		r := sample(m, live, "sf record")
		fs := crmsync.Fields{}
		for range m.intRange(1, 3, "fields") {
			f := sample(m, sfFields, "sf field")
			if m.hidden("salesforce", f.name) {
				continue
			}
			var v any
			if m.intRange(0, 3, "clear") != 0 || !canClear("salesforce", f.name) || f.name == "Email" {
				v = f.gen(m)
			}
			fs[f.name] = v
			if f.owned {
				m.noteOwned("salesforce", r.ID, f.name, v)
			}
		}
		m.must(m.f.sf.Edit(r.ID, fs))
		m.logf("salesforce user edits %s: %v", r.ID, keys(fs))
	case "both edit":
		// Users on both sides change the same shared field of a synced
		// contact before the next pass: a conflict, held for a person.
		var pairs [][2]string
		for _, h := range m.liveHS() {
			if sid := h.Properties[hubspotLinkField]; sid != "" && m.sfLive(sid) {
				pairs = append(pairs, [2]string{h.ID, sid})
			}
		}
		if len(pairs) == 0 {
			return
		}
		p := sample(m, pairs, "pair")
		i := m.intRange(0, 3, "shared field")
		if m.hidden("hubspot", hsFields[i].name) || m.hidden("salesforce", sfFields[i].name) {
			return
		}
		hv, sv := hsFields[i].gen(m).(string), sfFields[i].gen(m)
		if hsFields[i].name == "email" {
			m.hsEmails[strings.ToLower(hv)] = true
		}
		m.must(m.f.hs.Edit("contacts", p[0], map[string]string{hsFields[i].name: hv}))
		m.must(m.f.sf.Edit(p[1], crmsync.Fields{sfFields[i].name: sv}))
		m.logf("users on both sides edit %s of %s/%s", hsFields[i].name, p[0], p[1])
	case "hs archive":
		live := m.liveHS()
		if len(live) == 0 {
			return
		}
		r := sample(m, live, "hs record")
		m.must(m.f.hs.Archive("contacts", r.ID))
		m.archivedEver[r.ID] = true
		m.logf("hubspot user archives %s", r.ID)
	case "sf delete":
		live := m.liveSF()
		if len(live) == 0 {
			return
		}
		r := sample(m, live, "sf record")
		m.must(m.f.sf.Delete(r.ID))
		m.archivedEver[r.ID] = true
		m.logf("salesforce user deletes %s (link %v)", r.ID, r.Fields[salesforceLinkField])
	case "hs restore":
		var gone []hubspottest.Record
		for _, r := range m.f.hs.All("contacts") {
			// HubSpot refuses to restore a contact whose email a live one has.
			if r.Archived && !m.emailUsed("hubspot", r.Properties["email"], r.ID) {
				gone = append(gone, r)
			}
		}
		if len(gone) == 0 {
			return
		}
		r := sample(m, gone, "hs archived record")
		m.must(m.f.hs.Restore("contacts", r.ID))
		m.logf("hubspot user restores %s", r.ID)
	case "sf undelete":
		var gone []crmsync.Record
		for _, r := range m.f.sf.All() {
			e, _ := r.Fields["Email"].(string)
			// The org's duplicate rule: one live contact per email.
			if r.Archived && !m.emailUsed("salesforce", e, r.ID) && !m.mergedAway[r.ID] {
				gone = append(gone, r)
			}
		}
		if len(gone) == 0 {
			return
		}
		r := sample(m, gone, "sf deleted record")
		m.must(m.f.sf.Undelete(r.ID))
		m.undeletedIn[r.ID] = m.passes
		m.logf("salesforce user undeletes %s", r.ID)
	}
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// faultyPass arms random faults and maybe a crash, runs one pass, and
// clears the faults. A failed pass is followed by the next one.
func (m *model) faultyPass(round int) {
	var armed []string
	newDay := false
	for range rapid.IntRange(0, 3).Draw(m.t, fmt.Sprintf("faults%d", round)) {
		kind := rapid.SampledFrom([]string{
			"hs 429", "hs 5xx", "hs latency", "hs timeout", "hs reset", "hs 401", "hs token expiry", "hs daily",
			"hs record failure", "sf 503", "sf 500", "sf latency", "sf timeout", "sf reset", "sf session expiry",
			"sf daily", "sf record failure", "lost write response",
		}).Draw(m.t, "fault")
		n := rapid.IntRange(1, 4).Draw(m.t, "count")
		armed = append(armed, fmt.Sprintf("%s×%d", kind, n))
		switch kind {
		case "hs 429":
			m.f.hs.Fail(hubspottest.Fault{Kind: hubspottest.RateLimit, Count: n})
		case "hs 5xx":
			m.f.hs.Fail(hubspottest.Fault{Kind: hubspottest.ServerError, Status: rapid.SampledFrom([]int{500, 502, 503, 504}).Draw(m.t, "status"), Count: n})
		case "hs latency":
			m.f.hs.Fail(hubspottest.Fault{Kind: hubspottest.Latency, Latency: 20 * time.Millisecond, Count: n})
		case "hs timeout":
			m.f.hs.Fail(hubspottest.Fault{Kind: hubspottest.Hang, Count: 1})
		case "hs reset":
			m.f.hs.Fail(hubspottest.Fault{Kind: hubspottest.Reset, Count: n})
		case "hs 401":
			// An API call (not the token endpoint) finds its token revoked;
			// the client refreshes it. (A 401 the refresh cannot cure parks
			// the batch: see TestAuthFailureOfAWriteCallParksNothing.)
			ep := rapid.SampledFrom([]string{"search", "list", "batch/read", "batch/update", "batch/upsert"}).Draw(m.t, "endpoint")
			m.f.hs.Fail(hubspottest.Fault{Kind: hubspottest.Unauthorized, Endpoint: ep, Count: 1})
		case "hs token expiry":
			m.f.hs.ExpireTokens()
		case "hs daily":
			m.f.hs.Fail(hubspottest.Fault{Kind: hubspottest.DailyLimit, Count: 1})
			newDay = true
		case "hs record failure":
			if keys := m.someKeys(); len(keys) > 0 {
				m.f.hs.FailRecords("INTERNAL_ERROR", keys...)
			}
		case "sf 503":
			m.f.sf.Inject(salesforcetest.Fault{Status: 503, Times: n})
		case "sf 500":
			m.f.sf.Inject(salesforcetest.Fault{Status: 500, Times: n})
		case "sf latency":
			m.f.sf.Inject(salesforcetest.Fault{Latency: 20 * time.Millisecond, Times: n})
		case "sf timeout":
			m.f.sf.Inject(salesforcetest.Fault{Hang: true, Times: 1})
		case "sf reset":
			m.f.sf.Inject(salesforcetest.Fault{Reset: true, Times: n})
		case "sf session expiry":
			m.f.sf.ExpireSessions()
		case "sf daily":
			// The process restarts on the "new day" after it: see
			// TestSalesforceDailyLimitRecovers.
			_, max := m.f.sf.APIUsage()
			m.f.sf.SetAPIUsage(max)
			newDay = true
		case "sf record failure":
			if keys := m.someKeys(); len(keys) > 0 {
				m.f.sf.FailRecords("UNABLE_TO_LOCK_ROW", "unable to obtain exclusive access to this record", n, keys...)
			}
		case "lost write response":
			m.tr.lose.Store(int32(n))
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	crash := m.st.drawCrash(m.t, round, 40, cancel)
	m.planInPass(round)
	_, info, err := m.pass(ctx)
	m.endInPass()
	crashed := m.st.disarm()
	if os.Getenv("MODEL_DEBUG") != "" {
		rows, _ := m.st.QueryAudit(ctx, crmsync.AuditQuery{Run: info.ID, Limit: 500})
		for _, a := range rows {
			m.logf("  audit %s %s %v %s", a.Kind, a.System, a.RecordIDs, a.Detail)
		}
	}
	m.logf("pass %d (run %s) faults %v%s: crashed %v, err %v", m.passes, info.ID, armed, crash, crashed, err)
	m.f.hs.ClearFaults()
	m.f.sf.ClearFaults()
	m.tr.lose.Store(0)
	if newDay {
		m.f.sf.SetAPIUsage(0)
	}
	if crashed || newDay {
		if crashed {
			m.crashes++
			if crash != "" && strings.Contains(crash, "true") {
				m.dropped++
			}
		}
		m.restart()
	}
}

// someKeys draws a few record ids and emails, of either side.
func (m *model) someKeys() []string {
	var all []string
	for _, r := range m.liveHS() {
		all = append(all, r.ID, r.Properties["email"])
	}
	for _, r := range m.liveSF() {
		e, _ := r.Fields["Email"].(string)
		all = append(all, r.ID, e)
	}
	if len(all) == 0 {
		return nil
	}
	var out []string
	for range rapid.IntRange(1, 3).Draw(m.t, "failing records") {
		if k := rapid.SampledFrom(all).Draw(m.t, "failing record"); k != "" {
			out = append(out, k)
		}
	}
	return out
}

// pass runs one pass; users' edits before it land in its window.
func (m *model) pass(ctx context.Context) (*crmsync.SyncReport, crmsync.RunInfo, error) {
	m.clock.Advance(time.Second)
	m.passes++
	rep, info, err := m.proc.sync.RunOnce(ctx, m.proc.eng, m.key)
	m.clock.Advance(time.Second)
	first, ok := m.runFirst[info.ID]
	if !ok {
		first = m.passes
		m.runFirst[info.ID] = first
	}
	for _, r := range m.f.sf.All() {
		if _, ok := m.sfFirstIn[r.ID]; !ok {
			// A resumed run writes what it read before the crash: a
			// record it made counts from the run's first pass.
			m.sfFirstIn[r.ID] = first
		}
	}
	return rep, info, err
}

// quietPass runs a pass without faults, which must succeed.
func (m *model) quietPass(what string) (*crmsync.SyncReport, crmsync.RunInfo) {
	rep, info, err := m.pass(context.Background())
	m.logf("%s pass %d (run %s): err %v", what, m.passes, info.ID, err)
	if os.Getenv("MODEL_DEBUG") != "" && rep != nil {
		m.logf("  window %+v skips %+v read %v", rep.Window, rep.Skips, rep.Read)
		rows, _ := m.st.QueryAudit(context.Background(), crmsync.AuditQuery{Run: info.ID, Limit: 500})
		for _, a := range rows {
			if a.Kind != crmsync.AuditSkip {
				m.logf("  audit %s %s %s %v %s", a.Step, a.Kind, a.System, a.RecordIDs, a.Detail)
			}
		}
	}
	if err != nil {
		m.fail("%s pass failed: %v", what, err)
	}
	return rep, info
}

// fail fails the case, printing the story first.
func (m *model) fail(format string, args ...any) {
	m.t.Helper()
	if os.Getenv("MODEL_DEBUG") != "" {
		for _, r := range m.f.hs.All("contacts") {
			m.logf("hubspot %s archived %v modified %s: %v", r.ID, r.Archived, r.UpdatedAt.Format(time.StampMilli), r.Properties)
		}
		for _, r := range m.f.sf.All() {
			m.logf("salesforce %s deleted %v modified %s: link %v email %v", r.ID, r.Archived, r.ModifiedAt.Format(time.StampMilli), r.Fields[salesforceLinkField], r.Fields["Email"])
		}
	}
	m.t.Logf("story (%d passes, %d crashes, %d restarts, %d lost write responses):\n  %s",
		m.passes, m.crashes, m.restarts, m.tr.lost.Load(), strings.Join(m.log, "\n  "))
	m.t.Fatalf(format, args...)
}

// quiesce stops the faults and runs quiet passes until one writes nothing
// (the first may finish a run a crash left open, on its old window; a
// contact created in one pass has the fields its owner left blank reverted
// in the next), then resolves the held conflicts and runs the passes that
// apply the choices.
func (m *model) quiesce() {
	m.storyEnd = m.clock.Now()
	m.f.hs.ClearFaults()
	m.f.sf.ClearFaults()
	m.restoreFields()
	// Every late change surfaces: the search index catches up, and the
	// clock passes the delayed window's lag and the recycle bin's cadence
	// (an hour each).
	m.f.hs.SettleSearch()
	m.clock.Advance(2 * time.Hour)
	m.restart() // a new day: the clients forget any daily limit
	m.settle("quiet")
	ctx := context.Background()
	held, err := m.st.ListConflicts(ctx, crmsync.ConflictFilter{Key: m.key, State: crmsync.ConflictHeld})
	if err != nil {
		m.t.Fatal(err)
	}
	// A person resolves the newest held conflict of each field of each
	// pair whose records are both live.
	newest := map[string]crmsync.Conflict{}
	for _, c := range held {
		if !m.hsLive(c.RecordA) || !m.sfLive(c.RecordB) {
			continue
		}
		k := c.RecordA + "/" + c.RecordB + "/" + c.Field
		if old, ok := newest[k]; !ok || !c.DetectedAt.Before(old.DetectedAt) {
			newest[k] = c
		}
	}
	if len(newest) == 0 {
		return
	}
	for _, k := range keys(newest) {
		c := newest[k]
		pick := rapid.SampledFrom([]string{"hubspot", "salesforce"}).Draw(m.t, "resolution")
		if err := m.st.ResolveConflict(ctx, c.ID, crmsync.Resolution{Pick: pick}, time.Now()); err != nil {
			m.t.Fatal(err)
		}
		m.logf("a person resolves the %s conflict of %s/%s: %s", c.Field, c.RecordA, c.RecordB, pick)
		m.resolved++
	}
	m.settle("resolution")
}

// maxQuietPasses bounds the passes the sync may take to settle once the
// faults stop, besides those that replay letters a person marked.
const maxQuietPasses = 6

// settle runs quiet passes until a new run (not one a crash left open,
// which reads its old window) writes and parks nothing. The fakes still
// refuse a share of batches whole, so a quiet pass may park a write and
// its replay may be refused again: each pass that replays letters a person
// marked is new work and does not count against maxQuietPasses.
func (m *model) settle(what string) {
	wait, waits := 3*time.Minute, 0
	limit := maxQuietPasses
	for i := 1; ; i++ {
		m.clock.Advance(wait)
		m.f.hs.SettleSearch()
		replayed := m.replayRefusals()
		if replayed > 0 {
			limit++
		}
		rep, info := m.quietPass(what)
		left, binDue := m.leftWork(rep)
		quiet := replayed == 0 && info.Attempts == 1 && rep.Writes() == 0 && rep.DeadLetters() == 0 && rep.Resolved == 0 && m.runWrote(info.ID) == 0
		behind := delayedBehind(m.st, m.key, "", m.storyEnd)
		if quiet && !left && !behind {
			return
		}
		if quiet && (binDue || !left) {
			// Quiet, but the delayed window has yet to cover the story
			// (a check waits for the bin read that confirms it, or the
			// next window is due): both come with the hourly cadence,
			// and waiting for them does not count against the passes.
			if waits++; waits > 8 {
				return // the checks decide (see TestGraphModel's quiesce)
			}
			wait = time.Hour
			i--
			continue
		}
		wait = 3 * time.Minute
		if binDue {
			wait = time.Hour // the recycle bin's cadence
		}
		if i == limit {
			m.fail("the sync did not settle in %d quiet passes (%d replaying letters); the last: %s", i, limit-maxQuietPasses, rep.Summary())
		}
	}
}

// leftWork reports whether a pass that wrote nothing left work for a later
// one: cursors set back (a mapped field came back) to read again, or a
// delayed check waiting for the bin read that confirms it (binDue: it
// comes with the bin's cadence).
func (m *model) leftWork(rep *crmsync.SyncReport) (left, binDue bool) {
	if v, err := m.st.GetCursor(context.Background(), m.key, "hubspot:check"); err == nil && v != "" {
		return true, true
	}
	for sys, c := range rep.Cursors {
		cur, err := time.Parse(time.RFC3339Nano, c)
		if err == nil && cur.Before(rep.Window.Since[sys].Add(2*time.Minute)) {
			return true, false
		}
	}
	return false, false
}

func (m *model) hsLive(id string) bool {
	r, ok := m.f.hs.Get("contacts", id)
	return ok && !r.Archived
}

func (m *model) sfLive(id string) bool {
	r, ok := m.f.sf.Get(id)
	return ok && !r.Archived
}

// delayedBehind reports whether a side's delayed window (HubSpot's: its
// search lists writes late) has yet to cover the story: its cursor (under
// key, named with the prefix ns: "" or "<pair>/"), which moves only over
// windows read or checked by count and confirmed, is short of end. An
// edit that search listed only after the pass reading its window, to a
// record the passes knew, is read when the delayed window reaches it: a
// pass writing nothing before then is not settled.
func delayedBehind(st crmsync.Store, key, ns string, end time.Time) bool {
	v, err := st.GetCursor(context.Background(), key, ns+"hubspot:delayed")
	if err != nil {
		return false // no delayed window
	}
	d, err := time.Parse(time.RFC3339Nano, v)
	return err == nil && d.Before(end)
}

// norm is a field value in canonical form ("" and absent are nil).
func norm(t crmsync.FieldType, v any) any {
	if s, ok := v.(string); ok && strings.TrimSpace(s) == "" {
		return nil
	}
	n, err := crmsync.Normalize(t, v)
	if err != nil {
		return fmt.Sprintf("unreadable %T", v)
	}
	return n
}

// check verifies the promises on the final state.
func (m *model) check() {
	ctx := context.Background()
	pol := contactsPolicy()
	// A last pass writes nothing: the sync does not echo its own writes.
	m.clock.Advance(3 * time.Minute)
	m.f.hs.SettleSearch()
	rep, info, err := m.pass(ctx)
	if err != nil {
		m.fail("last pass failed: %v", err)
	}
	if rep.Writes() != 0 {
		rows, _ := m.st.QueryAudit(ctx, crmsync.AuditQuery{Run: info.ID, Limit: 100})
		var what []string
		for _, a := range rows {
			what = append(what, fmt.Sprintf("%s %s %v %s", a.Kind, a.System, a.RecordIDs, a.Detail))
		}
		for _, r := range m.f.hs.All("contacts") {
			l, _ := m.st.LinksByA(ctx, m.key, []string{r.ID})
			what = append(what, fmt.Sprintf("hubspot %s archived %v %v link %+v", r.ID, r.Archived, r.Properties, l[r.ID]))
		}
		for _, r := range m.f.sf.All() {
			what = append(what, fmt.Sprintf("salesforce %s deleted %v %v", r.ID, r.Archived, r.Fields))
		}
		m.fail("the last pass wrote %d records, want 0: %s\n  %s", rep.Writes(), rep.Summary(), strings.Join(what, "\n  "))
	}
	hsAll, sfAll := m.f.hs.All("contacts"), m.f.sf.All()
	hsByID := map[string]hubspottest.Record{}
	sfByID := map[string]crmsync.Record{}
	var hsIDs, sfIDs []string
	for _, r := range hsAll {
		hsByID[r.ID] = r
		hsIDs = append(hsIDs, r.ID)
	}
	for _, r := range sfAll {
		sfByID[r.ID] = r
		sfIDs = append(sfIDs, r.ID)
	}

	// Links are 1:1 and agree with the link fields; none is left on a
	// HubSpot id merged away (HubSpot lists those no more).
	var gone []string
	for id := range m.mergedAway {
		if _, ok := hsByID[id]; !ok {
			if _, sf := sfByID[id]; !sf {
				gone = append(gone, id)
			}
		}
	}
	stale, err := m.st.LinksByA(ctx, m.key, gone)
	if err != nil {
		m.t.Fatal(err)
	}
	for a, l := range stale {
		m.fail("salesforce %s is still linked to hubspot %s, which was merged away", l.BID, a)
	}
	byA, err := m.st.LinksByA(ctx, m.key, hsIDs)
	if err != nil {
		m.t.Fatal(err)
	}
	byB, err := m.st.LinksByB(ctx, m.key, sfIDs)
	if err != nil {
		m.t.Fatal(err)
	}
	for a, l := range byA {
		if back, ok := byB[l.BID]; !ok || back.AID != a {
			m.fail("link %s->%s has no matching link back (%+v)", a, l.BID, back)
		}
	}
	if len(byA) != len(byB) {
		m.fail("%d links by hubspot id, %d by salesforce id", len(byA), len(byB))
	}

	// No duplicates: one live contact per email on each side, one
	// Salesforce contact per HubSpot id.
	seenHS, seenSF, seenExt := map[string]string{}, map[string]string{}, map[string]string{}
	var sfDups [][2]string // checked once the dead letters and conflicts are read
	for _, r := range hsAll {
		e := strings.ToLower(r.Properties["email"])
		if r.Archived || e == "" {
			continue
		}
		if other, dup := seenHS[e]; dup {
			m.fail("hubspot contacts %s and %s share an email", other, r.ID)
		}
		seenHS[e] = r.ID
	}
	for _, r := range sfAll {
		if r.Archived {
			continue
		}
		if e, _ := r.Fields["Email"].(string); e != "" {
			e = strings.ToLower(e)
			if other, dup := seenSF[e]; dup {
				sfDups = append(sfDups, [2]string{other, r.ID})
			}
			seenSF[e] = r.ID
		}
		if x, _ := r.Fields[salesforceLinkField].(string); x != "" {
			if other, dup := seenExt[x]; dup {
				m.fail("hubspot contact %s has two salesforce contacts: %s and %s", x, other, r.ID)
			}
			seenExt[x] = r.ID
		}
	}

	// The dead-letter queue: each letter has its audit row, and nothing
	// but the contacts Salesforce refuses (no last name) is in it.
	letters, err := allDeadLetters(ctx, m.st, m.key)
	if err != nil {
		m.t.Fatal(err)
	}
	dlAudit, err := allAudit(ctx, m.st, m.key, crmsync.AuditDeadLetter)
	if err != nil {
		m.t.Fatal(err)
	}
	parkedFor := map[string]bool{} // records with a parked letter, as source or target
	m.letters = len(letters)
	for _, d := range letters {
		var pl struct {
			SourceSystem string `json:"source_system"`
			SourceID     string `json:"source_id"`
		}
		if err := json.Unmarshal(d.Payload, &pl); err != nil {
			m.fail("dead letter %d payload: %v", d.ID, err)
		}
		invalid := strings.Contains(d.Error, "REQUIRED_FIELD_MISSING") || strings.Contains(d.Error, "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST")
		// A second Salesforce contact of a person (one was deleted, the
		// sync made another, the first was undeleted) cannot come to
		// HubSpot: the person's email is taken there.
		if strings.Contains(d.Error, "CONFLICT") && d.System == "hubspot" && pl.SourceSystem == "salesforce" {
			e, _ := sfByID[pl.SourceID].Fields["Email"].(string)
			invalid = m.hsEmails[strings.ToLower(e)]
		}
		// A write read before a user archived its target finds it gone.
		raced := (strings.Contains(d.Error, "OBJECT_NOT_FOUND") || strings.Contains(d.Error, "ENTITY_IS_DELETED")) && m.archivedEver[d.RecordID]
		// A batch refused whole was replayed by a person (replayRefusals).
		replayed := refusedWhole(d.Error) && d.Status == crmsync.DeadReplayed
		if !invalid && !raced && !replayed {
			m.fail("dead letter %d for %s %s (run %s step %s) is not an invalid record: %s\npayload fields: %s", d.ID, d.System, d.RecordID, d.Run, d.Step, d.Error, payloadShape(d.Payload))
		}
		found := false
		for _, a := range dlAudit {
			if a.Run == d.Run && a.Step == d.Step && len(a.RecordIDs) > 0 && a.RecordIDs[0] == d.RecordID {
				found = true
			}
		}
		if !found {
			m.fail("dead letter %d (%s %s) has no dead-letter audit row", d.ID, d.System, d.RecordID)
		}
		if invalid {
			parkedFor[pl.SourceID] = true
			parkedFor[d.RecordID] = true
		}
	}

	// Two live Salesforce contacts share an email only where a user made
	// it so: one (u) was undeleted during or after the pass in which the
	// sync created the other (o), and a dead letter or a conflict tells a
	// person about one of them. A duplicate the sync made still fails.
	if len(sfDups) > 0 {
		writes, err := allAudit(ctx, m.st, m.key, crmsync.AuditWrite)
		if err != nil {
			m.t.Fatal(err)
		}
		syncMade := map[string]bool{}
		for _, a := range writes {
			var det struct {
				Created bool   `json:"created"`
				Role    string `json:"role"`
			}
			// A create whose first attempt landed unseen (its response
			// lost) says created false on the repeat that found it.
			if a.System == "salesforce" && len(a.RecordIDs) > 0 && json.Unmarshal(a.Detail, &det) == nil && (det.Created || det.Role == "create") {
				syncMade[a.RecordIDs[0]] = true
			}
		}
		told := map[string]bool{}
		for _, d := range letters {
			var pl struct {
				SourceID string `json:"source_id"`
			}
			_ = json.Unmarshal(d.Payload, &pl)
			told[d.RecordID], told[pl.SourceID] = true, true
		}
		conflicts, err := allAudit(ctx, m.st, m.key, crmsync.AuditConflict)
		if err != nil {
			m.t.Fatal(err)
		}
		for _, a := range conflicts {
			for _, id := range a.RecordIDs {
				told[id] = true
			}
		}
		undeletedAfter := func(u, o string) bool {
			n, undeleted := m.undeletedIn[u]
			made, seen := m.sfFirstIn[o]
			return undeleted && seen && syncMade[o] && n >= made && (told[u] || told[o])
		}
		for _, p := range sfDups {
			if !undeletedAfter(p[0], p[1]) && !undeletedAfter(p[1], p[0]) {
				m.fail("salesforce contacts %s and %s share an email", p[0], p[1])
			}
		}
	}

	// Every write has exactly one audit row and one ledger row; every
	// refused write has a dead letter.
	ledger := m.st.ledgerRows()
	writes, err := allAudit(ctx, m.st, m.key, crmsync.AuditWrite)
	if err != nil {
		m.t.Fatal(err)
	}
	perKey := map[string]int{}
	for _, a := range writes {
		perKey[a.IdemKey]++
		if e, ok := ledger[a.IdemKey]; !ok || !ledgerOK(e) {
			m.fail("write audit row %d (key %s) has no ledger row of a write that landed", a.ID, a.IdemKey)
		}
	}
	// A replay refused again updates the letter it replayed in place: the
	// letter keeps its first record id (a refused create names its source
	// record) while the refused write names the target the sync made since;
	// the write's dead-letter audit row names the letter.
	againFor := map[string]int64{} // run, step, record -> letter updated in place
	for _, a := range dlAudit {
		var det struct {
			Letter int64 `json:"dead_letter"`
			Again  bool  `json:"replay_failed_again"`
		}
		if json.Unmarshal(a.Detail, &det) == nil && det.Again && len(a.RecordIDs) > 0 {
			againFor[string(a.Run)+"\x00"+a.Step+"\x00"+a.RecordIDs[0]] = det.Letter
		}
	}
	for k, e := range ledger {
		if !ledgerOK(e) {
			found := false
			again, isAgain := againFor[string(e.Run)+"\x00"+e.Step+"\x00"+e.RecordID]
			for _, d := range letters {
				// (A replay refused again updates the letter it replayed.)
				if d.RecordID == e.RecordID && d.System == e.System && (d.Run == e.Run && d.Step == e.Step || d.Status == crmsync.DeadReplayed || d.Status == crmsync.DeadFailedAgain) {
					found = true
				}
				if isAgain && d.ID == again && d.System == e.System && (d.Status == crmsync.DeadReplayed || d.Status == crmsync.DeadFailedAgain) {
					found = true
				}
			}
			if !found {
				m.fail("refused write %s to %s %s has no dead letter", k, e.System, e.RecordID)
			}
			continue
		}
		if perKey[k] != 1 {
			m.fail("write %s to %s %s has %d audit rows, want 1", k, e.System, e.RecordID, perKey[k])
		}
	}

	// Each owner's last edit survived on the owner's side.
	types := map[string]crmsync.FieldType{}
	for _, r := range pol.Rules {
		types[r.A], types[r.B] = r.Type, r.Type
	}
	for k, fields := range m.owned {
		system, id, _ := strings.Cut(k, "/")
		for f, want := range fields {
			var got any
			if system == "hubspot" {
				got = hsByID[id].Properties[f]
			} else {
				got = sfByID[id].Fields[f]
			}
			m.ownedChecked++
			if w, g := norm(types[f], want), norm(types[f], got); w != g {
				m.fail("%s %s: %s = %v, want the owner's last edit %v", system, id, f, g, w)
			}
		}
	}

	// Every live contact the other side accepts has a live or flagged
	// counterpart; pairs agree field by field as the policy says.
	held, err := m.st.ListConflicts(ctx, crmsync.ConflictFilter{Key: m.key, State: crmsync.ConflictHeld})
	if err != nil {
		m.t.Fatal(err)
	}
	isHeld := map[string]bool{}
	for _, c := range held {
		isHeld[c.RecordA+"/"+c.RecordB+"/"+c.Field] = true
	}
	for _, h := range hsAll {
		if h.Archived {
			continue
		}
		invalid := strings.TrimSpace(h.Properties["lastname"]) == ""
		l, linked := byA[h.ID]
		if !linked {
			if !parkedFor[h.ID] {
				m.fail("live hubspot contact %s has no salesforce counterpart and is not in the dead-letter queue", h.ID)
			}
			continue
		}
		s := sfByID[l.BID]
		if got := h.Properties[hubspotLinkField]; got != l.BID {
			m.fail("hubspot contact %s: %s = %q, want its link %s", h.ID, hubspotLinkField, got, l.BID)
		}
		if s.Archived {
			if m.mergedAway[s.ID] {
				continue // checkMerges checks what a merge promises
			}
			if h.Properties["crmsync_archived"] != "true" {
				m.fail("salesforce contact %s is deleted but hubspot %s is not flagged archived", s.ID, h.ID)
			}
			continue
		}
		// The fake Salesforce refuses to clear a restricted picklist: a
		// pair whose HubSpot side has no stage cannot clear Salesforce's,
		// and the other changes of the same write wait with it.
		if norm(crmsync.TypeEnum, h.Properties["lifecyclestage"]) == nil && norm(crmsync.TypeEnum, s.Fields["Lifecycle_Stage__c"]) != nil {
			if !parkedFor[h.ID] && !parkedFor[s.ID] {
				m.fail("pair %s/%s: Salesforce refuses to clear its stage, but neither record is in the dead-letter queue", h.ID, s.ID)
			}
			continue
		}
		if invalid {
			if !parkedFor[h.ID] && !parkedFor[s.ID] {
				m.fail("hubspot contact %s has no last name, so Salesforce refuses it, but it is not in the dead-letter queue", h.ID)
			}
			continue // its writes to Salesforce are parked
		}
		if x, _ := s.Fields[salesforceLinkField].(string); x != h.ID {
			m.fail("salesforce contact %s: %s = %q, want its link %s", s.ID, salesforceLinkField, x, h.ID)
		}
		if v := s.Fields["Archived__c"]; v == true || h.Properties["crmsync_archived"] == "true" {
			m.fail("live pair %s/%s is flagged archived (hubspot %q, salesforce %v)", h.ID, s.ID, h.Properties["crmsync_archived"], v)
		}
		m.pairs++
		for _, r := range pol.Rules {
			a := norm(r.Type, h.Properties[r.A])
			b := norm(r.Type, s.Fields[r.B])
			if r.ToA != nil && b != nil {
				if mapped, err := r.ToA.Transform(b); err == nil {
					b = norm(r.Type, mapped)
				}
			}
			if a != b && !isHeld[h.ID+"/"+s.ID+"/"+r.Key()] {
				m.fail("pair %s/%s disagrees on %s: hubspot %v, salesforce %v", h.ID, s.ID, r.Key(), a, b)
			}
		}
	}
	m.checkMerges(byA, byB)
	for _, s := range sfAll {
		if s.Archived {
			continue
		}
		l, linked := byB[s.ID]
		if !linked {
			if !parkedFor[s.ID] {
				m.fail("live salesforce contact %s has no hubspot counterpart and is not in the dead-letter queue", s.ID)
			}
			continue
		}
		if h := hsByID[l.AID]; h.Archived && s.Fields["Archived__c"] != true {
			m.fail("hubspot contact %s is archived but salesforce %s is not flagged", h.ID, s.ID)
		}
	}
}

// payloadShape describes a dead letter's payload without its values.
func payloadShape(p []byte) string {
	var pl struct {
		SourceSystem string `json:"source_system"`
		SourceID     string `json:"source_id"`
		TargetSystem string `json:"target_system"`
		Op           *struct {
			Kind   any            `json:"kind"`
			ID     string         `json:"id"`
			Fields map[string]any `json:"fields"`
		} `json:"op"`
	}
	if err := json.Unmarshal(p, &pl); err != nil {
		return err.Error()
	}
	s := fmt.Sprintf("source %s %s -> %s", pl.SourceSystem, pl.SourceID, pl.TargetSystem)
	if pl.Op != nil {
		s += fmt.Sprintf(" op %v %s fields %v", pl.Op.Kind, pl.Op.ID, keys(pl.Op.Fields))
	}
	return s
}
