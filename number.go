package crmsync

import (
	"bytes"
	"encoding/json"
	"math"
	"math/big"
	"strconv"
	"strings"
)

// exactNumber returns the decimal number s as a float64 when float64 holds
// it as written (its shortest form is the same decimal value, as for 19.99
// or 42), else as a json.Number in canonical form, so that its digits
// survive: Salesforce numbers carry up to 18 digits, and 123456789012345678
// as float64 reads back as 123456789012345680. ok is false when s is not a
// finite decimal number.
func exactNumber(s string) (v any, ok bool) {
	f, err := strconv.ParseFloat(s, 64)
	if err != nil && !isRangeErr(err) || math.IsNaN(f) {
		return nil, false
	}
	want, okr := new(big.Rat).SetString(s)
	if !okr {
		return nil, false
	}
	if !math.IsInf(f, 0) {
		if f == 0 {
			f = 0 // no negative zero
		}
		got, _ := new(big.Rat).SetString(strconv.FormatFloat(f, 'g', -1, 64))
		if got != nil && want.Cmp(got) == 0 {
			return f, true
		}
	}
	return json.Number(canonicalDecimal(want)), true
}

func isRangeErr(err error) bool {
	ne, ok := err.(*strconv.NumError)
	return ok && ne.Err == strconv.ErrRange
}

// canonicalDecimal writes r, which came from decimal text and so has a
// finite decimal expansion, in plain decimal without trailing zeros.
func canonicalDecimal(r *big.Rat) string {
	if r.IsInt() {
		return r.Num().String()
	}
	for prec := 1; ; prec++ {
		s := r.FloatString(prec)
		if back, ok := new(big.Rat).SetString(s); ok && back.Cmp(r) == 0 {
			return strings.TrimRight(s, "0")
		}
	}
}

// UnmarshalJSON decodes field values as encoding/json does, except that a
// number float64 cannot hold exactly stays a json.Number with all its
// digits (a memoized step result read back on a resumed run keeps them).
func (f *Fields) UnmarshalJSON(b []byte) error {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var m map[string]any
	if err := d.Decode(&m); err != nil {
		return err
	}
	if m == nil {
		*f = nil
		return nil
	}
	for k, v := range m {
		m[k] = exactNumbers(v)
	}
	*f = m
	return nil
}

// exactNumbers turns the json.Numbers in v into float64 where float64
// holds them exactly.
func exactNumbers(v any) any {
	switch x := v.(type) {
	case json.Number:
		if n, ok := exactNumber(string(x)); ok {
			return n
		}
		return x
	case []any:
		for i := range x {
			x[i] = exactNumbers(x[i])
		}
	case map[string]any:
		for k := range x {
			x[k] = exactNumbers(x[k])
		}
	}
	return v
}
