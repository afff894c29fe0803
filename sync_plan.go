package crmsync

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"
)

// PlannedWrite is one write a plan (Sync.Plan) would make.
type PlannedWrite struct {
	// Direction is "source->target" ("hubspot->salesforce"): the side the
	// change comes from, and the side written.
	Direction string `json:"direction"`
	// Kind is PlanCreate, PlanUpdate, PlanArchive or PlanLink.
	Kind string `json:"kind"`
	// SourceID is the record the change comes from; TargetID the record
	// written. A record the plan would create has a placeholder id,
	// "new-<system>-<n>", so that the writes that name it (the link
	// written back to the source) can be told.
	SourceID string `json:"source_id"`
	TargetID string `json:"target_id,omitempty"`
	// Fields names the fields written, sorted.
	Fields []string `json:"fields"`
	// Values are the values written, only with the PlanValues option:
	// they are personal data. Fields redacts them in logs.
	Values Fields `json:"values,omitempty"`
	// Refused is set when the plan expects the target to refuse the write
	// (a required field empty, a value outside a restricted picklist, an
	// address the CRM does not take): the pass would park it as a dead
	// letter.
	Refused string `json:"refused,omitempty"`
}

// The kinds of PlannedWrite.
const (
	// PlanCreate makes a new record (sent as an upsert on the link field,
	// so that a repeat never makes a duplicate).
	PlanCreate = "create"
	// PlanUpdate changes fields of a record.
	PlanUpdate = "update"
	// PlanArchive sets the archived flag of a record.
	PlanArchive = "archive"
	// PlanLink writes only the link field (the other side's id).
	PlanLink = "link"
)

// PlanOption tunes Sync.Plan.
type PlanOption func(*planState)

// PlanValues keeps the values of each planned write in
// SyncReport.Planned (PlannedWrite.Values). They are personal data: off
// by default.
func PlanValues() PlanOption { return func(ps *planState) { ps.values = true } }

// newRecordPrefix starts the ids a plan gives the records it would create.
const newRecordPrefix = "new-"

// planState is what a plan keeps in memory of what it would have done, so
// that the rest of the plan sees the CRMs and the store as the pass would:
// the links, ledger rows and conflicts the pass would have committed, and
// the records it would have written (their stamps move past the window, so
// later reads of the pass do not list them; lookups see the written values)
// or created.
type planState struct {
	values bool

	mu        sync.Mutex
	linksA    map[string]Link
	linksB    map[string]Link
	ledger    map[string]LedgerEntry
	conflicts map[string]bool
	written   map[string]map[string]*planRecord // system -> id
	created   int
	schemas   map[string]map[string]FieldSchema // system -> field
	planned   []PlannedWrite
}

// planRecord is a record the plan would write: what it knows of it, and
// the fields it would write.
type planRecord struct {
	rec     Record
	patch   Fields
	created bool
}

func newPlanState(opts []PlanOption) *planState {
	ps := &planState{linksA: map[string]Link{}, linksB: map[string]Link{}, ledger: map[string]LedgerEntry{},
		conflicts: map[string]bool{}, written: map[string]map[string]*planRecord{}, schemas: map[string]map[string]FieldSchema{}}
	for _, o := range opts {
		o(ps)
	}
	return ps
}

// commit takes what a step of the plan would have committed.
func (ps *planState) commit(a *Attempt) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	for _, l := range a.links {
		if old, ok := ps.linksA[l.AID]; ok {
			delete(ps.linksB, old.BID)
		}
		if old, ok := ps.linksB[l.BID]; ok {
			delete(ps.linksA, old.AID)
		}
		ps.linksA[l.AID], ps.linksB[l.BID] = l, l
	}
	for _, e := range a.ledger {
		ps.ledger[e.IdemKey] = e
	}
	for _, c := range a.conflicts {
		ps.conflicts[c.ID] = true
	}
}

func (ps *planState) setSchema(system string, s Schema) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	ps.schemas[system] = schemaIndex(s)
}

// links is the store's links of ids on side A (isA) or B, as the pass
// would have left them.
func (ps *planState) links(stored map[string]Link, isA bool, ids []string) map[string]Link {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	mine, theirs := ps.linksA, ps.linksB
	if !isA {
		mine, theirs = ps.linksB, ps.linksA
	}
	out := map[string]Link{}
	for _, id := range ids {
		if l, ok := mine[id]; ok {
			out[id] = l
			continue
		}
		l, ok := stored[id]
		if !ok {
			continue
		}
		cp := l.BID
		if !isA {
			cp = l.AID
		}
		if o, ok := theirs[cp]; ok && o.AID+"\x00"+o.BID != l.AID+"\x00"+l.BID {
			continue // the counterpart was linked to another record
		}
		out[id] = l
	}
	return out
}

// ledgerEntries adds the plan's ledger rows to the store's.
func (ps *planState) ledgerEntries(stored map[string]LedgerEntry, keys []string) map[string]LedgerEntry {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	for _, k := range keys {
		if e, ok := ps.ledger[k]; ok {
			stored[k] = e
		}
	}
	return stored
}

func (ps *planState) hasConflict(id string) bool {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	return ps.conflicts[id]
}

// unwritten leaves out of a read the records the plan wrote on system: the
// pass's write would have stamped them past the window.
func (ps *planState) unwritten(system string, recs []Record) []Record {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	w := ps.written[system]
	if len(w) == 0 {
		return recs
	}
	out := recs[:0:0]
	for _, r := range recs {
		if _, ok := w[r.ID]; !ok {
			out = append(out, r)
		}
	}
	return out
}

// lookupValues drops the ids of records the plan would create from an id
// lookup: the CRM does not have them.
func (ps *planState) lookupValues(field string, values []string) []string {
	if field != "id" {
		return values
	}
	out := values[:0:0]
	for _, v := range values {
		if !strings.HasPrefix(v, newRecordPrefix) {
			out = append(out, v)
		}
	}
	return out
}

// lookupView makes a lookup's records what the pass would have found: the
// values the plan wrote, records no longer matching left out, records the
// plan created or wrote that match now added.
func (ps *planState) lookupView(system, field string, values []string, recs []Record) []Record {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	w := ps.written[system]
	if len(w) == 0 {
		return recs
	}
	match := func(r Record) bool {
		if field == "id" {
			return slices.Contains(values, r.ID)
		}
		v, _ := r.Fields[field].(string)
		v = strings.TrimSpace(v)
		for _, want := range values {
			if v != "" && strings.EqualFold(v, strings.TrimSpace(want)) {
				return true
			}
		}
		return false
	}
	seen := map[string]bool{}
	out := recs[:0:0]
	for _, r := range recs {
		seen[r.ID] = true
		if pr, ok := w[r.ID]; ok {
			r = pr.view(r)
			if !match(r) {
				continue
			}
		}
		out = append(out, r)
	}
	ids := make([]string, 0, len(w))
	for id := range w {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		pr := w[id]
		if seen[id] || (!pr.created && pr.rec.Fields == nil) {
			continue
		}
		if r := pr.view(pr.rec); match(r) {
			out = append(out, r)
		}
	}
	return out
}

// view is r with the plan's writes applied.
func (pr *planRecord) view(r Record) Record {
	f := make(Fields, len(r.Fields)+len(pr.patch))
	for k, v := range r.Fields {
		f[k] = v
	}
	for k, v := range pr.patch {
		f[k] = v
	}
	r.Fields = f
	if r.FieldTimes != nil {
		ft := make(map[string]time.Time, len(r.FieldTimes))
		for k, v := range r.FieldTimes {
			ft[k] = v
		}
		for k := range pr.patch {
			ft[k] = pr.rec.ModifiedAt
		}
		r.FieldTimes = ft
	}
	r.ModifiedAt = pr.rec.ModifiedAt
	return r
}

// emailForm is an address as the CRMs take it.
var emailForm = regexp.MustCompile(`^[^@\s]+@[^@\s]+\.[^@\s]+$`)

// refusal is why system's schema says it would refuse op, or "".
func (ps *planState) refusal(system string, op WriteOp) string {
	ps.mu.Lock()
	idx := ps.schemas[system]
	ps.mu.Unlock()
	if len(idx) == 0 {
		return ""
	}
	names := make([]string, 0, len(op.Fields))
	for k := range op.Fields {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		fs, ok := idx[k]
		if !ok {
			continue
		}
		v := op.Fields[k]
		s, isString := v.(string)
		if v == nil || (isString && strings.TrimSpace(s) == "") {
			if fs.Required {
				return "required field " + k + " is empty"
			}
			continue
		}
		if !isString {
			continue
		}
		if fs.Restricted && len(fs.Options) > 0 && (fs.Type == TypeEnum || fs.Type == TypeMultiEnum) {
			parts := []string{s}
			if fs.Type == TypeMultiEnum {
				parts = strings.Split(s, ";")
			}
			for _, part := range parts {
				if part != "" && !slices.Contains(fs.Options, part) {
					return "field " + k + " takes no such value (restricted picklist)"
				}
			}
		}
		if fs.Format == "email" && !emailForm.MatchString(s) {
			return "field " + k + " is not an email address"
		}
	}
	if op.Kind == Upsert || op.Kind == Create {
		var missing []string
		for name, fs := range idx {
			if _, ok := op.Fields[name]; fs.Required && !fs.ReadOnly && !ok && name != op.MatchField {
				missing = append(missing, name)
			}
		}
		if len(missing) > 0 {
			sort.Strings(missing)
			return "required field " + strings.Join(missing, ", ") + " missing"
		}
	}
	return ""
}

// predict is what the plan expects to from a write call of ops to side to:
// a permanent refusal where the schema says so, else success (new ids for
// creates).
func (ps *planState) predict(to *side, ops []WriteOp) []WriteResult {
	res := make([]WriteResult, len(ops))
	for i, op := range ops {
		if why := ps.refusal(to.name, op); why != "" {
			res[i].Err = Permanent(fmt.Errorf("plan: %s would refuse it: %s", to.name, why))
			continue
		}
		if op.Kind == Update {
			res[i].ID = op.ID
			continue
		}
		ps.mu.Lock()
		ps.created++
		res[i] = WriteResult{ID: fmt.Sprintf("%s%s-%d", newRecordPrefix, to.name, ps.created), Created: true}
		ps.mu.Unlock()
	}
	return res
}

// record keeps the outcomes of one write batch of the plan: the records
// written, and the planned writes for the report.
func (ps *planState) record(p *pass, to, src *side, batch []writeItem, out []writeOutcome, pairs []*pair) {
	direction := p.other(to).name + "->" + to.name
	now := time.Now().UTC()
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if ps.written[to.name] == nil {
		ps.written[to.name] = map[string]*planRecord{}
	}
	for i, it := range batch {
		o := out[i]
		if o.Ledger || o.Unknown {
			continue // applied or parked by an earlier run: not sent
		}
		pr := pairs[it.Pair]
		target, source := pr.other, pr.src
		if to.name == src.name {
			target, source = pr.src, pr.other
		}
		sourceID := source.ID
		if sourceID == "" {
			sourceID, _ = it.Op.Fields[to.linkField].(string)
		}
		names := make([]string, 0, len(it.Op.Fields))
		for k := range it.Op.Fields {
			if !p.isDropped(to, k) {
				names = append(names, k)
			}
		}
		sort.Strings(names)
		pw := PlannedWrite{Direction: direction, Kind: planKind(p, to, it), SourceID: sourceID, TargetID: it.Op.ID, Fields: names}
		if ps.values {
			pw.Values = make(Fields, len(names))
			for _, k := range names {
				pw.Values[k] = it.Op.Fields[k]
			}
		}
		if o.Created {
			pw.TargetID = o.ID
		}
		if !o.ok() {
			pw.Refused = o.Error
			ps.planned = append(ps.planned, pw)
			continue
		}
		ps.planned = append(ps.planned, pw)
		id := o.ID
		rec, ok := ps.written[to.name][id]
		if !ok {
			rec = &planRecord{patch: Fields{}, created: o.Created}
			if !o.Created && target.ID == id {
				rec.rec = target
			}
			rec.rec.ID = id
			if o.Created {
				rec.rec.CreatedAt = now
				if it.Op.MatchField != "" {
					rec.patch[it.Op.MatchField] = it.Op.MatchValue
				}
			}
			ps.written[to.name][id] = rec
		}
		rec.rec.ModifiedAt = now
		for _, k := range names {
			rec.patch[k] = it.Op.Fields[k]
		}
	}
}

// planKind is the PlannedWrite kind of it.
func planKind(p *pass, to *side, it writeItem) string {
	switch {
	case it.Role == "create":
		return PlanCreate
	case it.Role == "link":
		return PlanLink
	}
	field := p.s.c.Policy.Archived.B
	if to.isA {
		field = p.s.c.Policy.Archived.A
	}
	if v, ok := it.Op.Fields[field]; ok && (v == true || v == "true") {
		return PlanArchive
	}
	return PlanUpdate
}

// plannedWrites returns the planned writes in a stable order.
func (ps *planState) plannedWrites() []PlannedWrite {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	out := slices.Clone(ps.planned)
	sort.SliceStable(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Direction != b.Direction {
			return a.Direction < b.Direction
		}
		if a.SourceID != b.SourceID {
			return a.SourceID < b.SourceID
		}
		return a.TargetID < b.TargetID
	})
	return out
}

// lookupWrites is the store's ledger rows for keys, and in a plan those
// the plan would have written.
func (p *pass) lookupWrites(ctx context.Context, keys []string) (map[string]LedgerEntry, error) {
	got, err := p.st.LookupWrites(ctx, keys)
	if err != nil || p.plan == nil {
		return got, err
	}
	if got == nil {
		got = map[string]LedgerEntry{}
	}
	return p.plan.ledgerEntries(got, keys), nil
}

// conflictSeen reports whether conflict id was saved before (or, in a
// plan, would have been saved by it).
func (p *pass) conflictSeen(ctx context.Context, id string) (bool, error) {
	if p.plan != nil && p.plan.hasConflict(id) {
		return true, nil
	}
	if _, err := p.st.GetConflict(ctx, id); err == nil {
		return true, nil
	} else if !errors.Is(err, ErrNotFound) {
		return false, err
	}
	return false, nil
}
