package crmsync

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Numbers that float64 cannot hold exactly keep their digits from one CRM
// to the other: through Normalize, both encodings, and a step result's
// JSON round trip on replay.
func TestLargeNumbersKeepTheirDigits(t *testing.T) {
	const big = "123456789012345678"
	for _, in := range []any{big, json.Number(big), " " + big + " ", "+" + big, big + ".000"} {
		got, err := Normalize(TypeNumber, in)
		require.NoError(t, err)
		assert.Equal(t, json.Number(big), got, "Normalize(TypeNumber, %#v)", in)
		again, err := Normalize(TypeNumber, got)
		require.NoError(t, err)
		assert.Equal(t, got, again, "Normalize is idempotent")
		assert.Equal(t, big, StringEncoding{}.Encode(TypeNumber, got))
		out, err := json.Marshal(Fields{"n": TypedEncoding{}.Encode(TypeNumber, got)})
		require.NoError(t, err)
		assert.JSONEq(t, `{"n":`+big+`}`, string(out))
	}
	frac, err := Normalize(TypeNumber, "0.12345678901234567890")
	require.NoError(t, err)
	assert.Equal(t, json.Number("0.1234567890123456789"), frac)
	// Numbers float64 holds as written stay float64.
	for in, want := range map[any]float64{"42": 42, "19.99": 19.99, "0.1": 0.1, json.Number("7"): 7, "1e3": 1000} {
		got, err := Normalize(TypeNumber, in)
		require.NoError(t, err)
		assert.Equal(t, want, got, "Normalize(TypeNumber, %#v)", in)
	}
}

func TestFieldsJSONKeepsLargeNumbers(t *testing.T) {
	var r Record
	require.NoError(t, json.Unmarshal([]byte(`{"id":"1","fields":{"big":123456789012345678,"small":42.5,"s":"x","n":null,"b":true}}`), &r))
	assert.Equal(t, json.Number("123456789012345678"), r.Fields["big"])
	assert.Equal(t, 42.5, r.Fields["small"])
	assert.Equal(t, "x", r.Fields["s"])
	assert.Nil(t, r.Fields["n"])
	assert.Equal(t, true, r.Fields["b"])
	out, err := json.Marshal(r.Fields)
	require.NoError(t, err)
	assert.Contains(t, string(out), `"big":123456789012345678`)
}
