package hubspot_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/hubspot"
	"github.com/crmsync/crmsync/hubspot/hubspottest"
)

var since1s = time.Unix(1, 0)

// A HubSpot merge makes a new record; the client reads its merged ids, and
// an update sent to an old id (batch calls refuse old ids) lands on the
// new record and reports the new id.
func TestMergeIsFollowed(t *testing.T) {
	srv := fastFake(t)
	ids := srv.Seed("contacts",
		map[string]string{"email": "a@example.com", "firstname": "A"},
		map[string]string{"email": "b@example.com", "firstname": "B", "phone": "555"})
	newID, err := srv.Merge("contacts", ids[0], ids[1])
	require.NoError(t, err)
	c := newClient(t, srv)
	ctx := context.Background()

	got, _ := allChanges(t, c, crmsync.ChangeQuery{Object: "contacts", Since: since1s, Fields: []string{"email", "firstname", "phone"}})
	require.Len(t, got, 1)
	r := got[0]
	assert.Equal(t, newID, r.ID)
	assert.Equal(t, []string{ids[0], ids[1]}, r.MergedFrom)
	assert.Equal(t, "A", r.Fields["firstname"])
	assert.Equal(t, "555", r.Fields["phone"], "the secondary's value fills a blank")
	assert.NotContains(t, r.Fields, "hs_merged_object_ids")

	old, err := c.Lookup(ctx, "contacts", "id", []string{ids[0]}, []string{"email"})
	require.NoError(t, err)
	assert.Empty(t, old, "batch read of a merged-away id")

	res, err := c.Write(ctx, "contacts", []crmsync.WriteOp{
		{Kind: crmsync.Update, ID: ids[1], Fields: crmsync.Fields{"firstname": "Z"}, Key: "k1"},
		{Kind: crmsync.Update, ID: "99999", Fields: crmsync.Fields{"firstname": "Y"}, Key: "k2"},
	})
	require.NoError(t, err)
	require.NoError(t, res[0].Err)
	assert.Equal(t, newID, res[0].ID)
	rec, _ := srv.Get("contacts", newID)
	assert.Equal(t, "Z", rec.Properties["firstname"])
	var re *hubspot.RecordError
	require.ErrorAs(t, res[1].Err, &re)
	assert.Equal(t, "OBJECT_NOT_FOUND", re.Category)
	assert.Equal(t, 1, re.Index)
	assert.True(t, crmsync.IsPermanent(res[1].Err))

	arch, _ := allChanges(t, c, crmsync.ChangeQuery{Object: "contacts", Since: since1s, Archived: true})
	assert.Empty(t, arch, "merged-away ids are not in the archived list")
}

// A property HubSpot does not know fails its record with a FieldError
// naming it (never its value); a deleted property is left out of reads
// and comes back when restored.
func TestUnknownPropertyIsAFieldError(t *testing.T) {
	srv := fastFake(t)
	id := srv.Seed("contacts", map[string]string{"email": "a@example.com", "phone": "555"})[0]
	c := newClient(t, srv)
	ctx := context.Background()

	res, err := c.Write(ctx, "contacts", []crmsync.WriteOp{
		{Kind: crmsync.Update, ID: id, Fields: crmsync.Fields{"firstname": "secret-value", "nosuch": "secret-value"}},
	})
	require.NoError(t, err)
	var fe *crmsync.FieldError
	require.ErrorAs(t, res[0].Err, &fe)
	assert.Equal(t, []string{"nosuch"}, fe.Fields)
	assert.Equal(t, "contacts", fe.Object)
	assert.True(t, crmsync.IsPermanent(res[0].Err))
	assert.NotContains(t, res[0].Err.Error(), "secret-value")

	require.NoError(t, srv.DeleteProperty("contacts", "phone"))
	got, _ := allChanges(t, c, crmsync.ChangeQuery{Object: "contacts", Since: since1s, Fields: []string{"email", "phone"}})
	require.Len(t, got, 1)
	assert.NotContains(t, got[0].Fields, "phone")
	assert.Equal(t, "a@example.com", got[0].Fields["email"])
	// Upserts on email fail the whole batch: the FieldError comes through
	// the isolated single call too.
	res, err = c.Write(ctx, "contacts", []crmsync.WriteOp{
		{Kind: crmsync.Upsert, MatchField: "email", MatchValue: "a@example.com", Fields: crmsync.Fields{"phone": "1"}},
		{Kind: crmsync.Upsert, MatchField: "email", MatchValue: "b@example.com", Fields: crmsync.Fields{"firstname": "B"}},
	})
	require.NoError(t, err)
	require.ErrorAs(t, res[0].Err, &fe)
	assert.Equal(t, []string{"phone"}, fe.Fields)
	assert.NoError(t, res[1].Err)

	require.NoError(t, srv.RestoreProperty("contacts", "phone"))
	res, err = c.Write(ctx, "contacts", []crmsync.WriteOp{{Kind: crmsync.Update, ID: id, Fields: crmsync.Fields{"phone": "777"}}})
	require.NoError(t, err)
	require.NoError(t, res[0].Err)
	got, _ = allChanges(t, c, crmsync.ChangeQuery{Object: "contacts", Since: since1s, Fields: []string{"phone"}})
	assert.Equal(t, "777", got[0].Fields["phone"])
}

// Search lags writes and answers with stale values meanwhile; the client
// takes only ids from search and reads the records themselves by id, so a
// record it returns is never stale.
func TestSearchLagNeverGivesStaleRecords(t *testing.T) {
	clk := newClock()
	srv := fastFake(t, hubspottest.WithClock(clk.Now), hubspottest.WithSearchLag(5*time.Second, 20*time.Second), hubspottest.WithSeed(3))
	id := srv.Seed("contacts", map[string]string{"email": "a@example.com", "firstname": "Old"})[0]
	c := newClient(t, srv)
	q := crmsync.ChangeQuery{Object: "contacts", Since: since1s, Fields: []string{"firstname"}}

	got, _ := allChanges(t, c, q)
	assert.Empty(t, got, "a new record is not in search at once")
	clk.Advance(21 * time.Second)
	got, _ = allChanges(t, c, q)
	require.Len(t, got, 1)

	require.NoError(t, srv.Edit("contacts", id, map[string]string{"firstname": "New"}))
	got, _ = allChanges(t, c, q)
	require.Len(t, got, 1, "search still finds the record by its old stamp")
	assert.Equal(t, "New", got[0].Fields["firstname"], "the record is read by id, not taken from the stale search")

	// Out of order: of two writes, the later may be searchable first.
	clk.Advance(time.Minute)
	mark := clk.Now()
	var order []string
	for i := 0; i < 20; i++ {
		order = append(order, srv.SeedContacts(1)[0])
		clk.Advance(100 * time.Millisecond)
	}
	seen := map[string]bool{}
	for step := 0; step < 25 && len(seen) < len(order); step++ {
		clk.Advance(time.Second)
		got, _ = allChanges(t, c, crmsync.ChangeQuery{Object: "contacts", Since: mark, Fields: []string{"email"}})
		for _, r := range got {
			seen[r.ID] = true
		}
		for i := 1; i < len(order); i++ {
			if seen[order[i]] && !seen[order[i-1]] {
				return // a later write became visible before an earlier one
			}
		}
	}
	t.Fatal("every write became searchable in write order")
}

// Clock skew offsets stamps; equal stamps (bulk updates sharing one) page
// through by id without loss or repeat.
func TestSkewAndEqualStamps(t *testing.T) {
	clk := newClock()
	srv := fastFake(t, hubspottest.WithClock(clk.Now), hubspottest.WithClockSkew(-2*time.Minute), hubspottest.WithStampGranularity(time.Hour))
	ids := srv.SeedContacts(450)
	c := newClient(t, srv)
	recs, err := c.Lookup(context.Background(), "contacts", "id", ids[:1], []string{"email"})
	require.NoError(t, err)
	require.Len(t, recs, 1)
	want := clk.Now().Add(-2 * time.Minute).Truncate(time.Hour)
	assert.True(t, recs[0].ModifiedAt.Equal(want), "stamp %v, want %v", recs[0].ModifiedAt, want)
	got, pages := allChanges(t, c, crmsync.ChangeQuery{Object: "contacts", Since: want, Until: want.Add(time.Millisecond), Fields: []string{"email"}})
	assert.Equal(t, 3, pages)
	seen := map[string]bool{}
	for _, r := range got {
		assert.False(t, seen[r.ID], "record %s twice", r.ID)
		seen[r.ID] = true
	}
	assert.Len(t, seen, 450)
}

// Random whole-batch refusals still give every op its own verdict.
func TestRandomBatchRefusals(t *testing.T) {
	srv := fastFake(t, hubspottest.WithBatchRefusals(1), hubspottest.WithSeed(9))
	ids := srv.SeedContacts(5)
	c := newClient(t, srv)
	ops := make([]crmsync.WriteOp, len(ids))
	for i, id := range ids {
		ops[i] = crmsync.WriteOp{Kind: crmsync.Update, ID: id, Fields: crmsync.Fields{"firstname": "R"}}
	}
	res, err := c.Write(context.Background(), "contacts", ops)
	require.NoError(t, err)
	for i, r := range res {
		assert.NoError(t, r.Err, "op %d", i)
	}
	assert.Equal(t, 1+5, srv.Calls("batch/update"))
}

// Hostile(seed) is deterministic, and the client works in its world once
// search settles.
func TestHostileWorld(t *testing.T) {
	var a, b, d hubspottest.Config
	hubspottest.Hostile(42)(&a)
	hubspottest.Hostile(42)(&b)
	hubspottest.Hostile(43)(&d)
	assert.Equal(t, a, b)
	assert.NotEqual(t, a.ClockSkew, d.ClockSkew)
	assert.NotZero(t, a.SearchLagMax)

	srv := fastFake(t, hubspottest.Hostile(42))
	ids := srv.SeedContacts(30)
	c := newClient(t, srv)
	ops := make([]crmsync.WriteOp, len(ids))
	for i, id := range ids {
		ops[i] = crmsync.WriteOp{Kind: crmsync.Update, ID: id, Fields: crmsync.Fields{"firstname": "H"}}
	}
	res, err := c.Write(context.Background(), "contacts", ops)
	require.NoError(t, err)
	for _, r := range res {
		require.NoError(t, r.Err)
	}
	srv.SettleSearch()
	got, _ := allChanges(t, c, crmsync.ChangeQuery{Object: "contacts", Since: since1s, Fields: []string{"firstname"}})
	require.Len(t, got, 30)
	for _, r := range got {
		assert.Equal(t, "H", r.Fields["firstname"])
	}
	assert.Equal(t, hubspot.DefaultChangeLag, c.ChangeLag())
}

// A record search still lists by an older stamp, but changed again after
// the window, is left to the window of its latest change: its stamp never
// lies past Until.
func TestChangesLeaveRecordsChangedAfterTheWindow(t *testing.T) {
	clk := newClock()
	srv := fastFake(t, hubspottest.WithClock(clk.Now), hubspottest.WithSearchLag(10*time.Second, 10*time.Second))
	ids := srv.SeedContacts(2)
	clk.Advance(time.Minute)
	until := clk.Now()
	require.NoError(t, srv.Edit("contacts", ids[0], map[string]string{"firstname": "Later"}))
	c := newClient(t, srv)
	got, _ := allChanges(t, c, crmsync.ChangeQuery{Object: "contacts", Since: since1s, Until: until, Fields: []string{"firstname"}})
	require.Len(t, got, 1)
	assert.Equal(t, ids[1], got[0].ID)
	clk.Advance(10 * time.Second)
	got, _ = allChanges(t, c, crmsync.ChangeQuery{Object: "contacts", Since: until, Fields: []string{"firstname"}})
	require.Len(t, got, 1)
	assert.Equal(t, ids[0], got[0].ID)
	assert.Equal(t, "Later", got[0].Fields["firstname"])
}
