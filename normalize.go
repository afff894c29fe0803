package crmsync

import (
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// ValueError reports a field value that cannot be read as its field's type,
// such as "42abc" for a number field. It names the field, the side and the
// type, never the value: record values are personal data.
type ValueError struct {
	// Field is the field's name on Side (or the rule name for the base).
	Field string
	// Side is the system the value came from, or "base" for the stored snapshot.
	Side string
	// Type is the type the value should have had.
	Type FieldType
	// Reason says what is wrong, without quoting the value.
	Reason string
}

func (e *ValueError) Error() string {
	msg := fmt.Sprintf("crmsync: field %q on %s: not a valid %s", e.Field, e.Side, e.Type)
	if e.Reason != "" {
		msg += ": " + e.Reason
	}
	return msg
}

// Canonical layouts. Normalised dates are "2006-01-02" strings and normalised
// datetimes are UTC strings with milliseconds, so that they survive a JSON
// round trip through a Store unchanged.
const (
	DateLayout     = "2006-01-02"
	DateTimeLayout = "2006-01-02T15:04:05.000Z"
	// SalesforceDateTimeLayout is the datetime layout of Salesforce's REST API.
	SalesforceDateTimeLayout = "2006-01-02T15:04:05.000-0700"
)

// errReason is an internal error whose text never contains the value.
type errReason string

func (e errReason) Error() string { return string(e) }

// Normalize returns v in the canonical form of type t, so that the encodings
// of both CRMs compare equal: HubSpot's strings and Salesforce's typed JSON
// values. Canonical values are nil (cleared), string, float64, json.Number
// or bool:
//
//   - every type: nil, "" and blank strings are nil (cleared); strings are trimmed;
//   - TypeNumber: a float64 ("42" and 42.0 are both 42), or a json.Number in
//     plain decimal for a number float64 cannot hold as written (more than
//     about 15 significant digits), so that no digit is lost;
//   - TypeBool: a bool ("true", "TRUE", true, "1" and 1 are true);
//   - TypeDate: a "2006-01-02" string (from dates, ISO or Salesforce
//     datetimes, or epoch milliseconds, taking the UTC day);
//   - TypeDateTime: a UTC "2006-01-02T15:04:05.000Z" string (from RFC 3339,
//     Salesforce's "2006-01-02T15:04:05.000+0000", dates, or epoch milliseconds);
//   - TypeMultiEnum: the ";"-separated items trimmed, deduplicated and sorted;
//   - TypeReferences: likewise, from a ";"-separated string or a list of ids;
//   - TypeString, TypeEnum, TypeReference, TypeOther and unknown types: a
//     trimmed string (numbers, bools and times are formatted), so that
//     HubSpot's strings and Salesforce's typed values compare as text.
//
// A value that cannot be read as t returns an error that does not quote it.
// Normalize is idempotent: Normalize(t, Normalize(t, v)) == Normalize(t, v).
func Normalize(t FieldType, v any) (any, error) {
	if t == TypeReferences {
		v = joinIDs(v)
	}
	v, err := scalar(v)
	if err != nil {
		return nil, err
	}
	if s, ok := v.(string); ok {
		s = strings.TrimSpace(s)
		if s == "" {
			return nil, nil
		}
		v = s
	}
	if v == nil {
		return nil, nil
	}
	switch t {
	case TypeNumber:
		return normNumber(v)
	case TypeBool:
		return normBool(v)
	case TypeDate:
		tm, dateOnly, err := normTime(v)
		if err != nil {
			return nil, err
		}
		if !dateOnly {
			tm = tm.UTC()
		}
		if tm.Year() < 1 || tm.Year() > 9999 {
			return nil, errReason("year out of range")
		}
		return tm.Format(DateLayout), nil
	case TypeDateTime:
		tm, _, err := normTime(v)
		if err != nil {
			return nil, err
		}
		tm = tm.UTC().Truncate(time.Millisecond)
		if tm.Year() < 1 || tm.Year() > 9999 {
			return nil, errReason("year out of range")
		}
		return tm.Format(DateTimeLayout), nil
	case TypeMultiEnum, TypeReferences:
		s, err := normText(v)
		if err != nil {
			return nil, err
		}
		items := splitMulti(s.(string))
		if len(items) == 0 {
			return nil, nil
		}
		return strings.Join(items, ";"), nil
	default:
		return normText(v)
	}
}

// scalar reduces the Go and JSON forms a caller may hand in to nil, string,
// float64, bool or time.Time.
func scalar(v any) (any, error) {
	switch x := v.(type) {
	case nil, string, bool, time.Time:
		return x, nil
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return nil, errReason("not a finite number")
		}
		if x == 0 {
			return 0.0, nil // no negative zero
		}
		return x, nil
	case float32:
		return scalar(float64(x))
	case int:
		return float64(x), nil
	case int32:
		return float64(x), nil
	case int64:
		return float64(x), nil
	case uint:
		return float64(x), nil
	case uint32:
		return float64(x), nil
	case uint64:
		return float64(x), nil
	case json.Number:
		return x.String(), nil
	case []string:
		return strings.Join(x, ";"), nil
	case []any:
		parts := make([]string, 0, len(x))
		for _, e := range x {
			s, ok := e.(string)
			if !ok {
				return nil, errReason("list holds a non-string item")
			}
			parts = append(parts, s)
		}
		return strings.Join(parts, ";"), nil
	default:
		return nil, errReason(fmt.Sprintf("unsupported Go type %T", v))
	}
}

func normNumber(v any) (any, error) {
	switch x := v.(type) {
	case float64:
		return x, nil
	case string:
		n, ok := exactNumber(x)
		if !ok {
			return nil, errReason("not a finite decimal number")
		}
		return n, nil
	default:
		return nil, errReason(fmt.Sprintf("a %T is not a number", v))
	}
}

func normBool(v any) (any, error) {
	switch x := v.(type) {
	case bool:
		return x, nil
	case float64:
		switch x {
		case 1:
			return true, nil
		case 0:
			return false, nil
		}
	case string:
		switch strings.ToLower(x) {
		case "true", "1":
			return true, nil
		case "false", "0":
			return false, nil
		}
	}
	return nil, errReason("not true or false")
}

// dateTimeLayouts are the datetime forms either CRM sends.
var dateTimeLayouts = []string{
	time.RFC3339Nano,
	SalesforceDateTimeLayout,
	"2006-01-02T15:04:05-0700",
	"2006-01-02T15:04:05.999999999-0700",
	"2006-01-02T15:04:05.999999999",
	"2006-01-02T15:04:05",
}

// normTime reads a date or datetime; dateOnly reports a value with no time
// of day, whose calendar day is kept as written.
func normTime(v any) (tm time.Time, dateOnly bool, err error) {
	switch x := v.(type) {
	case time.Time:
		return x, false, nil
	case float64:
		return epochMillis(x)
	case string:
		if isDigits(x) {
			if len(x) > 16 {
				return time.Time{}, false, errReason("epoch milliseconds out of range")
			}
			ms, err := strconv.ParseInt(x, 10, 64)
			if err != nil {
				return time.Time{}, false, errReason("epoch milliseconds out of range")
			}
			return epochMillis(float64(ms))
		}
		if len(x) == len(DateLayout) {
			if d, err := time.Parse(DateLayout, x); err == nil {
				return d, true, nil
			}
		}
		for _, layout := range dateTimeLayouts {
			if d, err := time.Parse(layout, x); err == nil {
				return d, false, nil
			}
		}
		return time.Time{}, false, errReason("not a date or datetime in a known format")
	default:
		return time.Time{}, false, errReason(fmt.Sprintf("a %T is not a date", v))
	}
}

// maxEpochMillis bounds epoch milliseconds to years 0001 to 9999.
const maxEpochMillis = 253402300799999

func epochMillis(ms float64) (time.Time, bool, error) {
	if ms != math.Trunc(ms) || ms > maxEpochMillis || ms < -62135596800000 {
		return time.Time{}, false, errReason("epoch milliseconds out of range")
	}
	return time.UnixMilli(int64(ms)).UTC(), false, nil
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func normText(v any) (any, error) {
	switch x := v.(type) {
	case string:
		return x, nil
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64), nil
	case bool:
		return strconv.FormatBool(x), nil
	case time.Time:
		return x.UTC().Truncate(time.Millisecond).Format(DateTimeLayout), nil
	default:
		return nil, errReason(fmt.Sprintf("a %T is not text", v))
	}
}

// splitMulti splits a ";" list into trimmed, deduplicated, sorted items.
func splitMulti(s string) []string {
	var items []string
	for _, it := range strings.Split(s, ";") {
		if it = strings.TrimSpace(it); it != "" {
			items = append(items, it)
		}
	}
	slices.Sort(items)
	return slices.Compact(items)
}

// Encoding turns canonical values (see [Normalize]) into the values one CRM
// takes in a write. A nil value means "clear the field".
type Encoding interface {
	Encode(t FieldType, v any) any
}

// EncodingFunc adapts a func to an [Encoding].
type EncodingFunc func(t FieldType, v any) any

// Encode calls f.
func (f EncodingFunc) Encode(t FieldType, v any) any { return f(t, v) }

// StringEncoding writes every value as a string and clears with "", as the
// HubSpot API takes them: numbers in plain decimal, bools "true"/"false",
// dates "2006-01-02", datetimes ISO 8601 UTC with milliseconds, multi-select
// lists ";"-separated.
type StringEncoding struct{}

// Encode implements [Encoding].
func (StringEncoding) Encode(t FieldType, v any) any { return encodeString(t, v) }

// TypedEncoding writes typed JSON values and clears with nil, as the
// Salesforce API takes them: numbers as float64, bools as bool, dates
// "2006-01-02", datetimes "2006-01-02T15:04:05.000+0000", multi-select lists
// ";"-separated.
type TypedEncoding struct{}

// Encode implements [Encoding].
func (TypedEncoding) Encode(t FieldType, v any) any { return encodeTyped(t, v) }

func encodeString(t FieldType, v any) any {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return x
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	case bool:
		return strconv.FormatBool(x)
	default:
		return fmt.Sprint(x)
	}
}

func encodeTyped(t FieldType, v any) any {
	if s, ok := v.(string); ok && t == TypeDateTime {
		if tm, err := time.Parse(DateTimeLayout, s); err == nil {
			return tm.Format(SalesforceDateTimeLayout)
		}
	}
	return v
}

// builtinEncoding is the encoding of the systems crmsync ships clients for.
func builtinEncoding(system string) Encoding {
	switch system {
	case "hubspot":
		return StringEncoding{}
	default:
		return TypedEncoding{}
	}
}
