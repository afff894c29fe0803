package salesforce

import (
	"github.com/stretchr/testify/require"
	"strings"
	"testing"
	"unicode/utf8"
)

// scanLiteral reads a single-quoted SOQL string literal at the start of s the
// way Salesforce's parser does and returns its value and length; ok is false
// when the literal is malformed (bad escape, raw line break, unterminated).
func scanLiteral(s string) (val string, n int, ok bool) {
	if !strings.HasPrefix(s, "'") {
		return "", 0, false
	}
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		switch c := s[i]; c {
		case '\\':
			if i+1 >= len(s) {
				return "", 0, false
			}
			i++
			switch s[i] {
			case 'n':
				b.WriteByte('\n')
			case 'r':
				b.WriteByte('\r')
			case 't':
				b.WriteByte('\t')
			case 'b':
				b.WriteByte('\b')
			case 'f':
				b.WriteByte('\f')
			case '\'', '"', '\\':
				b.WriteByte(s[i])
			default:
				return "", 0, false
			}
		case '\'':
			return b.String(), i + 1, true
		case '\n', '\r':
			return "", 0, false
		default:
			b.WriteByte(c)
		}
	}
	return "", 0, false
}

// dropControls removes the control characters EscapeSOQL cannot express.
func dropControls(s string) string {
	return strings.Map(func(r rune) rune {
		switch r {
		case '\n', '\r', '\t', '\b', '\f':
			return r
		}
		if r < 0x20 || r == 0x7f {
			return -1
		}
		return r
	}, s)
}

func FuzzEscapeSOQL(f *testing.F) {
	f.Add("x' OR Name != '")
	f.Fuzz(func(t *testing.T, s string) {
		lit := QuoteSOQL(s)
		query := "SELECT Id FROM Contact WHERE Email = " + lit + " AND LastName = 'x'"
		at := strings.Index(query, lit)
		val, n, ok := scanLiteral(query[at:])
		require.True(t, ok, "QuoteSOQL(%q) = %q is not a well-formed literal", s, lit)
		require.Equal(t, len(lit), n, "QuoteSOQL(%q) = %q closes after %d bytes, not at its end (%d)", s, lit, n, len(lit))
		require.Equal(t, " AND LastName = 'x'", query[at+n:], "the rest of the query changed: %q", query[at+n:])
		if want := dropControls(s); utf8.ValidString(s) && val != want {
			t.Fatalf("literal %q reads back as %q, want %q", lit, val, want)
		}
	})
}

func FuzzDecoders(f *testing.F) {
	f.Add([]byte(`{"done":true,"records":[]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, st := range []int{200, 201, 300, 400, 401, 500} {
			decodeAll(st, b)
		}
		if q, err := decodeQuery("query", 200, b); err == nil {
			for _, r := range q.Records {
				for k, v := range r.Fields {
					switch v.(type) {
					case string, float64, bool, nil:
					default:
						t.Fatalf("field %s has type %T", k, v)
					}
				}
			}
			if !q.Done && q.NextRecordsURL == "" {
				t.Fatal("not done without nextRecordsUrl accepted")
			}
		}
		if rs, err := decodeCollection("update", 200, b, -1); err == nil {
			for _, r := range rs {
				if !r.Success && len(r.Errors) == 0 {
					t.Fatal("failed result without an error")
				}
			}
		}
	})
}

func FuzzParseLimitInfo(f *testing.F) {
	f.Add("api-usage=1/2")
	f.Fuzz(func(t *testing.T, h string) {
		used, max, ok := parseLimitInfo(h)
		if ok && (used < 0 || max <= 0) {
			t.Fatalf("parseLimitInfo(%q) = %d/%d", h, used, max)
		}
	})
}

func FuzzPageToken(f *testing.F) {
	f.Add("sf1.e30")
	f.Fuzz(func(t *testing.T, s string) {
		p, err := decodePageToken(s)
		if err != nil {
			return
		}
		if p.URL != "" && (!strings.HasPrefix(p.URL, "/services/data/") || strings.Contains(p.URL, "..")) {
			t.Fatalf("token %q let through URL %q", s, p.URL)
		}
		back, err := decodePageToken(p.encode())
		require.NoError(t, err, "token round trip: %+v → %+v", p, back)
		require.Equal(t, p, back, "token round trip: %+v → %+v, %v", p, back, err)
	})
}
