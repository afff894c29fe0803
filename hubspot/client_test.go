package hubspot_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/hubspot"
	"github.com/crmsync/crmsync/hubspot/hubspottest"
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
			if err == nil || !strings.Contains(err.Error(), tt.field) {
				t.Fatalf("New() = %v, want an error naming %s", err, tt.field)
			}
		})
	}
	c, err := hubspot.New(hubspot.Config{Token: "secret-token"})
	if err != nil {
		t.Fatal(err)
	}
	if c.System() != "hubspot" || c.Limits() != (crmsync.Limits{WriteBatch: 100, LookupBatch: 100}) {
		t.Fatalf("System/Limits = %q %+v", c.System(), c.Limits())
	}
}

func TestTiers(t *testing.T) {
	for tier, want := range map[hubspot.Tier][2]int{
		hubspot.TierStarter: {100, 250_000}, hubspot.TierProfessional: {190, 625_000},
		hubspot.TierEnterprise: {190, 1_000_000}, hubspot.TierLimitIncrease: {250, 2_000_000},
	} {
		if got := [2]int{tier.TenSecondLimit(), tier.DailyLimit()}; got != want {
			t.Errorf("tier %d limits = %v, want %v", tier, got, want)
		}
	}
}

// allChanges pages a query to its end.
func allChanges(t *testing.T, c *hubspot.Client, q crmsync.ChangeQuery) ([]crmsync.Record, int) {
	t.Helper()
	var out []crmsync.Record
	pages := 0
	for {
		p, err := c.Changes(context.Background(), q)
		if err != nil {
			t.Fatalf("Changes(page %d) = %v", pages, err)
		}
		pages++
		out = append(out, p.Records...)
		if p.Next == "" {
			return out, pages
		}
		// Tokens must survive a JSON round trip (a step's stored result).
		b, _ := json.Marshal(p)
		var back crmsync.Page
		if err := json.Unmarshal(b, &back); err != nil || back.Next != p.Next {
			t.Fatalf("page token does not survive JSON: %v", err)
		}
		q.PageToken = back.Next
		if pages > 1000 {
			t.Fatal("Changes does not end")
		}
	}
}

func TestChangesWindowAndPaging(t *testing.T) {
	clk := newClock()
	srv := fastFake(t, hubspottest.WithClock(clk.Now))
	old := srv.SeedContacts(30)
	t1 := clk.Advance(time.Minute)
	ids := srv.SeedContacts(420)
	for _, id := range old[:5] {
		if err := srv.Edit("contacts", id, map[string]string{"firstname": "Edited"}); err != nil {
			t.Fatal(err)
		}
	}
	t2 := clk.Advance(time.Minute)
	late := srv.SeedContacts(3)
	c := newClient(t, srv)

	got, pages := allChanges(t, c, crmsync.ChangeQuery{Object: "contacts", Since: t1, Until: t2, Fields: []string{"email", "firstname"}})
	want := map[string]bool{}
	for _, id := range append(ids, old[:5]...) {
		want[id] = true
	}
	if len(got) != len(want) || pages != 3 {
		t.Fatalf("Changes returned %d records in %d pages, want %d in 3", len(got), pages, len(want))
	}
	prev := 0
	for _, r := range got {
		if !want[r.ID] {
			t.Errorf("record %s outside the window", r.ID)
		}
		n, _ := strconv.Atoi(r.ID)
		if n <= prev {
			t.Errorf("records not in ascending id order at %s", r.ID)
		}
		prev = n
		if r.ModifiedAt.Before(t1) || !r.ModifiedAt.Before(t2) || r.CreatedAt.IsZero() {
			t.Errorf("record %s stamps %v/%v outside [%v,%v)", r.ID, r.CreatedAt, r.ModifiedAt, t1, t2)
		}
		if _, ok := r.Fields["email"].(string); !ok {
			t.Errorf("record %s email = %#v, want a string", r.ID, r.Fields["email"])
		}
	}
	// Unset requested fields come back as nil (HubSpot's null).
	rs, _ := allChanges(t, c, crmsync.ChangeQuery{Object: "contacts", Since: t2, Fields: []string{"email", "phone"}})
	if len(rs) != len(late) {
		t.Fatalf("open-ended window returned %d records, want %d", len(rs), len(late))
	}
	if v, ok := rs[0].Fields["phone"]; !ok || v != nil {
		t.Errorf("unset phone = %#v, %v; want nil present", v, ok)
	}
	if s := c.Stats()["search"]; s != 4 {
		t.Errorf("Stats()[search] = %d, want 4", s)
	}
}

func TestChangesOtherObjectsUseHSLastModified(t *testing.T) {
	clk := newClock()
	srv, rec := recordedFake(t, hubspottest.Config{RateLimit: -1, SearchRateLimit: -1, Now: clk.Now})
	srv.Seed("companies", map[string]string{"name": "Acme"}, map[string]string{"name": "Globex"})
	c := newClient(t, srv)
	got, _ := allChanges(t, c, crmsync.ChangeQuery{Object: "companies", Since: clk.Now().Add(-time.Hour)})
	if len(got) != 2 {
		t.Fatalf("companies changes = %d, want 2", len(got))
	}
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
		if e.Status != 200 {
			t.Fatalf("search got status %d: %s", e.Status, e.RespBody)
		}
		if strings.Contains(string(e.ReqBody), `"after"`) {
			t.Fatalf("search paged by offset: %s", e.ReqBody)
		}
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
	if err != nil || len(first.Records) != 200 || first.Next == "" {
		t.Fatalf("first page = %d records, next %q, %v", len(first.Records), first.Next, err)
	}
	clk.Advance(time.Minute)
	for _, r := range first.Records[:150] {
		if err := srv.Edit("contacts", r.ID, map[string]string{"phone": "1"}); err != nil {
			t.Fatal(err)
		}
	}
	got := append([]crmsync.Record(nil), first.Records...)
	q.PageToken = first.Next
	for q.PageToken != "" {
		p, err := c.Changes(context.Background(), q)
		if err != nil {
			t.Fatal(err)
		}
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
		if seen[id] != 1 {
			t.Fatalf("record %s returned %d times, want once", id, seen[id])
		}
	}
	if len(got) != len(ids) {
		t.Fatalf("got %d records, want %d", len(got), len(ids))
	}
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
	if pages != 2 {
		t.Errorf("archived pages = %d, want 2", pages)
	}
	for _, r := range got {
		if !r.Archived || r.ModifiedAt.Before(t1) {
			t.Fatalf("record %s archived=%v at %v, want archived since %v", r.ID, r.Archived, r.ModifiedAt, t1)
		}
	}
	// Archived records never appear in search.
	live, _ := allChanges(t, c, crmsync.ChangeQuery{Object: "contacts", Since: time.Time{}})
	if len(live) != 100 {
		t.Fatalf("live changes = %d, want 100", len(live))
	}
}

func TestChangesRejectsBadQuery(t *testing.T) {
	srv := fastFake(t)
	c := newClient(t, srv)
	for name, q := range map[string]crmsync.ChangeQuery{
		"no object": {},
		"bad token": {Object: "contacts", PageToken: "!!not a token"},
	} {
		if _, err := c.Changes(context.Background(), q); err == nil || !crmsync.IsPermanent(err) {
			t.Errorf("%s: Changes() = %v, want a permanent error", name, err)
		}
	}
	if n := srv.Calls("search"); n != 0 {
		t.Errorf("bad queries made %d calls", n)
	}
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
	if err != nil {
		t.Fatal(err)
	}
	checkAllOnce(t, recs, ids[1:])
	if n := srv.Calls("batch/read"); n != 3 {
		t.Errorf("batch/read calls = %d, want 3 for 251 ids", n)
	}

	recs, err = c.Lookup(ctx, "contacts", "email", []string{"CONTACT" + ids[5] + "@example.com", "nobody@example.com"}, nil)
	if err != nil || len(recs) != 1 || recs[0].ID != ids[5] {
		t.Fatalf("Lookup(email) = %v, %v; want record %s", recs, err, ids[5])
	}
	recs, err = c.Lookup(ctx, "contacts", "sf_id", []string{"003ABC"}, []string{"sf_id"})
	if err != nil || len(recs) != 1 || recs[0].Fields["sf_id"] != "003ABC" {
		t.Fatalf("Lookup(sf_id) = %v, %v", recs, err)
	}
	_, err = c.Lookup(ctx, "contacts", "firstname", []string{"a"}, nil)
	var ae *hubspot.APIError
	if !errors.As(err, &ae) || ae.Status != 400 || !crmsync.IsPermanent(err) {
		t.Fatalf("Lookup(non-unique property) = %v, want permanent 400", err)
	}
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
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range res {
		if r.Err != nil || r.ID == "" {
			t.Fatalf("result %d = %+v", i, r)
		}
	}
	if !res[0].Created || !res[1].Created || res[2].Created || res[2].ID != existing {
		t.Fatalf("results = %+v", res)
	}
	got, _ := srv.Get("contacts", existing)
	if got.Properties["firstname"] != "Renamed" || got.Properties["lastname"] != "" || !got.UpdatedAt.Equal(clk.Now()) {
		t.Fatalf("updated record = %+v", got)
	}
	// A repeated upsert finds the first record: no duplicate.
	again, err := c.Write(ctx, "contacts", ops[:1])
	if err != nil || again[0].Err != nil || again[0].ID != res[0].ID || again[0].Created {
		t.Fatalf("repeated upsert = %+v, %v; want update of %s", again, err, res[0].ID)
	}
	if n := len(srv.All("contacts")); n != 3 {
		t.Fatalf("fake holds %d contacts, want 3", n)
	}
	st := c.Stats()
	if st["batch/create"] != 1 || st["batch/update"] != 1 || st["batch/upsert"] != 2 {
		t.Fatalf("Stats() = %v", st)
	}
}

func TestWriteSplitsBatches(t *testing.T) {
	srv := fastFake(t)
	c := newClient(t, srv)
	ops := make([]crmsync.WriteOp, 250)
	for i := range ops {
		ops[i] = crmsync.WriteOp{Kind: crmsync.Create, Fields: crmsync.Fields{"email": fmt.Sprintf("p%d@example.com", i)}}
	}
	res, err := c.Write(context.Background(), "contacts", ops)
	if err != nil {
		t.Fatal(err)
	}
	if n := srv.Calls("batch/create"); n != 3 {
		t.Errorf("batch/create calls = %d, want 3", n)
	}
	for i, r := range res {
		got, ok := srv.Get("contacts", r.ID)
		if r.Err != nil || !ok || got.Properties["email"] != fmt.Sprintf("p%d@example.com", i) {
			t.Fatalf("result %d = %+v maps to %+v", i, r, got)
		}
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
	if err != nil {
		t.Fatal(err)
	}
	wantOK := map[int]bool{0: true, 7: true, 8: true}
	wantPermanent := map[int]string{1: "VALIDATION_ERROR", 2: "CONFLICT", 3: "VALIDATION_ERROR", 5: "VALIDATION_ERROR", 6: "OBJECT_NOT_FOUND", 9: "INVALID_OP"}
	for i, r := range res {
		switch {
		case wantOK[i]:
			if r.Err != nil || r.ID == "" {
				t.Errorf("op %d = %+v, want success", i, r)
			}
		case wantPermanent[i] != "":
			var re *hubspot.RecordError
			if !errors.As(r.Err, &re) || re.Category != wantPermanent[i] || re.Index != i || !crmsync.IsPermanent(r.Err) {
				t.Errorf("op %d err = %v, want permanent %s", i, r.Err, wantPermanent[i])
			}
		case i == 4:
			var re *hubspot.RecordError
			if !errors.As(r.Err, &re) || crmsync.IsPermanent(r.Err) || re.Category != "INTERNAL_ERROR" {
				t.Errorf("op 4 err = %v, want transient INTERNAL_ERROR", r.Err)
			}
		}
		if r.Err != nil && strings.Contains(r.Err.Error(), "@example.com") {
			t.Errorf("op %d error text leaks a field value: %v", i, r.Err)
		}
	}
	if n := srv.Calls("batch/create"); n != 1 {
		t.Errorf("batch/create calls = %d, want 1 (a 207)", n)
	}
	if _, ok := srv.Get("contacts", res[0].ID); !ok {
		t.Error("the valid record of a 207 batch was not written")
	}
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
	if err != nil {
		t.Fatalf("Write() error = %v, want nil: every op's outcome is known", err)
	}
	if res[0].Err != nil || res[2].Err != nil || !res[0].Created || res[1].Err == nil || !crmsync.IsPermanent(res[1].Err) {
		t.Fatalf("results = %+v", res)
	}
	if n := srv.Calls("batch/upsert"); n != 4 {
		t.Fatalf("batch/upsert calls = %d, want 1 batch + 3 single", n)
	}
}

func TestArchive(t *testing.T) {
	srv := fastFake(t)
	ids := srv.SeedContacts(150)
	c := newClient(t, srv)
	if err := c.Archive(context.Background(), "contacts", append(ids, "777777")); err != nil {
		t.Fatal(err)
	}
	if n := srv.Calls("batch/archive"); n != 2 {
		t.Errorf("batch/archive calls = %d, want 2", n)
	}
	for _, r := range srv.All("contacts") {
		if !r.Archived || r.ArchivedAt.IsZero() {
			t.Fatalf("record %s not archived", r.ID)
		}
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
	if err != nil {
		t.Fatal(err)
	}
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
		if got.Name != ck.want.Name || got.Type != ck.want.Type || got.Unique != ck.want.Unique || got.ReadOnly != ck.want.ReadOnly {
			t.Errorf("field %s = %+v, want %+v", ck.name, got, ck.want)
		}
	}
	if f := by["tags"]; f.Type != crmsync.TypeMultiEnum || !f.Restricted || strings.Join(f.Options, ",") != "a,b" {
		t.Errorf("tags = %+v", f)
	}
	if f := by["lifecyclestage"]; f.Type != crmsync.TypeEnum || len(f.Options) != 8 {
		t.Errorf("lifecyclestage = %+v", f)
	}
	props, err := c.Properties(context.Background(), "contacts")
	if err != nil || len(props) != len(s.Fields) {
		t.Fatalf("Properties() = %d, %v", len(props), err)
	}
	sort.Slice(props, func(i, j int) bool { return props[i].Name < props[j].Name })
}
