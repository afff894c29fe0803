package salesforcetest_test

import (
	"fmt"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/salesforce/salesforcetest"
)

// A lead converted as Salesforce converts it: a new account, contact and
// opportunity, and the lead stamped with their ids.
func ExampleServer_ConvertLead() {
	srv, err := salesforcetest.New(salesforcetest.Config{})
	if err != nil {
		panic(err)
	}
	leads := srv.SeedRecords("Lead", crmsync.Fields{"FirstName": "Grace", "LastName": "Hopper", "Company": "Navy"})
	res, err := srv.ConvertLead(leads[0], salesforcetest.ConvertOptions{})
	if err != nil {
		panic(err)
	}
	lead, _ := srv.Get(leads[0])
	contact, _ := srv.Get(res.ContactID)
	account, _ := srv.Get(res.AccountID)
	fmt.Println(lead.Fields["IsConverted"], lead.Fields["Status"])
	fmt.Println(lead.Fields["ConvertedContactId"] == res.ContactID, contact.Fields["LastName"], account.Fields["Name"])
	fmt.Println(srv.ContactRoles(res.OpportunityID)[0] == res.ContactID)
	// Output:
	// true Closed - Converted
	// true Hopper Navy
	// true
}
