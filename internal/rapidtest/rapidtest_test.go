package rapidtest

import (
	"flag"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"pgregory.net/rapid"
)

func TestReplayRunsTheSameCaseAndRestoresTheFlags(t *testing.T) {
	before := flag.Lookup("rapid.seed").Value.String()
	draw := func(seed uint64) []int {
		var got []int
		t.Run("", func(t *testing.T) {
			Replay(t, seed, 3, func(rt *rapid.T) { got = append(got, rapid.Int().Draw(rt, "n")) })
		})
		return got
	}
	a, b, c := draw(42), draw(42), draw(43)
	require.Len(t, a, 3, "checks is the number of cases")
	assert.Equal(t, a, b, "a seed replays the same cases")
	assert.NotEqual(t, a, c, "another seed draws others")
	assert.Equal(t, before, flag.Lookup("rapid.seed").Value.String(), "the flag is restored")
}
