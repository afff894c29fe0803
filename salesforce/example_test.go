package salesforce_test

import (
	"context"
	"fmt"
	"log"
	"net/http/httptest"
	"time"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/salesforce"
	"github.com/crmsync/crmsync/salesforce/salesforcetest"
)

// Example syncs against the fake org: it upserts a contact by its HubSpot id,
// reads changes since a point in time and looks the contact up by email.
func Example() {
	fake, err := salesforcetest.New(salesforcetest.Config{})
	if err != nil {
		log.Fatal(err)
	}
	srv := httptest.NewServer(fake.Handler())
	defer srv.Close()
	defer fake.Close()

	c, err := salesforce.New(salesforce.Config{
		LoginURL:          srv.URL, // https://login.salesforce.com or your My Domain in production
		ClientCredentials: &salesforce.ClientCredentialsAuth{ClientID: "fake-client-id", ClientSecret: "fake-client-secret"},
	})
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	since := time.Now().Add(-time.Minute)

	res, err := c.Write(ctx, "Contact", []crmsync.WriteOp{{
		Kind: crmsync.Upsert, MatchField: "HubSpot_Id__c", MatchValue: "hs-101",
		Fields: crmsync.Fields{"LastName": "Lovelace", "Email": "ada@example.com"},
	}})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("created:", res[0].Created, "error:", res[0].Err)

	page, err := c.Changes(ctx, crmsync.ChangeQuery{Object: "Contact", Since: since, Fields: []string{"Email"}})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("changed:", len(page.Records), "more:", page.Next != "")

	found, err := c.Lookup(ctx, "Contact", "Email", []string{"ada@example.com"}, []string{"LastName"})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("found:", found[0].Fields["LastName"], found[0].ID == res[0].ID)
	fmt.Println("calls:", c.Stats().Calls["composite/sobjects"], c.Stats().Calls["query"])
	// Output:
	// created: true error: <nil>
	// changed: 1 more: false
	// found: Lovelace true
	// calls: 1 2
}
