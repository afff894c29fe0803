package playbook

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/crmsync/crmsync"
)

// countLive counts the live records of a HubSpot object.
func (x *graphFixture) hsCount(object string) int {
	n := 0
	for _, r := range x.f.hs.All(object) {
		if !r.Archived {
			n++
		}
	}
	return n
}

// sfCount counts the live Salesforce records of object.
func (x *graphFixture) sfCount(object string) int {
	n := 0
	for _, r := range x.f.sf.All() {
		if !r.Archived && objectOf(r.ID) == object {
			n++
		}
	}
	return n
}

// Companies on both sides before the first pass are matched on their
// domain (HubSpot domain, Salesforce Website as a bare host): linked, not
// created again. A domain two accounts share links nothing and creates
// nothing; the pass reports it as a skip naming the records.
func TestGraphMatchesCompaniesByDomain(t *testing.T) {
	x := newGraphFixture(t)
	hs, sf := x.f.hs, x.f.sf
	cos := hs.Seed("companies",
		map[string]string{"name": "Acme", "domain": "acme.example.com"},
		map[string]string{"name": "Globex", "domain": "www.Globex.example.com"},
		map[string]string{"name": "Hooli", "domain": "hooli.example.com"},
		map[string]string{"name": "Solo", "domain": "solo.example.com"})
	accts := sf.SeedRecords("Account",
		crmsync.Fields{"Name": "Acme Corp", "Website": "https://www.acme.example.com/"},
		crmsync.Fields{"Name": "Globex", "Website": "http://globex.example.com"},
		crmsync.Fields{"Name": "Hooli East", "Website": "hooli.example.com"},
		crmsync.Fields{"Name": "Hooli West", "Website": "https://hooli.example.com"},
		crmsync.Fields{"Name": "Other", "Website": "other.example.com"})

	rep := x.pass()
	assert.Equal(t, accts[0], x.hsFieldOf("companies", cos[0], hubspotCompanyLinkField), "Acme linked to its account")
	assert.Equal(t, accts[1], x.hsFieldOf("companies", cos[1], hubspotCompanyLinkField), "Globex linked to its account")
	assert.Empty(t, x.hsFieldOf("companies", cos[2], hubspotCompanyLinkField), "Hooli is ambiguous: not linked")
	// Acme, Globex and the two Hooli accounts exist on both sides: only Solo
	// reaches Salesforce and only Other reaches HubSpot.
	assert.Equal(t, 6, x.sfCount("Account"), "accounts")
	assert.Equal(t, 5, x.hsCount("companies"), "companies")
	var ambiguous []crmsync.SkipNote
	for _, s := range rep.Pairs["companies"].Skips {
		if s.RecordID == cos[2] || s.RecordID == accts[2] || s.RecordID == accts[3] {
			ambiguous = append(ambiguous, s)
		}
	}
	require.NotEmpty(t, ambiguous, "the ambiguous match is reported")
	assert.Contains(t, ambiguous[0].Reason, "ambiguous")

	// A second pass changes nothing.
	x.pass()
	assert.Equal(t, 6, x.sfCount("Account"))
	assert.Equal(t, 5, x.hsCount("companies"))
}

func (x *graphFixture) hsFieldOf(object, id, field string) string {
	for _, r := range x.f.hs.All(object) {
		if r.ID == id {
			return r.Properties[field]
		}
	}
	return ""
}

func TestBareHost(t *testing.T) {
	for in, want := range map[string]string{
		"acme.com":                         "acme.com",
		" HTTPS://WWW.Acme.com/about?x=1 ": "acme.com",
		"http://acme.com:8080/":            "acme.com",
		"www.acme.co.uk.":                  "acme.co.uk",
		"https://user@shop.acme.com#top":   "shop.acme.com",
		"":                                 "",
	} {
		assert.Equal(t, want, BareHost(in), "BareHost(%q)", in)
	}
	// Every form looked up for a host has that host as its key.
	for _, f := range WebsiteForms("acme.com") {
		assert.Equal(t, "acme.com", BareHost(f), "form %q", f)
	}
}
