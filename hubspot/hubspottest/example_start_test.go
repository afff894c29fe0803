package hubspottest_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/hubspot"
	"github.com/crmsync/crmsync/hubspot/hubspottest"
)

// ExampleServer_Start starts the fake outside a test, as a program or
// another tool would (tests use NewServer, which closes it for them), and
// points the HubSpot client at it.
func ExampleServer_Start() {
	fake, err := hubspottest.New(hubspottest.Config{Contacts: 2})
	if err != nil {
		log.Fatal(err)
	}
	if err := fake.Start(); err != nil { // 127.0.0.1 and a free port; Config.Addr picks one
		log.Fatal(err)
	}
	defer fake.Close()

	c, err := hubspot.New(hubspot.Config{Token: fake.AccessToken(), BaseURL: fake.BaseURL()})
	if err != nil {
		log.Fatal(err)
	}
	page, err := c.Changes(context.Background(), crmsync.ChangeQuery{Object: "contacts", Since: time.Now().Add(-time.Hour)})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("contacts:", len(page.Records))
	fmt.Println("searches:", fake.CallCount("search"))
	// Output:
	// contacts: 2
	// searches: 1
}
