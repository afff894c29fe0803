package salesforce

import (
	"fmt"
	"regexp"
	"strings"
	"time"
)

// DateTimeLayout is the layout of Salesforce's JSON datetimes
// ("2026-01-05T10:11:12.000+0000").
const DateTimeLayout = "2006-01-02T15:04:05.000-0700"

// soqlDateTimeLayout is the layout of SOQL datetime literals, in UTC with
// milliseconds.
const soqlDateTimeLayout = "2006-01-02T15:04:05.000Z"

// identPattern matches SOQL field and object names: a letter, then letters,
// digits and underscores (custom names end in __c, __r and so on).
var identPattern = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_]{0,79}$`)

// ValidName reports an error naming name when it is not a valid sObject or
// field name; names are spliced into SOQL and URL paths, so nothing else is let
// through.
func ValidName(kind, name string) error {
	if !identPattern.MatchString(name) {
		return fmt.Errorf("salesforce: invalid %s name %q", kind, name)
	}
	return nil
}

// EscapeSOQL escapes s for use inside a single-quoted SOQL string literal:
// backslash, both quotes, and the control characters SOQL knows by name are
// backslash-escaped; other control characters are dropped, so that the
// literal can never end early or span lines.
func EscapeSOQL(s string) string {
	var b strings.Builder
	b.Grow(len(s) + 8)
	for _, r := range s {
		switch r {
		case '\\':
			b.WriteString(`\\`)
		case '\'':
			b.WriteString(`\'`)
		case '"':
			b.WriteString(`\"`)
		case '\n':
			b.WriteString(`\n`)
		case '\r':
			b.WriteString(`\r`)
		case '\t':
			b.WriteString(`\t`)
		case '\b':
			b.WriteString(`\b`)
		case '\f':
			b.WriteString(`\f`)
		default:
			if r < 0x20 || r == 0x7f {
				continue
			}
			b.WriteRune(r)
		}
	}
	return b.String()
}

// QuoteSOQL returns s as a single-quoted, escaped SOQL string literal.
func QuoteSOQL(s string) string { return "'" + EscapeSOQL(s) + "'" }

// FormatSOQLDateTime formats t as an unquoted SOQL datetime literal in UTC with
// milliseconds ("2026-01-05T10:11:12.000Z").
func FormatSOQLDateTime(t time.Time) string { return t.UTC().Format(soqlDateTimeLayout) }

// FormatDateTime formats t in Salesforce's JSON form ("2026-01-05T10:11:12.000+0000").
func FormatDateTime(t time.Time) string { return t.UTC().Format(DateTimeLayout) }

// ParseDateTime parses a Salesforce JSON datetime; it also accepts RFC 3339.
func ParseDateTime(s string) (time.Time, error) {
	if t, err := time.Parse(DateTimeLayout, s); err == nil {
		return t, nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("salesforce: bad datetime %q", s)
	}
	return t, nil
}
