package crmsync

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// DigestWorkflow is the workflow name of a SchemaDigest's runs.
const DigestWorkflow = "schema-digest"

// digestCursor is where a SchemaDigest keeps the schemas it saw last.
const digestCursor = "schema-digest"

// SchemaDigest is a Workflow that compares both CRMs' schemas of one
// object pair with what it saw at its last run and with the policy, and
// posts what changed (fields added, removed or changed; picklist options
// with no mapping that were not there before) to Slack, once. Nothing is
// posted when nothing changed. Its report (SchemaDigestReport) is the
// run's result, which the web console shows.
//
// Run it once a day under its own key, from a worker.Worker with Interval
// 24h or a scheduler of your own; the engine's step memo makes a resumed
// run post nothing twice. The first run keeps the schemas as a baseline
// and reports only the unmapped options.
type SchemaDigest struct {
	// A and B are the policy's two systems (A is Policy.A). Required.
	A, B CRM
	// ObjectA and ObjectB are the objects compared. Required.
	ObjectA, ObjectB string
	// Policy decides which options are mapped. Required.
	Policy *Policy
	// Slack, if set, receives the digest; nil means it is only stored.
	Slack *SlackNotifier
}

// SchemaDigestReport is what one SchemaDigest run found.
type SchemaDigestReport struct {
	// Baseline reports the first run: no earlier schemas to compare with.
	Baseline bool `json:"baseline,omitempty"`
	// Added, Removed and Changed name fields as "system.field"; Changed
	// says what changed ("salesforce.Phone: type string -> number").
	Added   []string `json:"added,omitempty"`
	Removed []string `json:"removed,omitempty"`
	Changed []string `json:"changed,omitempty"`
	// UnmappedOptions are picklist options with no mapping that the last
	// digest did not list.
	UnmappedOptions []UnmappedOption `json:"unmapped_options,omitempty"`
	// Posted reports that the digest went to Slack.
	Posted bool `json:"posted,omitempty"`
}

// Empty reports whether nothing changed.
func (r SchemaDigestReport) Empty() bool {
	return len(r.Added)+len(r.Removed)+len(r.Changed)+len(r.UnmappedOptions) == 0
}

// Text is the digest as a Slack message (schema data only, no record values).
func (r SchemaDigestReport) Text(key string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "crmsync schema digest for %s:", slackEscape(key))
	line := func(what string, items []string) {
		for _, it := range items {
			fmt.Fprintf(&b, "\n• %s %s", what, slackEscape(it))
		}
	}
	line("new field", r.Added)
	line("removed field", r.Removed)
	line("changed field", r.Changed)
	for _, o := range r.UnmappedOptions {
		fmt.Fprintf(&b, "\n• unmapped option %s", slackEscape(o.Side+"."+o.Field+" = "+o.Value))
	}
	return b.String()
}

// digestState is what a digest keeps for the next one.
type digestState struct {
	A       Schema           `json:"a"`
	B       Schema           `json:"b"`
	Options []UnmappedOption `json:"options,omitempty"`
}

// Name implements the workflow's name.
func (d *SchemaDigest) Name() string { return DigestWorkflow }

// Run implements Workflow.
func (d *SchemaDigest) Run(ctx context.Context, run *Run) error {
	if d.A == nil || d.B == nil || d.Policy == nil || d.ObjectA == "" || d.ObjectB == "" {
		return Permanent(errors.New("crmsync: SchemaDigest: A, B, ObjectA, ObjectB and Policy are required"))
	}
	now, err := Step(ctx, run, "schemas", func(ctx context.Context, _ *Attempt) (digestState, error) {
		a, err := d.A.Schema(ctx, d.ObjectA)
		if err != nil {
			return digestState{}, fmt.Errorf("schema of %s %s: %w", d.A.System(), d.ObjectA, err)
		}
		b, err := d.B.Schema(ctx, d.ObjectB)
		if err != nil {
			return digestState{}, fmt.Errorf("schema of %s %s: %w", d.B.System(), d.ObjectB, err)
		}
		return digestState{A: a, B: b, Options: SchemaDiff(a, b, d.Policy).UnmappedOptions}, nil
	}, nil)
	if err != nil {
		return err
	}
	var prev *digestState
	if v, ok, err := run.Cursor(ctx, digestCursor); err != nil {
		return err
	} else if ok {
		var st digestState
		if json.Unmarshal([]byte(v), &st) == nil {
			prev = &st
		}
	}
	rep := compareDigest(prev, now, d.A.System(), d.B.System())
	state, _ := json.Marshal(now)
	if rep.Empty() && prev != nil && string(state) == mustMarshal(*prev) {
		run.SetResult(rep)
		return nil
	}
	posted, err := Step(ctx, run, "post", func(ctx context.Context, a *Attempt) (bool, error) {
		a.SetCursor(digestCursor, string(state))
		if rep.Empty() || d.Slack == nil {
			return false, nil
		}
		if err := d.Slack.PostText(ctx, rep.Text(run.Key)); err != nil {
			return false, err
		}
		return true, nil
	}, nil)
	rep.Posted = posted
	run.SetResult(rep)
	return err
}

func mustMarshal(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// compareDigest lists what changed from prev (nil: none) to now.
func compareDigest(prev *digestState, now digestState, sysA, sysB string) SchemaDigestReport {
	var rep SchemaDigestReport
	if prev == nil {
		rep.Baseline = true
		rep.UnmappedOptions = now.Options
		return rep
	}
	for _, side := range []struct {
		sys      string
		old, cur Schema
	}{{sysA, prev.A, now.A}, {sysB, prev.B, now.B}} {
		oldIdx, curIdx := schemaIndex(side.old), schemaIndex(side.cur)
		for _, f := range side.cur.Fields {
			o, ok := oldIdx[f.Name]
			if !ok {
				rep.Added = append(rep.Added, side.sys+"."+f.Name)
				continue
			}
			if o.Type != f.Type {
				rep.Changed = append(rep.Changed, fmt.Sprintf("%s.%s: type %s -> %s", side.sys, f.Name, o.Type, f.Type))
			}
			var added, removed []string
			for _, opt := range f.Options {
				if !slices.Contains(o.Options, opt) {
					added = append(added, opt)
				}
			}
			for _, opt := range o.Options {
				if !slices.Contains(f.Options, opt) {
					removed = append(removed, opt)
				}
			}
			if len(added)+len(removed) > 0 {
				rep.Changed = append(rep.Changed, fmt.Sprintf("%s.%s: options added %v, removed %v", side.sys, f.Name, added, removed))
			}
		}
		for _, f := range side.old.Fields {
			if _, ok := curIdx[f.Name]; !ok {
				rep.Removed = append(rep.Removed, side.sys+"."+f.Name)
			}
		}
	}
	for _, o := range now.Options {
		if !slices.Contains(prev.Options, o) {
			rep.UnmappedOptions = append(rep.UnmappedOptions, o)
		}
	}
	slices.Sort(rep.Added)
	slices.Sort(rep.Removed)
	slices.Sort(rep.Changed)
	return rep
}
