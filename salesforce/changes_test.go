package salesforce_test

import (
	"fmt"
	"sort"
	"testing"
	"time"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/salesforce"
	"github.com/crmsync/crmsync/salesforce/salesforcetest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// drain reads every page of q with c, checking that each Next token works,
// and returns the records in order.
func drain(t *testing.T, c crmsync.CRM, q crmsync.ChangeQuery, between func(page int)) []crmsync.Record {
	t.Helper()
	var out []crmsync.Record
	for page := 0; ; page++ {
		p, err := c.Changes(ctx, q)
		require.NoError(t, err, "Changes(page %d)", page)
		out = append(out, p.Records...)
		if p.Next == "" {
			return out
		}
		require.LessOrEqual(t, page, 100, "too many pages")
		q.PageToken = p.Next
		if between != nil {
			between(page)
		}
	}
}

// checkOrdered checks records are in (ModifiedAt, ID) order, without repeats,
// and returns their ids.
func checkOrdered(t *testing.T, recs []crmsync.Record) map[string]bool {
	t.Helper()
	seen := map[string]bool{}
	for i, r := range recs {
		require.False(t, seen[r.ID], "record %s returned twice", r.ID)
		seen[r.ID] = true
		if i > 0 {
			p := recs[i-1]
			if r.ModifiedAt.Before(p.ModifiedAt) || (r.ModifiedAt.Equal(p.ModifiedAt) && r.ID < p.ID) {
				t.Fatalf("records %d and %d out of (SystemModstamp, Id) order", i-1, i)
			}
		}
	}
	return seen
}

// seedSpread seeds n contacts, advancing the clock by step between each
// group of per contacts (several per millisecond when per > 1).
func seedSpread(f *fixture, n, per int, step time.Duration) []string {
	var ids []string
	for i := 0; i < n; i++ {
		if i%per == 0 {
			f.clk.Advance(step)
		}
		ids = append(ids, f.srv.Seed(crmsync.Fields{"LastName": fmt.Sprintf("L%d", i), "Email": fmt.Sprintf("p%d@example.com", i)})...)
	}
	return ids
}

func TestChangesPagesInOrder(t *testing.T) {
	f := setup(t, nil, nil)
	start := f.clk.Now()
	ids := seedSpread(f, 450, 7, time.Millisecond) // 7 records per millisecond
	q := crmsync.ChangeQuery{Object: "Contact", Since: start, PageSize: 200, Fields: []string{"Email", "LastName"}}
	recs := drain(t, f.c, q, nil)
	seen := checkOrdered(t, recs)
	require.Len(t, recs, len(ids), "got %d records, want %d", len(recs), len(ids))
	for _, id := range ids {
		require.True(t, seen[id], "record %s missing", id)
	}
	r := recs[0]
	if len(r.ID) != 18 || r.ID[:3] != "003" || r.Fields["Id"] != r.ID || r.Archived || r.ModifiedAt.IsZero() {
		t.Errorf("record = %+v", r)
	}
	_, ok := r.Fields["attributes"]
	assert.False(t, ok, "attributes kept in Fields")
	_, ok = r.Fields["Email"].(string)
	assert.True(t, ok, "Email = %T, want string", r.Fields["Email"])
	got := f.srv.Calls()
	assert.Equal(t, 1, got["query"], "calls = %v, want 1 query and 2 queryMore", got)
	assert.Equal(t, 2, got["queryMore"], "calls = %v, want 1 query and 2 queryMore", got)
}

func TestChangesWindow(t *testing.T) {
	f := setup(t, nil, nil)
	seedSpread(f, 10, 1, time.Second)
	t0 := f.clk.Now().Add(time.Millisecond)
	mid := seedSpread(f, 10, 1, time.Second)
	t1 := f.clk.Now().Add(time.Millisecond)
	seedSpread(f, 10, 1, time.Second)
	recs := drain(t, f.c, crmsync.ChangeQuery{Object: "Contact", Since: t0, Until: t1}, nil)
	require.Len(t, recs, 10, "window returned %d records, want 10", len(recs))
	for i, r := range recs {
		require.Equal(t, mid[i], r.ID, "record %d = %s, want %s", i, r.ID, mid[i])
	}
	// Since is inclusive: a record stamped exactly at Since is returned.
	f.clk.Advance(time.Second)
	edited := mid[3]
	require.NoError(t, f.srv.Edit(edited, crmsync.Fields{"Title": "CTO"}))
	recs = drain(t, f.c, crmsync.ChangeQuery{Object: "Contact", Since: f.clk.Now()}, nil)
	require.Len(t, recs, 1, "after edit got %d records, want %s", len(recs), edited)
	require.Equal(t, edited, recs[0].ID, "after edit got %d records, want %s", len(recs), edited)
}

func TestChangesLocatorExpiredRestarts(t *testing.T) {
	f := setup(t, nil, nil)
	start := f.clk.Now()
	ids := seedSpread(f, 700, 50, time.Millisecond) // 50 per millisecond: pages split inside one stamp
	q := crmsync.ChangeQuery{Object: "Contact", Since: start, PageSize: 200}
	recs := drain(t, f.c, q, func(int) { f.srv.ExpireQueryLocators() })
	checkOrdered(t, recs)
	require.Len(t, recs, len(ids), "got %d records, want %d", len(recs), len(ids))
	calls := f.srv.Calls()
	assert.Equal(t, 4, calls["query"], "calls = %v, want 4 query (1 + 3 restarts) and 3 failed queryMore", calls)
	assert.Equal(t, 3, calls["queryMore"], "calls = %v, want 4 query (1 + 3 restarts) and 3 failed queryMore", calls)
}

func TestChangesTokenSurvivesRestart(t *testing.T) {
	f := setup(t, nil, nil)
	start := f.clk.Now()
	ids := seedSpread(f, 300, 3, time.Millisecond)
	q := crmsync.ChangeQuery{Object: "Contact", Since: start, PageSize: 200}
	p, err := f.c.Changes(ctx, q)
	require.NoError(t, err, "Changes = %v", p.Next)
	require.NotEmpty(t, p.Next, "Changes = %v, %v", p.Next, err)
	// A new client (a restarted process) continues with the token.
	c2, err := salesforce.New(salesforce.Config{LoginURL: f.srv.URL, Now: f.clk.Now,
		ClientCredentials: &salesforce.ClientCredentialsAuth{ClientID: "fake-client-id", ClientSecret: "fake-client-secret"}})
	require.NoError(t, err)
	q.PageToken = p.Next
	rest := drain(t, c2, q, nil)
	all := checkOrdered(t, append(p.Records, rest...))
	require.Len(t, all, len(ids), "got %d, want %d", len(all), len(ids))
	// Tokens that are not ours, or tampered with, are refused permanently.
	for _, tok := range []string{"garbage", "sf1.%%%", "sf1.eyJ1IjoiaHR0cHM6Ly9ldmlsLmV4YW1wbGUvIn0"} {
		q.PageToken = tok
		if _, err := f.c.Changes(ctx, q); err == nil || !crmsync.IsPermanent(err) {
			t.Errorf("Changes(token %q) = %v, want permanent error", tok, err)
		}
	}
}

func TestChangesArchived(t *testing.T) {
	f := setup(t, nil, nil)
	start := f.clk.Now()
	ids := seedSpread(f, 20, 1, time.Second)
	f.clk.Advance(time.Minute)
	del := []string{ids[2], ids[7], ids[11]}
	for _, id := range del {
		f.clk.Advance(time.Second)
		require.NoError(t, f.srv.Delete(id))
	}
	live := drain(t, f.c, crmsync.ChangeQuery{Object: "Contact", Since: start}, nil)
	require.Len(t, live, 17, "live records = %d, want 17", len(live))
	gone := drain(t, f.c, crmsync.ChangeQuery{Object: "Contact", Since: start, Archived: true}, nil)
	require.Len(t, gone, 3, "archived records = %d, want 3", len(gone))
	for i, r := range gone {
		if r.ID != del[i] || !r.Archived {
			t.Fatalf("archived record %d = %s archived=%v, want %s archived", i, r.ID, r.Archived, del[i])
		}
	}
	c := f.srv.Calls()
	assert.Equal(t, 1, c["queryAll"], "calls = %v, want one queryAll and one getDeleted", c)
	assert.Equal(t, 1, c["deleted"], "calls = %v, want one queryAll and one getDeleted", c)
	// Undelete takes it out of the recycle bin.
	require.NoError(t, f.srv.Undelete(del[0]))
	if gone = drain(t, f.c, crmsync.ChangeQuery{Object: "Contact", Since: start, Archived: true}, nil); len(gone) != 2 {
		t.Errorf("after undelete: %d archived, want 2", len(gone))
	}
}

func TestChangesDeletedWindowLost(t *testing.T) {
	tests := []struct {
		name  string
		since func(now time.Time) time.Time
		purge bool
	}{
		{"zero since", func(time.Time) time.Time { return time.Time{} }, false},
		{"older than 15 days", func(now time.Time) time.Time { return now.Add(-16 * 24 * time.Hour) }, false},
		{"delete log purged", func(now time.Time) time.Time { return now.Add(-3 * time.Hour) }, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := setup(t, nil, nil)
			now := f.clk.Now()
			if tt.purge {
				f.srv.PurgeDeletedLog(now.Add(-time.Hour))
			}
			_, err := f.c.Changes(ctx, crmsync.ChangeQuery{Object: "Contact", Since: tt.since(now), Archived: true})
			require.ErrorIs(t, err, salesforce.ErrDeletedWindowLost, "Changes() = %v, want ErrDeletedWindowLost", err)
			assert.Equal(t, 0, f.srv.Calls()["queryAll"], "queryAll was called after the window was lost")
		})
	}
	// Within the window and after the purge point: fine.
	f := setup(t, nil, nil)
	f.srv.PurgeDeletedLog(f.clk.Now().Add(-2 * time.Hour))
	_, err := f.c.Changes(ctx, crmsync.ChangeQuery{Object: "Contact", Since: f.clk.Now().Add(-time.Hour), Archived: true})
	require.NoError(t, err, "Changes() within window")
}

func TestChangesBadNames(t *testing.T) {
	f := setup(t, nil, nil)
	for _, q := range []crmsync.ChangeQuery{
		{Object: "Contact WHERE"},
		{Object: "Contact", Fields: []string{"Email, (SELECT Id FROM Cases)"}},
	} {
		if _, err := f.c.Changes(ctx, q); err == nil {
			t.Errorf("Changes(%q, %q) = nil error", q.Object, q.Fields)
		}
	}
	assert.Empty(t, f.srv.Calls(), "bad names reached the server: %v", f.srv.Calls())
	// An unknown field is a permanent API error naming nothing secret.
	_, err := f.c.Changes(ctx, crmsync.ChangeQuery{Object: "Contact", Fields: []string{"Nope__c"}})
	var ae *salesforce.APIError
	require.ErrorAs(t, err, &ae, "Changes(unknown field) = %v", err)
	require.Equal(t, "INVALID_FIELD", ae.ErrorCode, "Changes(unknown field) = %v", err)
	require.True(t, crmsync.IsPermanent(err), "Changes(unknown field) = %v", err)
}

func TestChangesSameStampManyRecords(t *testing.T) {
	// 450 records in one millisecond, read with locators expiring after each
	// page: the (SystemModstamp, Id) restart must still return each once.
	f := setup(t, nil, nil)
	start := f.clk.Now()
	f.clk.Advance(time.Millisecond)
	ids := f.srv.SeedN(450)
	recs := drain(t, f.c, crmsync.ChangeQuery{Object: "Contact", Since: start, PageSize: 200}, func(int) { f.srv.ExpireQueryLocators() })
	got := make([]string, len(recs))
	for i, r := range recs {
		got[i] = r.ID
	}
	want := append([]string(nil), ids...)
	sort.Strings(want)
	require.Equal(t, fmt.Sprint(want), fmt.Sprint(got), "got %d ids, want %d in id order", len(got), len(want))
	_ = salesforcetest.Fault{}
}
