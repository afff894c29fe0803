package crmsync

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"
)

// DirectionReport counts what one direction of a pass did.
type DirectionReport struct {
	// Created and Updated count records written on the target side.
	Created int `json:"created"`
	Updated int `json:"updated"`
	// Archived counts records flagged archived on the target side.
	Archived int `json:"archived"`
	// Unchanged counts linked records read with nothing to write (an echo of
	// the sync's own write, or an edit the other side already had).
	Unchanged int `json:"unchanged"`
	// OwnedElsewhere counts records with a change the policy did not carry
	// to the target side (the target owns the field: the change is
	// reverted, or the rule copies one way only).
	OwnedElsewhere int `json:"owned_elsewhere"`
	// DeadLetters counts records parked in the dead-letter queue.
	DeadLetters int `json:"dead_letters"`
}

// SkipNote is a record the pass could not pair, and why.
type SkipNote struct {
	System   string `json:"system"`
	RecordID string `json:"record_id"`
	Field    string `json:"field,omitempty"`
	Reason   string `json:"reason"`
}

// SyncReport is what one pass did. It is stored as the run's result.
type SyncReport struct {
	// Plan reports a dry run: the writes counted were not made.
	Plan bool `json:"plan,omitempty"`
	// Directions are keyed "hubspot->salesforce" and the reverse.
	Directions map[string]*DirectionReport `json:"directions"`
	// Read counts records read per system (changes and archived).
	Read map[string]int `json:"read"`
	// Conflicts counts fields changed on both sides; Held those held for a person.
	Conflicts int `json:"conflicts"`
	Held      int `json:"held"`
	// Resolved counts people's choices applied.
	Resolved int `json:"resolved,omitempty"`
	// Replayed counts dead letters tried again.
	Replayed int `json:"replayed,omitempty"`
	// ConflictNotifyError is set when a conflict handler failed.
	ConflictNotifyError string `json:"conflict_notify_error,omitempty"`
	// APICalls counts the calls this execution of the pass made per system
	// (a resumed run does not repeat, or count, the calls of completed steps).
	APICalls map[string]int `json:"api_calls"`
	// StepRuns, Replays and Retries are the run's step counters.
	StepRuns int `json:"step_runs"`
	Replays  int `json:"replays"`
	Retries  int `json:"retries"`
	// Cursors are the cursor positions after the pass.
	Cursors map[string]string `json:"cursors"`
	// Window is the pass's read window.
	Window ReadWindow `json:"window"`
	// Planned lists, in a plan (Sync.Plan), the writes the pass would make.
	Planned []PlannedWrite `json:"planned,omitempty"`
	// Drift lists schema-drift warnings: a mapped field that went away
	// (deleted, or hidden from the integration user) or came back, a type
	// that no longer fits, a picklist value with no mapping, a field that
	// appeared since the last run and is not mapped. Each is warned in the
	// log once, when it appears.
	Drift []string `json:"drift,omitempty"`
	// Dropped lists the mapped fields ("salesforce.Phone") left out of this
	// pass's reads and writes because the CRM does not have them or refused
	// them (FieldError); the other fields synced.
	Dropped []string `json:"dropped,omitempty"`
	// Unmapped lists the writable fields of either schema that the policy
	// does not name ("hubspot.company"). They are information, not drift:
	// the CRMs' read-only and system fields are left out.
	Unmapped []string `json:"unmapped,omitempty"`
	// HistoryLost lists reads whose API no longer held every change since
	// the cursor (deletes older than Salesforce's window, say): those
	// changes were not seen, and a full reconcile is needed to find them.
	HistoryLost []string `json:"history_lost,omitempty"`
	// Waiting counts records that wait (a reference with no counterpart
	// yet, a counterpart converted): they are read again next pass.
	Waiting int `json:"waiting,omitempty"`
	// Skips lists records that could not be paired.
	Skips []SkipNote `json:"skips,omitempty"`
	// Duration is the pass's wall time in this execution.
	Duration time.Duration `json:"duration_ns"`
	// Budget is each account's daily API use at the end of the pass, for
	// the clients that report it (BudgetReporter).
	Budget map[string]APIBudget `json:"budget,omitempty"`
}

func newSyncReport(a, b string) *SyncReport {
	return &SyncReport{
		Directions: map[string]*DirectionReport{a + "->" + b: {}, b + "->" + a: {}},
		Read:       map[string]int{a: 0, b: 0}, APICalls: map[string]int{}, Cursors: map[string]string{},
	}
}

func (r *SyncReport) direction(from, to string) *DirectionReport {
	d := r.Directions[from+"->"+to]
	if d == nil {
		d = &DirectionReport{}
		r.Directions[from+"->"+to] = d
	}
	return d
}

// Writes is the number of records written (created or updated) both ways.
func (r *SyncReport) Writes() int {
	n := 0
	for _, d := range r.Directions {
		n += d.Created + d.Updated
	}
	return n
}

// DeadLetters is the number of records parked both ways.
func (r *SyncReport) DeadLetters() int {
	n := 0
	for _, d := range r.Directions {
		n += d.DeadLetters
	}
	return n
}

// Summary is a few readable lines.
func (r *SyncReport) Summary() string {
	var b strings.Builder
	keys := make([]string, 0, len(r.Directions))
	for k := range r.Directions {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	verb := ""
	if r.Plan {
		verb = " (plan: nothing was written)"
	}
	fmt.Fprintf(&b, "read %s%s\n", formatCounts(r.Read), verb)
	for _, k := range keys {
		d := r.Directions[k]
		fmt.Fprintf(&b, "  %-24s created %d, updated %d, archived %d, unchanged %d, owned elsewhere %d, dead letters %d\n",
			k, d.Created, d.Updated, d.Archived, d.Unchanged, d.OwnedElsewhere, d.DeadLetters)
	}
	fmt.Fprintf(&b, "  conflicts %d (held %d), resolutions applied %d, dead letters replayed %d\n", r.Conflicts, r.Held, r.Resolved, r.Replayed)
	fmt.Fprintf(&b, "  API calls %s; steps run %d, replayed %d, retried %d; %s\n", formatCounts(r.APICalls), r.StepRuns, r.Replays, r.Retries, r.Duration.Round(time.Millisecond))
	if len(r.Drift) > 0 {
		fmt.Fprintf(&b, "  schema drift: %d warning(s)\n", len(r.Drift))
	}
	return b.String()
}

func formatCounts(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s %d", k, m[k])
	}
	return strings.Join(parts, ", ")
}

// DecodeSyncReport reads the SyncReport stored with a sync run.
func DecodeSyncReport(info RunInfo) (*SyncReport, error) {
	if len(info.Report) == 0 {
		return nil, fmt.Errorf("crmsync: run %s has no report", info.ID)
	}
	var rep Report
	if err := json.Unmarshal(info.Report, &rep); err != nil {
		return nil, fmt.Errorf("crmsync: run %s: decode report: %w", info.ID, err)
	}
	if len(rep.Result) == 0 {
		return nil, fmt.Errorf("crmsync: run %s has no sync report", info.ID)
	}
	var sr SyncReport
	if err := json.Unmarshal(rep.Result, &sr); err != nil {
		return nil, fmt.Errorf("crmsync: run %s: decode sync report: %w", info.ID, err)
	}
	return &sr, nil
}

// schemaDrift reads both schemas once per run. A mapped field a schema
// lacks (deleted, or hidden from the integration user) is dropped from the
// pass's reads and writes; type mismatches and picklist values with no
// mapping are drift; writable fields no rule names are listed in the
// report, and are drift only when they appeared since the last run. The
// CRMs' read-only and system fields are never drift. Nothing here is an
// error: the sync goes on with the fields that still match.
func (p *pass) schemaDrift(ctx context.Context) error {
	var schemas [2]Schema
	for i, sd := range []*side{p.a, p.b} {
		s, err := step(ctx, p, "schema:"+sd.name, func(ctx context.Context, _ *Attempt) (Schema, error) {
			p.apiCalls(sd.name, 1)
			return sd.crm.Schema(ctx, sd.object)
		}, nil)
		if err != nil {
			return err
		}
		schemas[i] = s
		if p.plan != nil {
			p.plan.setSchema(sd.name, s)
		}
		if len(s.Fields) == 0 {
			continue // a CRM that does not describe its fields
		}
		have := schemaIndex(s)
		for _, f := range sd.fields {
			if _, ok := have[f]; !ok {
				p.drop(sd, f)
			}
		}
	}
	d := SchemaDiff(schemas[0], schemas[1], p.s.c.Policy)
	ignore := map[string]bool{p.a.linkField: true, p.b.linkField: true}
	var warn []string
	add := func(format string, args ...any) { warn = append(warn, fmt.Sprintf(format, args...)) }
	for _, m := range d.TypeMismatches {
		add("%s: field %s is %s, the policy says %s", m.Side, m.Name, m.Got, m.Want)
	}
	for _, o := range d.UnmappedOptions {
		add("%s: picklist value %q of %s has no mapping", o.Side, o.Value, o.Field)
	}
	prev := p.previousReport(ctx)
	wasUnmapped := map[string]bool{}
	if prev != nil {
		for _, f := range prev.Unmapped {
			wasUnmapped[f] = true
		}
	}
	for i, sd := range []*side{p.a, p.b} {
		names := d.UnmappedA
		if i == 1 {
			names = d.UnmappedB
		}
		idx := schemaIndex(schemas[i])
		for _, f := range names {
			if ignore[f] || idx[f].ReadOnly {
				continue // the CRM's own system fields, and the link fields
			}
			p.rep.Unmapped = append(p.rep.Unmapped, sd.name+"."+f)
			if prev != nil && !wasUnmapped[sd.name+"."+f] {
				add("%s: field %s is not mapped", sd.name, f)
			}
		}
	}
	p.rep.Drift = warn
	return nil
}

// finishDrift reports the fields dropped in this pass, and warns (once)
// about each drift that is new since the key's last finished run: a field
// that went away, a field that came back, and the schema drift.
//
// A field's values were neither read nor written while it was away, so
// the changes made meanwhile (an edit on the side that kept it) did not
// sync. When a field goes away, where this pass began reading is kept (the
// cursor "drift:<system>.<field>"); when it comes back, both sides' cursors
// are set back there, once, so that the next pass reads those changes
// again and syncs the field's edits: the one exception to cursors moving
// only forward.
func (p *pass) finishDrift(ctx context.Context) error {
	p.mu.Lock()
	var dropped []string
	for _, sd := range []*side{p.a, p.b} {
		for f := range p.dropped[sd.name] {
			dropped = append(dropped, sd.name+"."+f)
		}
	}
	p.mu.Unlock()
	sort.Strings(dropped)
	p.rep.Dropped = dropped
	prev := p.previousReport(ctx)
	was := map[string]bool{}
	var prevDrift []string
	if prev != nil {
		for _, f := range prev.Dropped {
			was[f] = true
		}
		prevDrift = prev.Drift
	}
	is := map[string]bool{}
	var gone, back []string
	for _, f := range dropped {
		is[f] = true
		if !was[f] {
			gone = append(gone, f)
			system, field, _ := strings.Cut(f, ".")
			p.rep.Drift = append(p.rep.Drift, fmt.Sprintf("%s: mapped field %s is not available (deleted, or hidden from the integration user): left out of reads and writes", system, field))
		}
	}
	if prev != nil {
		for _, f := range prev.Dropped {
			if !is[f] {
				back = append(back, f)
				system, field, _ := strings.Cut(f, ".")
				p.rep.Drift = append(p.rep.Drift, fmt.Sprintf("%s: mapped field %s is back: synced again", system, field))
			}
		}
	}
	if err := p.driftCursors(ctx, gone, back); err != nil {
		return err
	}
	if p.log == nil {
		return nil
	}
	seen := map[string]bool{}
	for _, w := range prevDrift {
		seen[w] = true
	}
	for _, w := range p.rep.Drift {
		if !seen[w] {
			p.log.Warn("schema drift", "warning", w)
		}
	}
	return nil
}

// driftCursor names the cursor holding where the pass that found field
// ("salesforce.Phone") gone began reading.
func driftCursor(field string) string { return "drift:" + field }

// driftCursors keeps where this pass began reading for the fields gone,
// and sets both sides' cursors back to where the fields back went away.
func (p *pass) driftCursors(ctx context.Context, gone, back []string) error {
	if p.run == nil || (len(gone) == 0 && len(back) == 0) {
		return nil
	}
	moved, err := step(ctx, p, "drift-cursors", func(ctx context.Context, a *Attempt) (map[string]time.Time, error) {
		var from time.Time
		for i, sd := range []*side{p.a, p.b} {
			if t := p.rep.Window.Since[sd.name]; i == 0 || t.Before(from) {
				from = t
			}
		}
		for _, f := range gone {
			a.SetCursor(driftCursor(f), from.UTC().Format(time.RFC3339Nano))
		}
		var since time.Time
		found := false
		for _, f := range back {
			t, ok, err := p.cursor(ctx, driftCursor(f))
			if err != nil {
				return nil, err
			}
			// A field gone on a side's first pass went away where that
			// pass began: the zero time, everything.
			if ok && (!found || t.Before(since)) {
				since, found = t, true
			}
		}
		moved := map[string]time.Time{}
		if !found {
			return moved, nil
		}
		// The next pass reads from the cursor less Overlap.
		target := since.Add(p.s.c.Overlap)
		for _, sd := range []*side{p.a, p.b} {
			cur, ok, err := p.cursor(ctx, sd.name)
			if err != nil {
				return nil, err
			}
			if ok && cur.After(target) {
				a.SetCursor(sd.name, target.UTC().Format(time.RFC3339Nano))
				moved[sd.name] = target
			}
		}
		return moved, nil
	}, nil)
	if err != nil {
		return err
	}
	for system, t := range moved {
		p.rep.Cursors[system] = t.UTC().Format(time.RFC3339Nano)
	}
	return nil
}

// notifyConflicts tells the handlers about the run's conflicts, once.
func (p *pass) notifyConflicts(ctx context.Context) error {
	if len(p.conflicts) == 0 || p.run == nil {
		return nil
	}
	handlers := p.s.c.OnConflict
	_, err := step(ctx, p, "notify-conflicts", func(ctx context.Context, _ *Attempt) (int, error) {
		if len(handlers) == 0 {
			for _, c := range p.conflicts {
				p.log.Info("conflict", "conflict", c.ID, "field", c.Field, "record_a", c.RecordA, "record_b", c.RecordB, "winner", c.Winner, "held", c.Held)
			}
			return len(p.conflicts), nil
		}
		for _, h := range handlers {
			if err := h.HandleConflicts(ctx, p.run.ID, p.conflicts); err != nil {
				return 0, err
			}
		}
		return len(p.conflicts), nil
	}, &StepOpts{Retry: &RetryPolicy{MaxAttempts: 3, InitialInterval: time.Second, MaxInterval: 10 * time.Second, Multiplier: 2, Jitter: 0.3}})
	if err != nil {
		// A person is told through the report and the log; the sync itself went fine.
		p.rep.ConflictNotifyError = err.Error()
		p.log.Error("conflict handler failed; conflicts are in the store", "conflicts", len(p.conflicts), "err", err)
	}
	return nil
}

// previousReport returns the report of the key's last finished run, or nil.
func (p *pass) previousReport(ctx context.Context) *SyncReport {
	runs, err := p.st.ListRuns(ctx, p.leaseKey, 5)
	if err != nil {
		return nil
	}
	for _, r := range runs {
		if r.Status != RunFinished || (p.run != nil && r.ID == p.run.ID) {
			continue
		}
		if p.ns != "" {
			if gr, err := DecodeGraphReport(r); err == nil {
				return gr.Pairs[p.ns]
			}
			return nil
		}
		if rep, err := DecodeSyncReport(r); err == nil {
			return rep
		}
		return nil
	}
	return nil
}
