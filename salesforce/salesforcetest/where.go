package salesforcetest

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/crmsync/crmsync/internal/fold"
)

// pred is a WHERE condition compiled for one query: field names resolved
// and literals converted once. A literal's conversion error is kept and
// reported when a record reaches it, as evaluating the raw condition would.
type pred struct {
	op   string // "true", "and", "or", "not", "in", "notin" or a comparison operator
	l, r *pred
	fd   fieldDef
	// want is a comparison's value; lower is want lower-cased when the
	// field compares as a case-insensitive string.
	want  any
	lower string
	err   error
	// An IN list: its values, whether it holds null, and for string-compared
	// fields the set of lower-cased values (for id fields, of the values).
	vals    []any
	hasNull bool
	set     map[string]bool
}

// setKey returns the IN-set key of a string value of type typ.
func setKey(typ, v string) string {
	if baseType(typ) == "id" {
		return v
	}
	return strings.ToLower(v)
}

// stringCompared reports whether compareValues compares values of type typ
// as case-insensitive strings.
func stringCompared(typ string) bool {
	switch baseType(typ) {
	case "datetime", "double", "boolean", "id":
		return false
	}
	return true
}

// compile compiles a parsed condition; every field it names is in fields.
func compile(e expr, fields map[string]fieldDef) *pred {
	switch x := e.(type) {
	case andExpr:
		return &pred{op: "and", l: compile(x.l, fields), r: compile(x.r, fields)}
	case orExpr:
		return &pred{op: "or", l: compile(x.l, fields), r: compile(x.r, fields)}
	case notExpr:
		return &pred{op: "not", l: compile(x.e, fields)}
	case cmpExpr:
		p := &pred{op: x.op, fd: fields[strings.ToLower(x.field)]}
		if x.op == "in" || x.op == "notin" {
			if stringCompared(p.fd.Type) || baseType(p.fd.Type) == "id" {
				p.set = map[string]bool{}
			}
			for _, t := range x.vals {
				want, err := literal(p.fd.Type, t)
				switch {
				case err != nil:
					if p.err == nil {
						p.err = err
					}
				case want == nil:
					p.hasNull = true
				default:
					p.vals = append(p.vals, want)
					if sv, ok := want.(string); ok && p.set != nil {
						p.set[setKey(p.fd.Type, sv)] = true
					}
				}
			}
			return p
		}
		p.want, p.err = literal(p.fd.Type, x.vals[0])
		if sv, ok := p.want.(string); ok {
			p.lower = strings.ToLower(sv)
		}
		return p
	case nil:
		return &pred{op: "true"}
	}
	return &pred{op: "bad"}
}

// sysTime returns a system datetime field as the time its JSON value
// parses back to, sparing the format and the parse; ok is false for other
// fields and for years the JSON form cannot carry.
func sysTime(r *record, name string) (time.Time, bool) {
	var t time.Time
	switch name {
	case "CreatedDate":
		t = r.created
	case "LastModifiedDate":
		t = r.modified
	case "SystemModstamp":
		t = r.stamp
	default:
		return time.Time{}, false
	}
	t = t.UTC().Truncate(time.Millisecond)
	if y := t.Year(); y < 1 || y > 9999 {
		return time.Time{}, false
	}
	return t, true
}

// fieldValue is r.value(name), with system datetimes as time.Time values,
// which compareValues treats as it does their JSON form.
func fieldValue(r *record, name string) any {
	if t, ok := sysTime(r, name); ok {
		return t
	}
	return r.value(name)
}

// compareTo is compareValues(p.fd.Type, have, p.want).
func (p *pred) compareTo(have any) (int, bool) {
	if stringCompared(p.fd.Type) {
		sa, ok1 := have.(string)
		_, ok2 := p.want.(string)
		if !ok1 || !ok2 {
			return 0, false
		}
		return strings.Compare(strings.ToLower(sa), p.lower), true
	}
	return compareValues(p.fd.Type, have, p.want)
}

// eval evaluates the condition on r.
func (p *pred) eval(r *record) (bool, error) {
	switch p.op {
	case "true":
		return true, nil
	case "and":
		l, err := p.l.eval(r)
		if err != nil || !l {
			return false, err
		}
		return p.r.eval(r)
	case "or":
		l, err := p.l.eval(r)
		if err != nil || l {
			return l, err
		}
		return p.r.eval(r)
	case "not":
		v, err := p.l.eval(r)
		return !v, err
	case "bad":
		return false, fmt.Errorf("bad condition")
	}
	have := fieldValue(r, p.fd.Name)
	if s, ok := have.(string); ok && s == "" {
		have = nil
	}
	if p.op == "in" || p.op == "notin" {
		if p.err != nil {
			return false, p.err
		}
		found := p.hasNull && have == nil
		if !found && have != nil {
			if p.set != nil {
				if sv, ok := have.(string); ok {
					found = p.set[setKey(p.fd.Type, sv)]
				}
			} else {
				for _, want := range p.vals {
					if c, ok := compareValues(p.fd.Type, have, want); ok && c == 0 {
						found = true
						break
					}
				}
			}
		}
		return found == (p.op == "in"), nil
	}
	if p.err != nil {
		return false, p.err
	}
	if p.want == nil {
		switch p.op {
		case "=":
			return have == nil, nil
		case "!=":
			return have != nil, nil
		}
		return false, fmt.Errorf("null only works with = and !=")
	}
	if have == nil {
		return p.op == "!=", nil
	}
	c, ok := p.compareTo(have)
	if !ok {
		return false, nil
	}
	switch p.op {
	case "=":
		return c == 0, nil
	case "!=":
		return c != 0, nil
	case "<":
		return c < 0, nil
	case "<=":
		return c <= 0, nil
	case ">":
		return c > 0, nil
	case ">=":
		return c >= 0, nil
	}
	return false, fmt.Errorf("unknown operator %s", p.op)
}

// sortKey is one ORDER BY value of a record, converted once per query.
type sortKey struct {
	v   any       // the value; nil sorts first
	t   time.Time // datetime fields: the parsed time, if tOK
	tOK bool
	s   string // string-compared fields: the lower-cased string, if sOK
	sOK bool
}

func newSortKey(r *record, fd fieldDef) sortKey {
	k := sortKey{v: fieldValue(r, fd.Name)}
	switch {
	case k.v == nil:
	case fd.Type == "datetime":
		t, err := parseAnyTime(k.v)
		k.t, k.tOK = t, err == nil
	case stringCompared(fd.Type):
		s, ok := k.v.(string)
		k.s, k.sOK = strings.ToLower(s), ok
	}
	return k
}

// compareKeys orders two keys as compareValues orders their values, nulls
// first, and incomparable values as equal.
func compareKeys(typ string, a, b sortKey) int {
	switch {
	case a.v == nil && b.v == nil:
		return 0
	case a.v == nil:
		return -1
	case b.v == nil:
		return 1
	case typ == "datetime":
		if a.tOK && b.tOK {
			return a.t.Compare(b.t)
		}
		return 0
	case stringCompared(typ):
		if a.sOK && b.sOK {
			return strings.Compare(a.s, b.s)
		}
		return 0
	}
	c, _ := compareValues(typ, a.v, b.v)
	return c
}

// foldKey is the case-insensitive index key (see fold.Key).
func foldKey(s string) string { return fold.Key(s) }

// setField sets a record's field, keeping the unique-field indexes in
// step; s.mu is held.
func (s *Server) setField(r *record, name string, v any) {
	if idx := s.objOf(r).uniq[name]; idx != nil {
		if old, ok := r.fields[name].(string); ok {
			unindex(idx, old, r)
		}
		if nv, ok := v.(string); ok {
			k := foldKey(nv)
			idx[k] = append(idx[k], r)
		}
	}
	r.fields[name] = v
}

func unindex(idx map[string][]*record, v string, r *record) {
	k := foldKey(v)
	idx[k] = slices.DeleteFunc(idx[k], func(x *record) bool { return x == r })
	if len(idx[k]) == 0 {
		delete(idx, k)
	}
}

// indexRecord adds r's unique-field values to the indexes; s.mu is held.
func (s *Server) indexRecord(r *record) {
	for name, idx := range s.objOf(r).uniq {
		if v, ok := r.fields[name].(string); ok {
			k := foldKey(v)
			idx[k] = append(idx[k], r)
		}
	}
}

// unindexRecord drops r's unique-field values from the indexes; s.mu is held.
func (s *Server) unindexRecord(r *record) {
	for name, idx := range s.objOf(r).uniq {
		if v, ok := r.fields[name].(string); ok {
			unindex(idx, v, r)
		}
	}
}
