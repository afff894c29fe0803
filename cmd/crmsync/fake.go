package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/hubspot/hubspottest"
	"github.com/crmsync/crmsync/playbook"
	"github.com/crmsync/crmsync/salesforce/salesforcetest"
)

const fakeUsage = `usage: crmsync fake [-hubspot-addr ADDR] [-salesforce-addr ADDR] [-salesforce-pubsub-addr ADDR] [-seed N] [-query-page-size N]
                    [-hubspot-companies N] [-hubspot-deals N]
                    [-salesforce-accounts N] [-salesforce-leads N]

Serve a fake HubSpot (CRM v3 and OAuth paths) and a fake Salesforce (REST
and OAuth paths) with N generated contacts each, until interrupted (Ctrl-C).
They enforce the real APIs' rate limits, batch sizes and tokens, so the
real clients and other tools work against them. The base URLs and the
credentials to use are printed as NAME=VALUE lines.

The fakes need no store; -store is ignored.

Flags:
  -hubspot-addr ADDR      listen address of the HubSpot fake (default 127.0.0.1:8081)
  -salesforce-addr ADDR   listen address of the Salesforce fake (default 127.0.0.1:8082)
  -salesforce-pubsub-addr ADDR
                          listen address of the Salesforce fake's Pub/Sub API
                          (gRPC without TLS; Change Data Capture events for every
                          write; default 127.0.0.1:8083)
  -seed N                 contacts to create in each fake (default 10)
  -query-page-size N      most records per Salesforce query page, 1 to 2000
                          (default 2000; Sforce-Query-Options asks for less)
  -hubspot-companies N    companies to create in the HubSpot fake, each contact
                          taking company i mod N as its primary (default 0)
  -hubspot-deals N        deals to create in the HubSpot fake, deal i with
                          company i and contact i as above (default 0)
  -salesforce-accounts N  accounts to create in the Salesforce fake, the seeded
                          contacts spread over them (default 0)
  -salesforce-leads N     open leads to create in the Salesforce fake (default 0)
  -hubspot-webhook-url URL  send signed webhook batches (v3, the client secret
                          below) to URL after every write to the HubSpot fake
`

func (c *cli) cmdFake(ctx context.Context, args []string) error {
	c.usage = fakeUsage
	fs := c.flags("fake")
	hsAddr := fs.String("hubspot-addr", "127.0.0.1:8081", "")
	sfAddr := fs.String("salesforce-addr", "127.0.0.1:8082", "")
	psAddr := fs.String("salesforce-pubsub-addr", "127.0.0.1:8083", "")
	seed := fs.Int("seed", 10, "")
	pageSize := fs.Int("query-page-size", 2000, "")
	hsCompanies := fs.Int("hubspot-companies", 0, "")
	hsDeals := fs.Int("hubspot-deals", 0, "")
	sfAccounts := fs.Int("salesforce-accounts", 0, "")
	sfLeads := fs.Int("salesforce-leads", 0, "")
	hsWebhook := fs.String("hubspot-webhook-url", "", "")
	rest, err := parseAll(fs, args)
	if err != nil {
		return err
	}
	if len(rest) > 0 {
		return usagef("fake: unexpected argument %q", rest[0])
	}
	if *seed < 0 {
		return usagef("fake: -seed must not be negative")
	}
	if *pageSize < 1 || *pageSize > 2000 {
		return usagef("fake: -query-page-size must be from 1 to 2000, not %d", *pageSize)
	}

	if *hsCompanies < 0 || *hsDeals < 0 {
		return usagef("fake: -hubspot-companies and -hubspot-deals must not be negative")
	}
	if *sfAccounts < 0 || *sfLeads < 0 {
		return usagef("fake: -salesforce-accounts and -salesforce-leads must not be negative")
	}

	hs, sf, err := newFakes(*hsAddr, *sfAddr, *seed, *pageSize)
	if err != nil {
		return err
	}
	seedHubSpotGraph(hs, *hsCompanies, *hsDeals)
	if err := seedSalesforceGraph(sf, *sfAccounts, *sfLeads); err != nil {
		return err
	}
	if err := hs.Start(); err != nil {
		return listenErr("hubspot", *hsAddr, err)
	}
	defer hs.Close()
	if *hsWebhook != "" {
		if err := hs.SendWebhooks(hubspottest.WebhookConfig{URL: *hsWebhook}); err != nil {
			return usagef("fake: -hubspot-webhook-url: %v", err)
		}
	}
	if err := sf.Start(); err != nil {
		return listenErr("salesforce", *sfAddr, err)
	}
	defer sf.Close()
	if err := sf.StartPubSub(salesforcetest.PubSubConfig{Addr: *psAddr}); err != nil {
		return listenErr("salesforce pub/sub", *psAddr, err)
	}

	hsURL, sfURL := hs.BaseURL(), sf.BaseURL()
	fmt.Fprintf(c.stdout, "HUBSPOT_BASE_URL=%s\n", hsURL)
	fmt.Fprintf(c.stdout, "HUBSPOT_TOKEN=%s\n", hs.AccessToken())
	fmt.Fprintf(c.stdout, "HUBSPOT_CLIENT_ID=%s\n", hubspottest.DefaultClientID)
	fmt.Fprintf(c.stdout, "HUBSPOT_CLIENT_SECRET=%s\n", hubspottest.DefaultClientSecret)
	fmt.Fprintf(c.stdout, "HUBSPOT_REFRESH_TOKEN=%s\n", hubspottest.DefaultRefreshToken)
	fmt.Fprintf(c.stdout, "SALESFORCE_INSTANCE_URL=%s\n", sfURL)
	fmt.Fprintf(c.stdout, "SALESFORCE_LOGIN_URL=%s\n", sfURL)
	fmt.Fprintf(c.stdout, "SALESFORCE_ACCESS_TOKEN=%s\n", sf.AccessToken())
	fmt.Fprintf(c.stdout, "SALESFORCE_CLIENT_ID=%s\n", salesforcetest.DefaultClientID)
	fmt.Fprintf(c.stdout, "SALESFORCE_CLIENT_SECRET=%s\n", salesforcetest.DefaultClientSecret)
	fmt.Fprintf(c.stdout, "SALESFORCE_REFRESH_TOKEN=%s\n", salesforcetest.DefaultRefreshToken)
	fmt.Fprintf(c.stdout, "SALESFORCE_PUBSUB_ADDR=%s\n", sf.PubSubAddr())
	fmt.Fprintf(c.stdout, "SALESFORCE_ORG_ID=%s\n", sf.OrgID())
	fmt.Fprintf(c.stdout, "# %d contacts in each fake; the reference workflow reads these variables.\n", *seed)
	if *hsCompanies > 0 || *hsDeals > 0 {
		fmt.Fprintf(c.stdout, "# %d companies and %d deals in the HubSpot fake, associated with its contacts.\n", *hsCompanies, *hsDeals)
	}
	if *hsWebhook != "" {
		fmt.Fprintf(c.stdout, "# HubSpot webhooks go to %s (portal %d, app %d).\n", *hsWebhook, hubspottest.DefaultPortalID, hubspottest.DefaultAppID)
	}
	fmt.Fprintf(c.stdout, "# Serving until interrupted.\n")
	<-ctx.Done()
	return nil
}

// newFakes configures both fakes, not yet listening: the portal and the
// org have the reference workflow's custom fields and n contacts each.
func newFakes(hsAddr, sfAddr string, n, pageSize int) (*hubspottest.Server, *salesforcetest.Server, error) {
	hs, err := hubspottest.New(hubspottest.Config{Addr: hsAddr})
	if err != nil {
		return nil, nil, fmt.Errorf("fake: hubspot: %w", err)
	}
	for _, p := range playbook.HubSpotProperties() {
		hs.DefineProperty("contacts", p)
	}
	for object, props := range playbook.GraphProperties() {
		for _, p := range props {
			hs.DefineProperty(object, p)
		}
	}
	hs.SeedContacts(n)
	_, sfLink := playbook.LinkFields()
	sf, err := salesforcetest.New(salesforcetest.Config{Addr: sfAddr, Contacts: n, QueryPageSize: pageSize,
		ExternalIDField: sfLink, Fields: playbook.SalesforceFields()})
	if err != nil {
		return nil, nil, fmt.Errorf("fake: salesforce: %w", err)
	}
	return hs, sf, nil
}

// seedSalesforceGraph adds accounts to the Salesforce fake, with its
// contacts spread over them, and open leads.
func seedSalesforceGraph(sf *salesforcetest.Server, accounts, leads int) error {
	sf.SeedLeads(leads)
	if accounts == 0 {
		return nil
	}
	ids := sf.SeedAccounts(accounts)
	var contacts []string
	for _, r := range sf.All() {
		if strings.HasPrefix(r.ID, "003") {
			contacts = append(contacts, r.ID)
		}
	}
	for i, id := range contacts {
		if err := sf.Edit(id, crmsync.Fields{"AccountId": ids[i%len(ids)]}); err != nil {
			return fmt.Errorf("fake: salesforce: %w", err)
		}
	}
	return nil
}

// listenErr reports that a fake could not listen on addr, with the
// system's reason.
func listenErr(name, addr string, err error) error {
	var oe *net.OpError
	if errors.As(err, &oe) {
		err = oe.Err
	}
	return fmt.Errorf("fake: %s: listen on %s: %w", name, addr, err)
}

// seedHubSpotGraph creates companies and deals in the HubSpot fake and
// associates them with its contacts: contact i has company i mod companies
// as its primary company; deal i has company i mod companies as its
// primary company and contact i mod contacts.
func seedHubSpotGraph(hs *hubspottest.Server, companies, deals int) {
	if companies == 0 && deals == 0 {
		return
	}
	g := hs.SeedGraph(companies, 0, deals)
	var contacts []string
	for _, r := range hs.All("contacts") {
		contacts = append(contacts, r.ID)
	}
	primary := func(id int) hubspottest.AssociationType {
		return hubspottest.AssociationType{Category: hubspottest.HubSpotDefined, TypeID: id}
	}
	for i, id := range contacts {
		if companies > 0 {
			_ = hs.Associate("contacts", id, "companies", g.Companies[i%companies], primary(hubspottest.ContactToCompanyPrimary))
		}
	}
	for i, id := range g.Deals {
		if len(contacts) > 0 {
			_ = hs.Associate("deals", id, "contacts", contacts[i%len(contacts)])
		}
	}
}
