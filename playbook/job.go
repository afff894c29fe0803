package playbook

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"

	"github.com/crmsync/crmsync"
)

// passReport is what the main job prints of a pass: a SyncReport (one
// pair) or a graphReport (every pair).
type passReport interface {
	Writes() int
	Summary() string
}

// graphReport prints a GraphReport: every pair's summary under its name.
// Its JSON is the GraphReport's, with "plan" and "planned" (every pair's
// writes, in order) for a plan.
type graphReport struct {
	*crmsync.GraphReport
	plan    bool
	planned []crmsync.PlannedWrite
}

func (g graphReport) Summary() string {
	var b strings.Builder
	for _, name := range g.Order {
		rep := g.Pairs[name]
		if rep == nil {
			continue
		}
		fmt.Fprintf(&b, "%s: %d written\n%s", name, rep.Writes(), rep.Summary())
	}
	return b.String()
}

func (g graphReport) MarshalJSON() ([]byte, error) {
	type out struct {
		*crmsync.GraphReport
		Plan    bool                   `json:"plan,omitempty"`
		Planned []crmsync.PlannedWrite `json:"planned,omitempty"`
	}
	return json.Marshal(out{g.GraphReport, g.plan, g.planned})
}

// job is what the main job runs: the playbook's three pairs (a Graph), or
// the contacts pair alone.
type job struct {
	graph *crmsync.Graph
	sync  *crmsync.Sync
}

func newJob(o options, hc, sc crmsync.CRM, handlers []crmsync.ConflictHandler, progress func(crmsync.Progress)) (*job, error) {
	if o.objects == "contacts" {
		pol := contactsPolicy()
		s, err := crmsync.NewSync(crmsync.SyncConfig{
			A: hc, B: sc, ObjectA: "contacts", ObjectB: "Contact", Policy: &pol,
			LinkFieldA: hubspotLinkField, LinkFieldB: salesforceLinkField,
			OnConflict: handlers,
			Progress:   progress,
		})
		return &job{sync: s}, err
	}
	g, err := NewGraph(hc, sc, GraphConfig{OnConflict: handlers, Progress: progress})
	return &job{graph: g}, err
}

// RunOnce makes one pass.
func (j *job) RunOnce(ctx context.Context, eng *crmsync.Engine, key string) (passReport, crmsync.RunInfo, error) {
	if j.graph == nil {
		return j.sync.RunOnce(ctx, eng, key)
	}
	rep, info, err := j.graph.RunOnce(ctx, eng, key)
	if rep == nil {
		return nil, info, err
	}
	return graphReport{GraphReport: rep}, info, err
}

// Plan makes a dry run; it returns the report and the writes planned.
func (j *job) Plan(ctx context.Context, st crmsync.Store, key string, logger *slog.Logger, opts ...crmsync.PlanOption) (passReport, []crmsync.PlannedWrite, error) {
	if j.graph == nil {
		rep, err := j.sync.Plan(ctx, st, key, logger, opts...)
		if err != nil {
			return nil, nil, err
		}
		return rep, rep.Planned, nil
	}
	rep, err := j.graph.Plan(ctx, st, key, logger, opts...)
	if err != nil {
		return nil, nil, err
	}
	g := graphReport{GraphReport: rep, plan: true}
	for _, name := range rep.Order {
		g.planned = append(g.planned, rep.Pairs[name].Planned...)
	}
	return g, g.planned, nil
}

// conflictKeys are the keys a key's conflicts are kept under: the key
// itself for one pair, each pair's key in a graph.
func (j *job) conflictKeys(key string) []string {
	if j.graph == nil {
		return []string{key}
	}
	var out []string
	for _, p := range j.graph.Pairs() {
		out = append(out, crmsync.PairKey(key, p))
	}
	return out
}
