package crmsync

import (
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"testing"
	"time"
)

// The ledger is shared by every key of a store: two teams' writes with the
// same ids, version and payload must not share an idempotency key.
func TestIdemKeyIncludesTheConcurrencyKey(t *testing.T) {
	src := Record{ID: "101", ModifiedAt: time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)}
	op := WriteOp{Kind: Update, ID: "003A", Fields: Fields{"Phone": "1"}}
	a, b := idemKey("team-1", "hubspot", "salesforce", src, op), idemKey("team-2", "hubspot", "salesforce", src, op)
	require.NotEqual(t, b, a, "idemKey is %s for both teams", a)
	again := idemKey("team-1", "hubspot", "salesforce", src, op)
	assert.Equal(t, a, again, "idemKey is not deterministic: %s then %s", a, again)
	op2 := op
	op2.Fields = Fields{"Phone": "2"}
	assert.NotEqual(t, a, idemKey("team-1", "hubspot", "salesforce", src, op2), "idemKey ignores the payload")
}
