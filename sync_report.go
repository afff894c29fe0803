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
	Window window `json:"window"`
	// Drift lists schema-drift warnings.
	Drift []string `json:"drift,omitempty"`
	// HistoryLost lists reads whose API no longer held every change since
	// the cursor (deletes older than Salesforce's window, say): those
	// changes were not seen, and a full reconcile is needed to find them.
	HistoryLost []string `json:"history_lost,omitempty"`
	// Skips lists records that could not be paired.
	Skips []SkipNote `json:"skips,omitempty"`
	// Duration is the pass's wall time in this execution.
	Duration time.Duration `json:"duration_ns"`
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

// schemaDrift compares both schemas with the policy once per run and
// reports what it finds as warnings, never as errors.
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
	}
	d := SchemaDiff(schemas[0], schemas[1], p.s.c.Policy)
	ignore := map[string]bool{p.a.linkField: true, p.b.linkField: true}
	var warn []string
	add := func(format string, args ...any) { warn = append(warn, fmt.Sprintf(format, args...)) }
	for _, f := range d.MissingA {
		add("%s: mapped field %s does not exist", p.a.name, f)
	}
	for _, f := range d.MissingB {
		add("%s: mapped field %s does not exist", p.b.name, f)
	}
	for _, m := range d.TypeMismatches {
		add("%s: field %s is %s, the policy says %s", m.Side, m.Name, m.Got, m.Want)
	}
	for _, o := range d.UnmappedOptions {
		add("%s: picklist value %q of %s has no mapping", o.Side, o.Value, o.Field)
	}
	for _, f := range d.UnmappedA {
		if !ignore[f] {
			add("%s: field %s is not mapped", p.a.name, f)
		}
	}
	for _, f := range d.UnmappedB {
		if !ignore[f] {
			add("%s: field %s is not mapped", p.b.name, f)
		}
	}
	p.rep.Drift = warn
	if len(warn) > 0 && p.log != nil {
		// Warn when the drift is new; the same list again is only logged
		// at debug level (it stays in every report).
		if prev := p.previousDrift(ctx); !sameStrings(prev, warn) {
			p.log.Warn("schema drift: fields the policy does not cover", "warnings", len(warn), "new", countNew(prev, warn))
		} else {
			p.log.Debug("schema drift unchanged", "warnings", len(warn))
		}
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

// previousDrift returns the drift warnings of the key's last finished run.
func (p *pass) previousDrift(ctx context.Context) []string {
	runs, err := p.st.ListRuns(ctx, p.key, 5)
	if err != nil {
		return nil
	}
	for _, r := range runs {
		if r.Status != RunFinished || (p.run != nil && r.ID == p.run.ID) {
			continue
		}
		if rep, err := DecodeSyncReport(r); err == nil {
			return rep.Drift
		}
		return nil
	}
	return nil
}

func sameStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func countNew(prev, cur []string) int {
	seen := map[string]bool{}
	for _, s := range prev {
		seen[s] = true
	}
	n := 0
	for _, s := range cur {
		if !seen[s] {
			n++
		}
	}
	return n
}
