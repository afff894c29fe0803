package salesforce_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/salesforce"
	"github.com/crmsync/crmsync/salesforce/salesforcetest"
)

// TestAPIVersionReachesEveryCall: with Config.APIVersion every call the
// client makes (describe, query, queryAll, collections writes, lookups)
// uses that version, against an org serving that one version only; the
// default version is refused there.
func TestAPIVersionReachesEveryCall(t *testing.T) {
	f := setup(t, func(c *salesforcetest.Config) { c.MinAPIVersion, c.MaxAPIVersion = "58.0", "58.0" },
		func(c *salesforce.Config) { c.APIVersion = "v58.0"; c.MaxRetries = -1 })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	since := f.clk.Now().Add(-time.Minute)

	_, err := f.c.Schema(ctx, "Contact")
	require.NoError(t, err)
	res, err := f.c.Write(ctx, "Contact", []crmsync.WriteOp{
		{Kind: crmsync.Create, Fields: crmsync.Fields{"LastName": "Lovelace", "Email": "ada@example.com"}},
		{Kind: crmsync.Upsert, MatchField: f.srv.ExternalIDField(), MatchValue: "hs-1", Fields: crmsync.Fields{"LastName": "Hopper"}},
	})
	require.NoError(t, err)
	for _, r := range res {
		require.NoError(t, r.Err)
	}
	_, err = f.c.Write(ctx, "Contact", []crmsync.WriteOp{{Kind: crmsync.Update, ID: res[0].ID, Fields: crmsync.Fields{"Title": "Countess"}}})
	require.NoError(t, err)
	found, err := f.c.Lookup(ctx, "Contact", "Email", []string{"ada@example.com"}, []string{"Title"})
	require.NoError(t, err)
	require.Len(t, found, 1)
	assert.Equal(t, "Countess", found[0].Fields["Title"])
	f.clk.Advance(time.Second)
	page, err := f.c.Changes(ctx, crmsync.ChangeQuery{Object: "Contact", Since: since})
	require.NoError(t, err)
	assert.Len(t, page.Records, 2)
	require.NoError(t, f.srv.Delete(res[1].ID))
	f.clk.Advance(time.Second)
	_, err = f.c.Changes(ctx, crmsync.ChangeQuery{Object: "Contact", Since: since, Archived: true})
	require.NoError(t, err)

	// The client's default version (66.0) is not served by this org.
	def := setup(t, func(c *salesforcetest.Config) { c.MinAPIVersion, c.MaxAPIVersion = "58.0", "58.0" },
		func(c *salesforce.Config) { c.MaxRetries = -1 })
	_, err = def.c.Schema(ctx, "Contact")
	assert.ErrorContains(t, err, "NOT_FOUND")
}
