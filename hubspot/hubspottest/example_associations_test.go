package hubspottest_test

import (
	"context"
	"fmt"
	"log"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/hubspot"
	"github.com/crmsync/crmsync/hubspot/hubspottest"
)

// ExampleServer_SeedGraph seeds companies, contacts and deals associated
// with each other, reads a deal's relations through the client's
// association pseudo-fields, and moves the deal to the other company.
func ExampleServer_SeedGraph() {
	fake, err := hubspottest.New(hubspottest.Config{})
	if err != nil {
		log.Fatal(err)
	}
	if err := fake.Start(); err != nil {
		log.Fatal(err)
	}
	defer fake.Close()
	g := fake.SeedGraph(2, 3, 1) // 2 companies, 3 contacts, 1 deal

	c, err := hubspot.New(hubspot.Config{Token: fake.AccessToken(), BaseURL: fake.BaseURL()})
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	deal := g.Deals[0]
	recs, err := c.Lookup(ctx, "deals", "id", []string{deal}, []string{"dealname", hubspot.FieldCompanies, hubspot.FieldContacts})
	if err != nil {
		log.Fatal(err)
	}
	f := recs[0].Fields
	fmt.Println(f["dealname"], "company", f[hubspot.FieldCompanies] == g.Companies[0], "contacts", len(f[hubspot.FieldContacts].([]string)))

	res, err := c.Write(ctx, "deals", []crmsync.WriteOp{{Kind: crmsync.Update, ID: deal, Fields: crmsync.Fields{hubspot.FieldCompanies: g.Companies[1]}}})
	if err != nil || res[0].Err != nil {
		log.Fatal(err, res[0].Err)
	}
	fmt.Println("moved:", fake.PrimaryCompany("deals", deal) == g.Companies[1])
	fmt.Println("association calls:", fake.CallCount("associations/batch/read"), fake.CallCount("associations/batch/create"), fake.CallCount("associations/batch/archive"))
	// Output:
	// Deal 1 company true contacts 1
	// moved: true
	// association calls: 3 1 1
}
