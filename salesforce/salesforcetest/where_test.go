package salesforcetest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/crmsync/crmsync"
	"github.com/stretchr/testify/require"
	"pgregory.net/rapid"
)

// The reference implementations below are the fake's earlier, unindexed
// code, kept as oracles: the compiled conditions, sort keys and indexes
// must agree with them on every input.

// refEval evaluates a condition on r; types maps canonical field names to types
// and canon maps lower-case names to canonical ones.
func refEval(e expr, r *record, fields map[string]fieldDef) (bool, error) {
	switch x := e.(type) {
	case nil:
		return true, nil
	case andExpr:
		l, err := refEval(x.l, r, fields)
		if err != nil || !l {
			return false, err
		}
		return refEval(x.r, r, fields)
	case orExpr:
		l, err := refEval(x.l, r, fields)
		if err != nil || l {
			return l, err
		}
		return refEval(x.r, r, fields)
	case notExpr:
		v, err := refEval(x.e, r, fields)
		return !v, err
	case cmpExpr:
		fd := fields[strings.ToLower(x.field)]
		have := r.value(fd.Name)
		if s, ok := have.(string); ok && s == "" {
			have = nil
		}
		if x.op == "in" || x.op == "notin" {
			found := false
			for _, t := range x.vals {
				want, err := literal(fd.Type, t)
				if err != nil {
					return false, err
				}
				if want == nil {
					found = found || have == nil
					continue
				}
				if c, ok := compareValues(fd.Type, have, want); ok && c == 0 {
					found = true
				}
			}
			return found == (x.op == "in"), nil
		}
		want, err := literal(fd.Type, x.vals[0])
		if err != nil {
			return false, err
		}
		if want == nil {
			switch x.op {
			case "=":
				return have == nil, nil
			case "!=":
				return have != nil, nil
			}
			return false, fmt.Errorf("null only works with = and !=")
		}
		if have == nil {
			return x.op == "!=", nil
		}
		c, ok := compareValues(fd.Type, have, want)
		if !ok {
			return false, nil
		}
		switch x.op {
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
		return false, fmt.Errorf("unknown operator %s", x.op)
	}
	return false, fmt.Errorf("bad condition")
}

// refCompare is the earlier ORDER BY comparison of two records on one field.
func refCompare(fd fieldDef, x, y *record) int {
	a, b := x.value(fd.Name), y.value(fd.Name)
	c := 0
	switch {
	case a == nil && b == nil:
	case a == nil:
		c = -1
	case b == nil:
		c = 1
	default:
		c, _ = compareValues(fd.Type, a, b)
	}
	return c
}

// refFindExt is the earlier linear findExt.
func refFindExt(s *Server, field, v string, except *record) *record {
	for _, id := range s.order {
		rec := s.records[id]
		if rec == except || rec.deleted {
			continue
		}
		if have, ok := rec.fields[field].(string); ok && strings.EqualFold(have, v) {
			return rec
		}
	}
	return nil
}

var (
	testFields = func() map[string]fieldDef {
		m := map[string]fieldDef{}
		for _, fd := range contactFields("HubSpot_Id__c") {
			m[strings.ToLower(fd.Name)] = fd
		}
		m["owner__c"] = fieldDef{Name: "Owner__c", Type: "reference"}
		return m
	}()
	fieldNames = []string{"Id", "IsDeleted", "Email", "lastname", "LeadSource", "DoNotCall", "Score__c", "Birthdate",
		"Last_Synced__c", "HubSpot_Id__c", "CreatedDate", "SystemModstamp", "LastModifiedDate", "Owner__c"}
	literals = []string{"'a@x.com'", "'A@X.COM'", "'b'", "''", "'Web'", "'" + newID(1) + "'", "'" + strings.ToLower(newID(2)) + "'", "'2026-03-02'",
		"2.5", "1", "-3", "true", "FALSE", "null", "NULL", "2026-03-02T09:00:00Z", "2026-03-02T09:00:00.000+0000",
		"2026-03-02T09:00:00.001-01:00", "2026-03-02T09:00:00.001Z", "2026-03-02"}
	fieldValues = []any{nil, "", "a@x.com", "A@x.Com", "b", "Web", "003Fk0000000001AAA", "003fk0000000001aaa",
		"2026-03-02", "2026-03-02T09:00:00.000+0000", "2026-03-02T10:00:00.001Z", "not a time", 2.5, 1.0, -3.0, true, false}
	stamps = []time.Time{
		time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC),
		time.Date(2026, 3, 2, 9, 0, 0, 1_500_000, time.UTC),
		time.Date(2026, 3, 2, 9, 0, 0, 1_000_000, time.UTC),
		time.Date(2026, 3, 2, 10, 0, 0, 999_999_999, time.FixedZone("x", 3600)),
		time.Date(2026, 3, 2, 10, 0, 0, 1_000_000, time.UTC),
		time.Date(12026, 1, 1, 0, 0, 0, 0, time.UTC),
	}
)

func genCond(t *rapid.T, depth int) string {
	kind := rapid.IntRange(0, 6).Draw(t, "kind")
	if depth <= 0 {
		kind = rapid.IntRange(0, 2).Draw(t, "leaf")
	}
	field := rapid.SampledFrom(fieldNames).Draw(t, "field")
	lit := func() string { return rapid.SampledFrom(literals).Draw(t, "lit") }
	switch kind {
	case 0, 1:
		op := rapid.SampledFrom([]string{"=", "!=", "<>", "<", "<=", ">", ">=", "=="}).Draw(t, "op")
		return field + " " + op + " " + lit()
	case 2:
		vals := []string{lit()}
		for range rapid.IntRange(0, 3).Draw(t, "more") {
			vals = append(vals, lit())
		}
		in := " IN "
		if rapid.Bool().Draw(t, "notin") {
			in = " NOT IN "
		}
		return field + in + "(" + strings.Join(vals, ", ") + ")"
	case 3:
		return genCond(t, depth-1) + " AND " + genCond(t, depth-1)
	case 4:
		return genCond(t, depth-1) + " OR " + genCond(t, depth-1)
	case 5:
		return "NOT " + genCond(t, depth-1)
	}
	return "(" + genCond(t, depth-1) + ")"
}

func genRecord(t *rapid.T, seq int) *record {
	r := &record{id: newID(seq), seq: seq, fields: map[string]any{},
		created:  rapid.SampledFrom(stamps).Draw(t, "created"),
		modified: rapid.SampledFrom(stamps).Draw(t, "modified"),
		stamp:    rapid.SampledFrom(stamps).Draw(t, "stamp"),
		deleted:  rapid.Bool().Draw(t, "deleted")}
	for _, name := range fieldNames[2:] {
		fd := testFields[strings.ToLower(name)]
		if v := rapid.SampledFrom(fieldValues).Draw(t, "value"); v != nil {
			r.fields[fd.Name] = v
		}
	}
	return r
}

func TestCompiledWhereMatchesReference(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		cond := genCond(t, 3)
		q, err := parseSOQL("SELECT Id FROM Contact WHERE " + cond)
		require.NoError(t, err, "generated condition %q does not parse", cond)
		p := compile(q.where, testFields)
		for i := range 6 {
			r := genRecord(t, i+1)
			got, gotErr := p.eval(r)
			want, wantErr := refEval(q.where, r, testFields)
			require.Equal(t, want, got, "%s on %v (stamps %v %v %v): got %v, %v; reference %v, %v", cond, r.fields, r.created, r.modified, r.stamp, got, gotErr, want, wantErr)
			require.Equal(t, fmt.Sprint(wantErr), fmt.Sprint(gotErr), "%s on %v (stamps %v %v %v): got %v, %v; reference %v, %v", cond, r.fields, r.created, r.modified, r.stamp, got, gotErr, want, wantErr)
		}
	})
}

func TestSortKeysMatchReference(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		fd := testFields[strings.ToLower(rapid.SampledFrom(fieldNames).Draw(t, "field"))]
		a, b := genRecord(t, 1), genRecord(t, 2)
		got := compareKeys(fd.Type, newSortKey(a, fd), newSortKey(b, fd))
		want := refCompare(fd, a, b)
		require.Equal(t, want, got, "%s: %v vs %v: got %d, reference %d", fd.Name, a.value(fd.Name), b.value(fd.Name), got, want)
	})
}

// foldRunes mixes ASCII with runes whose case-folding orbits are unusual:
// the Kelvin sign and long s fold with ASCII letters, sigma has three forms,
// and invalid bytes decode as U+FFFD.
var foldRunes = []string{"a", "A", "k", "K", "\u212a", "s", "S", "\u017f", "\u03c3", "\u03c2", "\u03a3",
	"\u00df", "\u1e9e", "\u00e9", "\u00c9", "\ufffd", "\xff", "@", "1"}

func TestFoldKeyMatchesEqualFold(t *testing.T) {
	gen := rapid.Custom(func(t *rapid.T) string {
		return strings.Join(rapid.SliceOfN(rapid.SampledFrom(foldRunes), 0, 4).Draw(t, "runes"), "")
	})
	rapid.Check(t, func(t *rapid.T) {
		a, b := gen.Draw(t, "a"), gen.Draw(t, "b")
		got, want := foldKey(a) == foldKey(b), strings.EqualFold(a, b)
		require.Equal(t, want, got, "foldKey(%q) == foldKey(%q) is %v, EqualFold is %v", a, b, got, want)
	})
}

// TestIndexesStayInStep runs random seeds, edits, deletes, undeletes and
// collection writes (some rolled back) and checks every external-id and
// unique lookup against a linear scan after each.
func TestIndexesStayInStep(t *testing.T) {
	values := []string{"x1", "X1", "x2", "x3", "\u212a", "k"}
	rapid.Check(t, func(t *rapid.T) {
		s, err := New(Config{DailyLimit: 1 << 30, Fields: []Field{{Name: "Code__c", Type: "string", Unique: true}}})
		require.NoError(t, err)
		h := s.Handler()
		val := func(label string) any {
			if rapid.IntRange(0, 5).Draw(t, label+"-nil") == 0 {
				return nil
			}
			return rapid.SampledFrom(values).Draw(t, label)
		}
		ids := func() string {
			s.mu.Lock()
			defer s.mu.Unlock()
			if len(s.order) == 0 {
				return "003Fk0000000000AAA"
			}
			return rapid.SampledFrom(s.order).Draw(t, "id")
		}
		for range rapid.IntRange(1, 25).Draw(t, "steps") {
			switch rapid.IntRange(0, 5).Draw(t, "op") {
			case 0:
				s.Seed(crmsync.Fields{"LastName": "L", "HubSpot_Id__c": val("ext"), "Code__c": val("code")})
			case 1:
				_ = s.Edit(ids(), crmsync.Fields{rapid.SampledFrom([]string{"HubSpot_Id__c", "Code__c"}).Draw(t, "field"): val("edit")})
			case 2:
				_ = s.Delete(ids())
			case 3:
				_ = s.Undelete(ids())
			case 4, 5:
				var recs []string
				for range rapid.IntRange(1, 4).Draw(t, "n") {
					last := `"L"`
					if rapid.IntRange(0, 4).Draw(t, "bad") == 0 {
						last = `""` // fails the record
					}
					code, _ := json.Marshal(val("code"))
					ext, _ := json.Marshal(rapid.SampledFrom(values).Draw(t, "ext"))
					recs = append(recs, fmt.Sprintf(`{"attributes":{"type":"Contact"},"LastName":%s,"Code__c":%s,"HubSpot_Id__c":%s}`, last, code, ext))
				}
				body := fmt.Sprintf(`{"allOrNone":%v,"records":[%s]}`, rapid.Bool().Draw(t, "allOrNone"), strings.Join(recs, ","))
				req := httptest.NewRequest(http.MethodPatch, "/services/data/v60.0/composite/sobjects/Contact/HubSpot_Id__c", strings.NewReader(body))
				req.Header.Set("Authorization", "Bearer "+s.Token())
				w := httptest.NewRecorder()
				h.ServeHTTP(w, req)
				require.Equal(t, http.StatusOK, w.Code, "upsert: %d %s", w.Code, w.Body)
			}
			s.mu.Lock()
			for _, field := range []string{"HubSpot_Id__c", "Code__c"} {
				for _, v := range values {
					var except *record
					if len(s.order) > 0 {
						except = s.records[s.order[0]]
					}
					for _, ex := range []*record{nil, except} {
						if got, want := s.findExt(s.contact, field, v, ex), refFindExt(s, field, v, ex); got != want {
							s.mu.Unlock()
							t.Fatalf("findExt(%s, %q) = %v, linear scan finds %v", field, v, got, want)
						}
					}
				}
			}
			s.mu.Unlock()
		}
	})
}
