package playbook

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/crmsync/crmsync"
)

// A company synced to Salesforce, then archived in HubSpot while its
// account lives on; a Salesforce user then creates a contact in that
// account. The contact reaches HubSpot (or waits) without a dead letter,
// and whatever HubSpot record exists for it is linked: HubSpot refuses an
// association to an archived company, which must not park the contact
// nor leave a created HubSpot record unlinked.
//
// Found by TestGraphModel: the sync writes the reference through the
// companies pair's link although the HubSpot company is archived (its
// archive may not be read yet), and HubSpot refuses the association. The
// client reports that as a crmsync.ReferenceError: the contact is made
// without its company and linked, nothing is parked, and the pair leaves
// that reference out of the merge while a side names it.
func TestGraphChildOfAnArchivedCompany(t *testing.T) {
	x := newGraphFixture(t)
	hs, sf := x.f.hs, x.f.sf
	co := hs.Seed("companies", map[string]string{"name": "Acme", "domain": "acme.example.com"})[0]
	x.pass()
	acct := x.sfFor("Account", co)
	require.NotEmpty(t, acct.ID)
	require.NoError(t, hs.Archive("companies", co))
	c := sf.SeedRecords("Contact", crmsync.Fields{"LastName": "Lumbergh", "Email": "bill@initech.example.com", "AccountId": acct.ID})[0]
	x.pass()
	x.pass()
	assert.Empty(t, x.deadLetters(), "no dead letter for a reference to an archived company")
	h := x.hsFor("contacts", hubspotLinkField, c)
	require.NotEmpty(t, h, "the contact reached HubSpot")
	ls, err := x.st.LinksByA(t.Context(), crmsync.PairKey("acme", "contacts"), []string{h})
	require.NoError(t, err)
	assert.Equal(t, c, ls[h].BID, "the HubSpot contact made for %s is linked to it", c)
	assert.Empty(t, hs.PrimaryCompany("contacts", h), "no company: the only one is archived")
	got, _ := sf.Get(c)
	assert.Equal(t, acct.ID, got.Fields["AccountId"], "Salesforce keeps its account")

	// The contact moves to a live company in HubSpot: that reference is
	// carried over.
	live := hs.Seed("companies", map[string]string{"name": "Initrode", "domain": "initrode.example.com"})[0]
	x.pass()
	acct2 := x.sfFor("Account", live)
	require.NotEmpty(t, acct2.ID)
	require.NoError(t, hs.Associate("contacts", h, "companies", live, hsPrimaryCompany))
	x.pass()
	x.pass()
	got, _ = sf.Get(c)
	assert.Equal(t, acct2.ID, got.Fields["AccountId"], "the move to a live company reached Salesforce")
	assert.Empty(t, x.deadLetters())
}

// The mirror case: an account synced to HubSpot, then deleted in
// Salesforce while its company lives on; a HubSpot user then puts a new
// contact in that company. The contact reaches Salesforce (or waits)
// without a dead letter: Salesforce refuses an AccountId naming a deleted
// account (ENTITY_IS_DELETED), and the contact is written again without it.
func TestGraphChildOfADeletedAccount(t *testing.T) {
	x := newGraphFixture(t)
	hs, sf := x.f.hs, x.f.sf
	acct := sf.SeedRecords("Account", crmsync.Fields{"Name": "Initech"})[0]
	x.pass()
	co := x.hsFor("companies", hubspotCompanyLinkField, acct)
	require.NotEmpty(t, co)
	require.NoError(t, sf.Delete(acct))
	c := hs.Seed("contacts", map[string]string{"email": "ada@initech.example.com", "firstname": "Ada", "lastname": "Lovelace", "lifecyclestage": "customer"})[0]
	require.NoError(t, hs.Associate("contacts", c, "companies", co, hsPrimaryCompany))
	x.pass()
	x.pass()
	assert.Empty(t, x.deadLetters(), "no dead letter for a reference to a deleted account")
	ls, err := x.st.LinksByA(t.Context(), crmsync.PairKey("acme", "contacts"), []string{c})
	require.NoError(t, err)
	require.NotEmpty(t, ls[c].BID, "the contact reached Salesforce")
	got, _ := sf.Get(ls[c].BID)
	assert.Equal(t, "Lovelace", got.Fields["LastName"])
	assert.Nil(t, got.Fields["AccountId"], "written without the deleted account")
	assert.Equal(t, co, hs.PrimaryCompany("contacts", c), "HubSpot keeps its company")
}

// A Salesforce user moves a synced contact to an account whose HubSpot
// company is archived. HubSpot refuses that company; the contact leaves its
// old company in HubSpot (Salesforce moved it away, and the company it
// names now cannot be referenced), Salesforce keeps the user's account,
// nothing is parked, and the passes settle: the refused reference is not
// written again and again.
func TestGraphChildMovedToAnAccountWhoseCompanyIsArchived(t *testing.T) {
	x := newGraphFixture(t)
	hs, sf := x.f.hs, x.f.sf
	cos := hs.Seed("companies", map[string]string{"name": "Acme", "domain": "acme.example.com"},
		map[string]string{"name": "Initech", "domain": "initech.example.com"})
	x.pass()
	a1, a2 := x.sfFor("Account", cos[0]), x.sfFor("Account", cos[1])
	require.NotEmpty(t, a1.ID)
	require.NotEmpty(t, a2.ID)
	c := sf.SeedRecords("Contact", crmsync.Fields{"LastName": "Lumbergh", "Email": "bill@initech.example.com", "AccountId": a2.ID})[0]
	x.pass()
	h := x.hsFor("contacts", hubspotLinkField, c)
	require.NotEmpty(t, h)
	require.Equal(t, cos[1], hs.PrimaryCompany("contacts", h))

	require.NoError(t, hs.Archive("companies", cos[0]))
	require.NoError(t, sf.Edit(c, crmsync.Fields{"AccountId": a1.ID}))
	x.pass()
	x.pass()
	rep := x.pass()
	assert.Empty(t, x.deadLetters())
	assert.Empty(t, hs.PrimaryCompany("contacts", h), "the contact left Initech in HubSpot too")
	got, _ := sf.Get(c)
	assert.Equal(t, a1.ID, got.Fields["AccountId"], "Salesforce keeps the user's account")
	assert.Zero(t, rep.Writes(), "settled: the refused reference is not written again")
}
