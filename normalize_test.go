package crmsync

import (
	"encoding/json"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"strings"
	"testing"
	"time"
)

func TestNormalize(t *testing.T) {
	tests := []struct {
		typ  FieldType
		in   any
		want any
	}{
		{TypeString, "  Ada ", "Ada"},
		{TypeString, "", nil},
		{TypeString, "   ", nil},
		{TypeString, nil, nil},
		{TypeString, 42.0, "42"},
		{TypeString, true, "true"},
		{TypeNumber, "42", 42.0},
		{TypeNumber, 42.0, 42.0},
		{TypeNumber, 42, 42.0},
		{TypeNumber, " 42.50 ", 42.5},
		{TypeNumber, "-0", 0.0},
		{TypeNumber, json.Number("7"), 7.0},
		{TypeNumber, "", nil},
		{TypeBool, "true", true},
		{TypeBool, "TRUE", true},
		{TypeBool, true, true},
		{TypeBool, "false", false},
		{TypeBool, "0", false},
		{TypeBool, 1.0, true},
		{TypeBool, "", nil},
		{TypeDate, "2026-01-15", "2026-01-15"},
		{TypeDate, "1768435200000", "2026-01-15"},
		{TypeDate, 1768435200000.0, "2026-01-15"},
		{TypeDate, "2026-01-15T00:00:00Z", "2026-01-15"},
		{TypeDate, "2026-01-15T23:30:00.000-0200", "2026-01-16"},
		{TypeDateTime, "2026-01-15T10:00:00Z", "2026-01-15T10:00:00.000Z"},
		{TypeDateTime, "2026-01-15T10:00:00.123456Z", "2026-01-15T10:00:00.123Z"},
		{TypeDateTime, "2026-01-15T11:00:00.000+0100", "2026-01-15T10:00:00.000Z"},
		{TypeDateTime, "2026-01-15T10:00:00.000+0000", "2026-01-15T10:00:00.000Z"},
		{TypeDateTime, "2026-01-15T12:00:00+02:00", "2026-01-15T10:00:00.000Z"},
		{TypeDateTime, "1768471200000", "2026-01-15T10:00:00.000Z"},
		{TypeDateTime, "2026-01-15", "2026-01-15T00:00:00.000Z"},
		{TypeDateTime, time.Date(2026, 1, 15, 10, 0, 0, 0, time.UTC), "2026-01-15T10:00:00.000Z"},
		{TypeEnum, " lead ", "lead"},
		{TypeMultiEnum, "b;a", "a;b"},
		{TypeMultiEnum, " a ; b;;a ", "a;b"},
		{TypeMultiEnum, ";", nil},
		{TypeMultiEnum, []any{"c", "a"}, "a;c"},
		{TypeReference, "0055e000001AbCdAAK", "0055e000001AbCdAAK"},
		{TypeOther, 3.0, "3"},
		{TypeOther, " x ", "x"},
	}
	for _, tt := range tests {
		got, err := Normalize(tt.typ, tt.in)
		if err != nil || got != tt.want {
			t.Errorf("Normalize(%s, %#v) = %#v, %v, want %#v", tt.typ, tt.in, got, err, tt.want)
			continue
		}
		again, err := Normalize(tt.typ, got)
		if err != nil || again != got {
			t.Errorf("Normalize(%s, %#v) = %#v, %v; not idempotent", tt.typ, got, again, err)
		}
	}
}

func TestNormalizeRejects(t *testing.T) {
	tests := []struct {
		typ FieldType
		in  any
	}{
		{TypeNumber, "42abc"},
		{TypeNumber, "NaN"},
		{TypeNumber, "Inf"},
		{TypeNumber, true},
		{TypeBool, "yes please"},
		{TypeBool, 2.0},
		{TypeDate, "15/01/2026"},
		{TypeDate, "2026-13-45"},
		{TypeDateTime, "yesterday"},
		{TypeDateTime, "99999999999999999999"},
		{TypeDateTime, 1.5},
		{TypeString, map[string]any{"a": 1}},
		{TypeMultiEnum, []any{"a", 1.0}},
	}
	for _, tt := range tests {
		got, err := Normalize(tt.typ, tt.in)
		if err == nil {
			t.Errorf("Normalize(%s, %#v) = %#v, want an error", tt.typ, tt.in, got)
			continue
		}
		if s, ok := tt.in.(string); ok && strings.Contains(err.Error(), s) {
			t.Errorf("Normalize(%s, %q) error %q quotes the value", tt.typ, s, err)
		}
	}
}

// Both built-in encodings must come back as the same canonical value.
func TestEncodingsRoundTrip(t *testing.T) {
	values := map[FieldType][]any{
		TypeString:    {"Ada", nil},
		TypeNumber:    {42.0, 0.1, -3.25, 1e21, 123456789.125, nil},
		TypeBool:      {true, false, nil},
		TypeDate:      {"2026-01-15", nil},
		TypeDateTime:  {"2026-01-15T10:00:00.123Z", nil},
		TypeEnum:      {"lead"},
		TypeMultiEnum: {"a;b;c"},
		TypeReference: {"005000000000001AAA"},
		TypeOther:     {"x", nil},
	}
	for typ, vs := range values {
		for _, v := range vs {
			for name, enc := range map[string]Encoding{"string": StringEncoding{}, "typed": TypedEncoding{}} {
				out := enc.Encode(typ, v)
				if name == "string" {
					_, ok := out.(string)
					assert.True(t, ok, "StringEncoding{}.Encode(%s, %#v) = %#v, not a string", typ, v, out)
				}
				got, err := Normalize(typ, out)
				if err != nil || got != v {
					t.Errorf("%s encoding of %s %#v = %#v normalises to %#v, %v", name, typ, v, out, got, err)
				}
			}
		}
	}
	got := (TypedEncoding{}).Encode(TypeDateTime, "2026-01-15T10:00:00.123Z")
	assert.Equal(t, "2026-01-15T10:00:00.123+0000", got, "TypedEncoding{} datetime = %#v, want Salesforce layout", got)
	got = (StringEncoding{}).Encode(TypeString, nil)
	assert.Empty(t, got, "StringEncoding{} clears with %#v, want \"\"", got)
	if got := (TypedEncoding{}).Encode(TypeString, nil); got != nil {
		t.Errorf("TypedEncoding{} clears with %#v, want nil", got)
	}
}

func TestValueErrorNamesFieldNotValue(t *testing.T) {
	err := error(&ValueError{Field: "Lead_Score__c", Side: "salesforce", Type: TypeNumber, Reason: "not a finite decimal number"})
	assert.Contains(t, err.Error(), "Lead_Score__c", "ValueError = %q, want the field and side named", err)
	assert.Contains(t, err.Error(), "salesforce", "ValueError = %q, want the field and side named", err)
	var ve *ValueError
	require.ErrorAs(t, err, &ve, "errors.As(*ValueError) failed")
}

var fuzzTypes = []FieldType{TypeString, TypeNumber, TypeBool, TypeDate, TypeDateTime, TypeEnum, TypeMultiEnum, TypeReference, TypeOther}

// FuzzNormalize checks that the normaliser never panics, is idempotent, never
// quotes the value in its errors, and that both encodings of a normalised
// value normalise back to it.
func FuzzNormalize(f *testing.F) {
	for _, s := range []string{"42", "42abc", "true", "2026-01-15", "2026-01-15T10:00:00Z",
		"2026-01-15T11:00:00.000+0100", "1768471200000", "b;a", " ", "0x1p-2", "1e400", "-0"} {
		f.Add(uint8(1), s)
	}
	f.Fuzz(func(t *testing.T, ti uint8, s string) {
		typ := fuzzTypes[int(ti)%len(fuzzTypes)]
		v, err := Normalize(typ, s)
		if err != nil {
			// The fixed wording may hold the value by chance ("true or"
			// in "not true or false"): it is quoted only if the message
			// for another bad value ("\x00") does not hold it too.
			wording := ""
			if _, serr := Normalize(typ, "\x00"); serr != nil {
				wording = serr.Error()
			}
			if len(s) > 3 && strings.Contains(err.Error(), s) && !strings.Contains(wording, s) {
				t.Fatalf("error %q quotes the value", err)
			}
			return
		}
		again, err := Normalize(typ, v)
		if err != nil || again != v {
			t.Fatalf("Normalize(%s, %#v) = %#v, %v: not idempotent", typ, v, again, err)
		}
		for _, enc := range []Encoding{StringEncoding{}, TypedEncoding{}} {
			got, err := Normalize(typ, enc.Encode(typ, v))
			if err != nil || got != v {
				t.Fatalf("encoding %s %#v normalises to %#v, %v", typ, v, got, err)
			}
		}
		_, err = json.Marshal(v)
		require.NoError(t, err, "canonical %s value does not marshal", typ)
	})
}
