package playbook

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/salesforce/salesforcetest"
)

// A Lead converted while a run is stopped between its read of the Leads
// and its read of the Contacts (a crash; the run resumes with its window
// and its Leads page as read before the conversion), with Salesforce's
// clock behind the host's, so the new Contact is stamped inside the run's
// window: the resumed run reads the Contact, not yet the converted Lead.
// The Contact's email matches the HubSpot contact linked to the Lead, and
// the Lead, read by id, says it was converted into that very Contact: the
// Contact takes the Lead's link over. It is not created in HubSpot (which
// refuses the email twice: a dead letter), nothing is duplicated or
// archived, and the converted Lead is not written again.
//
// Found by TestGraphModel (seed 5046766191221811292).
func TestGraphLeadConvertedWhileRunStopped(t *testing.T) {
	cs := &stepCrashStore{prefix: "contacts:read:salesforce:changes:1", drop: true}
	x := newGraphFixtureOpts(t, graphFixtureOptions{
		sf: []func(*salesforcetest.Config){func(c *salesforcetest.Config) { c.ClockSkew = -time.Minute }},
		store: func(st crmsync.Store) crmsync.Store {
			cs.Store = st
			return cs
		},
	})
	hs, sf := x.f.hs, x.f.sf
	co := hs.Seed("companies", map[string]string{"name": "Globex", "domain": "globex.example.com"})[0]
	grace := hs.Seed("contacts", map[string]string{"email": "grace@globex.example.com", "firstname": "Grace", "lastname": "Hopper", "lifecyclestage": "lead"})[0]
	x.pass()
	lead := x.sfFor("Lead", grace)
	require.NotEmpty(t, lead.ID)
	acct := x.sfFor("Account", co)
	require.NotEmpty(t, acct.ID)

	// The run stops as it reads the Contacts, after the Leads.
	time.Sleep(5 * time.Millisecond)
	info := cs.crashRun(t, "the run stops at the Contacts' read", func(ctx context.Context) (crmsync.RunInfo, error) {
		_, info, err := x.g.RunOnce(ctx, x.eng, "acme")
		return info, err
	})

	conv, err := sf.ConvertLead(lead.ID, salesforcetest.ConvertOptions{AccountID: acct.ID, DoNotCreateOpportunity: true})
	require.NoError(t, err)
	rep, resumed, err := x.g.RunOnce(context.Background(), x.eng, "acme")
	require.NoError(t, err)
	require.Equal(t, info.ID, resumed.ID, "the stopped run resumed")
	x.pass()
	x.pass()

	assert.Empty(t, x.deadLetters(), "the converted Lead's Contact was not created in HubSpot: %s", rep.Summary())
	assert.Equal(t, conv.ContactID, x.hsFieldOf("contacts", grace, hubspotLinkField), "relinked to the Contact the conversion made")
	got, _ := sf.Get(conv.ContactID)
	assert.Equal(t, grace, got.Fields[salesforceLinkField])
	assert.Equal(t, 1, x.hsCount("contacts"), "no duplicate or archive in HubSpot")
	assert.Len(t, hs.All("contacts"), 1, "nothing created in HubSpot")
	assert.Equal(t, 1, x.sfCount("Contact"), "no duplicate in Salesforce")
	l, _ := sf.Get(lead.ID)
	assert.Equal(t, "Grace", l.Fields["FirstName"], "the converted Lead was not written")
	// Settled: a further pass writes nothing.
	assert.Zero(t, x.pass().Writes())
}
