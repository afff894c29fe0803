package crmsync

import (
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
)

// vouchSet picks, by stamp, the records known in a window whose bounds
// fall inside it, at most a batch, and says how far a check reaches when
// all of them are found as read: to the first bound of one it did not pick.
func TestVouchSet(t *testing.T) {
	es := []knownEntry{
		{id: "before", stamp: 5, bound: 12},  // stamped before the window
		{id: "a", stamp: 10, bound: 20},      // caps at 20
		{id: "wide", stamp: 11, bound: 1000}, // bound past the window: caps nothing
		{id: "b", stamp: 12, bound: 30},
		{id: "c", stamp: 25, bound: 40},
		{id: "d", stamp: 35, bound: 50},
		{id: "after", stamp: 100, bound: 110}, // stamped past the window
	}
	const from, to = 10, 100
	assert.Equal(t, int64(20), capEnd(es, from, to))

	stamps, ids, reach := vouchSet(es, from, to, 100, nil)
	assert.Equal(t, []string{"a", "b", "c", "d"}, ids)
	assert.Equal(t, map[string]int64{"a": 10, "b": 12, "c": 25, "d": 35}, stamps)
	assert.Equal(t, int64(to), reach, "all vouched for: the whole window")

	_, ids, reach = vouchSet(es, from, to, 2, nil)
	assert.Equal(t, []string{"a", "b"}, ids)
	assert.Equal(t, int64(40), reach, "c, not read, caps at its bound")

	_, ids, reach = vouchSet(es, from, to, 100, func(id string) bool { return id == "b" })
	assert.False(t, slices.Contains(ids, "b"))
	assert.Equal(t, int64(to), reach, "a record skipped (read again, gone) caps nothing")

	// A window whose records share one bound, more of them than a batch:
	// reading a batch takes the check no further.
	var same []knownEntry
	for i := range 150 {
		same = append(same, knownEntry{id: string(rune('A' + i)), stamp: int64(10 + i), bound: 500})
	}
	_, ids, reach = vouchSet(same, 0, 1000, 100, nil)
	assert.Len(t, ids, 100)
	assert.Equal(t, int64(500), reach)
	assert.Equal(t, capEnd(same, 0, 1000), reach)
}
