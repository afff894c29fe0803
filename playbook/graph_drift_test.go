package playbook

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/hubspot/hubspottest"
)

// The three pairs against the fakes' schemas raise no schema warning, and a
// Salesforce stage HubSpot's default pipeline has no stage for reaches
// HubSpot as the stage before it, once: the next passes write nothing.
func TestGraphHealthyRunHasNoDriftAndEveryStageCrosses(t *testing.T) {
	x := newGraphFixture(t)
	hs, sf := x.f.hs, x.f.sf
	co := hs.Seed("companies", map[string]string{"name": "Acme", "domain": "acme.example.com"})[0]
	deal := hs.Seed("deals", map[string]string{"dealname": "Acme renewal", "dealstage": "qualifiedtobuy", "amount": "12000", "closedate": "2026-12-15"})[0]
	require.NoError(t, hs.Associate("deals", deal, "companies", co, hubspottest.AssociationType{Category: hubspottest.HubSpotDefined, TypeID: hubspottest.DealToCompanyPrimary}))

	rep := x.pass()
	for _, name := range rep.Order {
		assert.Empty(t, rep.Pairs[name].Drift, "%s: drift warnings on a healthy run", name)
	}
	opp := x.sfFor("Opportunity", deal)
	require.NotEmpty(t, opp.ID)
	assert.Equal(t, "2026-12-15", opp.Fields["CloseDate"], "HubSpot's closedate (a datetime) crosses as Salesforce's date")

	for stage, want := range map[string]string{"Proposal/Price Quote": "contractsent", "Closed Won": "closedwon"} {
		require.NoError(t, sf.Edit(opp.ID, crmsync.Fields{"StageName": stage}))
		x.pass()
		got, ok := hs.Get("deals", deal)
		require.True(t, ok)
		assert.Equal(t, want, got.Properties["dealstage"], "Salesforce stage %q in HubSpot", stage)
		after, _ := sf.Get(opp.ID)
		assert.Equal(t, stage, after.Fields["StageName"], "Salesforce keeps its own stage")
		x.pass()
		rep = x.pass()
		assert.Zero(t, rep.Writes(), "stage %q: %s", stage, rep.Summary())
	}
	assert.Empty(t, x.deadLetters())
}
