package playbook

import (
	"context"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/salesforce/salesforcetest"
)

// TestSalesforceMergeAfterTheBinReadKeepsOnePerson through the graph: the
// people pair reads Salesforce Leads and Contacts through crmsync.Routed.
// Salesforce's clock runs behind the host's. During a pass, after it read
// the object's recycle bin and as it reads the object's live records, a
// user creates a duplicate of a synced person (a Contact, or a Lead) and
// merges the old record into it: the pass reads the winner, stamped inside
// its window, but not yet the loser's deletion. The winner takes over the
// loser's link: one live HubSpot contact for the person, linked to the
// winner, nobody archived, no dead letter.
func TestGraphSalesforceMergeAfterTheBinReadKeepsOnePerson(t *testing.T) {
	for _, object := range []string{"Contact", "Lead"} {
		t.Run(object, func(t *testing.T) {
			user := &userTransport{base: http.DefaultTransport}
			x := newGraphFixtureOpts(t, graphFixtureOptions{
				sf:          []func(*salesforcetest.Config){func(c *salesforcetest.Config) { c.ClockSkew = -30 * time.Second }},
				sfTransport: func(*fakes) http.RoundTripper { return user },
			})
			hs, sf := x.f.hs, x.f.sf
			person := func(email string) crmsync.Fields {
				f := crmsync.Fields{"Email": email, "FirstName": "Ada", "LastName": "Lovelace"}
				if object == "Lead" {
					f["Company"] = "Analytical Engines"
				}
				return f
			}
			old := sf.SeedRecords(object, person("mb@example.com"))[0]
			x.pass()
			ada := x.hsFor("contacts", hubspotLinkField, old)
			require.NotEmpty(t, ada, "the %s did not reach HubSpot; the test tested nothing", object)

			var binRead bool
			var winner atomic.Value
			user.arm(func(r *http.Request) bool {
				soql := r.URL.Query().Get("q")
				if !strings.Contains(soql, " FROM "+object+" WHERE ") || !strings.Contains(soql, "SystemModstamp >= ") {
					return false // not a read of the object's changes
				}
				if isCall(r, "/queryAll") {
					binRead = true
					return false
				}
				if !binRead || !isCall(r, "/query") {
					return false
				}
				w := sf.SeedRecords(object, person("mb@work.example.com"))[0]
				if err := sf.Merge(w, old); err != nil {
					panic(err)
				}
				winner.Store(w)
				return true
			})
			rep := x.pass()
			dup, _ := winner.Load().(string)
			require.NotEmpty(t, dup, "the user did not merge during the pass; the test tested nothing")
			x.pass()
			x.pass()

			assert.Equal(t, 1, x.hsCount("contacts"), "one live HubSpot contact for the person: %s", rep.Summary())
			ls, err := x.st.LinksByA(context.Background(), "acme/contacts", []string{ada})
			require.NoError(t, err)
			assert.Equal(t, dup, ls[ada].BID, "the person's HubSpot contact is linked to the merge winner")
			assert.Equal(t, dup, x.hsFieldOf("contacts", ada, hubspotLinkField), "the person's HubSpot contact names the merge winner")
			for _, r := range hs.All("contacts") {
				assert.False(t, r.Archived, "a merge archives nobody: HubSpot contact %s", r.ID)
				assert.NotEqual(t, "true", r.Properties["crmsync_archived"], "a merge archives nobody: HubSpot contact %s", r.ID)
			}
			assert.Empty(t, x.deadLetters())
		})
	}
}
