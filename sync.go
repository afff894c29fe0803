package crmsync

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"
)

// SyncConfig configures a Sync: two CRMs, the object on each, and the policy
// that maps their fields.
type SyncConfig struct {
	// A and B are the CRM clients of the policy's systems A and B
	// (A.System() == Policy.A). Required.
	A, B CRM
	// ObjectA and ObjectB name the synced object on each side
	// ("contacts", "Contact"). Required.
	ObjectA, ObjectB string
	// Policy maps the fields and says who wins. Required; it is validated.
	Policy *Policy
	// LinkFieldA is A's unique field that holds the counterpart's B id
	// (a HubSpot unique property such as "salesforce_contact_id"), and
	// LinkFieldB B's external-id field that holds the A id
	// ("HubSpot_Id__c"). Creates are upserts on them, so a create repeated
	// after a crash finds the record the first one made. Required.
	LinkFieldA, LinkFieldB string
	// Overlap is how far before each cursor a pass starts reading, for clock
	// skew and same-millisecond edits; zero means 2 minutes.
	//
	// Cursors: each side has a cursor, the point up to which its changes
	// are safely read. After a pass whose reads and writes of a side all
	// finished, the side's cursor moves to the pass's window end less the
	// side's change lag (ChangeLagger; zero for a CRM without it), never
	// backwards; a side that failed part-way keeps its cursor, and the
	// run resumes where it stopped. The next pass reads from the cursor
	// less Overlap, so that changes stamped by a clock that runs behind
	// the sync host's, and changes sharing a stamp, are read again rather
	// than missed. On a side whose CRM lags and can count (ChangeCounter,
	// HubSpot), the passes keep the ids and stamps of what they read (the
	// cursor "<system>:known", at most 20,000 records), and the part of
	// that overlap the previous pass read is counted rather than read
	// again, and read only when the count differs (ReadWindow.Tail). The
	// stretch of it a CRM clock running behind the host's could stamp
	// again after the read (as far behind as the side's writes measured
	// it, from the stamps their answers carry; Overlap when nothing was
	// written for a day) is read, not counted. One exception moves
	// cursors back: when a mapped field that went away comes back, both
	// cursors go back, once, to where the pass that found it gone began,
	// so that the edits made meanwhile sync.
	// Within a pass each side's deleted records are read before its live
	// ones (a merge loser's link moves to its winner first).
	Overlap time.Duration
	// DelayedLag is how far behind now the delayed window of a side whose
	// CRM lags (ChangeLagger with a positive lag, HubSpot search) ends: a
	// second cursor per side covers [delayed cursor, now less DelayedLag]
	// once that window spans DelayedLag, so a change the CRM listed late
	// (out of order, after its lag) is still found. On a side that counts
	// and reads its whole bin (HubSpot), the window is checked, not read:
	// it ends at the first bound of a record a pass read in it, one search
	// counts what is listed from its start on, and the check is confirmed
	// by the next recycle-bin read (ArchivedEvery), which tells the known
	// records that left; a count that differs reads the window page by
	// page (from the cursor less Overlap), as other sides always do. A
	// record listed late is found within DelayedLag (a bin read later when
	// a known record left meanwhile); a record a pass read and then edited
	// again, listed later than the overlap's reach, within about two
	// DelayedLag. Zero means 1 hour; negative turns the delayed window off.
	DelayedLag time.Duration
	// ArchivedEvery is how often the archived (deleted) records of a side
	// whose CRM reads its whole recycle bin on every archived read
	// (WholeBinReader: HubSpot cannot filter its bin by archive time) are
	// read: not on every pass, but when this long has passed since the
	// last such read, or at once after RequestArchivedRead. Zero means 1
	// hour; negative means every pass. A side whose CRM reads deletions
	// by window (Salesforce) reads them on every pass. When it last ran is
	// kept as the cursor "<system>:archived", and a bin read keeps every
	// record archived since then (less Overlap), not only those inside the
	// pass's window. The bin read after a delayed check confirms it
	// (DelayedLag): the check goes first when both fall due.
	ArchivedEvery time.Duration
	// Since is where the first pass of a key starts reading; zero means
	// everything (a full backfill).
	Since time.Time
	// PageSize is the change-page size hint; zero means each API's maximum.
	PageSize int
	// WriteConcurrency caps the write calls in flight within a pass; zero means 4.
	WriteConcurrency int
	// OnConflict is told about each run's conflicts, once per run. With no
	// handler, conflicts are logged (ids and field names only).
	OnConflict []ConflictHandler
	// Progress, if set, is called after each page with the pass's progress.
	Progress func(Progress)
	// Now is the clock that ends each pass's read window; nil means time.Now.
	Now func() time.Time
	// IncludeA and IncludeB say which records of each side sync (a
	// HubSpot list membership or lifecycle stage, a Salesforce record
	// type); nil includes every record. A pair whose record on either side
	// is not included is left alone: nothing is written to either record,
	// nothing is created for it, and leaving the inclusion never archives
	// or deletes anything. The record's fields the predicate reads must be
	// fetched: name them in a rule (a Never rule will do). Each exclusion
	// is noted in the report's Skips.
	IncludeA, IncludeB func(Record) bool
}

// Sync is the bidirectional sync of one object between two CRMs, as a
// Workflow: Engine.Run(ctx, key, sync) makes one pass in both directions. A
// Sync is safe for concurrent runs of different keys.
type Sync struct {
	c      SyncConfig
	fields map[string][]string // fields to fetch per system

	mu          sync.Mutex
	archivedNow map[string]bool // key + "\x00" + system: read the bin on the next pass
}

// WholeBinReader is an optional interface of a CRM whose archived change
// reads (ChangeQuery.Archived) list the whole recycle bin whatever the
// window (HubSpot). The sync reads such a side's archived records on its
// own slower cadence (SyncConfig.ArchivedEvery), not on every pass.
type WholeBinReader interface {
	ArchivedReadsWholeBin() bool
}

// OwnWriteFilter is an optional interface of a CRM whose change reads can
// leave out the records its own user changed last (ChangeQuery.OthersOnly;
// Salesforce filters on LastModifiedById). FiltersOwnWrites reports whether
// the client does. The sync then leaves its own writes out of such a side's
// change reads, except on the side's first read, and instead reads back by
// id, in the pass that made them, the records it wrote there, handing what
// it reads to the merge like any change: a person's edit made after the
// read window's end and before the sync's write to the same record is found
// there, and the next pass does not read the sync's writes again.
type OwnWriteFilter interface {
	FiltersOwnWrites() bool
}

// filtersOwn reports whether sd's change reads leave out its own writes.
func filtersOwn(sd *side) bool {
	f, ok := sd.crm.(OwnWriteFilter)
	return ok && f.FiltersOwnWrites()
}

// ChangeCounter is an optional interface of a CRM that says, in one cheap
// call, how many live records a change query's window [q.Since, q.Until)
// lists (HubSpot: the total of a one-record search page); a zero Until
// means no upper end. For a side whose change reads lag (ChangeLagger), the
// sync uses it to check, rather than read again, the part of a window the
// previous pass read already, and the delayed window.
type ChangeCounter interface {
	CountChanges(ctx context.Context, q ChangeQuery) (int, error)
}

// counts reports whether sd's already-read tail is checked by count.
func counts(sd *side) bool {
	_, ok := sd.crm.(ChangeCounter)
	return ok && changeLag(sd) > 0
}

// IDResolver is an optional interface of a CRM whose merges give the
// merged record a new id while the old ids still resolve to it (HubSpot:
// a single GET follows a merge, batch calls do not). ResolveID returns the
// id the record id lives on now: id itself for a live record, another id
// for one a merge took away, "" when nothing has it. Before the sync flags
// a counterpart archived because a record was read archived with nothing
// saying it was merged (MergedInto empty), it asks; a record that lives on
// under another id is handled as merged into it: never archived, its link
// moves to the new id.
type IDResolver interface {
	ResolveID(ctx context.Context, object, id string) (string, error)
}

// MergedAwayLister is implemented by a CRM whose merges name the winner
// only on the deleted losers (Salesforce: MasterRecordId). MergedAway
// returns, for each of winners that deleted records were merged into,
// their ids. Before the sync creates on the other side a counterpart for a
// live record with no link and no match, it asks: a merge's winner whose
// loser's deletion the pass has not read (the merge came after the pass
// read the bin) takes over the loser's link, as when the loser is read.
type MergedAwayLister interface {
	MergedAway(ctx context.Context, object string, winners []string) (map[string][]string, error)
}

// RequestArchivedRead asks the next pass of key to read system's archived
// records even if SyncConfig.ArchivedEvery has not passed, for instance
// when a deletion event arrived. The request lives in this process only; a
// restart falls back to the cadence.
func (s *Sync) RequestArchivedRead(key, system string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.archivedNow == nil {
		s.archivedNow = map[string]bool{}
	}
	s.archivedNow[key+"\x00"+system] = true
}

// takeArchivedRequest reports and clears a request for key and system.
func (s *Sync) takeArchivedRequest(key, system string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := key + "\x00" + system
	req := s.archivedNow[k]
	delete(s.archivedNow, k)
	return req
}

// wholeBin reports whether sd's archived reads list the whole bin.
func wholeBin(sd *side) bool {
	w, ok := sd.crm.(WholeBinReader)
	return ok && w.ArchivedReadsWholeBin()
}

// archivedCursor names the cursor holding when a side's bin was last read.
func archivedCursor(system string) string { return system + ":archived" }

var _ Workflow = (*Sync)(nil)

// NewSync validates c and returns a Sync.
func NewSync(c SyncConfig) (*Sync, error) {
	var probs []string
	if c.A == nil || c.B == nil {
		probs = append(probs, "SyncConfig.A and SyncConfig.B (the two CRM clients) are required")
	}
	if c.ObjectA == "" || c.ObjectB == "" {
		probs = append(probs, "SyncConfig.ObjectA and ObjectB are required")
	}
	if c.LinkFieldA == "" || c.LinkFieldB == "" {
		probs = append(probs, "SyncConfig.LinkFieldA and LinkFieldB (the unique fields holding the other side's id) are required")
	}
	if c.Overlap < 0 || c.PageSize < 0 || c.WriteConcurrency < 0 {
		probs = append(probs, "SyncConfig.Overlap, PageSize and WriteConcurrency must not be negative")
	}
	if c.Policy == nil {
		probs = append(probs, "SyncConfig.Policy is required")
	} else {
		p, err := NewPolicy(*c.Policy)
		if err != nil {
			probs = append(probs, err.Error())
		} else {
			c.Policy = p
			if c.A != nil && c.A.System() != p.A {
				probs = append(probs, fmt.Sprintf("SyncConfig.A is %q but the policy's system A is %q", c.A.System(), p.A))
			}
			if c.B != nil && c.B.System() != p.B {
				probs = append(probs, fmt.Sprintf("SyncConfig.B is %q but the policy's system B is %q", c.B.System(), p.B))
			}
		}
	}
	if len(probs) > 0 {
		return nil, fmt.Errorf("crmsync: NewSync: %s", joinProblems(probs))
	}
	if c.Overlap == 0 {
		c.Overlap = 2 * time.Minute
	}
	if c.DelayedLag == 0 {
		c.DelayedLag = time.Hour
	}
	if c.ArchivedEvery == 0 {
		c.ArchivedEvery = time.Hour
	}
	if c.WriteConcurrency == 0 {
		c.WriteConcurrency = 4
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	s := &Sync{c: c, fields: map[string][]string{}}
	p := c.Policy
	for _, side := range []string{p.A, p.B} {
		var fs []string
		add := func(f string) {
			if f != "" && !slices.Contains(fs, f) {
				fs = append(fs, f)
			}
		}
		add(s.identityField(side))
		for _, r := range p.Rules {
			if side == p.A {
				add(r.A)
			} else {
				add(r.B)
			}
		}
		if side == p.A {
			add(p.Archived.A)
			add(c.LinkFieldA)
		} else {
			add(p.Archived.B)
			add(c.LinkFieldB)
		}
		s.fields[side] = fs
	}
	return s, nil
}

func joinProblems(p []string) string {
	out := ""
	for i, s := range p {
		if i > 0 {
			out += "; "
		}
		out += s
	}
	return out
}

// Name implements the optional workflow name used in run records.
func (s *Sync) Name() string {
	return "sync " + s.c.Policy.A + "/" + s.c.ObjectA + " <-> " + s.c.Policy.B + "/" + s.c.ObjectB
}

// Policy returns the validated policy.
func (s *Sync) Policy() *Policy { return s.c.Policy }

func (s *Sync) identityField(side string) string {
	f := s.c.Policy.Identity.A
	if side == s.c.Policy.B {
		f = s.c.Policy.Identity.B
	}
	if f == "" {
		f = defaultIdentityField(side)
	}
	return f
}

// side describes one system in a pass.
type side struct {
	name      string // system name
	crm       CRM
	object    string
	linkField string // this side's field holding the other side's id
	fields    []string
	isA       bool
}

func (s *Sync) sides() (a, b *side) {
	p := s.c.Policy
	a = &side{name: p.A, crm: s.c.A, object: s.c.ObjectA, linkField: s.c.LinkFieldA, fields: s.fields[p.A], isA: true}
	b = &side{name: p.B, crm: s.c.B, object: s.c.ObjectB, linkField: s.c.LinkFieldB, fields: s.fields[p.B]}
	return a, b
}

// Run implements Workflow: one pass in both directions.
func (s *Sync) Run(ctx context.Context, run *Run) error {
	ps := s.newPass(run, run.Store(), run.Key, run.Logger())
	rep, err := ps.do(ctx)
	run.SetResult(rep)
	return err
}

// Plan is a dry run for key: the writes a pass would make now, made by
// nobody. It reads both CRMs and the Store but writes to neither and
// commits nothing; cursors do not move. The report lists the writes
// (SyncReport.Planned: direction, record ids, field names; values only
// with PlanValues) and its counts are those of the pass that would follow
// on the same data: the plan keeps in memory the links, ledger rows and
// conflicts the pass would commit and the records it would write (the
// pass's own writes move records out of its window, so a record written
// on the side read second is not read again), skips the writes the write
// ledger shows were made or parked before, and counts as dead letters the
// writes the target's schema says it would refuse: a required field empty
// or missing on a create, a value outside a restricted picklist, an
// address in an email field (FieldSchema.Format) that is not one. Refusals
// no schema shows (validation rules, duplicates, lengths) it cannot
// foresee, nor dead letters marked for replay: a plan does not replay them.
// A nil logger logs nothing, as the Engine's.
func (s *Sync) Plan(ctx context.Context, st Store, key string, logger *slog.Logger, opts ...PlanOption) (*SyncReport, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	ps := s.newPass(nil, st, key, logger)
	ps.plan = newPlanState(opts)
	rep, err := ps.do(ctx)
	rep.Planned = ps.plan.plannedWrites()
	return rep, err
}

// RunOnce runs one pass for key on eng and returns its report.
func (s *Sync) RunOnce(ctx context.Context, eng *Engine, key string) (*SyncReport, RunInfo, error) {
	info, err := eng.Run(ctx, key, s)
	rep, derr := DecodeSyncReport(info)
	if err != nil {
		return rep, info, err
	}
	return rep, info, derr
}

// pass is one execution of a sync pass.
type pass struct {
	s   *Sync
	run *Run // nil for a plan
	// plan holds, in a plan, what the pass would have written.
	plan  *planState
	st    Store
	key   string
	log   *slog.Logger
	a, b  *side
	start time.Time

	// replaying is set while dead letters are tried again: the ledger's
	// record of an earlier refusal does not stop them.
	replaying bool

	mu sync.Mutex
	// stamps holds, per system, the stamp of each record the pass's live
	// change reads returned: added to the side's known state (sync_tail.go).
	stamps map[string]map[string]time.Time
	// tails holds what else the pass notes for the known state.
	tails tailPass
	// dropped holds, per system, the fields left out of this pass's reads
	// and writes: absent from the schema, or refused by the API.
	dropped map[string]map[string]bool
	// first lists the sides read for the first time: deletions older than
	// the API keeps were never synced, so their loss is no news.
	first     map[string]bool
	rep       *SyncReport
	conflicts []Conflict
	expected  int // records the APIs said the reads match, for the estimate

	// In a graph (graph.go), key is PairKey(leaseKey, ns): the pair's
	// links, conflicts and idempotency keys; cursors stay under leaseKey,
	// the run's key, named "<ns>/<cursor>".
	leaseKey string
	graph    *Graph
	ns       string
	// refs holds the pass's reference state (refs.go); plans, in a plan
	// of a graph, the plans of the pairs before this one.
	refs  refState
	plans map[string]*planState
}

func (s *Sync) newPass(run *Run, st Store, key string, log *slog.Logger) *pass {
	a, b := s.sides()
	rep := newSyncReport(a.name, b.name)
	rep.Plan = run == nil
	return &pass{s: s, run: run, st: st, key: key, leaseKey: key, log: log, a: a, b: b, start: time.Now(), rep: rep,
		dropped: map[string]map[string]bool{a.name: {}, b.name: {}},
		stamps:  map[string]map[string]time.Time{a.name: {}, b.name: {}}}
}

// drop leaves fields out of sd's reads and writes for the rest of the pass
// and returns those that were not left out already. The identity field is
// never dropped from the list of a side that has only it.
func (p *pass) drop(sd *side, fields ...string) []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var added []string
	for _, f := range fields {
		if f == "" || p.dropped[sd.name][f] || !slices.Contains(sd.fields, f) {
			continue
		}
		p.dropped[sd.name][f] = true
		added = append(added, f)
	}
	return added
}

// fieldsFor is sd's fields less those dropped.
func (p *pass) fieldsFor(sd *side) []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]string, 0, len(sd.fields))
	for _, f := range sd.fields {
		if !p.dropped[sd.name][f] {
			out = append(out, f)
		}
	}
	return out
}

// isDropped reports whether field is left out on sd.
func (p *pass) isDropped(sd *side, field string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.dropped[sd.name][field]
}

// maxFieldRetries bounds how often one call is sent again with fewer fields.
const maxFieldRetries = 5

// refusedFields returns the fields a *FieldError in err names, if any.
func refusedFields(err error) []string {
	var fe *FieldError
	if err != nil && errors.As(err, &fe) {
		return fe.Fields
	}
	return nil
}

// changes reads one page from sd, dropping the fields the API refuses and
// reading again; it returns the fields it dropped.
func (p *pass) changes(ctx context.Context, sd *side, q ChangeQuery) (Page, []string, error) {
	var dropped []string
	// A side's first read takes everything: records the CRM's own user
	// changed before the sync ran are changes too.
	q.OthersOnly = !q.Archived && !p.first[sd.name] && filtersOwn(sd)
	for try := 0; ; try++ {
		q.Fields = p.fieldsFor(sd)
		p.apiCalls(sd.name, 1)
		page, err := sd.crm.Changes(ctx, q)
		if names := refusedFields(err); len(names) > 0 && try < maxFieldRetries {
			if added := p.drop(sd, names...); len(added) > 0 {
				dropped = append(dropped, added...)
				continue
			}
		}
		return page, dropped, err
	}
}

func (p *pass) other(sd *side) *side {
	if sd.isA {
		return p.b
	}
	return p.a
}

// step runs fn as a durable step of the run, or directly in a plan.
func step[T any](ctx context.Context, p *pass, id string, fn func(ctx context.Context, a *Attempt) (T, error), opts *StepOpts) (T, error) {
	fn = scoped(p, fn)
	id = p.stepID(id)
	if p.run == nil {
		a := &Attempt{N: 1}
		v, err := fn(ctx, a)
		if err == nil && p.plan != nil {
			p.plan.commit(a)
		}
		return v, err
	}
	return Step(ctx, p.run, id, fn, opts)
}

func (p *pass) apiCalls(system string, n int) {
	if p.run != nil {
		p.run.AddAPICalls(system, n)
	}
	p.mu.Lock()
	p.rep.APICalls[system] += n
	p.mu.Unlock()
}

// ReadWindow is a pass's read window, fixed by its first execution: each
// side's changes are read from Since (per system) up to Until.
type ReadWindow struct {
	Since map[string]time.Time `json:"since"`
	Until time.Time            `json:"until"`
	// Delayed holds, for the sides whose delayed window is due, where it
	// starts; it ends at DelayedUntil.
	Delayed      map[string]time.Time `json:"delayed,omitempty"`
	DelayedUntil time.Time            `json:"delayed_until,omitzero"`
	// SkipArchived lists the sides whose archived read is not due.
	SkipArchived map[string]bool `json:"skip_archived,omitempty"`
	// ArchivedSince holds, for the whole-bin sides whose bin read is due,
	// where it starts when that is before Since: the last bin read less
	// Overlap. The bin is read hours apart, so a record archived since the
	// last read but before this window is still found.
	ArchivedSince map[string]time.Time `json:"archived_since,omitempty"`
	// First lists the sides read for the first time (no cursor yet).
	First map[string]bool `json:"first,omitempty"`
	// Tail holds, for the sides whose window begins with records the
	// previous pass read (its tail, kept because the CRM lists writes
	// late), where the counted part of the tail ends: a millisecond past
	// the newest stamp the passes read there, or the first bound of a
	// record read there if that comes first (sync_tail.go). The window is
	// read from there; the part before is counted (ChangeCounter) and read
	// again only when the count is not the records known there, less what
	// this pass read again with a newer stamp or saw leave (archived,
	// merged away).
	Tail map[string]time.Time `json:"tail,omitempty"`
	// DelayedCheck holds, for the sides whose delayed window is due and
	// checked by count rather than read (sync_tail.go), where the checked
	// window ends; it starts at Delayed.
	DelayedCheck map[string]time.Time `json:"delayed_check,omitempty"`
	// Confirm holds, for the sides with a delayed check waiting for a bin
	// read, that check: confirmed after this pass's bin read, or its
	// window read page by page.
	Confirm map[string]DelayedCheck `json:"confirm,omitempty"`
	// Vouch holds the sides whose delayed check would end at the bound of
	// a record known in the window: this pass reads those records by id
	// (vouchDelayed) instead of counting, and the next pass counts as far
	// as they allow. One extra call each, on a pass of its own.
	Vouch map[string]bool `json:"vouch,omitempty"`
}

// changeLag is how long sd's change reads lag its writes.
func changeLag(sd *side) time.Duration {
	if l, ok := sd.crm.(ChangeLagger); ok {
		if d := l.ChangeLag(); d > 0 {
			return d
		}
	}
	return 0
}

// delayedCursor names the cursor of a side's delayed window.
func delayedCursor(system string) string { return system + ":delayed" }

func (p *pass) do(ctx context.Context) (*SyncReport, error) {
	err := p.passes(ctx)
	p.rep.Duration = time.Since(p.start)
	p.noteBudgets()
	if p.run != nil {
		c := p.run.Counters()
		p.rep.StepRuns, p.rep.Replays, p.rep.Retries = c.StepRuns, c.Replays, c.Retries
	}
	return p.rep, err
}

// noteBudgets puts each side's daily API use in the report, where its
// client reports it.
func (p *pass) noteBudgets() {
	for _, sd := range []*side{p.a, p.b} {
		if br, ok := sd.crm.(BudgetReporter); ok {
			if b, ok := br.APIBudget(); ok {
				if p.rep.Budget == nil {
					p.rep.Budget = map[string]APIBudget{}
				}
				p.rep.Budget[sd.name] = b
			}
		}
	}
}

func (p *pass) passes(ctx context.Context) error {
	win, err := step(ctx, p, "window", func(ctx context.Context, _ *Attempt) (ReadWindow, error) {
		w := ReadWindow{Since: map[string]time.Time{}, Until: p.s.c.Now().UTC()}
		if p.s.c.DelayedLag > 0 {
			w.DelayedUntil = w.Until.Add(-p.s.c.DelayedLag)
		}
		for _, sd := range []*side{p.a, p.b} {
			since := p.s.c.Since
			if c, ok, err := p.cursor(ctx, sd.name); err != nil {
				return w, err
			} else if ok {
				since = c.Add(-p.s.c.Overlap)
			} else {
				if w.First == nil {
					w.First = map[string]bool{}
				}
				w.First[sd.name] = true
			}
			w.Since[sd.name] = since.UTC()
			if counts(sd) && !w.First[sd.name] {
				t, err := p.known(ctx, sd.name)
				if err != nil {
					return w, err
				}
				if split, ok := t.split(w.Since[sd.name], w.Until); ok {
					if w.Tail == nil {
						w.Tail = map[string]time.Time{}
					}
					w.Tail[sd.name] = split
				}
			}
			// The delayed window and the recycle bin are read about hourly
			// and fall due together; a tail count (after a burst) is one
			// more call. On one pass they take turns, one extra read each,
			// unless the one put off is twice overdue: a quiet tick stays
			// cheap, and neither waits long. The delayed window goes first:
			// checked by count, it waits for the bin read that follows.
			if !w.DelayedUntil.IsZero() && changeLag(sd) > 0 {
				d, ok, err := p.cursor(ctx, delayedCursor(sd.name))
				if err != nil {
					return w, err
				}
				pend, waiting, err := p.pendingCheck(ctx, sd.name)
				if err != nil {
					return w, err
				}
				// Due once the delayed window spans DelayedLag: one re-read
				// of about an hour's changes an hour after they were read.
				_, tail := w.Tail[sd.name]
				due := ok && !waiting && !w.DelayedUntil.Before(d.Add(p.s.c.DelayedLag))
				if due && tail && w.DelayedUntil.Before(d.Add(2*p.s.c.DelayedLag)) {
					due = false
				}
				if waiting {
					if w.Confirm == nil {
						w.Confirm = map[string]DelayedCheck{}
					}
					w.Confirm[sd.name] = pend
				}
				if due {
					if w.Delayed == nil {
						w.Delayed = map[string]time.Time{}
					}
					w.Delayed[sd.name] = d.Add(-p.s.c.Overlap).UTC()
					end, check, err := p.checkable(ctx, sd, d, w.DelayedUntil)
					if err != nil {
						return w, err
					}
					if check {
						if w.DelayedCheck == nil {
							w.DelayedCheck = map[string]time.Time{}
						}
						if end.Before(w.DelayedUntil) {
							v, ok, err := p.vouched(ctx, sd.name)
							if err != nil {
								return w, err
							}
							if ok && v.Since.Equal(d) {
								end = maxTime(end, v.End)
							} else if helps, err := p.vouchHelps(ctx, sd, d, end, w.DelayedUntil); err != nil {
								return w, err
							} else if helps {
								if w.Vouch == nil {
									w.Vouch = map[string]bool{}
								}
								w.Vouch[sd.name] = true
							}
						}
						w.Delayed[sd.name], w.DelayedCheck[sd.name] = d.UTC(), end
					}
				}
			}
			if wholeBin(sd) && p.s.c.ArchivedEvery > 0 && !p.s.takeArchivedRequest(p.key, sd.name) {
				last, ok, err := p.cursor(ctx, archivedCursor(sd.name))
				if err != nil {
					return w, err
				}
				_, tail := w.Tail[sd.name]
				_, delayed := w.Delayed[sd.name]
				since := w.Until.Sub(last)
				if ok && (since < p.s.c.ArchivedEvery || ((tail || delayed) && since < 2*p.s.c.ArchivedEvery)) {
					if w.SkipArchived == nil {
						w.SkipArchived = map[string]bool{}
					}
					w.SkipArchived[sd.name] = true
				}
			}
			if wholeBin(sd) && !w.SkipArchived[sd.name] {
				last, ok, err := p.cursor(ctx, archivedCursor(sd.name))
				if err != nil {
					return w, err
				}
				if from := last.Add(-p.s.c.Overlap); ok && from.Before(since) {
					if w.ArchivedSince == nil {
						w.ArchivedSince = map[string]time.Time{}
					}
					w.ArchivedSince[sd.name] = from.UTC()
				}
			}
		}
		return w, nil
	}, nil)
	if err != nil {
		return err
	}
	p.rep.Window = win
	p.first = win.First
	if err := p.schemaDrift(ctx); err != nil {
		return err
	}
	if err := p.applyResolutions(ctx); err != nil {
		return err
	}
	if err := p.replayDeadLetters(ctx); err != nil {
		return err
	}
	for _, sd := range []*side{p.a, p.b} {
		if err := p.readWaiting(ctx, sd); err != nil {
			return err
		}
		// Deleted records first: a merge loser's link moves to its winner
		// before the live read meets the winner, so that a winner new
		// since the last pass is relinked, not created on the other side.
		if !win.SkipArchived[sd.name] {
			from := win.Since[sd.name]
			if s, ok := win.ArchivedSince[sd.name]; ok {
				from = s
			}
			if err := p.readSide(ctx, sd, from, win.Until, true, "archived"); err != nil {
				return err
			}
		}
		// A delayed check waiting for a bin read is confirmed by this
		// pass's, or its window is read.
		pend, confirm := win.Confirm[sd.name]
		confirm = confirm && !win.SkipArchived[sd.name]
		if confirm {
			ok, err := p.confirmDelayed(ctx, sd, pend)
			if err != nil {
				return err
			}
			if !ok {
				if p.log != nil {
					p.log.Debug("delayed check not confirmed: reading the delayed window", "crm", sd.name)
				}
				if err := p.readSide(ctx, sd, pend.Since.Add(-p.s.c.Overlap), win.DelayedUntil, false, "delayed"); err != nil {
					return err
				}
				pend.Until = maxTime(pend.Until, win.DelayedUntil)
			}
		}
		from := win.Since[sd.name]
		tailEnd, tail := win.Tail[sd.name]
		if tail {
			from = tailEnd
		}
		if err := p.readSide(ctx, sd, from, win.Until, false, "changes"); err != nil {
			return err
		}
		if tail {
			if err := p.checkTail(ctx, sd, win.Since[sd.name], tailEnd); err != nil {
				return err
			}
		}
		delayed, due := win.Delayed[sd.name]
		delayedEnd, checked := win.DelayedCheck[sd.name]
		var check DelayedCheck
		var vouch DelayedVouch
		switch {
		case due && checked && win.Vouch[sd.name]:
			if vouch, err = p.vouchDelayed(ctx, sd, delayed, delayedEnd, win.DelayedUntil); err != nil {
				return err
			}
			if vouch.Read {
				if p.log != nil {
					p.log.Debug("a record known in the delayed window was edited there since its read: reading the window", "crm", sd.name)
				}
				delayedEnd = win.DelayedUntil
				if err := p.readSide(ctx, sd, delayed.Add(-p.s.c.Overlap), delayedEnd, false, "delayed"); err != nil {
					return err
				}
				checked = false // read: done
			}
		case due && checked:
			if check, err = p.checkDelayed(ctx, sd, delayed, delayedEnd); err != nil {
				return err
			}
			if check.Count > check.Known {
				if p.log != nil {
					p.log.Debug("delayed count differs: reading the delayed window", "crm", sd.name, "count", check.Count, "known", check.Known)
				}
				delayedEnd = win.DelayedUntil
				if err := p.readSide(ctx, sd, delayed.Add(-p.s.c.Overlap), delayedEnd, false, "delayed"); err != nil {
					return err
				}
				checked = false // read: done
			}
		case due:
			delayedEnd = win.DelayedUntil
			if err := p.readSide(ctx, sd, delayed, delayedEnd, false, "delayed"); err != nil {
				return err
			}
		}
		// The cursors move only forward, and only over finished work: to
		// the window end less the side's change lag.
		end := win.Until.Add(-changeLag(sd))
		cur, err := step(ctx, p, "cursor:"+sd.name, func(ctx context.Context, a *Attempt) (time.Time, error) {
			// keep is the oldest stamp a later tail or delayed window
			// counts from: the known records stamped before it are dropped.
			keep := win.Until
			if err := p.saveWaiting(ctx, a, sd); err != nil {
				return time.Time{}, err
			}
			if wholeBin(sd) && !win.SkipArchived[sd.name] {
				a.SetCursor(archivedCursor(sd.name), win.Until.Format(time.RFC3339Nano))
			}
			if !win.DelayedUntil.IsZero() && changeLag(sd) > 0 {
				d, ok, err := p.cursor(ctx, delayedCursor(sd.name))
				if err != nil {
					return time.Time{}, err
				}
				switch {
				case !ok:
					// The first pass read everything up to its window end;
					// later delayed windows start there.
					d = win.DelayedUntil
				case confirm:
					// Confirmed or read.
					d = maxTime(d, pend.Until)
					a.SetCursor(checkCursor(sd.name), "")
				case due && checked && win.Vouch[sd.name]:
					// Vouched for: the next pass counts.
					b, _ := json.Marshal(vouch)
					a.SetCursor(vouchCursor(sd.name), string(b))
				case due && checked:
					// Checked: confirmed by the next bin read.
					b, _ := json.Marshal(check)
					a.SetCursor(checkCursor(sd.name), string(b))
				case due:
					d = maxTime(d, delayedEnd)
				}
				a.SetCursor(delayedCursor(sd.name), d.UTC().Format(time.RFC3339Nano))
				keep = minTime(keep, d)
			}
			old, ok, err := p.cursor(ctx, sd.name)
			if err != nil {
				return time.Time{}, err
			}
			cur := end
			if ok && !end.After(old) {
				cur = old
			} else {
				a.SetCursor(sd.name, end.UTC().Format(time.RFC3339Nano))
			}
			if counts(sd) {
				old, err := p.known(ctx, sd.name)
				if err != nil {
					return time.Time{}, err
				}
				keep = minTime(keep, cur.Add(-p.s.c.Overlap))
				p.newKnown(a, sd, old, cur.Add(-p.s.c.Overlap), win.Until, keep)
			}
			return cur, nil
		}, nil)
		if err != nil {
			return err
		}
		p.rep.Cursors[sd.name] = cur.UTC().Format(time.RFC3339Nano)
	}
	if err := p.finishDrift(ctx); err != nil {
		return err
	}
	return p.notifyConflicts(ctx)
}

func (p *pass) cursor(ctx context.Context, system string) (time.Time, bool, error) {
	v, err := p.st.GetCursor(ctx, p.leaseKey, p.cursorName(system))
	if errors.Is(err, ErrNotFound) {
		return time.Time{}, false, nil
	}
	if err != nil {
		return time.Time{}, false, fmt.Errorf("crmsync: cursor %s of %s: %w", system, p.key, err)
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return time.Time{}, false, fmt.Errorf("crmsync: cursor %s of %s is not a time: %w", system, p.key, err)
	}
	return t, true, nil
}

// readSide reads one side's changes in [since, until) page by page,
// handling each page fully before the next. The next page is read while the
// current one is handled, so that reads and writes overlap under their
// separate rate limits. kind names the read in step ids ("changes",
// "archived", "delayed").
func (p *pass) readSide(ctx context.Context, sd *side, since, until time.Time, archived bool, kind string) error {
	type fetched struct {
		rr  readResult
		err error
	}
	fetch := func(i int, token string) <-chan fetched {
		ch := make(chan fetched, 1)
		go func() {
			rr, err := p.readPage(ctx, sd, since, until, archived, kind, i, token)
			ch <- fetched{rr, err}
		}()
		return ch
	}
	next := fetch(0, "")
	for i := 0; ; i++ {
		f := <-next
		if f.err != nil {
			return f.err
		}
		page := f.rr.Page
		if p.plan != nil {
			page.Records = p.plan.unwritten(sd.name, page.Records)
		}
		p.drop(sd, f.rr.Dropped...) // again, for a run that replays the read
		if f.rr.Lost != "" && archived && p.first[sd.name] {
			if p.log != nil {
				p.log.Debug("first read of deletions: those older than the API keeps are not read", "crm", sd.name)
			}
		} else if f.rr.Lost != "" {
			p.mu.Lock()
			p.rep.HistoryLost = append(p.rep.HistoryLost, sd.name+" "+kind+": "+f.rr.Lost)
			p.mu.Unlock()
			if p.log != nil {
				p.log.Warn("change history lost: changes older than the API keeps cannot be read", "crm", sd.name, "kind", kind)
			}
		}
		if page.Next != "" {
			next = fetch(i+1, page.Next)
		}
		p.mu.Lock()
		var gone []string
		for _, r := range page.Records {
			switch {
			case archived:
				gone = append(gone, r.ID)
			default:
				if t, ok := p.stamps[sd.name][r.ID]; !ok || r.ModifiedAt.After(t) {
					p.stamps[sd.name][r.ID] = r.ModifiedAt
				}
				gone = append(gone, r.MergedFrom...)
			}
		}
		p.rep.Read[sd.name] += len(page.Records)
		if i == 0 {
			p.expected += page.Total
		}
		p.mu.Unlock()
		p.noteGone(sd, gone...)
		var herr error
		if len(page.Records) > 0 {
			herr = p.handle(ctx, sd, fmt.Sprintf("%s:%s:%d", sd.name, kind, i), page.Records)
		}
		if herr != nil {
			if page.Next != "" {
				<-next // let the read in flight end before the run closes
			}
			return herr
		}
		p.progress(sd.name, kind)
		if page.Next == "" {
			return nil
		}
	}
}

// readPage reads page i of one side's changes as a step.
func (p *pass) readPage(ctx context.Context, sd *side, since, until time.Time, archived bool, kind string, i int, token string) (readResult, error) {
	id := fmt.Sprintf("read:%s:%s:%d", sd.name, kind, i)
	return step(ctx, p, id, func(ctx context.Context, _ *Attempt) (readResult, error) {
		q := ChangeQuery{Object: sd.object, Since: since, Until: until,
			Archived: archived, PageToken: token, PageSize: p.s.c.PageSize}
		page, dropped, err := p.changes(ctx, sd, q)
		if err == nil || !errors.Is(err, ErrHistoryLost) || token != "" {
			return readResult{Page: page, Dropped: dropped}, err
		}
		// The API no longer lists everything since the cursor (a first
		// backfill, or a pass after a long pause): read what it still
		// holds, and say so in the report.
		q.Since = until.Add(-historyFallback)
		page, more, err2 := p.changes(ctx, sd, q)
		dropped = append(dropped, more...)
		if err2 != nil && errors.Is(err2, ErrHistoryLost) {
			return readResult{Lost: err.Error(), Dropped: dropped}, nil
		}
		return readResult{Page: page, Lost: err.Error(), Dropped: dropped}, err2
	}, nil)
}

func (p *pass) progress(system, phase string) {
	if p.s.c.Progress == nil && p.log == nil {
		return
	}
	p.mu.Lock()
	pr := Progress{Phase: system + " " + phase, Read: p.rep.Read[p.a.name] + p.rep.Read[p.b.name], Expected: p.expected, Elapsed: time.Since(p.start)}
	for _, d := range p.rep.Directions {
		pr.Written += d.Created + d.Updated
	}
	p.mu.Unlock()
	if secs := pr.Elapsed.Seconds(); secs > 0 && pr.Read > 0 {
		pr.RecordsPerSecond = float64(pr.Read) / secs
		if pr.Expected > pr.Read {
			pr.Remaining = time.Duration(float64(pr.Expected-pr.Read) / pr.RecordsPerSecond * float64(time.Second))
		}
	}
	if p.s.c.Progress != nil {
		p.s.c.Progress(pr)
	}
	if p.log != nil {
		p.log.Debug("sync progress", "phase", pr.Phase, "read", pr.Read, "expected", pr.Expected, "written", pr.Written, "remaining", pr.Remaining)
	}
}

// historyFallback is how far back a read goes when the API lost the
// history since the cursor: inside Salesforce's 15-day deleted-records window.
const historyFallback = 14 * 24 * time.Hour

// readResult is a page read as a step result.
type readResult struct {
	Page Page `json:"page"`
	// Lost is set when the API could not list everything since the cursor.
	Lost string `json:"lost,omitempty"`
	// Dropped lists the fields the API refused, left out from then on.
	Dropped []string `json:"dropped,omitempty"`
}

// Progress is a pass's progress so far.
type Progress struct {
	// Phase names the side and kind being read ("hubspot changes").
	Phase string
	// Read and Written count records so far; Expected is how many the reads
	// begun so far match, as far as the APIs say (zero: unknown).
	Read, Written, Expected int
	Elapsed                 time.Duration
	RecordsPerSecond        float64
	// Remaining estimates the time left for the reads begun so far; zero
	// when unknown.
	Remaining time.Duration
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}
