package hubspot_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/hubspot"
	"github.com/crmsync/crmsync/hubspot/hubspottest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestNewValidatesConfig(t *testing.T) {
	tests := []struct {
		name  string
		cfg   hubspot.Config
		field string
	}{
		{"no auth", hubspot.Config{}, "Config.Token"},
		{"both auth", hubspot.Config{Token: "x", OAuth: &hubspot.OAuth{}}, "exclusive"},
		{"oauth client id", hubspot.Config{OAuth: &hubspot.OAuth{ClientSecret: "s", RefreshToken: "r"}}, "ClientID"},
		{"oauth secret", hubspot.Config{OAuth: &hubspot.OAuth{ClientID: "c", RefreshToken: "r"}}, "ClientSecret"},
		{"oauth refresh", hubspot.Config{OAuth: &hubspot.OAuth{ClientID: "c", ClientSecret: "s"}}, "RefreshToken"},
		{"tier", hubspot.Config{Token: "x", Tier: 9}, "Config.Tier"},
		{"base url", hubspot.Config{Token: "x", BaseURL: "ftp://x"}, "Config.BaseURL"},
		{"in flight", hubspot.Config{Token: "x", InFlight: -1}, "Config.InFlight"},
		{"waits", hubspot.Config{Token: "x", RetryMax: -1}, "RetryMax"},
		{"body cap", hubspot.Config{Token: "x", MaxResponseBytes: -1}, "MaxResponseBytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := hubspot.New(tt.cfg)
			require.Error(t, err, "New() = %v, want an error naming %s", err, tt.field)
			require.Contains(t, err.Error(), tt.field, "New() = %v, want an error naming %s", err, tt.field)
		})
	}
	c, err := hubspot.New(hubspot.Config{Token: "secret-token"})
	require.NoError(t, err)
	require.Equal(t, "hubspot", c.System(), "System/Limits = %q %+v", c.System(), c.Limits())
	require.Equal(t, crmsync.Limits{WriteBatch: 100, LookupBatch: 100}, c.Limits(), "System/Limits = %q %+v", c.System(), c.Limits())
}

func TestTiers(t *testing.T) {
	for tier, want := range map[hubspot.Tier][2]int{
		hubspot.TierStarter: {100, 250_000}, hubspot.TierProfessional: {190, 625_000},
		hubspot.TierEnterprise: {190, 1_000_000}, hubspot.TierLimitIncrease: {250, 2_000_000},
	} {
		got := [2]int{tier.TenSecondLimit(), tier.DailyLimit()}
		assert.Equal(t, want, got, "tier %d limits = %v, want %v", tier, got, want)
	}
}

// allChanges pages a query to its end.
func allChanges(t *testing.T, c *hubspot.Client, q crmsync.ChangeQuery) ([]crmsync.Record, int) {
	t.Helper()
	var out []crmsync.Record
	pages := 0
	for {
		p, err := c.Changes(context.Background(), q)
		require.NoError(t, err, "Changes(page %d)", pages)
		pages++
		out = append(out, p.Records...)
		if p.Next == "" {
			return out, pages
		}
		// Tokens must survive a JSON round trip (a step's stored result).
		b, _ := json.Marshal(p)
		var back crmsync.Page
		err = json.Unmarshal(b, &back)
		require.NoError(t, err, "page token does not survive JSON")
		require.Equal(t, p.Next, back.Next, "page token does not survive JSON: %v", err)
		q.PageToken = back.Next
		require.LessOrEqual(t, pages, 1000, "Changes does not end")
	}
}

func TestChangesWindowAndPaging(t *testing.T) {
	clk := newClock()
	srv := fastFake(t, hubspottest.WithClock(clk.Now))
	old := srv.SeedContacts(30)
	t1 := clk.Advance(time.Minute)
	ids := srv.SeedContacts(420)
	for _, id := range old[:5] {
		require.NoError(t, srv.Edit("contacts", id, map[string]string{"firstname": "Edited"}))
	}
	t2 := clk.Advance(time.Minute)
	late := srv.SeedContacts(3)
	c := newClient(t, srv)

	got, pages := allChanges(t, c, crmsync.ChangeQuery{Object: "contacts", Since: t1, Until: t2, Fields: []string{"email", "firstname"}})
	want := map[string]bool{}
	for _, id := range append(ids, old[:5]...) {
		want[id] = true
	}
	require.Len(t, got, len(want), "Changes returned %d records in %d pages, want %d in 3", len(got), pages, len(want))
	require.Equal(t, 3, pages, "Changes returned %d records in %d pages, want %d in 3", len(got), pages, len(want))
	prev := 0
	for _, r := range got {
		assert.True(t, want[r.ID], "record %s outside the window", r.ID)
		n, _ := strconv.Atoi(r.ID)
		assert.Greater(t, n, prev, "records not in ascending id order at %s", r.ID)
		prev = n
		assert.False(t, r.ModifiedAt.Before(t1), "record %s stamps %v/%v outside [%v,%v)", r.ID, r.CreatedAt, r.ModifiedAt, t1, t2)
		assert.True(t, r.ModifiedAt.Before(t2), "record %s stamps %v/%v outside [%v,%v)", r.ID, r.CreatedAt, r.ModifiedAt, t1, t2)
		assert.False(t, r.CreatedAt.IsZero(), "record %s stamps %v/%v outside [%v,%v)", r.ID, r.CreatedAt, r.ModifiedAt, t1, t2)
		_, ok := r.Fields["email"].(string)
		assert.True(t, ok, "record %s email = %#v, want a string", r.ID, r.Fields["email"])
	}
	// Unset requested fields come back as nil (HubSpot's null).
	rs, _ := allChanges(t, c, crmsync.ChangeQuery{Object: "contacts", Since: t2, Fields: []string{"email", "phone"}})
	require.Len(t, rs, len(late), "open-ended window returned %d records, want %d", len(rs), len(late))
	if v, ok := rs[0].Fields["phone"]; !ok || v != nil {
		t.Errorf("unset phone = %#v, %v; want nil present", v, ok)
	}
	s := c.Stats()["search"]
	assert.Equal(t, int64(4), s, "Stats()[search] = %d, want 4", s)
}

func TestChangesOtherObjectsUseHSLastModified(t *testing.T) {
	clk := newClock()
	srv, rec := recordedFake(t, hubspottest.Config{RateLimit: -1, SearchRateLimit: -1, Now: clk.Now})
	srv.Seed("companies", map[string]string{"name": "Acme"}, map[string]string{"name": "Globex"})
	c := newClient(t, srv)
	got, _ := allChanges(t, c, crmsync.ChangeQuery{Object: "companies", Since: clk.Now().Add(-time.Hour)})
	require.Len(t, got, 2, "companies changes = %d, want 2", len(got))
	ex := rec.exchanges("/companies/search")
	if len(ex) != 1 || !strings.Contains(string(ex[0].ReqBody), `"hs_lastmodifieddate"`) {
		t.Fatalf("search request does not filter on hs_lastmodifieddate: %s", ex[0].ReqBody)
	}
}

func TestChangesPagesByIDPastSearchCap(t *testing.T) {
	if testing.Short() {
		t.Skip("seeds 10,250 records")
	}
	clk := newClock()
	srv, rec := recordedFake(t, hubspottest.Config{RateLimit: -1, SearchRateLimit: -1, Now: clk.Now})
	ids := srv.SeedContacts(10_250)
	c := newClient(t, srv)
	got, _ := allChanges(t, c, crmsync.ChangeQuery{Object: "contacts", Since: clk.Now(), Fields: []string{"email"}})
	checkAllOnce(t, got, ids)
	for _, e := range rec.exchanges("/contacts/search") {
		require.Equal(t, 200, e.Status, "search got status %d: %s", e.Status, e.RespBody)
		require.NotContains(t, string(e.ReqBody), `"after"`, "search paged by offset: %s", e.ReqBody)
	}
}

// Records that leave the window between pages (a sync's own writes bump
// their stamps past Until) must not make the next page skip others.
func TestChangesSurvivesRecordsLeavingTheWindow(t *testing.T) {
	clk := newClock()
	srv := fastFake(t, hubspottest.WithClock(clk.Now))
	ids := srv.SeedContacts(450)
	c := newClient(t, srv)
	q := crmsync.ChangeQuery{Object: "contacts", Since: clk.Now().Add(-time.Hour), Until: clk.Now().Add(time.Second)}
	first, err := c.Changes(context.Background(), q)
	require.NoError(t, err, "first page = %d records, next %q", len(first.Records), first.Next)
	require.Len(t, first.Records, 200, "first page = %d records, next %q, %v", len(first.Records), first.Next, err)
	require.NotEmpty(t, first.Next, "first page = %d records, next %q, %v", len(first.Records), first.Next, err)
	clk.Advance(time.Minute)
	for _, r := range first.Records[:150] {
		require.NoError(t, srv.Edit("contacts", r.ID, map[string]string{"phone": "1"}))
	}
	got := append([]crmsync.Record(nil), first.Records...)
	q.PageToken = first.Next
	for q.PageToken != "" {
		p, err := c.Changes(context.Background(), q)
		require.NoError(t, err)
		got = append(got, p.Records...)
		q.PageToken = p.Next
	}
	checkAllOnce(t, got, ids)
}

func checkAllOnce(t *testing.T, got []crmsync.Record, ids []string) {
	t.Helper()
	seen := map[string]int{}
	for _, r := range got {
		seen[r.ID]++
	}
	for _, id := range ids {
		require.Equal(t, 1, seen[id], "record %s returned %d times, want once", id, seen[id])
	}
	require.Len(t, got, len(ids), "got %d records, want %d", len(got), len(ids))
}

func TestChangesUnderScaledSearchCap(t *testing.T) {
	clk := newClock()
	srv := fastFake(t, hubspottest.WithClock(clk.Now), hubspottest.WithSearchCap(500))
	ids := srv.SeedContacts(1234)
	c := newClient(t, srv)
	got, _ := allChanges(t, c, crmsync.ChangeQuery{Object: "contacts", Since: clk.Now(), PageSize: 150})
	checkAllOnce(t, got, ids)
}

func TestChangesArchived(t *testing.T) {
	clk := newClock()
	srv := fastFake(t, hubspottest.WithClock(clk.Now))
	ids := srv.SeedContacts(260)
	for _, id := range ids[:10] {
		_ = srv.Archive("contacts", id)
	}
	t1 := clk.Advance(time.Hour)
	for _, id := range ids[100:250] {
		_ = srv.Archive("contacts", id)
	}
	c := newClient(t, srv)
	got, pages := allChanges(t, c, crmsync.ChangeQuery{Object: "contacts", Since: t1, Archived: true})
	checkAllOnce(t, got, ids[100:250])
	assert.Equal(t, 2, pages, "archived pages = %d, want 2", pages)
	for _, r := range got {
		require.True(t, r.Archived, "record %s archived=%v at %v, want archived since %v", r.ID, r.Archived, r.ModifiedAt, t1)
		require.False(t, r.ModifiedAt.Before(t1), "record %s archived=%v at %v, want archived since %v", r.ID, r.Archived, r.ModifiedAt, t1)
	}
	// Archived records never appear in search.
	live, _ := allChanges(t, c, crmsync.ChangeQuery{Object: "contacts", Since: time.Time{}})
	require.Len(t, live, 100, "live changes = %d, want 100", len(live))
}

func TestChangesRejectsBadQuery(t *testing.T) {
	srv := fastFake(t)
	c := newClient(t, srv)
	for name, q := range map[string]crmsync.ChangeQuery{
		"no object": {},
		"bad token": {Object: "contacts", PageToken: "!!not a token"},
	} {
		_, err := c.Changes(context.Background(), q)
		assert.Error(t, err, "%s: Changes() = %v, want a permanent error", name, err)
		assert.True(t, crmsync.IsPermanent(err), "%s: Changes() = %v, want a permanent error", name, err)
	}
	n := srv.Calls("search")
	assert.Equal(t, 0, n, "bad queries made %d calls", n)
}

func TestLookup(t *testing.T) {
	srv := fastFake(t)
	srv.DefineProperty("contacts", hubspottest.Property{Name: "sf_id", Unique: true})
	ids := srv.SeedContacts(250)
	srv.Seed("contacts", map[string]string{"email": "x@example.com", "sf_id": "003ABC"})
	_ = srv.Archive("contacts", ids[0])
	c := newClient(t, srv)
	ctx := context.Background()

	want := append([]string{"999999"}, ids...)
	recs, err := c.Lookup(ctx, "contacts", "id", want, []string{"email"})
	require.NoError(t, err)
	checkAllOnce(t, recs, ids[1:])
	n := srv.Calls("batch/read")
	assert.Equal(t, 3, n, "batch/read calls = %d, want 3 for 251 ids", n)

	recs, err = c.Lookup(ctx, "contacts", "email", []string{"CONTACT" + ids[5] + "@example.com", "nobody@example.com"}, nil)
	if err != nil || len(recs) != 1 || recs[0].ID != ids[5] {
		t.Fatalf("Lookup(email) = %v, %v; want record %s", recs, err, ids[5])
	}
	recs, err = c.Lookup(ctx, "contacts", "sf_id", []string{"003ABC"}, []string{"sf_id"})
	require.NoError(t, err, "Lookup(sf_id) = %v", recs)
	require.Len(t, recs, 1, "Lookup(sf_id) = %v, %v", recs, err)
	require.Equal(t, "003ABC", recs[0].Fields["sf_id"], "Lookup(sf_id) = %v, %v", recs, err)
	// A property that is not unique is looked up with search (an IN filter),
	// then read by id: values compared lower-cased, no call per value.
	searches := srv.Calls("search")
	recs, err = c.Lookup(ctx, "contacts", "firstname", []string{"FIRST" + ids[5], "first" + ids[6], "nobody"}, []string{"email"})
	require.NoError(t, err)
	checkAllOnce(t, recs, []string{ids[5], ids[6]})
	assert.Equal(t, 1, srv.Calls("search")-searches, "one search for three values")
}

func TestWriteCreateUpdateUpsert(t *testing.T) {
	clk := newClock()
	srv := fastFake(t, hubspottest.WithClock(clk.Now))
	srv.DefineProperty("contacts", hubspottest.Property{Name: "sf_id", Unique: true})
	existing := srv.SeedContacts(1)[0]
	c := newClient(t, srv)
	ctx := context.Background()
	clk.Advance(time.Second)

	ops := []crmsync.WriteOp{
		{Kind: crmsync.Upsert, MatchField: "sf_id", MatchValue: "003A", Fields: crmsync.Fields{"email": "a@example.com"}, Key: "k-upsert"},
		{Kind: crmsync.Create, Fields: crmsync.Fields{"email": "b@example.com", "firstname": "B"}, Key: "k-create"},
		{Kind: crmsync.Update, ID: existing, Fields: crmsync.Fields{"firstname": "Renamed", "lastname": nil}, Key: "k-update"},
	}
	res, err := c.Write(ctx, "contacts", ops)
	require.NoError(t, err)
	for i, r := range res {
		require.NoError(t, r.Err, "result %d = %+v", i, r)
		require.NotEmpty(t, r.ID, "result %d = %+v", i, r)
	}
	require.True(t, res[0].Created, "results = %+v", res)
	require.True(t, res[1].Created, "results = %+v", res)
	require.False(t, res[2].Created, "results = %+v", res)
	require.Equal(t, existing, res[2].ID, "results = %+v", res)
	got, _ := srv.Get("contacts", existing)
	require.Equal(t, "Renamed", got.Properties["firstname"], "updated record = %+v", got)
	require.Empty(t, got.Properties["lastname"], "updated record = %+v", got)
	require.True(t, got.UpdatedAt.Equal(clk.Now()), "updated record = %+v", got)
	// A repeated upsert finds the first record: no duplicate.
	again, err := c.Write(ctx, "contacts", ops[:1])
	if err != nil || again[0].Err != nil || again[0].ID != res[0].ID || again[0].Created {
		t.Fatalf("repeated upsert = %+v, %v; want update of %s", again, err, res[0].ID)
	}
	n := len(srv.All("contacts"))
	require.Equal(t, 3, n, "fake holds %d contacts, want 3", n)
	st := c.Stats()
	require.Equal(t, int64(1), st["batch/create"], "Stats() = %v", st)
	require.Equal(t, int64(1), st["batch/update"], "Stats() = %v", st)
	require.Equal(t, int64(2), st["batch/upsert"], "Stats() = %v", st)
}

func TestWriteSplitsBatches(t *testing.T) {
	srv := fastFake(t)
	c := newClient(t, srv)
	ops := make([]crmsync.WriteOp, 250)
	for i := range ops {
		ops[i] = crmsync.WriteOp{Kind: crmsync.Create, Fields: crmsync.Fields{"email": fmt.Sprintf("p%d@example.com", i)}}
	}
	res, err := c.Write(context.Background(), "contacts", ops)
	require.NoError(t, err)
	n := srv.Calls("batch/create")
	assert.Equal(t, 3, n, "batch/create calls = %d, want 3", n)
	for i, r := range res {
		got, ok := srv.Get("contacts", r.ID)
		require.NoError(t, r.Err, "result %d = %+v maps to %+v", i, r, got)
		require.True(t, ok, "result %d = %+v maps to %+v", i, r, got)
		require.Equal(t, fmt.Sprintf("p%d@example.com", i), got.Properties["email"], "result %d = %+v maps to %+v", i, r, got)
	}
}

func TestWritePerRecordErrors(t *testing.T) {
	srv := fastFake(t)
	srv.DefineProperty("contacts", hubspottest.Property{Name: "region", Type: "enumeration", FieldType: "select", Options: []string{"emea", "amer"}})
	srv.DefineProperty("contacts", hubspottest.Property{Name: "plan", Required: true})
	taken := srv.Seed("contacts", map[string]string{"email": "taken@example.com", "plan": "p"})[0]
	c := newClient(t, srv)
	ops := []crmsync.WriteOp{
		{Kind: crmsync.Create, Fields: crmsync.Fields{"email": "ok1@example.com", "plan": "p", "region": "emea"}, Key: "a"},
		{Kind: crmsync.Create, Fields: crmsync.Fields{"email": "bad-option@example.com", "plan": "p", "region": "mars"}, Key: "b"},
		{Kind: crmsync.Create, Fields: crmsync.Fields{"email": "TAKEN@example.com", "plan": "p"}, Key: "c"},
		{Kind: crmsync.Create, Fields: crmsync.Fields{"email": "noplan@example.com"}, Key: ""},
		{Kind: crmsync.Create, Fields: crmsync.Fields{"email": "flaky@example.com", "plan": "p"}, Key: "a"}, // repeated key
		{Kind: crmsync.Create, Fields: crmsync.Fields{"email": "ok2@example.com", "plan": "p", "nosuchprop": "x"}, Key: "f"},
		{Kind: crmsync.Update, ID: "424242", Fields: crmsync.Fields{"plan": "q"}, Key: "g"},
		{Kind: crmsync.Update, ID: taken, Fields: crmsync.Fields{"plan": "q"}, Key: "h"},
		{Kind: crmsync.Create, Fields: crmsync.Fields{"email": "ok3@example.com", "plan": "p"}},
		{Kind: "delete", ID: taken},
	}
	srv.FailRecords("INTERNAL_ERROR", "flaky@example.com")
	res, err := c.Write(context.Background(), "contacts", ops)
	require.NoError(t, err)
	wantOK := map[int]bool{0: true, 7: true, 8: true}
	wantPermanent := map[int]string{1: "VALIDATION_ERROR", 2: "CONFLICT", 3: "VALIDATION_ERROR", 5: "VALIDATION_ERROR", 6: "OBJECT_NOT_FOUND", 9: "INVALID_OP"}
	for i, r := range res {
		switch {
		case wantOK[i]:
			assert.NoError(t, r.Err, "op %d = %+v, want success", i, r)
			assert.NotEmpty(t, r.ID, "op %d = %+v, want success", i, r)
		case wantPermanent[i] != "":
			var re *hubspot.RecordError
			if !errors.As(r.Err, &re) || re.Category != wantPermanent[i] || re.Index != i || !crmsync.IsPermanent(r.Err) {
				t.Errorf("op %d err = %v, want permanent %s", i, r.Err, wantPermanent[i])
			}
		case i == 4:
			var re *hubspot.RecordError
			if assert.ErrorAs(t, r.Err, &re, "op 4 err = %v, want transient INTERNAL_ERROR", r.Err) {
				if assert.False(t, crmsync.IsPermanent(r.Err), "op 4 err = %v, want transient INTERNAL_ERROR", r.Err) {
					assert.Equal(t, "INTERNAL_ERROR", re.Category, "op 4 err = %v, want transient INTERNAL_ERROR", r.Err)
				}
			}
		}
		if r.Err != nil && strings.Contains(r.Err.Error(), "@example.com") {
			t.Errorf("op %d error text leaks a field value: %v", i, r.Err)
		}
	}
	n := srv.Calls("batch/create")
	assert.Equal(t, 1, n, "batch/create calls = %d, want 1 (a 207)", n)
	_, ok := srv.Get("contacts", res[0].ID)
	assert.True(t, ok, "the valid record of a 207 batch was not written")
}

func TestWriteIsolatesWholeBatchRejection(t *testing.T) {
	// Upserts on email do not support partial success: HubSpot rejects the
	// batch, and the client retries one op per call.
	srv := fastFake(t)
	c := newClient(t, srv)
	ops := []crmsync.WriteOp{
		{Kind: crmsync.Upsert, MatchField: "email", MatchValue: "good@example.com", Fields: crmsync.Fields{"firstname": "G"}},
		{Kind: crmsync.Upsert, MatchField: "email", MatchValue: "bad@example.com", Fields: crmsync.Fields{"lifecyclestage": "nope"}},
		{Kind: crmsync.Upsert, MatchField: "email", MatchValue: "fine@example.com", Fields: crmsync.Fields{"firstname": "F"}},
	}
	res, err := c.Write(context.Background(), "contacts", ops)
	require.NoError(t, err, "Write() error = %v, want nil: every op's outcome is known", err)
	require.NoError(t, res[0].Err, "results = %+v", res)
	require.NoError(t, res[2].Err, "results = %+v", res)
	require.True(t, res[0].Created, "results = %+v", res)
	require.Error(t, res[1].Err, "results = %+v", res)
	require.True(t, crmsync.IsPermanent(res[1].Err), "results = %+v", res)
	n := srv.Calls("batch/upsert")
	require.Equal(t, 4, n, "batch/upsert calls = %d, want 1 batch + 3 single", n)
}

func TestArchive(t *testing.T) {
	srv := fastFake(t)
	ids := srv.SeedContacts(150)
	c := newClient(t, srv)
	require.NoError(t, c.Archive(context.Background(), "contacts", append(ids, "777777")))
	n := srv.Calls("batch/archive")
	assert.Equal(t, 2, n, "batch/archive calls = %d, want 2", n)
	for _, r := range srv.All("contacts") {
		require.True(t, r.Archived, "record %s not archived", r.ID)
		require.False(t, r.ArchivedAt.IsZero(), "record %s not archived", r.ID)
	}
}

func TestSchema(t *testing.T) {
	srv := fastFake(t)
	srv.DefineProperty("contacts", hubspottest.Property{Name: "sf_id", Unique: true})
	srv.DefineProperty("contacts", hubspottest.Property{Name: "tags", Type: "enumeration", FieldType: "checkbox", Options: []string{"a", "b"}})
	srv.DefineProperty("contacts", hubspottest.Property{Name: "score", Type: "number", FieldType: "number"})
	srv.DefineProperty("contacts", hubspottest.Property{Name: "vip", Type: "bool", FieldType: "booleancheckbox"})
	c := newClient(t, srv)
	s, err := c.Schema(context.Background(), "contacts")
	require.NoError(t, err)
	by := map[string]crmsync.FieldSchema{}
	for _, f := range s.Fields {
		by[f.Name] = f
	}
	checks := []struct {
		name string
		want crmsync.FieldSchema
	}{
		{"email", crmsync.FieldSchema{Name: "email", Type: crmsync.TypeString, Unique: true}},
		{"sf_id", crmsync.FieldSchema{Name: "sf_id", Type: crmsync.TypeString, Unique: true}},
		{"lastmodifieddate", crmsync.FieldSchema{Name: "lastmodifieddate", Type: crmsync.TypeDateTime, ReadOnly: true}},
		{"hs_object_id", crmsync.FieldSchema{Name: "hs_object_id", Type: crmsync.TypeNumber, ReadOnly: true}},
		{"score", crmsync.FieldSchema{Name: "score", Type: crmsync.TypeNumber}},
		{"vip", crmsync.FieldSchema{Name: "vip", Type: crmsync.TypeBool}},
	}
	for _, ck := range checks {
		got := by[ck.name]
		assert.Equal(t, ck.want.Name, got.Name, "field %s = %+v, want %+v", ck.name, got, ck.want)
		assert.Equal(t, ck.want.Type, got.Type, "field %s = %+v, want %+v", ck.name, got, ck.want)
		assert.Equal(t, ck.want.Unique, got.Unique, "field %s = %+v, want %+v", ck.name, got, ck.want)
		assert.Equal(t, ck.want.ReadOnly, got.ReadOnly, "field %s = %+v, want %+v", ck.name, got, ck.want)
	}
	f := by["tags"]
	assert.Equal(t, crmsync.TypeMultiEnum, f.Type, "tags = %+v", f)
	assert.True(t, f.Restricted, "tags = %+v", f)
	assert.Equal(t, "a,b", strings.Join(f.Options, ","), "tags = %+v", f)
	f = by["lifecyclestage"]
	assert.Equal(t, crmsync.TypeEnum, f.Type, "lifecyclestage = %+v", f)
	assert.Len(t, f.Options, 8, "lifecyclestage = %+v", f)
	props, err := c.Properties(context.Background(), "contacts")
	require.NoError(t, err, "Properties() = %d", len(props))
	// Schema adds the association pseudo-field of contacts to the properties.
	require.Len(t, props, len(s.Fields)-1, "Properties() = %d, %v", len(props), err)
	sort.Slice(props, func(i, j int) bool { return props[i].Name < props[j].Name })
}

// A create HubSpot refuses because a contact has the email already names
// that contact's id (HubSpot's "Existing ID: N"), so the dead letter a
// person reads names both records; it never quotes the email.
func TestWriteConflictNamesExistingID(t *testing.T) {
	srv := fastFake(t)
	taken := srv.Seed("contacts", map[string]string{"email": "taken@example.com"})[0]
	c := newClient(t, srv)
	res, err := c.Write(context.Background(), "contacts", []crmsync.WriteOp{
		{Kind: crmsync.Create, Fields: crmsync.Fields{"email": "TAKEN@example.com"}, Key: "k"},
	})
	require.NoError(t, err)
	require.Len(t, res, 1)
	var re *hubspot.RecordError
	require.ErrorAs(t, res[0].Err, &re)
	assert.Equal(t, "CONFLICT", re.Category)
	assert.Equal(t, taken, re.ExistingID)
	assert.Contains(t, res[0].Err.Error(), "existing id "+taken)
	assert.NotContains(t, strings.ToLower(res[0].Err.Error()), "taken@example.com")
	var dup *crmsync.DuplicateError
	require.ErrorAs(t, res[0].Err, &dup, "the sync's neutral form of the conflict")
	assert.Equal(t, taken, dup.ExistingID)
	assert.True(t, crmsync.IsPermanent(res[0].Err))
}

// In a batch, the conflicting create alone is refused and names the
// record holding the email, in the CRM-neutral DuplicateError the sync
// reads; the other op lands.
func TestWriteConflictInABatchNamesExistingID(t *testing.T) {
	srv := fastFake(t)
	taken := srv.Seed("contacts", map[string]string{"email": "taken@example.com"})[0]
	c := newClient(t, srv)
	res, err := c.Write(context.Background(), "contacts", []crmsync.WriteOp{
		{Kind: crmsync.Create, Fields: crmsync.Fields{"email": "free@example.com"}, Key: "k1"},
		{Kind: crmsync.Create, Fields: crmsync.Fields{"email": "taken@example.com"}, Key: "k2"},
	})
	require.NoError(t, err)
	require.Len(t, res, 2)
	require.NoError(t, res[0].Err)
	assert.NotEmpty(t, res[0].ID)
	var dup *crmsync.DuplicateError
	require.ErrorAs(t, res[1].Err, &dup)
	assert.Equal(t, taken, dup.ExistingID)
	assert.Equal(t, "contacts", dup.Object)
	assert.NotContains(t, strings.ToLower(dup.Error()), "taken@example.com")
}

// A single create HubSpot refuses as a whole call (409, CONFLICT naming the
// contact that holds the email) gets the same verdict as a per-record
// conflict: a DuplicateError with that id, permanent, no values quoted.
func TestWriteWholeCallConflictNamesExistingID(t *testing.T) {
	srv := fastFake(t)
	srv.Fail(hubspottest.Fault{Kind: hubspottest.Raw, Endpoint: "batch/create", Status: http.StatusConflict, ContentType: "application/json",
		Body: []byte(`{"status":"error","message":"Contact already exists. Existing ID: 4242","correlationId":"c1","category":"CONFLICT"}`)})
	c := newClient(t, srv)
	res, err := c.Write(context.Background(), "contacts", []crmsync.WriteOp{
		{Kind: crmsync.Create, Fields: crmsync.Fields{"email": "held@example.com"}, Key: "k"},
	})
	require.NoError(t, err)
	require.Len(t, res, 1)
	var dup *crmsync.DuplicateError
	require.ErrorAs(t, res[0].Err, &dup)
	assert.Equal(t, "4242", dup.ExistingID)
	assert.True(t, crmsync.IsPermanent(res[0].Err))
	assert.NotContains(t, res[0].Err.Error(), "held@example.com")
}
