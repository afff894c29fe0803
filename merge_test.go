package crmsync

import (
	"encoding/json"
	"fmt"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"maps"
	"strings"
	"testing"
	"time"
)

const (
	hs = "hubspot"
	sf = "salesforce"
)

var t0 = time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)

// missing marks a value left out of a record's fields.
type missingT struct{}

var missing = missingT{}

// valueKind is one kind of value for the merge table: the base, each side's
// encoding of the base ("same"), each side's new value, and what each new
// value must look like when written to the other side.
type valueKind struct {
	name             string
	typ              FieldType
	toB              Transform
	base             any
	sameA, sameB     any
	newA, newB       any
	newAinB, newBinA any
	baseInA, baseInB any
	bothSame         bool // both new values are the same value
	newBlank         bool // the new values are blank (cleared)
	missing          bool // the "new" values are absent from the records
}

var valueKinds = []valueKind{
	{name: "string", typ: TypeString, base: "Ada", sameA: " Ada", sameB: "Ada ", newA: "Ann", newB: "Bea",
		newAinB: "Ann", newBinA: "Bea", baseInA: "Ada", baseInB: "Ada"},
	{name: "number", typ: TypeNumber, base: 42.0, sameA: "42", sameB: 42.0, newA: "43.5", newB: 44.0,
		newAinB: 43.5, newBinA: "44", baseInA: "42", baseInB: 42.0},
	{name: "bool", typ: TypeBool, base: false, sameA: "false", sameB: false, newA: "true", newB: true,
		newAinB: true, newBinA: "true", baseInA: "false", baseInB: false, bothSame: true},
	{name: "date", typ: TypeDate, base: "2026-01-15", sameA: "1768435200000", sameB: "2026-01-15",
		newA: "2026-02-01", newB: "2026-03-01", newAinB: "2026-02-01", newBinA: "2026-03-01",
		baseInA: "2026-01-15", baseInB: "2026-01-15"},
	{name: "datetime", typ: TypeDateTime, base: "2026-01-15T10:00:00.000Z", sameA: "1768471200000",
		sameB: "2026-01-15T11:00:00.000+0100", newA: "2026-02-01T08:30:00Z", newB: "2026-03-01T09:00:00.000+0000",
		newAinB: "2026-02-01T08:30:00.000+0000", newBinA: "2026-03-01T09:00:00.000Z",
		baseInA: "2026-01-15T10:00:00.000Z", baseInB: "2026-01-15T10:00:00.000+0000"},
	{name: "picklist", typ: TypeEnum, toB: PicklistMap{"lead": "Lead", "customer": "Customer", "mql": "MQL"},
		base: "lead", sameA: "lead", sameB: "Lead", newA: "customer", newB: "MQL",
		newAinB: "Customer", newBinA: "mql", baseInA: "lead", baseInB: "Lead"},
	{name: "multiselect", typ: TypeMultiEnum, base: "a;b", sameA: "b;a", sameB: "a; b", newA: "a;b;c", newB: "c;d",
		newAinB: "a;b;c", newBinA: "c;d", baseInA: "a;b", baseInB: "a;b"},
	{name: "null", typ: TypeString, base: "x", sameA: "x", sameB: "x", newA: nil, newB: nil,
		newAinB: nil, newBinA: "", baseInA: "x", baseInB: "x", bothSame: true, newBlank: true},
	{name: "empty", typ: TypeString, base: "x", sameA: "x", sameB: " x", newA: "", newB: "  ",
		newAinB: nil, newBinA: "", baseInA: "x", baseInB: "x", bothSame: true, newBlank: true},
	{name: "missing", typ: TypeString, base: "x", sameA: "x", sameB: "x", missing: true},
}

// pickChanged is a Func rule: the side that changed wins, A when both did.
func pickChanged(in FieldInput) Decision {
	if in.ChangedA {
		return Decision{Pick: in.SystemA}
	}
	return Decision{Pick: in.SystemB}
}

var tableRules = map[string]Rule{
	"owner-a":   Owner(hs),
	"owner-b":   Owner(sf),
	"recent":    MostRecent(),
	"pub-a":     PreferUnlessBlank(hs),
	"pub-b":     PreferUnlessBlank(sf),
	"one-way-a": OneWay(hs),
	"one-way-b": OneWay(sf),
	"func":      Func(pickChanged),
	"never":     Never(),
}

type outcome struct {
	aGetsB, bGetsA bool
	winner         string // a conflict's winner; "" for no conflict
	skip           bool
}

// expect is the table's oracle: what each rule does for a change pattern.
// In these tables side B's record is the more recent one.
func expect(rule string, chA, chB bool, k valueKind) outcome {
	if k.missing || rule == "never" || (!chA && !chB) {
		return outcome{}
	}
	if chA && chB && k.bothSame {
		return outcome{}
	}
	both := chA && chB
	win := func(s string) string {
		if both {
			return s
		}
		return ""
	}
	switch rule {
	case "owner-a":
		return outcome{bGetsA: true, winner: win(hs), skip: chB}
	case "owner-b":
		return outcome{aGetsB: true, winner: win(sf), skip: chA}
	case "recent", "func":
		if rule == "func" && chA || rule == "recent" && !chB {
			return outcome{bGetsA: true, winner: win(hs)}
		}
		return outcome{aGetsB: true, winner: win(sf)}
	case "pub-a", "pub-b":
		pref, chPref, chOther := hs, chA, chB
		if rule == "pub-b" {
			pref, chPref, chOther = sf, chB, chA
		}
		prefBlank := chPref && k.newBlank
		otherBlank := chOther && k.newBlank
		toOther := outcome{bGetsA: pref == hs, aGetsB: pref == sf}
		toPref := outcome{bGetsA: pref == sf, aGetsB: pref == hs}
		switch {
		case !prefBlank:
			toOther.winner = win(pref)
			toOther.skip = chOther
			return toOther
		case !otherBlank:
			other := sf
			if pref == sf {
				other = hs
			}
			toPref.winner = win(other)
			return toPref
		}
		return outcome{}
	case "one-way-a":
		if !chA {
			return outcome{skip: true}
		}
		return outcome{bGetsA: true, winner: win(hs)}
	case "one-way-b":
		if !chB {
			return outcome{skip: true}
		}
		return outcome{aGetsB: true, winner: win(sf)}
	}
	panic("unknown rule " + rule)
}

func singleRulePolicy(t testing.TB, k valueKind, r Rule) *Policy {
	t.Helper()
	p, err := NewPolicy(Policy{A: hs, B: sf, Rules: []FieldRule{
		{Name: "f", A: "f_a", B: "F_B__c", Type: k.typ, ToB: k.toB, Rule: r},
	}})
	require.NoError(t, err, "NewPolicy")
	return p
}

func setField(f Fields, name string, v any) {
	if v == missing {
		delete(f, name)
		return
	}
	f[name] = v
}

func applyPatch(r *Record, patch Fields) {
	if r.Fields == nil {
		r.Fields = Fields{}
	}
	maps.Copy(r.Fields, patch)
}

func TestMergeTable(t *testing.T) {
	patterns := []struct {
		name     string
		chA, chB bool
	}{{"neither", false, false}, {"on-a", true, false}, {"on-b", false, true}, {"on-both", true, true}}
	for ruleName, rule := range tableRules {
		for _, k := range valueKinds {
			for _, pat := range patterns {
				t.Run(ruleName+"/"+k.name+"/"+pat.name, func(t *testing.T) {
					p := singleRulePolicy(t, k, rule)
					a := Record{ID: "101", ModifiedAt: t0, Fields: Fields{}}
					b := Record{ID: "003X", ModifiedAt: t0.Add(time.Hour), Fields: Fields{}}
					setField(a.Fields, "f_a", k.sameA)
					setField(b.Fields, "F_B__c", k.sameB)
					newA, newB := k.newA, k.newB
					if k.missing {
						newA, newB = missing, missing
					}
					if pat.chA {
						setField(a.Fields, "f_a", newA)
					}
					if pat.chB {
						setField(b.Fields, "F_B__c", newB)
					}
					base := Fields{"f": k.base}
					res, err := Merge(base, a, b, p)
					require.NoError(t, err, "Merge")
					want := expect(ruleName, pat.chA, pat.chB, k)

					wantA, wantB := Fields{}, Fields{}
					if want.aGetsB {
						wantA["f_a"] = k.baseInA
						if pat.chB {
							wantA["f_a"] = k.newBinA
						}
					}
					if want.bGetsA {
						wantB["F_B__c"] = k.baseInB
						if pat.chA {
							wantB["F_B__c"] = k.newAinB
						}
					}
					assert.True(t, maps.Equal(res.PatchA, wantA), "PatchA = %#v, want %#v", map[string]any(res.PatchA), map[string]any(wantA))
					assert.True(t, maps.Equal(res.PatchB, wantB), "PatchB = %#v, want %#v", map[string]any(res.PatchB), map[string]any(wantB))
					switch {
					case want.winner == "" && len(res.Conflicts) > 0:
						t.Errorf("Conflicts = %v, want none", res.Conflicts)
					case want.winner != "" && len(res.Conflicts) != 1:
						t.Errorf("Conflicts = %v, want one won by %s", res.Conflicts, want.winner)
					case want.winner != "":
						c := res.Conflicts[0]
						assert.Equal(t, want.winner, c.Winner, "Conflict = %+v, want winner %s", c, want.winner)
						assert.Equal(t, "f", c.Field, "Conflict = %+v, want winner %s", c, want.winner)
						assert.Equal(t, "101", c.RecordA, "Conflict = %+v, want winner %s", c, want.winner)
						assert.Equal(t, "003X", c.RecordB, "Conflict = %+v, want winner %s", c, want.winner)
						assert.Equal(t, rule.String(), c.Rule, "Conflict = %+v, want winner %s", c, want.winner)
						assert.False(t, c.Held, "Conflict = %+v, want winner %s", c, want.winner)
						assert.Equal(t, ConflictResolved, c.State, "Conflict = %+v, want winner %s", c, want.winner)
						assert.NotEmpty(t, c.ID, "Conflict = %+v, want winner %s", c, want.winner)
						assert.True(t, c.TimeB.After(c.TimeA), "Conflict times %v, %v: want the records' times", c.TimeA, c.TimeB)
					}
					assert.Equal(t, len(res.Skipped) > 0, want.skip, "Skipped = %v, want skip %v", res.Skipped, want.skip)

					// No echo: once both patches land, merging again writes nothing.
					applyPatch(&a, res.PatchA)
					applyPatch(&b, res.PatchB)
					again, err := Merge(res.NewBase, a, b, p)
					require.NoError(t, err, "second Merge")
					assert.True(t, again.Empty(), "second Merge wrote %v / %v, conflicts %v; want nothing", again.PatchA, again.PatchB, again.Conflicts)
					assert.Empty(t, again.Conflicts, "second Merge wrote %v / %v, conflicts %v; want nothing", again.PatchA, again.PatchB, again.Conflicts)
				})
			}
		}
	}
}

func TestMergeNoBaseSettlesWithoutConflict(t *testing.T) {
	p := singleRulePolicy(t, valueKinds[0], MostRecent())
	a := Record{ID: "1", ModifiedAt: t0, Fields: Fields{"f_a": "Ann"}}
	b := Record{ID: "2", ModifiedAt: t0.Add(time.Minute), Fields: Fields{"F_B__c": "Bea"}}
	res, err := Merge(nil, a, b, p)
	require.NoError(t, err)
	assert.Empty(t, res.Conflicts, "Merge with no base = %+v, want A set to B's newer value and no conflict", res)
	assert.Equal(t, "Bea", res.PatchA["f_a"], "Merge with no base = %+v, want A set to B's newer value and no conflict", res)
	assert.Empty(t, res.PatchB, "Merge with no base = %+v, want A set to B's newer value and no conflict", res)
	assert.Equal(t, "Bea", res.NewBase["f"], "Merge with no base = %+v, want A set to B's newer value and no conflict", res)
}

func TestMergeCreatesOtherSide(t *testing.T) {
	p, err := NewPolicy(playbook())
	require.NoError(t, err)
	a := Record{ID: "101", ModifiedAt: t0, Fields: Fields{
		"email": "ada@example.com", "firstname": "Ada", "lifecyclestage": "lead",
		"hubspotscore": "12", "sf_deal_stage": "Won", "phone": "",
	}}
	res, err := Merge(nil, a, Record{}, p)
	require.NoError(t, err)
	want := Fields{"FirstName": "Ada", "Lifecycle_Stage__c": "Lead", "Lead_Score__c": 12.0}
	assert.True(t, maps.Equal(res.PatchB, want), "PatchB = %#v, want %#v (owned-by-salesforce fields and blanks not written)", map[string]any(res.PatchB), map[string]any(want))
	assert.Empty(t, res.PatchA, "PatchA = %#v, want empty", map[string]any(res.PatchA))
}

func TestMergePerFieldTimes(t *testing.T) {
	p := singleRulePolicy(t, valueKinds[0], MostRecent())
	// B's record is newer, but A's field changed after B's field.
	a := Record{ID: "1", ModifiedAt: t0, FieldTimes: map[string]time.Time{"f_a": t0.Add(2 * time.Hour)},
		Fields: Fields{"f_a": "Ann"}}
	b := Record{ID: "2", ModifiedAt: t0.Add(3 * time.Hour), FieldTimes: map[string]time.Time{"F_B__c": t0.Add(time.Hour)},
		Fields: Fields{"F_B__c": "Bea"}}
	res, err := Merge(Fields{"f": "Ada"}, a, b, p)
	require.NoError(t, err)
	if assert.Len(t, res.Conflicts, 1, "Merge = %+v, want hubspot's later field edit to win", res) {
		assert.Equal(t, hs, res.Conflicts[0].Winner, "Merge = %+v, want hubspot's later field edit to win", res)
		assert.Equal(t, "Ann", res.PatchB["F_B__c"], "Merge = %+v, want hubspot's later field edit to win", res)
	}
	// A tie goes to the system whose name sorts first, whichever side it is on.
	a.FieldTimes, b.FieldTimes = nil, nil
	b.ModifiedAt = a.ModifiedAt
	res, _ = Merge(Fields{"f": "Ada"}, a, b, p)
	swapped, _ := Merge(Fields{"f": "Ada"}, b, a, p.Swapped())
	if res.Conflicts[0].Winner != hs || swapped.Conflicts[0].Winner != hs {
		t.Errorf("tie winners %s and %s (swapped), want hubspot both times", res.Conflicts[0].Winner, swapped.Conflicts[0].Winner)
	}
}

func TestMergeBadValue(t *testing.T) {
	p, err := NewPolicy(playbook())
	require.NoError(t, err)
	a := Record{ID: "101", Fields: Fields{"hubspotscore": "42abc", "firstname": "Ada"}}
	b := Record{ID: "003X", Fields: Fields{"Close_Date__c": "someday"}}
	res, err := Merge(Fields{"hubspotscore": 10.0}, a, b, p)
	require.Error(t, err, "Merge = %+v, want an error", res)
	assert.True(t, IsPermanent(err), "Merge error %v is not permanent", err)
	for _, secret := range []string{"42abc", "someday", "Ada"} {
		assert.NotContains(t, err.Error(), secret, "error %q carries a value", err)
	}
	var fields []string
	for e := range valueErrors(err) {
		fields = append(fields, e.Side+":"+e.Field)
	}
	assert.Equal(t, "hubspot:hubspotscore,salesforce:Close_Date__c", strings.Join(fields, ","), "ValueErrors for %v, want hubspotscore and Close_Date__c", fields)
	// A bad base value names the base.
	_, err = Merge(Fields{"hubspotscore": "lots"}, Record{ID: "1"}, Record{ID: "2", Fields: Fields{"Lead_Score__c": 3.0}}, p)
	var ve *ValueError
	if assert.ErrorAs(t, err, &ve, "Merge with a bad base = %v, want a ValueError for the base", err) {
		assert.Equal(t, "base", ve.Side, "Merge with a bad base = %v, want a ValueError for the base", err)
		assert.Equal(t, "hubspotscore", ve.Field, "Merge with a bad base = %v, want a ValueError for the base", err)
	}
}

// valueErrors walks an error tree for ValueErrors, in order.
func valueErrors(err error) func(func(*ValueError) bool) {
	return func(yield func(*ValueError) bool) {
		var walk func(error) bool
		walk = func(e error) bool {
			if ve, ok := e.(*ValueError); ok {
				return yield(ve)
			}
			switch x := e.(type) {
			case interface{ Unwrap() []error }:
				for _, c := range x.Unwrap() {
					if !walk(c) {
						return false
					}
				}
			case interface{ Unwrap() error }:
				if c := x.Unwrap(); c != nil {
					return walk(c)
				}
			}
			return true
		}
		walk(err)
	}
}

func TestMergeUnmappedPicklistSkips(t *testing.T) {
	p, err := NewPolicy(playbook())
	require.NoError(t, err)
	a := Record{ID: "101", Fields: Fields{"lifecyclestage": "evangelist", "firstname": "Ann"}}
	b := Record{ID: "003X", Fields: Fields{"Lifecycle_Stage__c": "Lead", "FirstName": "Ada"}}
	res, err := Merge(Fields{"lifecyclestage": "lead", "firstname": "Ada"}, a, b, p)
	require.NoError(t, err)
	if assert.Len(t, res.Skipped, 1, "Skipped = %v, want lifecyclestage with no mapping", res.Skipped) {
		assert.Equal(t, "lifecyclestage", res.Skipped[0].Field, "Skipped = %v, want lifecyclestage with no mapping", res.Skipped)
		assert.Contains(t, res.Skipped[0].Reason, "no mapping", "Skipped = %v, want lifecyclestage with no mapping", res.Skipped)
	}
	_, ok := res.PatchB["Lifecycle_Stage__c"]
	assert.False(t, ok, "PatchB = %#v, want only FirstName", map[string]any(res.PatchB))
	assert.Equal(t, "Ann", res.PatchB["FirstName"], "PatchB = %#v, want only FirstName", map[string]any(res.PatchB))
	assert.Equal(t, "lead", res.NewBase["lifecyclestage"], "NewBase[lifecyclestage] = %#v, want the old base kept", res.NewBase["lifecyclestage"])
}

func TestMergeArchiving(t *testing.T) {
	p, err := NewPolicy(playbook())
	require.NoError(t, err)
	base := Fields{"firstname": "Ada"}
	a := Record{ID: "101", Archived: true, Fields: Fields{"firstname": "Ada", "crmsync_archived": "false"}}
	b := Record{ID: "003X", Fields: Fields{"FirstName": "Ann"}}
	res, err := Merge(base, a, b, p)
	require.NoError(t, err)
	assert.Equal(t, true, res.PatchB["Archived__c"], "PatchB = %#v, want Archived__c true", map[string]any(res.PatchB))
	assert.Empty(t, res.PatchA, "PatchA = %#v, want nothing written to an archived record", map[string]any(res.PatchA))
	if assert.Len(t, res.Skipped, 1, "Skipped = %v, want firstname skipped for the archived record", res.Skipped) {
		assert.Equal(t, "firstname", res.Skipped[0].Field, "Skipped = %v, want firstname skipped for the archived record", res.Skipped)
	}
	assert.Equal(t, "Ada", res.NewBase["firstname"], "NewBase[firstname] = %#v, want the old base until the write can land", res.NewBase["firstname"])
	applyPatch(&b, res.PatchB)
	again, err := Merge(res.NewBase, a, b, p)
	assert.NoError(t, err, "second Merge = %+v, %v; want nothing", again, err)
	assert.True(t, again.Empty(), "second Merge = %+v, %v; want nothing", again, err)

	// Restored: the flag is cleared and the held-back write lands.
	a.Archived = false
	res, err = Merge(again.NewBase, a, b, p)
	require.NoError(t, err)
	assert.Equal(t, false, res.PatchB["Archived__c"], "after restore PatchA %#v PatchB %#v, want firstname Ann and Archived__c false", map[string]any(res.PatchA), map[string]any(res.PatchB))
	assert.Equal(t, "Ann", res.PatchA["firstname"], "after restore PatchA %#v PatchB %#v, want firstname Ann and Archived__c false", map[string]any(res.PatchA), map[string]any(res.PatchB))
	// Even when the flag was not fetched, the base remembers it was set.
	delete(b.Fields, "Archived__c")
	res2, _ := Merge(again.NewBase, a, b, p)
	assert.Equal(t, false, res2.PatchB["Archived__c"], "restore without the flag fetched: PatchB %#v, want Archived__c false", map[string]any(res2.PatchB))
	applyPatch(&a, res.PatchA)
	applyPatch(&b, res.PatchB)
	again, _ = Merge(res.NewBase, a, b, p)
	assert.True(t, again.Empty(), "third Merge = %+v, want nothing", again)
}

func TestMergeHold(t *testing.T) {
	k := valueKinds[0]
	p, err := NewPolicy(Policy{A: hs, B: sf, Rules: []FieldRule{
		{Name: "f", A: "f_a", B: "F_B__c", Type: k.typ, Rule: MostRecent(), HoldConflicts: true},
		{A: "g", B: "G__c", Type: TypeString, Rule: MostRecent()},
	}})
	require.NoError(t, err)
	base := Fields{"f": "Ada", "g": "x"}
	a := Record{ID: "1", ModifiedAt: t0, Fields: Fields{"f_a": "Ann", "g": "y"}}
	b := Record{ID: "2", ModifiedAt: t0.Add(time.Hour), Fields: Fields{"F_B__c": "Bea", "G__c": "z"}}
	res, err := Merge(base, a, b, p)
	require.NoError(t, err)
	require.Len(t, res.Conflicts, 2, "Conflicts = %+v, want f held and g not", res.Conflicts)
	require.True(t, res.Conflicts[0].Held, "Conflicts = %+v, want f held and g not", res.Conflicts)
	require.Equal(t, ConflictHeld, res.Conflicts[0].State, "Conflicts = %+v, want f held and g not", res.Conflicts)
	require.False(t, res.Conflicts[1].Held, "Conflicts = %+v, want f held and g not", res.Conflicts)
	_, ok := res.PatchA["f_a"]
	assert.False(t, ok, "PatchA writes a held field: %#v", map[string]any(res.PatchA))
	_, ok = res.PatchB["F_B__c"]
	assert.False(t, ok, "patches %#v / %#v, want only g written", map[string]any(res.PatchA), map[string]any(res.PatchB))
	assert.Equal(t, "z", res.PatchA["g"], "patches %#v / %#v, want only g written", map[string]any(res.PatchA), map[string]any(res.PatchB))
	assert.Equal(t, "Ada", res.NewBase["f"], "NewBase[f] = %#v, want the old base while held", res.NewBase["f"])
	// The same conflict seen again has the same ID; other values another.
	again, _ := Merge(base, a, b, p)
	assert.Equal(t, res.Conflicts[0].ID, again.Conflicts[0].ID, "conflict ID changed between passes: %s, %s", res.Conflicts[0].ID, again.Conflicts[0].ID)
	b.Fields["F_B__c"] = "Cy"
	other, _ := Merge(base, a, b, p)
	assert.NotEqual(t, res.Conflicts[0].ID, other.Conflicts[0].ID, "different values gave the same conflict ID")

	// Policy.Hold holds every conflict.
	ph := *p
	ph.Hold = true
	all, _ := Merge(base, a, b, &ph)
	if assert.Len(t, all.Conflicts, 2, "with Policy.Hold: %+v, want both held and nothing written", all) {
		assert.True(t, all.Conflicts[1].Held, "with Policy.Hold: %+v, want both held and nothing written", all)
		assert.True(t, all.Empty(), "with Policy.Hold: %+v, want both held and nothing written", all)
	}

	// A person's choice.
	c := res.Conflicts[0]
	for _, tt := range []struct {
		r      Resolution
		wantA  any
		wantB  any
		wantOK bool
	}{
		{Resolution{Pick: hs}, "Ann", "Ann", true},
		{Resolution{Pick: sf}, "Bea", "Bea", true},
		{Resolution{Pick: PickValue, Value: " Ada Lovelace "}, "Ada Lovelace", "Ada Lovelace", true},
		{Resolution{Pick: PickValue, Value: nil}, "", nil, true},
		{Resolution{Pick: "pipedrive"}, nil, nil, false},
	} {
		got, err := p.ApplyResolution(c, tt.r)
		if (err == nil) != tt.wantOK {
			t.Errorf("ApplyResolution(%+v) error %v, want ok %v", tt.r, err, tt.wantOK)
			continue
		}
		if !tt.wantOK {
			continue
		}
		if got.PatchA["f_a"] != tt.wantA || got.PatchB["F_B__c"] != tt.wantB || len(got.PatchA) != 1 || len(got.PatchB) != 1 {
			t.Errorf("ApplyResolution(%+v) = %#v / %#v, want %#v / %#v", tt.r, map[string]any(got.PatchA), map[string]any(got.PatchB), tt.wantA, tt.wantB)
		}
		// Once the choice lands, the next merge writes nothing and reports no conflict.
		a2 := Record{ID: "1", Fields: maps.Clone(a.Fields)}
		b2 := Record{ID: "2", Fields: maps.Clone(b.Fields)}
		b2.Fields["F_B__c"] = "Bea"
		applyPatch(&a2, got.PatchA)
		applyPatch(&b2, got.PatchB)
		nb := maps.Clone(base)
		maps.Copy(nb, got.NewBase)
		after, err := Merge(nb, a2, b2, p)
		require.NoError(t, err)
		if _, ok := after.PatchA["f_a"]; ok || len(after.Conflicts) > 1 {
			t.Errorf("after resolution: %+v, want field f settled", after)
		}
	}
}

func TestMergePicklistResolutionAcrossTerms(t *testing.T) {
	p, err := NewPolicy(playbook())
	require.NoError(t, err)
	c := Conflict{ID: "x", Field: "lifecyclestage", A: "customer", B: "MQL"}
	got, err := p.ApplyResolution(c, Resolution{Pick: sf})
	require.NoError(t, err)
	assert.Equal(t, "marketingqualifiedlead", got.PatchA["lifecyclestage"], "ApplyResolution = %+v, want B's value mapped back to hubspot's terms", got)
	assert.Equal(t, "MQL", got.PatchB["Lifecycle_Stage__c"], "ApplyResolution = %+v, want B's value mapped back to hubspot's terms", got)
	assert.Equal(t, "marketingqualifiedlead", got.NewBase["lifecyclestage"], "ApplyResolution = %+v, want B's value mapped back to hubspot's terms", got)
	_, err = p.ApplyResolution(Conflict{Field: "nosuch"}, Resolution{Pick: hs})
	assert.Error(t, err, "ApplyResolution for an unknown field succeeded")
}

func TestMergeFuncRule(t *testing.T) {
	var seen FieldInput
	keepLonger := func(in FieldInput) Decision {
		seen = in
		if in.A == nil && in.B == nil {
			return Decision{Reason: "both blank"}
		}
		if len(in.A.(string)) >= len(in.B.(string)) {
			return Decision{Pick: in.SystemA}
		}
		return Decision{Pick: PickValue, Value: in.B.(string) + "!"}
	}
	p, err := NewPolicy(Policy{A: hs, B: sf, Rules: []FieldRule{
		{A: "x", B: "X", Type: TypeString, Rule: Func(keepLonger)},
	}})
	require.NoError(t, err)
	res, err := Merge(Fields{"x": "ab"}, Record{ID: "1", Fields: Fields{"x": "a"}}, Record{ID: "2", Fields: Fields{"X": "abc"}}, p)
	require.NoError(t, err)
	if assert.Equal(t, "abc!", res.PatchA["x"], "Merge = %+v, want the func's value on both sides", res) {
		if assert.Equal(t, "abc!", res.PatchB["X"], "Merge = %+v, want the func's value on both sides", res) {
			if assert.Len(t, res.Conflicts, 1, "Merge = %+v, want the func's value on both sides", res) {
				assert.Empty(t, res.Conflicts[0].Winner, "Merge = %+v, want the func's value on both sides", res)
			}
		}
	}
	assert.True(t, seen.HasBase, "func saw %+v", seen)
	assert.Equal(t, "ab", seen.Base, "func saw %+v", seen)
	assert.True(t, seen.ChangedA, "func saw %+v", seen)
	assert.True(t, seen.ChangedB, "func saw %+v", seen)
	assert.Equal(t, "x", seen.Field, "func saw %+v", seen)
	res, _ = Merge(Fields{"x": "ab"}, Record{ID: "1", Fields: Fields{"x": ""}}, Record{ID: "2", Fields: Fields{"X": nil}}, p)
	if assert.True(t, res.Empty(), "Merge = %+v, want both changes skipped with the func's reason", res) {
		if assert.Len(t, res.Skipped, 2, "Merge = %+v, want both changes skipped with the func's reason", res) {
			assert.Equal(t, "both blank", res.Skipped[0].Reason, "Merge = %+v, want both changes skipped with the func's reason", res)
		}
	}
}

func TestMergeArchivedWithNoCounterpart(t *testing.T) {
	p, _ := NewPolicy(playbook())
	res, err := Merge(nil, Record{ID: "101", Archived: true, Fields: Fields{"firstname": "Ada"}}, Record{}, p)
	require.NoError(t, err)
	assert.True(t, res.Empty(), "Merge of an archived record with no counterpart writes %#v / %#v", map[string]any(res.PatchA), map[string]any(res.PatchB))
}

// A merge result, conflicts included, survives a JSON round trip (Stores
// and memoized steps keep them as JSON) and still writes nothing on re-merge.
func TestMergeResultJSON(t *testing.T) {
	p, _ := NewPolicy(playbook())
	base := Fields{"hubspotscore": 10.0, "recent_conversion_date": "2026-01-15T10:00:00.000Z", "phone": "1"}
	a := Record{ID: "101", ModifiedAt: t0, Fields: Fields{"hubspotscore": "11", "recent_conversion_date": "1768471200000", "phone": "2"}}
	b := Record{ID: "003X", ModifiedAt: t0.Add(time.Hour), Fields: Fields{"Lead_Score__c": 10.0, "Phone": "3"}}
	res, err := Merge(base, a, b, p)
	require.NoError(t, err)
	raw, err := json.Marshal(res)
	require.NoError(t, err)
	var back MergeResult
	require.NoError(t, json.Unmarshal(raw, &back))
	assert.Equal(t, res.NewBase, back.NewBase, "JSON round trip changed the result:\n%s", raw)
	assert.Equal(t, res.Conflicts, back.Conflicts, "JSON round trip changed the result:\n%s", raw)
	assert.Equal(t, res.PatchB, back.PatchB, "JSON round trip changed the result:\n%s", raw)
	applyPatch(&a, back.PatchA)
	applyPatch(&b, back.PatchB)
	again, _ := Merge(back.NewBase, a, b, p)
	assert.True(t, again.Empty(), "re-merge after a JSON round trip writes %v / %v", again.PatchA, again.PatchB)
}

func TestMergeEncodingsPerSystem(t *testing.T) {
	rules := []FieldRule{
		{A: "n", B: "N", Type: TypeNumber, Rule: MostRecent()},
		{A: "d", B: "D", Type: TypeDateTime, Rule: MostRecent()},
		{A: "c", B: "C", Type: TypeString, Rule: MostRecent()},
	}
	a := Record{ID: "1", Fields: Fields{"n": "7", "d": "1768471200000", "c": ""}}
	b := Record{ID: "2"}
	base := Fields{"c": "x"}
	tests := []struct {
		name string
		pol  Policy
		want Fields
	}{
		{"salesforce is typed", Policy{A: hs, B: sf, Rules: rules},
			Fields{"N": 7.0, "D": "2026-01-15T10:00:00.000+0000"}},
		{"hubspot to hubspot is strings", Policy{A: hs, B: "hubspot-eu", Rules: rules,
			Encodings: map[string]Encoding{"hubspot-eu": StringEncoding{}}},
			Fields{"N": "7", "D": "2026-01-15T10:00:00.000Z"}},
		{"custom encoding", Policy{A: hs, B: "pipedrive", Rules: rules,
			Encodings: map[string]Encoding{"pipedrive": EncodingFunc(func(t FieldType, v any) any {
				if v == nil {
					return "CLEAR"
				}
				return v
			})}},
			Fields{"N": 7.0, "D": "2026-01-15T10:00:00.000Z"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := b
			b.Fields = Fields{"C": "x"}
			res, err := Merge(base, a, b, &tt.pol)
			require.NoError(t, err)
			want := maps.Clone(tt.want)
			want["C"] = map[string]any{"salesforce is typed": nil, "hubspot to hubspot is strings": "", "custom encoding": "CLEAR"}[tt.name]
			assert.Equal(t, want, res.PatchB, "PatchB = %#v, want %#v", map[string]any(res.PatchB), map[string]any(want))
		})
	}
}

// On a first match (no base), a blank never clears the other side's value,
// even when the blank side's record is the more recent.
func TestMostRecentFirstMatchKeepsValueOverBlank(t *testing.T) {
	p, err := NewPolicy(Policy{A: "hubspot", B: "salesforce",
		Rules: []FieldRule{{A: "phone", B: "Phone", Type: TypeString, Rule: MostRecent()}}})
	require.NoError(t, err)
	t0 := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name           string
		a, b           Record
		patchA, patchB Fields
	}{
		{"blank newer on A", Record{ID: "1", ModifiedAt: t0.Add(time.Hour), Fields: Fields{"phone": ""}},
			Record{ID: "2", ModifiedAt: t0, Fields: Fields{"Phone": "+1 415"}}, Fields{"phone": "+1 415"}, Fields{}},
		{"blank newer on B", Record{ID: "1", ModifiedAt: t0, Fields: Fields{"phone": "+44 20"}},
			Record{ID: "2", ModifiedAt: t0.Add(time.Hour), Fields: Fields{"Phone": nil}}, Fields{}, Fields{"Phone": "+44 20"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, err := Merge(nil, tc.a, tc.b, p)
			require.NoError(t, err)
			assert.Equal(t, fmt.Sprint(tc.patchA), fmt.Sprint(res.PatchA), "Merge = A %v, B %v; want A %v, B %v", map[string]any(res.PatchA), map[string]any(res.PatchB), map[string]any(tc.patchA), map[string]any(tc.patchB))
			assert.Equal(t, fmt.Sprint(tc.patchB), fmt.Sprint(res.PatchB), "Merge = A %v, B %v; want A %v, B %v", map[string]any(res.PatchA), map[string]any(res.PatchB), map[string]any(tc.patchA), map[string]any(tc.patchB))
		})
	}
}
