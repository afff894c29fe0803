package crmsync

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// ErrUnmapped is returned (wrapped) by a [Transform] for a value its table has
// no entry for. Merge skips such a field for that record and reports it in
// MergeResult.Skipped, instead of failing the record.
var ErrUnmapped = errors.New("crmsync: value has no mapping")

// PickValue is the Pick of a [Decision] or [Resolution] that sets a given
// value instead of taking one side's.
const PickValue = "value"

// RuleKind names what a [Rule] does.
type RuleKind string

// The rule kinds.
const (
	// RuleOwner: one system owns the field; its value always wins and an edit
	// on the other side is reverted on the next pass and reported.
	RuleOwner RuleKind = "owner"
	// RuleMostRecent: the side whose field changed last wins.
	RuleMostRecent RuleKind = "most-recent"
	// RulePreferUnlessBlank: one system's value wins unless it is blank, in
	// which case the other side's value fills it.
	RulePreferUnlessBlank RuleKind = "prefer-unless-blank"
	// RuleOneWay: changes flow from one system to the other only; edits on
	// the other side are left alone and reported, not reverted.
	RuleOneWay RuleKind = "one-way"
	// RuleNever: the field is known to the policy but never synced.
	RuleNever RuleKind = "never"
	// RuleFunc: a func of the user's decides.
	RuleFunc RuleKind = "func"
)

// Rule decides which value a field takes when the two sides disagree. Make one
// with [Owner], [MostRecent], [PreferUnlessBlank], [OneWay], [Never] or [Func].
type Rule struct {
	Kind RuleKind
	// System is the owning, preferred or source system (Owner, PreferUnlessBlank, OneWay).
	System string
	// Fn decides for RuleFunc.
	Fn func(FieldInput) Decision
}

// Owner returns the rule "system owns the field": its value always wins; an
// edit on the other side is reverted on the next pass and reported in Skipped.
func Owner(system string) Rule { return Rule{Kind: RuleOwner, System: system} }

// MostRecent returns the rule "the side whose field changed last wins", using
// Record.FieldTimes where the record has the field's time and
// Record.ModifiedAt otherwise. On a tie the system whose name sorts first wins.
func MostRecent() Rule { return Rule{Kind: RuleMostRecent} }

// PreferUnlessBlank returns the rule "system's value wins unless it is blank
// (cleared or not fetched); then the other side's value is used, on both sides".
func PreferUnlessBlank(system string) Rule {
	return Rule{Kind: RulePreferUnlessBlank, System: system}
}

// OneWay returns the rule "changes flow from system to the other side only".
// Edits on the other side are not copied back nor reverted; they are reported
// in Skipped.
func OneWay(from string) Rule { return Rule{Kind: RuleOneWay, System: from} }

// Never returns the rule "never sync this field". A Never rule may name the
// field on one side only, to mark it as known (so that [UnknownFields] and
// [SchemaDiff] do not list it).
func Never() Rule { return Rule{Kind: RuleNever} }

// Func returns a rule decided by fn, which is called for every field that
// changed on at least one side. fn must be pure and deterministic.
func Func(fn func(FieldInput) Decision) Rule { return Rule{Kind: RuleFunc, Fn: fn} }

// String describes the rule, as in "owner(hubspot)".
func (r Rule) String() string {
	if r.System != "" {
		return string(r.Kind) + "(" + r.System + ")"
	}
	return string(r.Kind)
}

// twoWay reports whether values may flow in both directions under r.
func (r Rule) twoWay() bool {
	return r.Kind == RuleMostRecent || r.Kind == RulePreferUnlessBlank || r.Kind == RuleFunc
}

// FieldInput is what a [Func] rule sees. Values are canonical (see
// [Normalize]); A, B and Base are in side A's terms (B's value has been
// through the rule's ToA transform).
type FieldInput struct {
	// Field is the rule's name.
	Field string
	// SystemA and SystemB name the two sides.
	SystemA, SystemB string
	// Base is the value last synced; HasBase is false if there is none yet.
	Base    any
	HasBase bool
	// A and B are the sides' values; HasA or HasB is false if the field was not fetched.
	A, B       any
	HasA, HasB bool
	// ChangedA and ChangedB report a value that differs from Base.
	ChangedA, ChangedB bool
	// TimeA and TimeB are the field's change times (or the records' modified times).
	TimeA, TimeB time.Time
}

// Decision is what a [Func] rule returns.
type Decision struct {
	// Pick is SystemA or SystemB to take that side's value, [PickValue] to set
	// Value, or "" to leave the field alone on both sides (reported in Skipped).
	Pick string
	// Value is the value to set with PickValue, in side A's terms; nil clears.
	Value any
	// Reason explains a "" Pick in MergeResult.Skipped.
	Reason string
}

// Transform converts one field value from one side's terms to the other's.
// It gets and returns canonical values (see [Normalize]), never nil: blank
// values are not transformed. A value with no mapping returns an error
// wrapping [ErrUnmapped].
type Transform interface {
	Transform(v any) (any, error)
}

// Reversible is a [Transform] that can compute its own inverse. Policy
// validation uses it to fill in a missing ToA or ToB of a two-way rule.
type Reversible interface {
	Transform
	// Inverse returns the reverse transform, or an error if there is none
	// (two values map to one).
	Inverse() (Transform, error)
}

// TransformFunc adapts a func to a [Transform]. It is not [Reversible]: a
// two-way rule needs one for each direction.
type TransformFunc func(v any) (any, error)

// Transform calls f.
func (f TransformFunc) Transform(v any) (any, error) { return f(v) }

// PicklistMap maps picklist values from one side's terms to the other's (keys
// on the source side). It applies to each item of a multi-select list. It is
// [Reversible] when no two keys map to one value. A value not in the map is
// [ErrUnmapped].
type PicklistMap map[string]string

// Transform implements [Transform].
func (m PicklistMap) Transform(v any) (any, error) { return mapValue(m, v) }

// Inverse implements [Reversible].
func (m PicklistMap) Inverse() (Transform, error) {
	inv, err := invert(m)
	return PicklistMap(inv), err
}

// OwnerMap maps owner (user) ids from one side's to the other's, such as
// HubSpot owner ids to Salesforce user ids. It is [Reversible] when no two
// owners map to one. An owner not in the map is [ErrUnmapped].
type OwnerMap map[string]string

// Transform implements [Transform].
func (m OwnerMap) Transform(v any) (any, error) { return mapValue(m, v) }

// Inverse implements [Reversible].
func (m OwnerMap) Inverse() (Transform, error) {
	inv, err := invert(m)
	return OwnerMap(inv), err
}

func mapValue(m map[string]string, v any) (any, error) {
	s, ok := v.(string)
	if !ok {
		if v == nil {
			return nil, nil
		}
		s = fmt.Sprint(v)
	}
	if out, ok := m[strings.TrimSpace(s)]; ok {
		return out, nil
	}
	if strings.Contains(s, ";") {
		items := splitMulti(s)
		if len(items) == 0 {
			// Only separators: not a blank (sending blank would record a
			// value as synced that the other side does not hold).
			return nil, ErrUnmapped
		}
		out := make([]string, 0, len(items))
		for _, it := range items {
			o, ok := m[it]
			if !ok {
				return nil, ErrUnmapped
			}
			out = append(out, o)
		}
		return strings.Join(out, ";"), nil
	}
	return nil, ErrUnmapped
}

func invert(m map[string]string) (map[string]string, error) {
	inv := make(map[string]string, len(m))
	var dups []string
	for _, k := range sortedKeys(m) {
		v := m[k]
		if _, dup := inv[v]; dup {
			dups = append(dups, v)
			continue
		}
		inv[v] = k
	}
	if len(dups) > 0 {
		return inv, fmt.Errorf("not reversible: several values map to %s", quoteList(dups))
	}
	return inv, nil
}

// FieldRule maps one field between the two systems.
type FieldRule struct {
	// Name keys the field in the merge base and in conflicts; "" means A, or B
	// when A is "".
	Name string
	// A and B are the field's names on each side. A [Never] rule may leave one empty.
	A, B string
	// Type is the field's type, used to compare the sides' encodings.
	Type FieldType
	// ToA and ToB transform a value from B's terms to A's and from A's to B's;
	// nil means the value is the same on both sides. A two-way rule needs both
	// or neither, or one that is [Reversible] (its inverse fills the other).
	ToA, ToB Transform
	// Rule decides the winner.
	Rule Rule
	// HoldConflicts holds this field's conflicts for a person instead of
	// applying the rule's winner (see Policy.Hold).
	HoldConflicts bool
	// Ref names the pair of a [Graph] whose records the field references
	// (Type TypeReference: one id or none; TypeReferences: a set of ids),
	// such as a contact's company: HubSpot "associations.companies" and
	// Salesforce "AccountId" referencing the "companies" pair. Each side
	// holds ids of its own system. The merge compares references by link,
	// never by raw id (the base keeps side A's ids), and a value written
	// to a side is translated through the referenced pair's links. A
	// reference whose record has no counterpart yet waits: a record that
	// would be created waits whole (it is never created with a dangling
	// reference, nor dead-lettered for it); a linked pair syncs its other
	// fields and leaves the reference as it is. Waiting records are read
	// again by id on the next pass until their references resolve. A
	// reference the CRM refuses because it names a record archived or
	// deleted there (a [ReferenceError]) is written without, never
	// dead-lettered: the pair's link keeps it, and the merge reads it as
	// none while either side names it. A rule with Ref takes no transforms.
	Ref string
}

// Key is the field's name in the merge base and in conflicts.
func (r FieldRule) Key() string {
	switch {
	case r.Name != "":
		return r.Name
	case r.A != "":
		return r.A
	default:
		return r.B
	}
}

// Identity names the fields that match records with no link yet.
type Identity struct {
	// A and B are the field names on each side; "" means "email" on HubSpot
	// and other systems, "Email" on Salesforce.
	A, B string
	// Normalize turns a field value into the key; nil means trim and lower-case.
	Normalize func(string) string
	// ValuesA and ValuesB, if set, return the values of that side's field
	// to look up for a key: the forms a value with that key may take there
	// (a website with and without scheme or "www."). nil looks up the key
	// itself. Records found are matched on their key, never on the raw value.
	ValuesA, ValuesB func(key string) []string
	// Strict refuses ambiguous matches: a key held by two unlinked records
	// of a page, or by two candidates on the other side, links nothing and
	// creates nothing; each such record is reported as a skip (in the
	// report and the audit) naming the other records, until a person links
	// or fixes them. Without Strict the most recently modified candidate
	// is linked.
	Strict bool
}

// ArchivedFields names the field on each side that records that the
// counterpart was archived on the other side: when B's record is archived,
// A's field A is set true; when it is restored, the field is set false.
type ArchivedFields struct {
	A, B string
}

// Policy maps the fields of one object between two systems and says, field
// by field, whose value wins. Build it as a plain value and check it with
// [NewPolicy] or [Policy.Validate]. A Policy must not be changed while in use.
type Policy struct {
	// A and B name the two systems, as their CRM clients' System() do ("hubspot", "salesforce").
	A, B string
	// Identity matches records that have no link yet.
	Identity Identity
	// Archived names the archived-counterpart fields; "" on a side means
	// archiving is not carried to that side.
	Archived ArchivedFields
	// Rules map the fields, one rule per field.
	Rules []FieldRule
	// Hold holds every conflict for a person (as FieldRule.HoldConflicts does
	// for one field): the merge writes neither side for that field and marks
	// the conflict Held.
	Hold bool
	// Encodings encode outgoing values per system name; a system with no
	// entry uses [StringEncoding] for "hubspot" and [TypedEncoding] otherwise.
	Encodings map[string]Encoding

	// filled by prepare
	toA, toB []Transform
	ready    bool
}

// PolicyError lists every problem found in a policy.
type PolicyError struct {
	Problems []string
}

func (e *PolicyError) Error() string {
	return "crmsync: invalid policy: " + strings.Join(e.Problems, "; ")
}

// NewPolicy validates p and returns a copy ready for use, with defaults
// filled in and the inverses of [Reversible] transforms computed. The error is
// a *[PolicyError] listing every problem.
func NewPolicy(p Policy) (*Policy, error) {
	q := p
	q.Rules = slices.Clone(p.Rules)
	if err := q.prepare(); err != nil {
		return nil, err
	}
	return &q, nil
}

// Validate reports every problem with p in one *[PolicyError], or nil.
func (p *Policy) Validate() error {
	q := *p
	q.Rules = slices.Clone(p.Rules)
	return q.prepare()
}

// prepare validates p in place and fills in derived transforms.
func (p *Policy) prepare() error {
	var probs []string
	add := func(format string, args ...any) { probs = append(probs, fmt.Sprintf(format, args...)) }
	if p.A == "" || p.B == "" {
		add("both systems must be named (A and B)")
	} else if p.A == p.B {
		add("systems A and B are both named %q", p.A)
	}
	for _, s := range []string{p.A, p.B} {
		if s == PickValue {
			add("a system may not be named %q", PickValue)
		}
	}
	system := func(s string) bool { return s != "" && (s == p.A || s == p.B) }
	seenA, seenB, seenKey := map[string]int{}, map[string]int{}, map[string]int{}
	for side, name := range map[string]string{"A": p.Archived.A, "B": p.Archived.B} {
		if name != "" {
			if side == "A" {
				seenA[name] = -1
			} else {
				seenB[name] = -1
			}
		}
	}
	p.toA = make([]Transform, len(p.Rules))
	p.toB = make([]Transform, len(p.Rules))
	for i, r := range p.Rules {
		label := fmt.Sprintf("rule %d (%s)", i, r.Key())
		if r.Key() == "" {
			label = fmt.Sprintf("rule %d", i)
		}
		if r.Rule.Kind == RuleNever {
			if r.A == "" && r.B == "" {
				add("%s: no field named on either side", label)
			}
		} else {
			if r.A == "" {
				add("%s: no field named on side A (%s)", label, p.A)
			}
			if r.B == "" {
				add("%s: no field named on side B (%s)", label, p.B)
			}
		}
		if r.A != "" {
			if j, dup := seenA[r.A]; dup {
				add("%s: field %q on %s is %s", label, r.A, p.A, alsoWhere(j))
			} else {
				seenA[r.A] = i
			}
		}
		if r.B != "" {
			if j, dup := seenB[r.B]; dup {
				add("%s: field %q on %s is %s", label, r.B, p.B, alsoWhere(j))
			} else {
				seenB[r.B] = i
			}
		}
		if k := r.Key(); k != "" {
			if j, dup := seenKey[k]; dup {
				add("%s: name %q is also used by rule %d", label, k, j)
			} else {
				seenKey[k] = i
			}
		}
		if strings.HasPrefix(r.Key(), archivedKeyPrefix) {
			add("%s: names starting %q are reserved", label, archivedKeyPrefix)
		}
		switch r.Type {
		case TypeString, TypeNumber, TypeBool, TypeDate, TypeDateTime, TypeEnum, TypeMultiEnum, TypeReference, TypeReferences, TypeOther:
		case "":
			if r.Rule.Kind != RuleNever {
				add("%s: no field type", label)
			}
		default:
			add("%s: unknown field type %q", label, r.Type)
		}
		switch r.Rule.Kind {
		case RuleOwner, RulePreferUnlessBlank, RuleOneWay:
			if r.Rule.System == "" {
				add("%s: rule %s names no system", label, r.Rule.Kind)
			} else if !system(r.Rule.System) {
				add("%s: rule %s names %q, which is neither %q nor %q", label, r.Rule.Kind, r.Rule.System, p.A, p.B)
			}
		case RuleMostRecent, RuleNever:
		case RuleFunc:
			if r.Rule.Fn == nil {
				add("%s: func rule has no func", label)
			}
		case "":
			add("%s: no rule", label)
		default:
			add("%s: unknown rule %q", label, r.Rule.Kind)
		}
		if r.Ref != "" {
			if r.Type != TypeReference && r.Type != TypeReferences {
				add("%s: a reference rule (Ref %q) needs type %s or %s", label, r.Ref, TypeReference, TypeReferences)
			}
			if r.ToA != nil || r.ToB != nil {
				add("%s: a reference rule (Ref %q) takes no transforms: it is translated through the links", label, r.Ref)
			}
		}
		toA, toB := r.ToA, r.ToB
		// Directions the rule needs: values flow to B when A may win, to A when B may win.
		needB := r.Rule.twoWay() || (r.Rule.System == p.A && r.Rule.Kind != RuleNever)
		needA := r.Rule.twoWay() || (r.Rule.System == p.B && r.Rule.Kind != RuleNever)
		if toA != nil || toB != nil {
			if toA == nil {
				toA = inverseOf(toB, label, p.A, needA, add)
			}
			if toB == nil {
				toB = inverseOf(toA, label, p.B, needB, add)
			}
			if needA && needB && r.ToA != nil && r.ToB != nil {
				for _, t := range []Transform{toA, toB} {
					if rv, ok := t.(Reversible); ok {
						if _, err := rv.Inverse(); err != nil {
							add("%s: two-way transform %v", label, err)
						}
					}
				}
			}
		}
		p.toA[i], p.toB[i] = toA, toB
	}
	if p.Identity.A == "" {
		p.Identity.A = defaultIdentityField(p.A)
	}
	if p.Identity.B == "" {
		p.Identity.B = defaultIdentityField(p.B)
	}
	if len(probs) > 0 {
		return &PolicyError{Problems: probs}
	}
	p.ready = true
	return nil
}

// inverseOf fills in a missing direction from a Reversible transform, or records a problem.
// The inverse is derived where possible; its absence is a problem only when needed.
func inverseOf(t Transform, label, to string, needed bool, add func(string, ...any)) Transform {
	rv, ok := t.(Reversible)
	if !ok {
		if needed {
			add("%s: no transform to %s, and the other direction is not reversible", label, to)
		}
		return nil
	}
	inv, err := rv.Inverse()
	if err != nil {
		if needed {
			add("%s: transform to %s: %v", label, to, err)
		}
		return nil
	}
	return inv
}

func alsoWhere(j int) string {
	if j < 0 {
		return "also the archived field"
	}
	return fmt.Sprintf("also mapped by rule %d", j)
}

func defaultIdentityField(system string) string {
	if system == "salesforce" {
		return "Email"
	}
	return "email"
}

// ready returns p itself when built by NewPolicy, or a validated copy.
func (p *Policy) use() (*Policy, error) {
	if p == nil {
		return nil, errors.New("crmsync: nil policy")
	}
	if p.ready {
		return p, nil
	}
	return NewPolicy(*p)
}

// IdentityKey returns the identity key of rec, a record of system side, and
// whether it has one. The default key is the email, trimmed and lower-cased.
func (p *Policy) IdentityKey(rec Record, side string) (string, bool) {
	field := p.Identity.A
	if side == p.B {
		field = p.Identity.B
	}
	if field == "" {
		field = defaultIdentityField(side)
	}
	v, ok := rec.Fields[field]
	if !ok || v == nil {
		return "", false
	}
	s, ok := v.(string)
	if !ok {
		return "", false
	}
	if p.Identity.Normalize != nil {
		s = p.Identity.Normalize(s)
	} else {
		s = strings.ToLower(strings.TrimSpace(s))
	}
	return s, s != ""
}

// Swapped returns the policy with sides A and B exchanged: rules keep their
// names (so a base stays keyed the same) and their systems, transforms swap
// direction. Note that a base holds side A's terms, so a base for the swapped
// policy must be converted with the rules' transforms.
func (p *Policy) Swapped() *Policy {
	q := *p
	q.A, q.B = p.B, p.A
	q.Identity.A, q.Identity.B = p.Identity.B, p.Identity.A
	q.Identity.ValuesA, q.Identity.ValuesB = p.Identity.ValuesB, p.Identity.ValuesA
	q.Archived.A, q.Archived.B = p.Archived.B, p.Archived.A
	q.Rules = make([]FieldRule, len(p.Rules))
	for i, r := range p.Rules {
		r.Name = r.Key()
		r.A, r.B = r.B, r.A
		r.ToA, r.ToB = r.ToB, r.ToA
		q.Rules[i] = r
	}
	q.toA, q.toB = slices.Clone(p.toB), slices.Clone(p.toA)
	return &q
}

func (p *Policy) encoding(system string) Encoding {
	if e, ok := p.Encodings[system]; ok && e != nil {
		return e
	}
	return builtinEncoding(system)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func quoteList(items []string) string {
	q := make([]string, len(items))
	for i, s := range items {
		q[i] = fmt.Sprintf("%q", s)
	}
	return strings.Join(q, ", ")
}
