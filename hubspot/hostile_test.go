package hubspot_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/hubspot"
	"github.com/crmsync/crmsync/hubspot/hubspottest"
	"github.com/crmsync/crmsync/internal/clocktest"
)

// A batch HubSpot refuses whole (email upserts have no partial success)
// still has every op's outcome known once the client isolates the bad op:
// per-record results and a nil error, as the CRM.Write contract says.
func TestWholeBatchRefusalGivesPerRecordResultsAndNilError(t *testing.T) {
	srv := fastFake(t)
	c := newClient(t, srv)
	ops := []crmsync.WriteOp{
		{Kind: crmsync.Upsert, MatchField: "email", MatchValue: "good@example.com", Fields: crmsync.Fields{"firstname": "G"}},
		{Kind: crmsync.Upsert, MatchField: "email", MatchValue: "bad@example.com", Fields: crmsync.Fields{"lifecyclestage": "nope"}},
	}
	res, err := c.Write(context.Background(), "contacts", ops)
	require.NoError(t, err)
	require.Len(t, res, 2)
	assert.NoError(t, res[0].Err)
	assert.NotEmpty(t, res[0].ID)
	require.Error(t, res[1].Err)
	assert.True(t, crmsync.IsPermanent(res[1].Err))
}

// Batch-level refusals injected by the fake (400, 409, 413) give every op
// a result, never a whole-call error.
func TestInjectedBatchRefusals(t *testing.T) {
	for _, status := range []int{400, 409, 413} {
		t.Run(fmt.Sprint(status), func(t *testing.T) {
			srv := fastFake(t)
			ids := srv.SeedContacts(3)
			c := newClient(t, srv)
			srv.Fail(hubspottest.Fault{Kind: hubspottest.BatchRefusal, Status: status, Endpoint: "batch/update"})
			ops := make([]crmsync.WriteOp, len(ids))
			for i, id := range ids {
				ops[i] = crmsync.WriteOp{Kind: crmsync.Update, ID: id, Fields: crmsync.Fields{"firstname": "N"}}
			}
			res, err := c.Write(context.Background(), "contacts", ops)
			require.NoError(t, err)
			require.Len(t, res, 3)
			for i, r := range res {
				require.NoError(t, r.Err, "op %d", i)
				got, _ := srv.Get("contacts", ids[i])
				assert.Equal(t, "N", got.Properties["firstname"])
			}
		})
	}
}

// A batch create whose response is lost (5xx after it landed, or a dropped
// connection) is not sent again blind: the error comes back with nil
// results, and HubSpot holds exactly one copy of each record.
func TestCreateIsNotRetriedBlind(t *testing.T) {
	for name, f := range map[string]hubspottest.Fault{
		"502":        {Kind: hubspottest.ServerError, Status: 502, Endpoint: "batch/create", AfterServe: true},
		"connection": {Kind: hubspottest.Reset, Endpoint: "batch/create", AfterServe: true},
	} {
		t.Run(name, func(t *testing.T) {
			srv := fastFake(t)
			c := newClient(t, srv)
			srv.Fail(f)
			ops := []crmsync.WriteOp{
				{Kind: crmsync.Create, Fields: crmsync.Fields{"firstname": "A"}},
				{Kind: crmsync.Create, Fields: crmsync.Fields{"firstname": "B"}},
			}
			res, err := c.Write(context.Background(), "contacts", ops)
			require.Error(t, err)
			assert.Nil(t, res)
			assert.False(t, crmsync.IsPermanent(err))
			assert.Equal(t, 1, srv.Calls("batch/create"))
			assert.Len(t, srv.All("contacts"), 2, "records in HubSpot")
		})
	}
}

// A create that names a unique property (MatchField) goes as an upsert on
// it, so sending it again after a lost response makes no duplicate.
func TestCreateWithMatchFieldIsAnUpsert(t *testing.T) {
	srv := fastFake(t)
	srv.DefineProperty("contacts", hubspottest.Property{Name: "sf_id", Unique: true})
	c := newClient(t, srv)
	srv.Fail(hubspottest.Fault{Kind: hubspottest.ServerError, Status: 500, AfterServe: true})
	ops := []crmsync.WriteOp{{Kind: crmsync.Create, MatchField: "sf_id", MatchValue: "003A", Fields: crmsync.Fields{"firstname": "A"}}}
	res, err := c.Write(context.Background(), "contacts", ops)
	require.NoError(t, err)
	require.Len(t, res, 1)
	require.NoError(t, res[0].Err)
	all := srv.All("contacts")
	require.Len(t, all, 1)
	assert.Equal(t, all[0].ID, res[0].ID)
	assert.Equal(t, "003A", all[0].Properties["sf_id"])
	assert.Zero(t, srv.Calls("batch/create"))
}

// A policy of 300 properties cannot go in a search body (3,000 characters):
// the client searches ids and reads the records by batch read.
func TestChangesWithThreeHundredProperties(t *testing.T) {
	srv := fastFake(t)
	fields := []string{"email"}
	for i := range 300 {
		name := fmt.Sprintf("custom_field_%03d", i)
		srv.DefineProperty("contacts", hubspottest.Property{Name: name})
		fields = append(fields, name)
	}
	ids := srv.Seed("contacts", map[string]string{"email": "a@example.com", "custom_field_299": "v"}, map[string]string{"email": "b@example.com"})
	c := newClient(t, srv)
	got, _ := allChanges(t, c, crmsync.ChangeQuery{Object: "contacts", Since: time.Unix(1, 0), Fields: fields})
	require.Len(t, got, 2)
	assert.Equal(t, ids[0], got[0].ID)
	assert.Equal(t, "v", got[0].Fields["custom_field_299"])
	assert.Contains(t, got[1].Fields, "custom_field_000")
}

// The first pass asks from the zero time; HubSpot answers a filter at the
// epoch with a 500, so the client floors the window at 1 s past it.
func TestChangesFromZeroTimeFloorsAtEpochPlusOneSecond(t *testing.T) {
	srv := fastFake(t)
	srv.SeedContacts(3)
	c := newClient(t, srv)
	got, _ := allChanges(t, c, crmsync.ChangeQuery{Object: "contacts", Fields: []string{"email"}})
	assert.Len(t, got, 3)
}

// HubSpot's day runs midnight to midnight in the account's time zone: a
// budget spent at 18:00 in New York (23:00 UTC) stays spent after UTC
// midnight, and opens at New York's midnight.
func TestDailyBudgetDayFollowsAccountTimeZone(t *testing.T) {
	srv := fastFake(t)
	id := srv.SeedContacts(1)[0]
	ny := time.FixedZone("EST", -5*3600)
	clk := clocktest.New(time.Date(2026, 3, 2, 23, 0, 0, 0, time.UTC))
	c := newClient(t, srv, func(cfg *hubspot.Config) {
		cfg.DailyBudget = 1
		cfg.Now = clk.Now
		cfg.BudgetLocation = ny
	})
	require.NoError(t, lookupOne(c, id))
	require.ErrorIs(t, lookupOne(c, id), crmsync.ErrDailyLimit)
	clk.Advance(2 * time.Hour) // 01:00 UTC, 20:00 in New York: same account day
	require.ErrorIs(t, lookupOne(c, id), crmsync.ErrDailyLimit)
	clk.Advance(4 * time.Hour) // 05:00 UTC, midnight in New York
	require.NoError(t, lookupOne(c, id))
}

func TestChangeLag(t *testing.T) {
	srv := fastFake(t)
	var lagger crmsync.ChangeLagger = newClient(t, srv)
	assert.Equal(t, hubspot.DefaultChangeLag, lagger.ChangeLag())
	c := newClient(t, srv, func(cfg *hubspot.Config) { cfg.ChangeLag = 5 * time.Minute })
	assert.Equal(t, 5*time.Minute, c.ChangeLag())
	_, err := hubspot.New(hubspot.Config{Token: "t", ChangeLag: -time.Second})
	assert.Error(t, err)
}

// Ops whose outcome is unknown sit beside ops whose outcome is known: the
// results carry both and the error is nil.
func TestWriteMixesKnownAndUnknownOutcomes(t *testing.T) {
	srv := fastFake(t)
	id := srv.SeedContacts(1)[0]
	c := newClient(t, srv)
	srv.Fail(hubspottest.Fault{Kind: hubspottest.ServerError, Status: 503, Endpoint: "batch/update", Count: 100})
	ops := []crmsync.WriteOp{
		{Kind: crmsync.Create, Fields: crmsync.Fields{"firstname": "A"}},
		{Kind: crmsync.Update, ID: id, Fields: crmsync.Fields{"firstname": "B"}},
	}
	res, err := c.Write(context.Background(), "contacts", ops)
	require.NoError(t, err)
	require.Len(t, res, 2)
	assert.NoError(t, res[0].Err)
	assert.True(t, res[0].Created)
	require.Error(t, res[1].Err)
	assert.False(t, crmsync.IsPermanent(res[1].Err), "the update may be sent again")
}

// A call refused for its credentials is no verdict on the records: the
// error comes back whole, with nil results.
func TestWriteUnauthorizedIsAWholeCallError(t *testing.T) {
	srv := fastFake(t)
	c := newClient(t, srv, func(cfg *hubspot.Config) { cfg.Token = "wrong" })
	res, err := c.Write(context.Background(), "contacts", []crmsync.WriteOp{{Kind: crmsync.Create, Fields: crmsync.Fields{"firstname": "A"}}})
	require.ErrorIs(t, err, crmsync.ErrUnauthorized)
	assert.Nil(t, res)
}

func TestResolveID(t *testing.T) {
	srv := fastFake(t)
	ids := srv.SeedContacts(3)
	newID, err := srv.Merge("contacts", ids[0], ids[1])
	require.NoError(t, err)
	require.NoError(t, srv.Archive("contacts", ids[2]))
	c := newClient(t, srv)
	ctx := context.Background()
	for id, want := range map[string]string{ids[0]: newID, ids[1]: newID, newID: newID, ids[2]: "", "424242": ""} {
		got, err := c.ResolveID(ctx, "contacts", id)
		require.NoError(t, err)
		assert.Equal(t, want, got, "ResolveID(%s)", id)
	}
}
