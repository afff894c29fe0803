package crmsync_test

import (
	"context"
	"fmt"
	"log"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/hubspot"
	"github.com/crmsync/crmsync/hubspot/hubspottest"
	"github.com/crmsync/crmsync/salesforce"
	"github.com/crmsync/crmsync/salesforce/salesforcetest"
	"github.com/crmsync/crmsync/store/memory"
)

// A sync between the two fakes on a memory store. HubSpot has Ada and Grace;
// Salesforce has Grace, with a phone, and Linus. The first pass pairs Grace
// by email and brings her phone to HubSpot, creates Ada in Salesforce and
// Linus in HubSpot, and links all three; the second pass finds nothing to
// write, since it reads back only its own writes.
func ExampleNewSync() {
	// One clock for both fakes and the sync, moved by hand, so that every
	// stamp and read window is the same on every run.
	var clock atomic.Int64
	clock.Store(time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC).UnixMilli())
	now := func() time.Time { return time.UnixMilli(clock.Load()).UTC() }

	// A fake HubSpot with the link property (a unique property holding the
	// Salesforce id), and a fake Salesforce whose external-id field holds the
	// HubSpot id.
	hs, err := hubspottest.New(hubspottest.Config{Now: now})
	if err != nil {
		log.Fatal(err)
	}
	hs.DefineProperty("contacts", hubspottest.Property{Name: "salesforce_contact_id", Type: "string", FieldType: "text", Unique: true})
	if err := hs.Start(); err != nil {
		log.Fatal(err)
	}
	defer hs.Close()
	sf, err := salesforcetest.New(salesforcetest.Config{ExternalIDField: "HubSpot_Id__c", Now: now})
	if err != nil {
		log.Fatal(err)
	}
	if err := sf.Start(); err != nil {
		log.Fatal(err)
	}
	defer sf.Close()

	hs.Seed("contacts",
		map[string]string{"email": "ada@example.com", "firstname": "Ada", "lastname": "Lovelace"},
		map[string]string{"email": "grace@example.com", "firstname": "Grace", "lastname": "Hopper"},
	)
	sf.Seed(
		crmsync.Fields{"Email": "grace@example.com", "FirstName": "Grace", "LastName": "Hopper", "Phone": "+1 555 0100"},
		crmsync.Fields{"Email": "linus@example.com", "FirstName": "Linus", "LastName": "Torvalds"},
	)

	// The clients, pointed at the fakes.
	hc, err := hubspot.New(hubspot.Config{Token: hs.AccessToken(), BaseURL: hs.BaseURL()})
	if err != nil {
		log.Fatal(err)
	}
	sc, err := salesforce.New(salesforce.Config{AccessToken: sf.Token(), InstanceURL: sf.BaseURL()})
	if err != nil {
		log.Fatal(err)
	}

	// Unlinked contacts pair on email; each field goes to the latest edit.
	policy, err := crmsync.NewPolicy(crmsync.Policy{
		A:        "hubspot",
		B:        "salesforce",
		Identity: crmsync.Identity{A: "email", B: "Email"},
		Rules: []crmsync.FieldRule{
			{A: "email", B: "Email", Type: crmsync.TypeString, Rule: crmsync.MostRecent()},
			{A: "firstname", B: "FirstName", Type: crmsync.TypeString, Rule: crmsync.MostRecent()},
			{A: "lastname", B: "LastName", Type: crmsync.TypeString, Rule: crmsync.MostRecent()},
			{A: "phone", B: "Phone", Type: crmsync.TypeString, Rule: crmsync.MostRecent()},
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	sync, err := crmsync.NewSync(crmsync.SyncConfig{
		A:          hc,
		B:          sc,
		ObjectA:    "contacts",
		ObjectB:    "Contact",
		Policy:     policy,
		LinkFieldA: "salesforce_contact_id",
		LinkFieldB: "HubSpot_Id__c",
		Now:        now,
	})
	if err != nil {
		log.Fatal(err)
	}
	eng, err := crmsync.NewEngine(crmsync.Config{
		Store:  memory.New(),
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		log.Fatal(err)
	}

	ctx := context.Background()
	for pass := 1; pass <= 2; pass++ {
		clock.Add(time.Minute.Milliseconds()) // a minute between passes
		report, info, err := sync.RunOnce(ctx, eng, "portal-1")
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("pass %d %s, %d written\n", pass, info.Status, report.Writes())
		for _, dir := range []string{"hubspot->salesforce", "salesforce->hubspot"} {
			d := report.Directions[dir]
			fmt.Printf("  %s: %d created, %d updated\n", dir, d.Created, d.Updated)
		}
	}

	// Both sides now hold all three, linked to each other.
	for _, r := range hs.All("contacts") {
		p := r.Properties
		counterpart, _ := sf.Get(p["salesforce_contact_id"])
		fmt.Printf("%s %s %q linked: %v\n", p["firstname"], p["lastname"], p["phone"], counterpart.Fields["HubSpot_Id__c"] == r.ID)
	}
	// Output:
	// pass 1 finished, 3 written
	//   hubspot->salesforce: 1 created, 0 updated
	//   salesforce->hubspot: 1 created, 1 updated
	// pass 2 finished, 0 written
	//   hubspot->salesforce: 0 created, 0 updated
	//   salesforce->hubspot: 0 created, 0 updated
	// Ada Lovelace "" linked: true
	// Grace Hopper "+1 555 0100" linked: true
	// Linus Torvalds "" linked: true
}
