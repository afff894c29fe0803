package hubspottest

import (
	"bytes"
	"encoding/json"
	"math"
	"net/http"
	"net/http/httptest"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"pgregory.net/rapid"
)

// The reference implementations below are the fake's earlier code, kept as
// oracles: compiled filters, indexed lookups and the search order must
// agree with them on every input.

func refMatch(p *Property, props map[string]string, f filterJSON) bool {
	v, has := props[f.PropertyName]
	has = has && v != ""
	val := ""
	if f.Value != nil {
		val = *f.Value
	}
	switch f.Operator {
	case "HAS_PROPERTY":
		return has
	case "NOT_HAS_PROPERTY":
		return !has
	case "NEQ":
		return !has || refCompare(p, v, val) != 0
	case "NOT_IN":
		return !has || !refIn(p, v, f.Values)
	case "NOT_CONTAINS_TOKEN":
		return !has || !containsToken(v, val)
	}
	if !has {
		return false
	}
	switch f.Operator {
	case "EQ":
		return refCompare(p, v, val) == 0
	case "LT":
		return refCompare(p, v, val) < 0
	case "LTE":
		return refCompare(p, v, val) <= 0
	case "GT":
		return refCompare(p, v, val) > 0
	case "GTE":
		return refCompare(p, v, val) >= 0
	case "BETWEEN":
		hi := ""
		if f.HighValue != nil {
			hi = *f.HighValue
		}
		return refCompare(p, v, val) >= 0 && refCompare(p, v, hi) <= 0
	case "IN":
		return refIn(p, v, f.Values)
	case "CONTAINS_TOKEN":
		return containsToken(v, val)
	}
	return false
}

func refIn(p *Property, v string, values []string) bool {
	for _, x := range values {
		if refCompare(p, v, x) == 0 {
			return true
		}
	}
	return false
}

func refCompare(p *Property, a, b string) int {
	if p != nil {
		switch p.Type {
		case "datetime", "date":
			x, ok1 := refMillis(a)
			y, ok2 := refMillis(b)
			if ok1 && ok2 {
				return cmpInt(x, y)
			}
		case "number":
			x, err1 := strconv.ParseFloat(a, 64)
			y, err2 := strconv.ParseFloat(b, 64)
			if err1 == nil && err2 == nil && !math.IsNaN(x) && !math.IsNaN(y) {
				switch {
				case x < y:
					return -1
				case x > y:
					return 1
				}
				return 0
			}
		}
	}
	return strings.Compare(strings.ToLower(a), strings.ToLower(b))
}
func refMillis(s string) (int64, bool) {
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		return n, true
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t.UnixMilli(), true
	}
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t.UnixMilli(), true
	}
	return 0, false
}

// refFindBy is a linear findBy that picks the oldest live match.
func refFindBy(st *objectStore, prop, value string) *rec {
	for _, r := range st.order {
		if !r.archived && strings.EqualFold(r.props[prop], value) && value != "" {
			return r
		}
	}
	return nil
}

var (
	hsValues = []string{"", "12", "012", "+5", "-3", "1e2", "NaN", "0x10", "99999999999999999999", "1772442000000",
		"2026-03-02T09:00:00.000Z", "2026-03-02T09:00:00.5+01:00", "2026-03-02", "Abc", "abc def", "ABC", "a*"}
	hsProps = []*Property{
		{Name: "hs_object_id", Type: "number"}, {Name: "lastmodifieddate", Type: "datetime"}, {Name: "birthday", Type: "date"},
		{Name: "email", Type: "string"}, {Name: "lifecyclestage", Type: "enumeration"}, nil,
	}
)

func TestCompiledFiltersMatchReference(t *testing.T) {
	ops := make([]string, 0, len(operators))
	for op := range operators {
		ops = append(ops, op)
	}
	sort.Strings(ops)
	rapid.Check(t, func(t *rapid.T) {
		p := rapid.SampledFrom(hsProps).Draw(t, "prop")
		name := "unknown"
		if p != nil {
			name = p.Name
		}
		f := filterJSON{PropertyName: name, Operator: rapid.SampledFrom(ops).Draw(t, "op")}
		if rapid.IntRange(0, 4).Draw(t, "nilValue") > 0 {
			v := rapid.SampledFrom(hsValues).Draw(t, "value")
			f.Value = &v
		}
		if rapid.Bool().Draw(t, "hasHigh") {
			v := rapid.SampledFrom(hsValues).Draw(t, "high")
			f.HighValue = &v
		}
		f.Values = rapid.SliceOfN(rapid.SampledFrom(hsValues), 0, 3).Draw(t, "values")
		st := &objectStore{props: []*Property{p}}
		if p == nil {
			st.props = nil
		}
		var req searchJSON
		req.FilterGroups = append(req.FilterGroups, struct {
			Filters []filterJSON `json:"filters"`
		}{Filters: []filterJSON{f}})
		c := compileGroups(st, req)[0][0]
		for range 5 {
			props := map[string]string{}
			if rapid.IntRange(0, 5).Draw(t, "unset") > 0 {
				props[name] = rapid.SampledFrom(hsValues).Draw(t, "have")
			}
			got, want := c.match(props), refMatch(p, props, f)
			require.Equal(t, want, got, "%s %s %v/%v/%v on %q: got %v, reference %v", f.PropertyName, f.Operator, f.Value, f.HighValue, f.Values, props[name], got, want)
		}
	})
}

func TestMillisMatchesReference(t *testing.T) {
	for _, v := range append(hsValues, "-", "+", "1-2", "-0", "9223372036854775807", "9223372036854775808",
		"2026-02-28T23:59:59.999Z", "2024-02-29T00:00:00.000Z", "2026-02-29T00:00:00.000Z", "2026-04-31T00:00:00.000Z",
		"2026-13-01T00:00:00.000Z", "2026-00-01T00:00:00.000Z", "2026-01-00T00:00:00.000Z", "2026-01-01T24:00:00.000Z",
		"2026-01-01T00:60:00.000Z", "2026-01-01T00:00:60.000Z", "0000-01-01T00:00:00.000Z", "2026-01-01T00:00:00.0a0Z",
		"2026-01-01t00:00:00.000Z", "2026-01-01T00:00:00.000z", "+026-01-01T00:00:00.000Z", "2026-01-01T00:00:00,000Z") {
		got, gotOK := millis(v)
		want, wantOK := refMillis(v)
		assert.Equal(t, want, got, "millis(%q) = %d, %v; reference %d, %v", v, got, gotOK, want, wantOK)
		assert.Equal(t, wantOK, gotOK, "millis(%q) = %d, %v; reference %d, %v", v, got, gotOK, want, wantOK)
	}
}

func TestMillisOfStampsMatchesReference(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		b := []byte("2026-03-02T09:00:00.000Z")
		for _, i := range []int{0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18, 20, 21, 22} {
			if rapid.IntRange(0, 2).Draw(t, "change") == 0 {
				b[i] = byte(rapid.IntRange('0', '9').Draw(t, "digit"))
			}
		}
		v := string(b)
		got, gotOK := millis(v)
		want, wantOK := refMillis(v)
		require.Equal(t, want, got, "millis(%q) = %d, %v; reference %d, %v", v, got, gotOK, want, wantOK)
		require.Equal(t, wantOK, gotOK, "millis(%q) = %d, %v; reference %d, %v", v, got, gotOK, want, wantOK)
	})
}

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

func post(t *rapid.T, s *Server, p string, body any) (int, map[string]any) {
	raw, err := json.Marshal(body)
	require.NoError(t, err)
	req := httptest.NewRequest(http.MethodPost, p, bytes.NewReader(raw))
	req.Header.Set("Authorization", "Bearer "+DefaultToken)
	w := httptest.NewRecorder()
	s.Handler().ServeHTTP(w, req)
	var out map[string]any
	_ = json.Unmarshal(w.Body.Bytes(), &out)
	return w.Code, out
}

// TestIndexesStayInStep runs random seeds, edits, archives, restores and
// batch writes and checks lookups by email and by a unique property
// against a linear scan, and the search order against the earlier sort.
func TestIndexesStayInStep(t *testing.T) {
	values := []string{"a@x.io", "A@X.io", "b@x.io", "\u212a@x.io", "k@x.io"}
	rapid.Check(t, func(t *rapid.T) {
		clock := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
		s, err := New(Config{RateLimit: -1, SearchRateLimit: -1, DailyLimit: -1, Now: func() time.Time { clock = clock.Add(time.Millisecond); return clock }})
		require.NoError(t, err)
		s.DefineProperty("contacts", Property{Name: "code", Unique: true})
		st := s.store("contacts")
		val := func(label string) string {
			if rapid.IntRange(0, 5).Draw(t, label+"-empty") == 0 {
				return ""
			}
			return rapid.SampledFrom(values).Draw(t, label)
		}
		id := func() string {
			if len(st.order) == 0 {
				return "1"
			}
			return rapid.SampledFrom(st.order).Draw(t, "rec").id
		}
		for range rapid.IntRange(1, 25).Draw(t, "steps") {
			switch rapid.IntRange(0, 6).Draw(t, "op") {
			case 0:
				s.Seed("contacts", map[string]string{"email": val("email"), "code": val("code")})
			case 1:
				_ = s.Edit("contacts", id(), map[string]string{rapid.SampledFrom([]string{"email", "code"}).Draw(t, "prop"): val("edit")})
			case 2:
				_ = s.Archive("contacts", id())
			case 3:
				_ = s.Restore("contacts", id())
			case 4:
				if rapid.Bool().Draw(t, "renumber") {
					_ = s.Edit("contacts", id(), map[string]string{"hs_object_id": rapid.SampledFrom([]string{"1", "500", "x"}).Draw(t, "num")})
				}
			default:
				kind := rapid.SampledFrom([]string{"create", "update", "upsert"}).Draw(t, "kind")
				var inputs []map[string]any
				for range rapid.IntRange(1, 3).Draw(t, "n") {
					in := map[string]any{"objectWriteTraceId": "t", "properties": map[string]string{"code": val("code"), "firstname": "F"}}
					switch kind {
					case "update":
						in["id"], in["idProperty"] = val("id"), "email"
					case "upsert":
						in["id"], in["idProperty"] = val("id"), rapid.SampledFrom([]string{"email", "code"}).Draw(t, "idProperty")
					default:
						in["properties"].(map[string]string)["email"] = val("email")
					}
					inputs = append(inputs, in)
				}
				if code, out := post(t, s, "/crm/v3/objects/contacts/batch/"+kind, map[string]any{"inputs": inputs}); code >= 500 {
					t.Fatalf("%s: %d %v", kind, code, out)
				}
			}
			s.mu.Lock()
			for _, prop := range []string{"email", "code"} {
				for _, v := range append(values, "") {
					if got, want := s.findBy("contacts", prop, v), refFindBy(st, prop, v); got != want {
						s.mu.Unlock()
						t.Fatalf("findBy(%s, %q) = %v, linear scan finds %v", prop, v, got, want)
					}
				}
			}
			sp := st.prop("hs_object_id")
			var want []string
			for _, r := range st.order {
				if !r.archived {
					want = append(want, r.id)
				}
			}
			s.mu.Unlock()
			desc := rapid.Bool().Draw(t, "desc")
			sort.SliceStable(want, func(i, j int) bool {
				a, b := st.recs[want[i]], st.recs[want[j]]
				c := refCompare(sp, a.props["hs_object_id"], b.props["hs_object_id"])
				if c == 0 {
					c = cmpInt(a.num, b.num)
				}
				if desc {
					return c > 0
				}
				return c < 0
			})
			dir := "ASCENDING"
			if desc {
				dir = "DESCENDING"
			}
			_, out := post(t, s, "/crm/v3/objects/contacts/search", map[string]any{"limit": 200,
				"sorts": []any{map[string]any{"propertyName": "hs_object_id", "direction": dir}}})
			var got []string
			for _, r := range out["results"].([]any) {
				got = append(got, r.(map[string]any)["id"].(string))
			}
			require.Equal(t, strings.Join(want, ","), strings.Join(got, ","), "search order %v, want %v", got, want)
		}
	})
}
