package salesforce_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/salesforce"
	"github.com/crmsync/crmsync/salesforce/salesforcetest"
)

// With SkipOwnWrites, a change read asking for others' changes only leaves
// out the records the token's user (learnt once from userinfo) changed
// last, and keeps those a person changed after the client's write; without
// OthersOnly, or for deleted records, everything is listed.
func TestChangesOthersOnlyLeavesOutOwnWrites(t *testing.T) {
	f := setup(t, nil, func(c *salesforce.Config) { c.SkipOwnWrites = true })
	assert.True(t, f.c.FiltersOwnWrites())
	since := f.clk.Now()
	ids := f.srv.Seed(crmsync.Fields{"LastName": "Person"}, crmsync.Fields{"LastName": "Written"}, crmsync.Fields{"LastName": "Both"})
	f.clk.Advance(time.Second)
	res, err := f.c.Write(ctx, "Contact", []crmsync.WriteOp{
		{Kind: crmsync.Update, ID: ids[1], Fields: crmsync.Fields{"Title": "by the sync"}},
		{Kind: crmsync.Update, ID: ids[2], Fields: crmsync.Fields{"Title": "by the sync"}},
	})
	require.NoError(t, err)
	require.NoError(t, res[0].Err)
	f.clk.Advance(time.Second)
	require.NoError(t, f.srv.Edit(ids[2], crmsync.Fields{"Title": "by a person"}))
	f.clk.Advance(time.Second)

	q := crmsync.ChangeQuery{Object: "Contact", Since: since, Until: f.clk.Now(), OthersOnly: true}
	got := map[string]bool{}
	for _, r := range drain(t, f.c, q, nil) {
		got[r.ID] = true
	}
	assert.Equal(t, map[string]bool{ids[0]: true, ids[2]: true}, got, "the record only the sync changed last is left out")
	assert.Equal(t, 1, f.srv.Calls()["userinfo"], "the user id is asked once")

	q.OthersOnly = false
	assert.Len(t, drain(t, f.c, q, nil), 3, "without OthersOnly every record is listed")
	assert.Equal(t, 1, f.srv.Calls()["userinfo"])
}

// Config.UserID spares the userinfo call; a client without SkipOwnWrites
// ignores OthersOnly.
func TestChangesOthersOnlyWithAGivenUserAndOff(t *testing.T) {
	f := setup(t, nil, func(c *salesforce.Config) { c.SkipOwnWrites, c.UserID = true, salesforcetest.DefaultUserID })
	since := f.clk.Now()
	id := f.srv.Seed(crmsync.Fields{"LastName": "Written"})[0]
	f.clk.Advance(time.Second)
	_, err := f.c.Write(ctx, "Contact", []crmsync.WriteOp{{Kind: crmsync.Update, ID: id, Fields: crmsync.Fields{"Title": "x"}}})
	require.NoError(t, err)
	f.clk.Advance(time.Second)
	q := crmsync.ChangeQuery{Object: "Contact", Since: since, Until: f.clk.Now(), OthersOnly: true}
	assert.Empty(t, drain(t, f.c, q, nil))
	assert.Zero(t, f.srv.Calls()["userinfo"])

	off := setup(t, nil, nil)
	assert.False(t, off.c.FiltersOwnWrites())
	id = off.srv.Seed(crmsync.Fields{"LastName": "Written"})[0]
	off.clk.Advance(time.Second)
	_, err = off.c.Write(ctx, "Contact", []crmsync.WriteOp{{Kind: crmsync.Update, ID: id, Fields: crmsync.Fields{"Title": "x"}}})
	require.NoError(t, err)
	off.clk.Advance(time.Second)
	q = crmsync.ChangeQuery{Object: "Contact", Since: off.clk.Now().Add(-time.Hour), Until: off.clk.Now(), OthersOnly: true}
	assert.Len(t, drain(t, off.c, q, nil), 1)
}
