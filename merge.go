package crmsync

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// archivedKeyPrefix keys the archived flags in a merge base:
// "$archived:<system>" holds the flag last written to that system's archived field.
const archivedKeyPrefix = "$archived:"

// MergeResult is what [Merge] decided for one pair of records.
type MergeResult struct {
	// PatchA and PatchB hold only the fields to change on each side, in that
	// side's field names and encoding (see Policy.Encodings). Never nil.
	PatchA Fields `json:"patch_a"`
	PatchB Fields `json:"patch_b"`
	// NewBase is the base to store once both patches have landed. Never nil.
	NewBase Fields `json:"new_base"`
	// Conflicts lists the fields changed on both sides to different values,
	// in rule order.
	Conflicts []Conflict `json:"conflicts,omitempty"`
	// Skipped lists the changes not carried to the other side, and why.
	Skipped []Skip `json:"skipped,omitempty"`
}

// Empty reports whether the result writes nothing.
func (r MergeResult) Empty() bool { return len(r.PatchA) == 0 && len(r.PatchB) == 0 }

// Skip is a change that was read but not written to the other side.
type Skip struct {
	// Field is the rule's name.
	Field string `json:"field"`
	// Side is the system whose change (or write) was not carried.
	Side string `json:"side"`
	// Reason says why, without values.
	Reason string `json:"reason"`
}

func newResult() MergeResult {
	return MergeResult{PatchA: Fields{}, PatchB: Fields{}, NewBase: Fields{}}
}

// Merge is the three-way merge of one linked pair: a is the record on the
// policy's system A, b its counterpart on B (a zero Record when there is none
// yet), and base the values last synced.
//
// The base is keyed by rule name ([FieldRule.Key]) and holds canonical values
// (see [Normalize]) in side A's terms, i.e. before the ToB transform; the keys
// "$archived:<system>" hold the archived flags last written. A base key that
// is absent means the field was never synced; a nil value means it was synced
// as cleared. Store MergeResult.NewBase as is and hand it back next time.
//
// A field changed on a side iff its normalised value differs from the base.
// A field absent from a record (not fetched) is left alone; a field present
// with nil or "" is cleared, and the clearing propagates by the rule. Changed
// on one side: the rule decides (usually: copy it over). Changed on both to
// different values: the rule picks the winner and a [Conflict] is reported
// (or held, with Policy.Hold or FieldRule.HoldConflicts). With no base yet,
// differing values are settled by the rule without a conflict. Changed on
// neither: nothing is written.
//
// A record archived on one side sets the policy's archived field to true on
// the other; restoring it sets the field to false. While either record is
// archived the pair's fields are frozen: changes are reported in Skipped and
// the base is kept, so they are merged once the record is restored.
//
// Merge is pure and deterministic. Merging again after both patches landed,
// with NewBase, writes nothing. A value that cannot be read as its field's
// type fails the record with a Permanent error wrapping a *[ValueError] per
// bad field.
func Merge(base Fields, a, b Record, p *Policy) (MergeResult, error) {
	p, err := p.use()
	if err != nil {
		return MergeResult{}, err
	}
	m := merger{p: p, base: base, a: a, b: b, res: newResult()}
	for k, v := range base {
		m.res.NewBase[k] = v // fields with nothing to do keep their base
	}
	for i := range p.Rules {
		m.field(i)
	}
	m.archived(p.A, p.Archived.A, a, b.Archived)
	m.archived(p.B, p.Archived.B, b, a.Archived)
	if len(m.errs) > 0 {
		return MergeResult{}, Permanent(fmt.Errorf("crmsync: merge %s %s / %s %s: %w", p.A, a.ID, p.B, b.ID, errors.Join(m.errs...)))
	}
	return m.res, nil
}

type merger struct {
	p    *Policy
	base Fields
	a, b Record
	res  MergeResult
	errs []error
}

// norm reads one value, recording a ValueError.
func (m *merger) norm(fields Fields, name, side string, t FieldType) (v any, has, ok bool) {
	raw, has := fields[name]
	if !has {
		return nil, false, true
	}
	v, err := Normalize(t, raw)
	if err != nil {
		m.errs = append(m.errs, &ValueError{Field: name, Side: side, Type: t, Reason: err.Error()})
		return nil, true, false
	}
	return v, true, true
}

func (m *merger) skip(field, side, format string, args ...any) {
	m.res.Skipped = append(m.res.Skipped, Skip{Field: field, Side: side, Reason: fmt.Sprintf(format, args...)})
}

// transformSkip applies a transform; ErrUnmapped skips the field, any other
// error fails the record.
func (m *merger) transform(t Transform, r FieldRule, key, fromSide, toSide string, v any) (any, bool) {
	out, err := transform(t, r.Type, v)
	if err == nil {
		return out, true
	}
	if errors.Is(err, ErrUnmapped) {
		m.skip(key, fromSide, "value has no mapping to %s", toSide)
		return nil, false
	}
	var ve *ValueError
	if errors.As(err, &ve) {
		m.errs = append(m.errs, ve)
	} else {
		m.errs = append(m.errs, &ValueError{Field: key, Side: fromSide, Type: r.Type, Reason: "transform to " + toSide + " failed"})
	}
	return nil, false
}

func (m *merger) field(i int) {
	p, r := m.p, m.p.Rules[i]
	if r.Rule.Kind == RuleNever {
		return
	}
	key := r.Key()
	toA, toB := p.toA[i], p.toB[i]
	aN, aHas, okA := m.norm(m.a.Fields, r.A, p.A, r.Type)
	bN, bHas, okB := m.norm(m.b.Fields, r.B, p.B, r.Type)
	baseN, baseHas, okBase := m.norm(m.base, key, "base", r.Type)
	if !okA || !okB || !okBase {
		return
	}
	if !aHas && !bHas {
		return
	}

	// B's value in A's terms, when the rule has a way there.
	var bInA any
	bInAOK := toA != nil || toB == nil
	if bHas && bInAOK {
		var ok bool
		if bInA, ok = m.transform(toA, r, key, p.B, p.A, bN); !ok {
			return
		}
	}
	// inB converts an A-terms value for comparisons on side B.
	inB := func(v any) (any, bool) { return m.transform(toB, r, key, p.A, p.B, v) }

	changedA := aHas && (!baseHas || !equalValues(aN, baseN))
	changedB := false
	if bHas {
		switch {
		case !baseHas:
			changedB = true
		case bInAOK:
			changedB = !equalValues(bInA, baseN)
		default:
			baseB, ok := inB(baseN)
			if !ok {
				return
			}
			changedB = !equalValues(bN, baseB)
		}
	}
	if !changedA && !changedB {
		return
	}
	if frozen := m.archivedSides(); frozen != "" {
		// Archived records are frozen: nothing can be written to them, and
		// the base stays as it was so the merge resumes on restore.
		for _, s := range []struct {
			sys     string
			changed bool
		}{{p.A, changedA}, {p.B, changedB}} {
			if s.changed {
				m.skip(key, s.sys, "record archived on %s", frozen)
			}
		}
		return
	}
	same := false
	if aHas && bHas {
		if bInAOK {
			same = equalValues(aN, bInA)
		} else {
			aB, ok := inB(aN)
			if !ok {
				return
			}
			same = equalValues(aB, bN)
		}
	}
	timeA, timeB := fieldTime(m.a, r.A), fieldTime(m.b, r.B)
	other := func(s string) string {
		if s == p.A {
			return p.B
		}
		return p.A
	}
	has := func(s string) bool {
		if s == p.A {
			return aHas
		}
		return bHas && bInAOK
	}
	val := func(s string) any {
		if s == p.A {
			return aN
		}
		return bInA
	}
	changed := func(s string) bool {
		if s == p.A {
			return changedA
		}
		return changedB
	}

	// Decide the value t (in A's terms) both sides should hold, and the winner.
	var t any
	winner := ""
	switch r.Rule.Kind {
	case RuleOwner:
		x, o := r.Rule.System, other(r.Rule.System)
		if !has(x) {
			m.skip(key, o, "owned by %s, whose value was not fetched", x)
			return
		}
		winner, t = x, val(x)
		if changed(o) && !same {
			m.skip(key, o, "owned by %s: change on %s reverted", x, o)
		}
	case RuleOneWay:
		x, o := r.Rule.System, other(r.Rule.System)
		if !changed(x) {
			m.skip(key, o, "one way from %s: change on %s not copied", x, o)
			return
		}
		winner, t = x, val(x)
	case RuleMostRecent:
		switch {
		case changedA && !changedB:
			winner = p.A
		case changedB && !changedA:
			winner = p.B
		case same:
			winner = p.A
		case !baseHas && has(p.A) && has(p.B) && (val(p.A) == nil) != (val(p.B) == nil):
			// Never synced before (a first match): a blank does not clear
			// the other side's value, however recent it is.
			winner = p.A
			if val(p.A) == nil {
				winner = p.B
			}
		default:
			winner = mostRecent(p.A, timeA, p.B, timeB)
		}
		t = val(winner)
	case RulePreferUnlessBlank:
		x, o := r.Rule.System, other(r.Rule.System)
		switch {
		case has(x) && val(x) != nil:
			winner = x
		case has(o) && val(o) != nil:
			winner = o
		case has(x):
			winner = x
		default:
			winner = o
		}
		t = val(winner)
		if winner == x && changed(o) && !same {
			m.skip(key, o, "%s preferred unless blank: change on %s reverted", x, o)
		}
	case RuleFunc:
		d := r.Rule.Fn(FieldInput{
			Field: key, SystemA: p.A, SystemB: p.B,
			Base: baseN, HasBase: baseHas,
			A: aN, HasA: aHas, B: bInA, HasB: bHas && bInAOK,
			ChangedA: changedA, ChangedB: changedB,
			TimeA: timeA, TimeB: timeB,
		})
		switch d.Pick {
		case p.A, p.B:
			if !has(d.Pick) {
				m.skip(key, other(d.Pick), "rule picked %s, whose value was not fetched", d.Pick)
				return
			}
			winner, t = d.Pick, val(d.Pick)
		case PickValue:
			v, err := Normalize(r.Type, d.Value)
			if err != nil {
				m.errs = append(m.errs, &ValueError{Field: key, Side: "rule", Type: r.Type, Reason: err.Error()})
				return
			}
			t = v
		default:
			reason := d.Reason
			if reason == "" {
				reason = "left alone by the rule"
			}
			for _, s := range []string{p.A, p.B} {
				if changed(s) {
					m.skip(key, s, "%s", reason)
				}
			}
			return
		}
	}

	if changedA && changedB && !same && baseHas {
		c := Conflict{
			SystemA: p.A, SystemB: p.B, RecordA: m.a.ID, RecordB: m.b.ID,
			Field: key, FieldA: r.A, FieldB: r.B, Type: r.Type,
			Base: baseN, A: aN, B: bN, TimeA: timeA, TimeB: timeB,
			Winner: winner, Rule: r.Rule.String(), State: ConflictResolved,
		}
		c.ID = conflictID(c.RecordA, c.RecordB, key, baseN, aN, bN)
		if p.Hold || r.HoldConflicts {
			c.Held, c.State = true, ConflictHeld
			m.res.Conflicts = append(m.res.Conflicts, c)
			return
		}
		m.res.Conflicts = append(m.res.Conflicts, c)
	}

	// t in B's terms: the winner's own value when B won, so that a one-way
	// transform (Owner(B) with ToA only) never needs the way back.
	var tB any
	switch {
	case winner == p.B && bHas:
		tB = bN
	case toB == nil && toA != nil:
		m.skip(key, other(p.B), "no transform to %s", p.B)
		return
	default:
		var ok bool
		if tB, ok = inB(t); !ok {
			return
		}
	}
	writeA := (aHas && !equalValues(aN, t)) || (!aHas && t != nil)
	writeB := (bHas && !equalValues(bN, tB)) || (!bHas && tB != nil)
	if writeA {
		m.res.PatchA[r.A] = p.encoding(p.A).Encode(r.Type, t)
	}
	if writeB {
		m.res.PatchB[r.B] = p.encoding(p.B).Encode(r.Type, tB)
	}
	m.res.NewBase[key] = t
}

// archivedSides names the archived sides ("" if none), in name order.
func (m *merger) archivedSides() string {
	var sides []string
	if m.a.Archived {
		sides = append(sides, m.p.A)
	}
	if m.b.Archived {
		sides = append(sides, m.p.B)
	}
	slices.Sort(sides)
	return strings.Join(sides, " and ")
}

// archived keeps side's archived field equal to whether the counterpart is archived.
func (m *merger) archived(side, field string, rec Record, want bool) {
	if field == "" {
		return
	}
	if want && rec.ID == "" {
		return // no counterpart record: do not make one just to mark it archived
	}
	key := archivedKeyPrefix + side
	cur, has, ok := m.norm(rec.Fields, field, side, TypeBool)
	if !ok {
		return
	}
	baseV, baseHas := m.base[key]
	wasSet := baseV == true
	write := false
	if want {
		write = !(has && cur == true)
	} else {
		write = (has && cur == true) || (!has && wasSet)
	}
	if write && rec.Archived {
		m.skip(key, side, "record archived on %s", side)
		return
	}
	if write {
		patch := m.res.PatchA
		if side == m.p.B {
			patch = m.res.PatchB
		}
		patch[field] = m.p.encoding(side).Encode(TypeBool, want)
	}
	if want || write || baseHas {
		m.res.NewBase[key] = want
	}
}

// fieldTime is the field's change time where the record has it, else the record's.
func fieldTime(r Record, field string) time.Time {
	if t, ok := r.FieldTimes[field]; ok && !t.IsZero() {
		return t
	}
	return r.ModifiedAt
}

// mostRecent picks the later time; on a tie, the system whose name sorts first.
func mostRecent(sysA string, ta time.Time, sysB string, tb time.Time) string {
	switch {
	case ta.After(tb):
		return sysA
	case tb.After(ta):
		return sysB
	case sysA < sysB:
		return sysA
	default:
		return sysB
	}
}

// equalValues compares canonical values.
func equalValues(x, y any) bool { return x == y }
