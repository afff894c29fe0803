package crmsync

import (
	"slices"
)

// Diff is what [SchemaDiff] found between two schemas and a policy. Every
// list is sorted. Drift is reported, never an error: the sync goes on with
// the fields that still match.
type Diff struct {
	// UnmappedA and UnmappedB are schema fields no rule names (nor the
	// identity or archived field). Map them, or name them in a Never rule.
	UnmappedA, UnmappedB []string
	// MissingA and MissingB are fields the policy names that the schema lacks.
	MissingA, MissingB []string
	// TypeMismatches are mapped fields whose schema type does not fit the rule's type.
	TypeMismatches []TypeMismatch
	// UnmappedOptions are picklist values on one side with no counterpart on
	// the other (no entry in the rule's map, or, with no transform, no equal
	// option on the other side).
	UnmappedOptions []UnmappedOption
}

// TypeMismatch is a mapped field whose schema type does not fit its rule.
type TypeMismatch struct {
	// Field is the rule's name; Side the system; Name the field's name there.
	Field, Side, Name string
	// Want is the rule's type, Got the schema's.
	Want, Got FieldType
}

// UnmappedOption is a picklist value with no mapping to the other side.
type UnmappedOption struct {
	// Field is the rule's name; Side the system whose option it is.
	Field, Side string
	// Value is the option's value (schema data, not a record's).
	Value string
}

// Empty reports whether the diff found nothing.
func (d Diff) Empty() bool {
	return len(d.UnmappedA)+len(d.UnmappedB)+len(d.MissingA)+len(d.MissingB)+
		len(d.TypeMismatches)+len(d.UnmappedOptions) == 0
}

// SchemaDiff compares schema a (of the policy's system A) and schema b (of
// system B) with the policy: fields unmapped on each side, mapped fields
// missing from a schema, type mismatches, and picklist values with no mapping.
func SchemaDiff(a, b Schema, p *Policy) Diff {
	q := p
	if prepared, err := p.use(); err == nil {
		q = prepared
	}
	fa, fb := schemaIndex(a), schemaIndex(b)
	var d Diff
	knownA, knownB := q.knownFields(q.A), q.knownFields(q.B)
	for _, f := range a.Fields {
		if !knownA[f.Name] {
			d.UnmappedA = append(d.UnmappedA, f.Name)
		}
	}
	for _, f := range b.Fields {
		if !knownB[f.Name] {
			d.UnmappedB = append(d.UnmappedB, f.Name)
		}
	}
	for name := range knownA {
		if _, ok := fa[name]; !ok {
			d.MissingA = append(d.MissingA, name)
		}
	}
	for name := range knownB {
		if _, ok := fb[name]; !ok {
			d.MissingB = append(d.MissingB, name)
		}
	}
	for i, r := range q.Rules {
		if r.Rule.Kind == RuleNever {
			continue
		}
		sa, okA := fa[r.A]
		sb, okB := fb[r.B]
		if okA && !typeFits(r.Type, sa.Type) {
			d.TypeMismatches = append(d.TypeMismatches, TypeMismatch{Field: r.Key(), Side: q.A, Name: r.A, Want: r.Type, Got: sa.Type})
		}
		if okB && !typeFits(r.Type, sb.Type) {
			d.TypeMismatches = append(d.TypeMismatches, TypeMismatch{Field: r.Key(), Side: q.B, Name: r.B, Want: r.Type, Got: sb.Type})
		}
		if !okA || !okB {
			continue
		}
		var toA, toB Transform
		if i < len(q.toA) {
			toA, toB = q.toA[i], q.toB[i]
		} else {
			toA, toB = r.ToA, r.ToB
		}
		d.UnmappedOptions = append(d.UnmappedOptions, unmappedOptions(r.Key(), q.A, sa, sb, toB, toA == nil && toB == nil)...)
		d.UnmappedOptions = append(d.UnmappedOptions, unmappedOptions(r.Key(), q.B, sb, sa, toA, toA == nil && toB == nil)...)
	}
	slices.Sort(d.UnmappedA)
	slices.Sort(d.UnmappedB)
	slices.Sort(d.MissingA)
	slices.Sort(d.MissingB)
	return d
}

// unmappedOptions lists from's options that t (or, with identity, to's
// options) cannot carry to the other side.
func unmappedOptions(field, side string, from, to FieldSchema, t Transform, identity bool) []UnmappedOption {
	var m map[string]string
	switch x := t.(type) {
	case PicklistMap:
		m = x
	case OwnerMap:
		m = x
	default:
		if !identity || len(to.Options) == 0 {
			return nil // a func transform cannot be checked; an open field takes anything
		}
		m = make(map[string]string, len(to.Options))
		for _, o := range to.Options {
			m[o] = o
		}
	}
	var out []UnmappedOption
	for _, o := range from.Options {
		if _, ok := m[o]; !ok {
			out = append(out, UnmappedOption{Field: field, Side: side, Value: o})
		}
	}
	return out
}

func schemaIndex(s Schema) map[string]FieldSchema {
	m := make(map[string]FieldSchema, len(s.Fields))
	for _, f := range s.Fields {
		m[f.Name] = f
	}
	return m
}

// typeFits reports whether a schema field of type got can hold the values of
// a rule of type want.
func typeFits(want, got FieldType) bool {
	if want == got || want == TypeOther {
		return true
	}
	switch want {
	case TypeString:
		return got == TypeEnum || got == TypeReference || got == TypeOther
	case TypeEnum:
		return got == TypeString
	case TypeReference:
		return got == TypeString || got == TypeEnum
	case TypeMultiEnum:
		return got == TypeString
	case TypeDate:
		// A date rule over a datetime field keeps the day (HubSpot's
		// closedate is a datetime at midnight UTC; Salesforce's CloseDate a date).
		return got == TypeDateTime || got == TypeString
	}
	return false
}

// knownFields are the fields the policy names on system side.
func (p *Policy) knownFields(side string) map[string]bool {
	known := map[string]bool{}
	add := func(s string) {
		if s != "" {
			known[s] = true
		}
	}
	if side == p.A {
		add(p.Identity.A)
		add(p.Archived.A)
		for _, r := range p.Rules {
			add(r.A)
		}
	} else {
		add(p.Identity.B)
		add(p.Archived.B)
		for _, r := range p.Rules {
			add(r.B)
		}
	}
	if p.identityField(side) == "" {
		add(defaultIdentityField(side))
	}
	return known
}

func (p *Policy) identityField(side string) string {
	if side == p.A {
		return p.Identity.A
	}
	return p.Identity.B
}

// UnknownFields lists, sorted, the fields of rec (a record of system side)
// that the policy does not name: schema drift to warn about once per run.
// It is never an error.
func UnknownFields(rec Record, side string, p *Policy) []string {
	known := p.knownFields(side)
	var out []string
	for name := range rec.Fields {
		if !known[name] {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}
