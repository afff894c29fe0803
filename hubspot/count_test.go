package hubspot_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/hubspot/hubspottest"
)

// CountChanges counts what search lists in a window with one search call
// and no batch read; a write search does not list yet is not counted.
func TestCountChangesCountsWhatSearchLists(t *testing.T) {
	clk := newClock()
	srv := fastFake(t, hubspottest.WithClock(clk.Now), hubspottest.WithSearchLag(10*time.Second, 10*time.Second))
	ids := srv.SeedContacts(3)
	srv.SettleSearch()
	clk.Advance(time.Minute)
	require.NoError(t, srv.Edit("contacts", ids[0], map[string]string{"firstname": "Later"}))
	c := newClient(t, srv)
	q := crmsync.ChangeQuery{Object: "contacts", Since: since1s, Until: clk.Now().Add(time.Second)}
	before := srv.CallCounts()
	n, err := c.CountChanges(context.Background(), q)
	require.NoError(t, err)
	after := srv.CallCounts()
	assert.Equal(t, before["search"]+1, after["search"], "one search")
	assert.Equal(t, before["batch/read"], after["batch/read"], "no batch read")
	listed, _ := allChanges(t, c, q)
	assert.Len(t, listed, n, "the count is what Changes lists")

	q.Since = clk.Now()
	n, err = c.CountChanges(context.Background(), q)
	require.NoError(t, err)
	assert.Zero(t, n, "the edit is not listed in its own window yet")
	clk.Advance(10 * time.Second)
	q.Until = clk.Now()
	n, err = c.CountChanges(context.Background(), q)
	require.NoError(t, err)
	assert.Equal(t, 1, n, "listed once search caught up")

	_, err = c.CountChanges(context.Background(), crmsync.ChangeQuery{Object: "contacts", Archived: true})
	assert.Error(t, err, "archived records are not counted")
}
