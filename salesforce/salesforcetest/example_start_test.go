package salesforcetest_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/salesforce"
	"github.com/crmsync/crmsync/salesforce/salesforcetest"
)

// ExampleServer_Start starts the fake outside a test, as a program or
// another tool would (tests use NewServer, which closes it for them), and
// points the Salesforce client at it with an older API version.
func ExampleServer_Start() {
	fake, err := salesforcetest.New(salesforcetest.Config{Contacts: 3, QueryPageSize: 2})
	if err != nil {
		log.Fatal(err)
	}
	if err := fake.Start(); err != nil { // 127.0.0.1 and a free port; Config.Addr picks one
		log.Fatal(err)
	}
	defer fake.Close()

	c, err := salesforce.New(salesforce.Config{AccessToken: fake.AccessToken(), InstanceURL: fake.BaseURL(), APIVersion: "50.0"})
	if err != nil {
		log.Fatal(err)
	}
	page, err := c.Changes(context.Background(), crmsync.ChangeQuery{Object: "Contact", Since: time.Now().Add(-time.Hour)})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("contacts:", len(page.Records), "more:", page.Next != "")
	fmt.Println("query pages:", fake.CallCount("query")+fake.CallCount("queryMore"))
	// Output:
	// contacts: 2 more: true
	// query pages: 1
}
