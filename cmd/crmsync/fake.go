package main

import (
	"context"
	"errors"
	"fmt"
	"net"

	"github.com/crmsync/crmsync/hubspot/hubspottest"
	"github.com/crmsync/crmsync/playbook"
	"github.com/crmsync/crmsync/salesforce/salesforcetest"
)

const fakeUsage = `usage: crmsync fake [-hubspot-addr ADDR] [-salesforce-addr ADDR] [-seed N]

Serve a fake HubSpot (CRM v3 and OAuth paths) and a fake Salesforce (REST
and OAuth paths) with N generated contacts each, until interrupted (Ctrl-C).
They enforce the real APIs' rate limits, batch sizes and tokens, so the
real clients and other tools work against them. The base URLs and the
credentials to use are printed as NAME=VALUE lines.

The fakes need no store; -store is ignored.

Flags:
  -hubspot-addr ADDR      listen address of the HubSpot fake (default 127.0.0.1:8081)
  -salesforce-addr ADDR   listen address of the Salesforce fake (default 127.0.0.1:8082)
  -seed N                 contacts to create in each fake (default 10)
`

func (c *cli) cmdFake(ctx context.Context, args []string) error {
	c.usage = fakeUsage
	fs := c.flags("fake")
	hsAddr := fs.String("hubspot-addr", "127.0.0.1:8081", "")
	sfAddr := fs.String("salesforce-addr", "127.0.0.1:8082", "")
	seed := fs.Int("seed", 10, "")
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

	hs, err := hubspottest.New(hubspottest.Config{})
	if err != nil {
		return fmt.Errorf("fake: hubspot: %w", err)
	}
	// The portal and the org have the reference workflow's custom fields.
	for _, p := range playbook.HubSpotProperties() {
		hs.DefineProperty("contacts", p)
	}
	hs.SeedContacts(*seed)
	_, sfLink := playbook.LinkFields()
	sf, err := salesforcetest.New(salesforcetest.Config{Seed: *seed, ExternalIDField: sfLink, Fields: playbook.SalesforceFields()})
	if err != nil {
		return fmt.Errorf("fake: salesforce: %w", err)
	}

	var lc net.ListenConfig
	hl, err := lc.Listen(ctx, "tcp", *hsAddr)
	if err != nil {
		return fmt.Errorf("fake: hubspot: listen on %s: %w", *hsAddr, err)
	}
	sl, err := lc.Listen(ctx, "tcp", *sfAddr)
	if err != nil {
		hl.Close()
		return fmt.Errorf("fake: salesforce: listen on %s: %w", *sfAddr, err)
	}
	hsURL := hs.URLFor(hl.Addr())
	sfURL := "http://" + sl.Addr().String()
	sf.URL = sfURL

	fmt.Fprintf(c.stdout, "HUBSPOT_BASE_URL=%s\n", hsURL)
	fmt.Fprintf(c.stdout, "HUBSPOT_TOKEN=%s\n", hs.Token)
	fmt.Fprintf(c.stdout, "HUBSPOT_CLIENT_ID=%s\n", hubspottest.DefaultClientID)
	fmt.Fprintf(c.stdout, "HUBSPOT_CLIENT_SECRET=%s\n", hubspottest.DefaultClientSecret)
	fmt.Fprintf(c.stdout, "HUBSPOT_REFRESH_TOKEN=%s\n", hubspottest.DefaultRefreshToken)
	fmt.Fprintf(c.stdout, "SALESFORCE_INSTANCE_URL=%s\n", sfURL)
	fmt.Fprintf(c.stdout, "SALESFORCE_LOGIN_URL=%s\n", sfURL)
	fmt.Fprintf(c.stdout, "SALESFORCE_ACCESS_TOKEN=%s\n", sf.Token())
	fmt.Fprintf(c.stdout, "SALESFORCE_CLIENT_ID=%s\n", "fake-client-id")
	fmt.Fprintf(c.stdout, "SALESFORCE_CLIENT_SECRET=%s\n", "fake-client-secret")
	fmt.Fprintf(c.stdout, "SALESFORCE_REFRESH_TOKEN=%s\n", "fake-refresh-token")
	fmt.Fprintf(c.stdout, "# %d contacts in each fake; the reference workflow reads these variables.\n", *seed)
	fmt.Fprintf(c.stdout, "# Serving until interrupted.\n")

	// If one fake stops with an error, stop the other too.
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 2)
	go func() { errc <- hs.Serve(sctx, hl) }()
	go func() { errc <- sf.Serve(sctx, sl) }()
	var errs []error
	for range 2 {
		if err := <-errc; err != nil {
			errs = append(errs, err)
			cancel()
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("fake: %w", err)
	}
	return nil
}
