package crmsync

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
)

// refState is what a pass keeps about references and waiting records.
type refState struct {
	// waiting holds, per system, the ids of source records that wait (a
	// reference not linked yet, a counterpart converted or merged away):
	// they are read again by id on the next pass.
	waiting map[string]map[string]bool
}

// waitingCursor names the cursor holding a side's waiting record ids (a
// JSON list).
func waitingCursor(system string) string { return system + ":waiting" }

// wait notes that sd's record id waits, with why, in the report.
func (p *pass) wait(sd *side, id, field, reason string) {
	p.mu.Lock()
	if p.refs.waiting == nil {
		p.refs.waiting = map[string]map[string]bool{}
	}
	if p.refs.waiting[sd.name] == nil {
		p.refs.waiting[sd.name] = map[string]bool{}
	}
	p.refs.waiting[sd.name][id] = true
	p.rep.Waiting++
	p.mu.Unlock()
	p.skip(sd, id, field, reason)
}

// saveWaiting sets sd's waiting cursor to the records that wait after this
// pass, in the step that moves sd's cursor.
func (p *pass) saveWaiting(ctx context.Context, a *Attempt, sd *side) error {
	p.mu.Lock()
	ids := sortedKeys(p.refs.waiting[sd.name])
	p.mu.Unlock()
	if len(ids) == 0 {
		if _, err := p.st.GetCursor(ctx, p.leaseKey, p.cursorName(waitingCursor(sd.name))); err != nil {
			return nil // none before, none now (or no such cursor): nothing to clear
		}
	}
	b, err := json.Marshal(ids)
	if err != nil {
		return err
	}
	a.SetCursor(waitingCursor(sd.name), string(b))
	return nil
}

// readWaiting reads again, by id, the records of sd that waited at the end
// of the last pass, and handles them before the side's changes.
func (p *pass) readWaiting(ctx context.Context, sd *side) error {
	ids, err := step(ctx, p, "waiting:"+sd.name, func(ctx context.Context, _ *Attempt) ([]string, error) {
		v, err := p.st.GetCursor(ctx, p.leaseKey, p.cursorName(waitingCursor(sd.name)))
		if err != nil {
			return nil, nil // no cursor: nothing waits
		}
		var ids []string
		if err := json.Unmarshal([]byte(v), &ids); err != nil {
			return nil, fmt.Errorf("crmsync: cursor %s of %s is not a list of ids: %w", waitingCursor(sd.name), p.leaseKey, err)
		}
		return ids, nil
	}, nil)
	if err != nil || len(ids) == 0 {
		return err
	}
	const chunk = 1000
	for i := 0; len(ids) > 0; i++ {
		part := ids[:min(chunk, len(ids))]
		ids = ids[len(part):]
		pg := fmt.Sprintf("%s:waiting:%d", sd.name, i)
		recs, err := p.lookup(ctx, sd, "fetch-"+pg, "id", part)
		if err != nil {
			return err
		}
		p.mu.Lock()
		p.rep.Read[sd.name] += len(recs)
		p.mu.Unlock()
		if len(recs) > 0 {
			if err := p.handle(ctx, sd, pg, recs); err != nil {
				return err
			}
		}
	}
	return nil
}

// refLinks is one page's translation table for one referenced pair: side
// A ids to side B ids of the linked referenced records, and back.
type refLinks struct {
	AToB map[string]string `json:"a_to_b"`
	BToA map[string]string `json:"b_to_a"`
	// Unreferenced lists side B ids whose records cannot be referenced
	// (a Lead, see RoutedObject.Unreferenced).
	Unreferenced map[string]bool `json:"unreferenced,omitempty"`
	// GoneA and GoneB list the ids, on side A and B, of records a
	// reference names that have no counterpart and are not live on their
	// own side (archived or deleted before a pass linked them): they will
	// never be linked, so nothing waits for them.
	GoneA map[string]bool `json:"gone_a,omitempty"`
	GoneB map[string]bool `json:"gone_b,omitempty"`
}

// refRules lists the indexes of the policy's reference rules.
func (s *Sync) refRules() []int {
	var out []int
	for i, r := range s.c.Policy.Rules {
		if r.Ref != "" && r.Rule.Kind != RuleNever {
			out = append(out, i)
		}
	}
	return out
}

// splitIDs reads a reference value as ids: a string (one id, or several
// ";"-separated), a list of strings, nil or "" (none).
func splitIDs(v any) []string {
	switch x := v.(type) {
	case nil:
		return nil
	case string:
		return splitMulti(x)
	case []string:
		return splitMulti(strings.Join(x, ";"))
	case []any:
		parts := make([]string, 0, len(x))
		for _, e := range x {
			if e != nil {
				parts = append(parts, fmt.Sprint(e))
			}
		}
		return splitMulti(strings.Join(parts, ";"))
	default:
		return splitMulti(fmt.Sprint(x))
	}
}

// joinIDs turns a list of ids into the ";"-separated text Normalize reads.
func joinIDs(v any) any {
	switch x := v.(type) {
	case []string, []any:
		return strings.Join(splitIDs(x), ";")
	}
	return v
}

// gate takes out of pairs, before the merge, the pairs that must not be
// written now: a record outside its side's inclusion, a counterpart that
// a conversion or merge took away (the relink comes with its own read),
// a record that would be created while a reference of it has no
// counterpart yet. For the rest it puts the reference fields in canonical
// form (side A's ids of linked records), so that the merge compares them by
// link. It returns the pairs to merge and the translation tables.
func (p *pass) gate(ctx context.Context, sd *side, pg string, pairs []*pair) ([]*pair, map[string]refLinks, error) {
	pol := p.s.c.Policy
	other := p.other(sd)
	include := func(side *side, r Record) bool {
		f := p.s.c.IncludeA
		if !side.isA {
			f = p.s.c.IncludeB
		}
		return f == nil || f(r)
	}
	keep := pairs[:0:0]
	for _, pr := range pairs {
		switch {
		case !include(sd, pr.src):
			p.skip(sd, pr.src.ID, "", "not included on "+sd.name+": not synced (nothing archived)")
		case pr.other.ID != "" && !include(other, pr.other):
			p.skip(sd, pr.src.ID, "", "counterpart "+pr.other.ID+" not included on "+other.name+": not synced (nothing archived)")
		case pr.link != nil && pr.other.MergedInto != "" && !pr.src.Archived:
			p.wait(sd, pr.src.ID, "", "counterpart "+pr.other.ID+" on "+other.name+" was converted or merged into "+pr.other.MergedInto+": waits for the relink, never written to the old record")
		default:
			keep = append(keep, pr)
		}
	}
	pairs = keep
	rules := p.s.refRules()
	if len(rules) == 0 || len(pairs) == 0 {
		return pairs, nil, nil
	}
	if p.graph == nil {
		return nil, nil, errNoGraph
	}
	// The ids each referenced pair is asked about, per side.
	type ask struct{ a, b []string }
	asks := map[string]*ask{}
	for _, i := range rules {
		r := pol.Rules[i]
		q := asks[r.Ref]
		if q == nil {
			q = &ask{}
			asks[r.Ref] = q
		}
		for _, pr := range pairs {
			recA, recB := pr.src, pr.other
			if !sd.isA {
				recA, recB = pr.other, pr.src
			}
			q.a = append(q.a, splitIDs(recA.Fields[r.A])...)
			q.b = append(q.b, splitIDs(recB.Fields[r.B])...)
		}
	}
	tables, err := step(ctx, p, "refs:"+pg, func(ctx context.Context, _ *Attempt) (map[string]refLinks, error) {
		out := map[string]refLinks{}
		for _, ref := range sortedKeys(asks) {
			q := asks[ref]
			rs := p.graph.byNS[ref]
			key := PairKey(p.leaseKey, ref)
			same := rs.c.Policy.A == pol.A
			// linksOn reads the referenced pair's links of ids on our side A
			// (ourA) or B, with what a plan of the graph would have linked.
			linksOn := func(ctx context.Context, ids []string, ourA bool) (map[string]Link, error) {
				refA := ourA == same
				var ls map[string]Link
				var err error
				ls, err = p.storeLinks(ctx, key, refA, ids)
				if err == nil && p.plan != nil && p.plans[ref] != nil {
					ls = p.plans[ref].links(ls, refA, ids)
				}
				return ls, err
			}
			byA := func(ctx context.Context, _ string, ids []string) (map[string]Link, error) {
				return linksOn(ctx, ids, true)
			}
			byB := func(ctx context.Context, _ string, ids []string) (map[string]Link, error) {
				return linksOn(ctx, ids, false)
			}
			t := refLinks{AToB: map[string]string{}, BToA: map[string]string{}}
			if ids := dedupe(q.a); len(ids) > 0 {
				ls, err := byA(ctx, key, ids)
				if err != nil {
					return nil, fmt.Errorf("crmsync: links of pair %s: %w", ref, err)
				}
				for _, l := range ls {
					a, b := l.AID, l.BID
					if !same {
						a, b = b, a
					}
					t.AToB[a], t.BToA[b] = b, a
				}
			}
			if ids := dedupe(q.b); len(ids) > 0 {
				ls, err := byB(ctx, key, ids)
				if err != nil {
					return nil, fmt.Errorf("crmsync: links of pair %s: %w", ref, err)
				}
				for _, l := range ls {
					a, b := l.AID, l.BID
					if !same {
						a, b = b, a
					}
					t.AToB[a], t.BToA[b] = b, a
				}
			}
			// Ids with no counterpart are looked up on their own side: one
			// that is not live there (archived or deleted before it was
			// linked) is gone, never to be linked.
			var err error
			if t.GoneA, err = p.goneRefs(ctx, rs, same, dedupe(q.a), t.AToB); err != nil {
				return nil, fmt.Errorf("crmsync: records of pair %s: %w", ref, err)
			}
			if t.GoneB, err = p.goneRefs(ctx, rs, !same, dedupe(q.b), t.BToA); err != nil {
				return nil, fmt.Errorf("crmsync: records of pair %s: %w", ref, err)
			}
			// The referenced pair's CRM on side B may say some records
			// cannot be referenced.
			crmB := rs.c.B
			if !same {
				crmB = rs.c.A
			}
			if u, ok := crmB.(interface {
				unreferenced(context.Context, []string) (map[string]bool, error)
			}); ok && len(t.BToA) > 0 {
				un, err := u.unreferenced(ctx, sortedKeys(t.BToA))
				if err != nil {
					return nil, err
				}
				if len(un) > 0 {
					t.Unreferenced = un
				}
			}
			out[ref] = t
		}
		return out, nil
	}, nil)
	if err != nil {
		return nil, nil, err
	}
	sideA, sideB := sd, other
	if !sd.isA {
		sideA, sideB = other, sd
	}
	keep = pairs[:0:0]
	for _, pr := range pairs {
		recA, recB := &pr.src, &pr.other
		if !sd.isA {
			recA, recB = &pr.other, &pr.src
		}
		recA.Fields, recB.Fields = cloneFields(recA.Fields), cloneFields(recB.Fields)
		waits := ""
		var unrefRule, unrefID string // the first element left out as unreferenceable
		for _, i := range rules {
			r := pol.Rules[i]
			t := tables[r.Ref]
			if r.Type == TypeReferences && len(t.Unreferenced) > 0 {
				// Elements whose counterparts cannot be referenced stay on
				// side A and are left out of the comparison.
				if raw, has := recA.Fields[r.A]; has {
					var keep []string
					for _, id := range splitIDs(raw) {
						if b, ok := t.AToB[id]; ok && t.Unreferenced[b] {
							if pr.hidden == nil {
								pr.hidden = map[string][]string{}
							}
							pr.hidden[r.Key()] = append(pr.hidden[r.Key()], id)
							if unrefRule == "" {
								unrefRule, unrefID = r.Key(), id+" ("+b+")"
							}
							continue
						}
						keep = append(keep, id)
					}
					recA.Fields[r.A] = keep
				}
			}
			// A record that is gone (archived or deleted before it was
			// ever linked) will never have a counterpart: a reference to
			// it reads as none, as HubSpot reads an association to an
			// archived record, and nothing waits for it. A set keeps its
			// other elements.
			keptA, goneA, waitA := refStatus(recA.Fields, r.A, t.AToB, t.GoneA)
			keptB, goneB, waitB := refStatus(recB.Fields, r.B, t.BToA, t.GoneB)
			if !waitA && !waitB {
				p.readGoneAsNone(r, goneA, keptA, recA, sideA)
				p.readGoneAsNone(r, goneB, keptB, recB, sideB)
			}
			va, okA := canonicalRefs(recA.Fields, r.A, nil)
			vb, okB := canonicalRefs(recB.Fields, r.B, t.BToA)
			if okA {
				// Side A's own ids count only when their records are linked.
				if _, linked := canonicalRefs(recA.Fields, r.A, t.AToB); !linked {
					okA = false
				}
			}
			if okA && okB {
				va, vb = p.leaveGone(pr, r, va, vb)
				setRef(recA.Fields, r.A, va)
				setRef(recB.Fields, r.B, vb)
				continue
			}
			// A reference with no counterpart yet: the field is left out
			// of this merge on both sides (its base stays).
			delete(recA.Fields, r.A)
			delete(recB.Fields, r.B)
			if waits == "" {
				waits = r.Key()
			}
		}
		if waits != "" && !pr.src.Archived && !pr.other.Archived {
			p.wait(sd, pr.src.ID, waits, "reference "+waits+" names a record of pair "+pol.Rules[slices.IndexFunc(pol.Rules, func(r FieldRule) bool { return r.Key() == waits })].Ref+" with no counterpart yet: waits for it")
			if pr.other.ID == "" {
				continue // never created with a dangling reference
			}
		}
		if unrefRule != "" && waits == "" && !pr.src.Archived && !pr.other.Archived {
			// An element left out because its counterpart cannot be
			// referenced (a Lead) is to be written once it can be, and
			// what makes it so (a conversion relinks it to a Contact)
			// stamps neither record of this pair: the pair is written
			// without it and waits, read again each pass until then.
			p.wait(sd, pr.src.ID, unrefRule, "reference "+unrefRule+" names "+unrefID+", a record that cannot be referenced (a Lead): written without it, read again each pass until it can be")
		}
		keep = append(keep, pr)
	}
	return keep, tables, nil
}

// readGoneAsNone leaves out of rec's reference of rule r the ids that are
// gone, keeping the rest (kept), and notes why; gone is the first such id,
// "" when there is none.
func (p *pass) readGoneAsNone(r FieldRule, gone string, kept []string, rec *Record, sd *side) {
	if gone == "" {
		return
	}
	field := r.B
	if sd.isA {
		field = r.A
	}
	rec.Fields[field] = refValue(r.Type, kept)
	p.skip(sd, rec.ID, r.Key(), "reference "+r.Key()+" names "+gone+", archived or deleted before it was synced: read as none")
}

// refStatus reads field of fields as ids: it returns those that are not
// gone (kept), the first that is (gone), and whether one has no
// counterpart in toOther and is not gone, so that the record waits for it
// (wait).
func refStatus(fields Fields, field string, toOther map[string]string, goneIDs map[string]bool) (kept []string, gone string, wait bool) {
	raw, has := fields[field]
	if !has {
		return nil, "", false
	}
	for _, id := range splitIDs(raw) {
		if _, ok := toOther[id]; ok {
			kept = append(kept, id)
			continue
		}
		if !goneIDs[id] {
			return nil, "", true
		}
		if gone == "" {
			gone = id
		}
	}
	return kept, gone, false
}

// goneRefs looks up, on the referenced pair rs's side A (onA) or B, the
// ids that have no counterpart in linked, and returns those that are not
// live there: archived or deleted (a merged-away id whose survivor says
// so counts as live). One lookup per batch, only for unlinked ids.
func (p *pass) goneRefs(ctx context.Context, rs *Sync, onA bool, ids []string, linked map[string]string) (map[string]bool, error) {
	var ask []string
	for _, id := range ids {
		if _, ok := linked[id]; !ok && id != "" {
			ask = append(ask, id)
		}
	}
	if len(ask) == 0 {
		return nil, nil
	}
	crm, object, sys := rs.c.B, rs.c.ObjectB, rs.c.Policy.B
	if onA {
		crm, object, sys = rs.c.A, rs.c.ObjectA, rs.c.Policy.A
	}
	size := crm.Limits().LookupBatch
	if size <= 0 {
		size = 100
	}
	live := map[string]bool{}
	var out map[string]bool
	for len(ask) > 0 {
		chunk := ask[:min(size, len(ask))]
		ask = ask[len(chunk):]
		p.apiCalls(sys, 1)
		recs, err := crm.Lookup(ctx, object, "id", chunk, []string{})
		if err != nil {
			return nil, err
		}
		for _, r := range recs {
			if !r.Archived {
				live[r.ID] = true
				for _, m := range r.MergedFrom {
					live[m] = true
				}
			}
		}
		for _, id := range chunk {
			if !live[id] {
				if out == nil {
					out = map[string]bool{}
				}
				out[id] = true
			}
		}
	}
	return out, nil
}

// canonicalRefs reads field of fields as references in side A's terms:
// toA maps this side's ids to A's (nil: they are A's already). It reports
// false when the field is present and an id has no mapping. An absent
// field is (nil, true) and left absent by setRef.
func canonicalRefs(fields Fields, field string, toA map[string]string) (any, bool) {
	raw, has := fields[field]
	if !has {
		return absent{}, true
	}
	ids := splitIDs(raw)
	out := make([]string, 0, len(ids))
	for _, id := range ids {
		if toA == nil {
			out = append(out, id)
			continue
		}
		a, ok := toA[id]
		if !ok {
			return nil, false
		}
		out = append(out, a)
	}
	if len(out) == 0 {
		return nil, true
	}
	slices.Sort(out)
	return strings.Join(slices.Compact(out), ";"), true
}

// absent marks a field that was not fetched.
type absent struct{}

func setRef(fields Fields, field string, v any) {
	if _, no := v.(absent); no {
		return
	}
	fields[field] = v
}

func cloneFields(f Fields) Fields {
	out := make(Fields, len(f)+1)
	for k, v := range f {
		out[k] = v
	}
	return out
}

// refPatches turns the merge's reference values (side A's ids, as the
// base keeps them) into each side's own: ids of side A as they are, ids
// of side B through the referenced pair's links. A single reference is
// an id or nil, a set a sorted list of ids.
func (p *pass) refPatches(pr *pair, tables map[string]refLinks) {
	if pr.mergeErr != nil || tables == nil {
		return
	}
	pol := p.s.c.Policy
	for _, i := range p.s.refRules() {
		r := pol.Rules[i]
		if v, ok := pr.res.PatchA[r.A]; ok {
			ids := append(splitIDs(v), pr.hidden[r.Key()]...)
			slices.Sort(ids)
			pr.res.PatchA[r.A] = refValue(r.Type, slices.Compact(ids))
		}
		if v, ok := pr.res.PatchB[r.B]; ok {
			ids := splitIDs(v)
			out := make([]string, 0, len(ids))
			for _, id := range ids {
				if b, ok := tables[r.Ref].AToB[id]; ok {
					out = append(out, b)
				}
			}
			slices.Sort(out)
			pr.res.PatchB[r.B] = refValue(r.Type, out)
		}
	}
}

func refValue(t FieldType, ids []string) any {
	if t == TypeReferences {
		if ids == nil {
			ids = []string{}
		}
		return ids
	}
	if len(ids) == 0 {
		return nil
	}
	return ids[0]
}

// refGoneKeyPrefix keys, in a link's base, the ids (side A's, ";"-joined)
// that writes of a reference rule were refused for, because the records
// they name were archived or deleted ("$archived:ref-gone:<rule>").
const refGoneKeyPrefix = archivedKeyPrefix + "ref-gone:"

// leaveGone leaves out of the merge the references of rule r that pr's
// link says were refused as naming archived or deleted records, given the
// rule's canonical values va and vb (side A's ids). A single reference to
// such a record reads as none: the merge never writes it again, and a side
// that moves to a record that can be referenced carries the move over. Of
// a set, side A's such ids are kept on A out of the comparison (as for
// records that cannot be referenced), side B's are left out. It notes in
// pr.named the ids either side names before.
func (p *pass) leaveGone(pr *pair, r FieldRule, va, vb any) (any, any) {
	_, noA := va.(absent)
	_, noB := vb.(absent)
	key := r.Key()
	if !noA && !noB {
		if pr.named == nil {
			pr.named = map[string][]string{}
		}
		pr.named[key] = append(append(splitIDs(va), splitIDs(vb)...), pr.hidden[key]...)
	}
	if pr.link == nil {
		return va, vb
	}
	gone := splitIDs(pr.link.Base[refGoneKeyPrefix+key])
	if len(gone) == 0 {
		return va, vb
	}
	without := func(v any, hide bool) any {
		if _, no := v.(absent); no || v == nil {
			return v
		}
		var keep []string
		for _, id := range splitIDs(v) {
			if !slices.Contains(gone, id) {
				keep = append(keep, id)
				continue
			}
			if hide {
				if pr.hidden == nil {
					pr.hidden = map[string][]string{}
				}
				pr.hidden[key] = append(pr.hidden[key], id)
			}
		}
		if len(keep) == 0 {
			return nil
		}
		return strings.Join(keep, ";")
	}
	set := r.Type == TypeReferences
	return without(va, set), without(vb, false)
}

// goneBase keeps, in pr's new base, the ids of each reference rule that
// were refused as naming archived or deleted records: those of the old
// base that a side still names, and gone, those refused now.
func (p *pass) goneBase(pr *pair, gone map[string][]string) {
	for _, i := range p.s.refRules() {
		k := p.s.c.Policy.Rules[i].Key()
		mk := refGoneKeyPrefix + k
		ids := splitIDs(pr.res.NewBase[mk])
		if named, ok := pr.named[k]; ok {
			ids = slices.DeleteFunc(ids, func(id string) bool { return !slices.Contains(named, id) })
		}
		ids = append(ids, gone[k]...)
		slices.Sort(ids)
		ids = slices.Compact(ids)
		if len(ids) == 0 {
			delete(pr.res.NewBase, mk)
			continue
		}
		pr.res.NewBase[mk] = strings.Join(ids, ";")
	}
}
