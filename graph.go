package crmsync

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
)

// GraphPair is one object pair of a [Graph]: a name and its Sync.
type GraphPair struct {
	// Name names the pair ("companies", "contacts", "deals"). It prefixes
	// the pair's step ids, cursors and link key, and is how a reference
	// rule (FieldRule.Ref) of another pair names it. Letters, digits, "-"
	// and "_" only.
	Name string
	// Sync is the pair's sync. A Sync may serve in one Graph pair only.
	Sync *Sync
	// AdoptKeyLinks makes the pair read, for a record with no link of its
	// own under "<key>/<pair>", the link a lone Sync of the same objects
	// stored under the plain key: a store that ran this pair by itself
	// before it joined the graph keeps its links and their bases (an edit
	// on both sides since is still a conflict, an archive is still carried).
	// An adopted link is stored under the pair's key at the record's next
	// commit. One pair of a graph at most.
	AdoptKeyLinks bool
}

// GraphConfig configures a [Graph].
type GraphConfig struct {
	// Pairs are the object pairs. They run parents first: a pair runs
	// after every pair its reference rules name, and otherwise in the
	// order given. Required; a reference cycle is an error.
	Pairs []GraphPair
}

// Graph syncs several object pairs (companies, contacts, deals) in one run:
// Engine.Run(ctx, key, graph) takes the key's lease once and makes one
// pass of each pair, parents first, so a child read in the pass finds the
// parents linked in the same pass. Each pair keeps its own cursors (named
// "<pair>/<cursor>" under the key), links and conflicts (under the key
// "<key>/<pair>"), step ids ("<pair>:...") and report; writes stay at
// batch granularity. A pair that fails ends the run (the next run resumes
// it); the pairs after it wait for that run.
//
// A reference rule (FieldRule.Ref) of one pair names another: the merge
// compares the reference by link and writes it through that pair's links,
// and a record whose referenced record has no counterpart yet waits (see
// [FieldRule]).
type Graph struct {
	pairs []GraphPair
	byNS  map[string]*Sync
	adopt string // the pair that reads the plain key's links, if any
}

var _ Workflow = (*Graph)(nil)

// NewGraph validates c and orders its pairs parents first.
func NewGraph(c GraphConfig) (*Graph, error) {
	var probs []string
	if len(c.Pairs) == 0 {
		probs = append(probs, "GraphConfig.Pairs is empty")
	}
	byNS := map[string]*Sync{}
	seenSync := map[*Sync]string{}
	for i, gp := range c.Pairs {
		switch {
		case !validPairName(gp.Name):
			probs = append(probs, fmt.Sprintf("pair %d: name %q: use letters, digits, - and _ only", i, gp.Name))
		case byNS[gp.Name] != nil:
			probs = append(probs, fmt.Sprintf("pair %d: name %q is used twice", i, gp.Name))
		}
		if gp.Sync == nil {
			probs = append(probs, fmt.Sprintf("pair %d (%s): no Sync", i, gp.Name))
			continue
		}
		if prev, dup := seenSync[gp.Sync]; dup {
			probs = append(probs, fmt.Sprintf("pair %d (%s): its Sync is also pair %s", i, gp.Name, prev))
		}
		seenSync[gp.Sync] = gp.Name
		byNS[gp.Name] = gp.Sync
	}
	if len(probs) == 0 {
		for _, gp := range c.Pairs {
			for _, r := range gp.Sync.c.Policy.Rules {
				if r.Ref == "" {
					continue
				}
				ref, ok := byNS[r.Ref]
				switch {
				case !ok:
					probs = append(probs, fmt.Sprintf("pair %s: rule %s references pair %q, which is not in the graph", gp.Name, r.Key(), r.Ref))
				case ref == gp.Sync:
					probs = append(probs, fmt.Sprintf("pair %s: rule %s references its own pair", gp.Name, r.Key()))
				default:
					rp := ref.c.Policy
					mine := gp.Sync.c.Policy
					if !(rp.A == mine.A && rp.B == mine.B) && !(rp.A == mine.B && rp.B == mine.A) {
						probs = append(probs, fmt.Sprintf("pair %s: rule %s references pair %s, which syncs %s/%s, not %s/%s", gp.Name, r.Key(), r.Ref, rp.A, rp.B, mine.A, mine.B))
					}
				}
			}
		}
	}
	adopt := ""
	for _, gp := range c.Pairs {
		if !gp.AdoptKeyLinks {
			continue
		}
		if adopt != "" {
			probs = append(probs, fmt.Sprintf("pairs %s and %s both set AdoptKeyLinks; one pair at most may adopt the key's links", adopt, gp.Name))
		}
		adopt = gp.Name
	}
	if len(probs) > 0 {
		return nil, fmt.Errorf("crmsync: NewGraph: %s", strings.Join(probs, "; "))
	}
	order, err := parentsFirst(c.Pairs)
	if err != nil {
		return nil, err
	}
	return &Graph{pairs: order, byNS: byNS, adopt: adopt}, nil
}

func validPairName(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return false
		}
	}
	return true
}

// parentsFirst orders pairs so that each comes after the pairs it
// references, keeping the given order otherwise.
func parentsFirst(pairs []GraphPair) ([]GraphPair, error) {
	var out []GraphPair
	done := map[string]bool{}
	for len(out) < len(pairs) {
		progressed := false
		for _, gp := range pairs {
			if done[gp.Name] {
				continue
			}
			ready := true
			for _, r := range gp.Sync.c.Policy.Rules {
				if r.Ref != "" && !done[r.Ref] {
					ready = false
				}
			}
			if ready {
				out = append(out, gp)
				done[gp.Name] = true
				progressed = true
				break
			}
		}
		if !progressed {
			var left []string
			for _, gp := range pairs {
				if !done[gp.Name] {
					left = append(left, gp.Name)
				}
			}
			return nil, fmt.Errorf("crmsync: NewGraph: the references of pairs %s form a cycle", strings.Join(left, ", "))
		}
	}
	return out, nil
}

// Pairs returns the pair names in the order they run.
func (g *Graph) Pairs() []string {
	out := make([]string, len(g.pairs))
	for i, gp := range g.pairs {
		out[i] = gp.Name
	}
	return out
}

// Name implements the optional workflow name used in run records.
func (g *Graph) Name() string { return "graph " + strings.Join(g.Pairs(), ", ") }

// GraphReport is what one run of a [Graph] did: one SyncReport per pair.
// It is stored as the run's result.
type GraphReport struct {
	// Order lists the pairs in the order they ran.
	Order []string `json:"order"`
	// Pairs holds each pair's report; a pair the run did not reach has none.
	Pairs map[string]*SyncReport `json:"pairs"`
}

// Writes is the number of records written by every pair.
func (r *GraphReport) Writes() int {
	n := 0
	for _, p := range r.Pairs {
		n += p.Writes()
	}
	return n
}

// APICalls is the number of API calls of every pair.
func (r *GraphReport) APICalls() int {
	n := 0
	for _, p := range r.Pairs {
		for _, c := range p.APICalls {
			n += c
		}
	}
	return n
}

// Summary is a few readable lines per pair.
func (r *GraphReport) Summary() string {
	var b strings.Builder
	for _, name := range r.Order {
		rep := r.Pairs[name]
		if rep == nil {
			continue
		}
		b.WriteString(name + ":\n")
		for _, line := range strings.Split(strings.TrimRight(rep.Summary(), "\n"), "\n") {
			b.WriteString("  " + line + "\n")
		}
	}
	return b.String()
}

// DecodeGraphReport reads the GraphReport stored with a graph run.
func DecodeGraphReport(info RunInfo) (*GraphReport, error) {
	if len(info.Report) == 0 {
		return nil, fmt.Errorf("crmsync: run %s has no report", info.ID)
	}
	var rep Report
	if err := json.Unmarshal(info.Report, &rep); err != nil {
		return nil, fmt.Errorf("crmsync: run %s: decode report: %w", info.ID, err)
	}
	var gr GraphReport
	if err := json.Unmarshal(rep.Result, &gr); err != nil || gr.Pairs == nil {
		return nil, fmt.Errorf("crmsync: run %s has no graph report", info.ID)
	}
	return &gr, nil
}

// Run implements Workflow: one pass of each pair, parents first.
func (g *Graph) Run(ctx context.Context, run *Run) error {
	rep := &GraphReport{Order: g.Pairs(), Pairs: map[string]*SyncReport{}}
	defer run.SetResult(rep)
	for _, gp := range g.pairs {
		ps := gp.Sync.newPass(run, run.Store(), run.Key, run.Logger().With("pair", gp.Name))
		ps.inGraph(g, gp.Name)
		r, err := ps.do(ctx)
		rep.Pairs[gp.Name] = r
		if err != nil {
			return fmt.Errorf("pair %s: %w", gp.Name, err)
		}
	}
	return nil
}

// Plan is a dry run of every pair for key, parents first, as Sync.Plan
// does for one pair: nothing is written and nothing committed. A child
// pair's plan sees the links its parents' plans would have made (a
// planned create's id reads "new-<system>-N").
func (g *Graph) Plan(ctx context.Context, st Store, key string, logger *slog.Logger, opts ...PlanOption) (*GraphReport, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	rep := &GraphReport{Order: g.Pairs(), Pairs: map[string]*SyncReport{}}
	plans := map[string]*planState{}
	for _, gp := range g.pairs {
		ps := gp.Sync.newPass(nil, st, key, logger.With("pair", gp.Name))
		ps.inGraph(g, gp.Name)
		ps.plan = newPlanState(opts)
		ps.plans = plans
		r, err := ps.do(ctx)
		r.Planned = ps.plan.plannedWrites()
		rep.Pairs[gp.Name] = r
		plans[gp.Name] = ps.plan
		if err != nil {
			return rep, fmt.Errorf("pair %s: %w", gp.Name, err)
		}
	}
	return rep, nil
}

// RunOnce runs one pass of every pair for key on eng and returns its report.
func (g *Graph) RunOnce(ctx context.Context, eng *Engine, key string) (*GraphReport, RunInfo, error) {
	info, err := eng.Run(ctx, key, g)
	rep, derr := DecodeGraphReport(info)
	if err != nil {
		return rep, info, err
	}
	return rep, info, derr
}

// PairKey is the key under which a graph pair keeps its links and
// conflicts: "<key>/<pair>".
func PairKey(key, pair string) string { return key + "/" + pair }

// inGraph makes p the pass of pair ns of g.
func (p *pass) inGraph(g *Graph, ns string) {
	p.graph, p.ns = g, ns
	p.key = PairKey(p.leaseKey, ns)
}

// stepID prefixes a step id with the pass's pair.
func (p *pass) stepID(id string) string {
	if p.ns == "" {
		return id
	}
	return p.ns + ":" + id
}

// cursorName prefixes a cursor name with the pass's pair.
func (p *pass) cursorName(name string) string {
	if p.ns == "" {
		return name
	}
	return p.ns + "/" + name
}

// scoped wraps a step func of a graph pass so that its bookkeeping lands
// in the pair's own cursors, links and conflicts.
func scoped[T any](p *pass, fn func(ctx context.Context, a *Attempt) (T, error)) func(ctx context.Context, a *Attempt) (T, error) {
	if p.ns == "" {
		return fn
	}
	return func(ctx context.Context, a *Attempt) (T, error) {
		v, err := fn(ctx, a)
		if err != nil {
			return v, err
		}
		if len(a.cursors) > 0 {
			named := make(map[string]string, len(a.cursors))
			for k, val := range a.cursors {
				named[p.cursorName(k)] = val
			}
			a.cursors = named
		}
		for i := range a.links {
			a.links[i].Key = p.key
		}
		for i := range a.conflicts {
			a.conflicts[i].Key = p.key
		}
		return v, nil
	}
}

// ownLetters keeps the dead letters parked by this pass's pair: in a
// graph, each pair replays its own.
func (p *pass) ownLetters(letters []DeadLetter) []DeadLetter {
	if p.ns == "" {
		if p.graph == nil {
			return letters
		}
	}
	prefix := p.ns + ":"
	return slices.DeleteFunc(slices.Clone(letters), func(d DeadLetter) bool { return !strings.HasPrefix(d.Step, prefix) })
}

// errNoGraph is returned for a reference rule outside a Graph.
var errNoGraph = errors.New("crmsync: a reference rule (FieldRule.Ref) needs its Sync to run in a Graph")

// storeLinks reads the links of key whose A (isA) or B ids are ids. For
// the pair that adopts the plain key's links (GraphPair.AdoptKeyLinks),
// ids with no link under the pair's key are looked up under the plain
// key; a link found there is returned under the pair's key.
func (p *pass) storeLinks(ctx context.Context, key string, isA bool, ids []string) (map[string]Link, error) {
	read := p.st.LinksByB
	if isA {
		read = p.st.LinksByA
	}
	links, err := read(ctx, key, ids)
	if err != nil || p.graph == nil || p.graph.adopt == "" || key != PairKey(p.leaseKey, p.graph.adopt) {
		return links, err
	}
	var missing []string
	for _, id := range ids {
		if _, ok := links[id]; !ok {
			missing = append(missing, id)
		}
	}
	if len(missing) == 0 {
		return links, nil
	}
	old, err := read(ctx, p.leaseKey, missing)
	if err != nil {
		return nil, err
	}
	if links == nil {
		links = map[string]Link{}
	}
	for id, l := range old {
		l.Key = key
		links[id] = l
	}
	return links, nil
}
