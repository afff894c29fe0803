package main

import (
	"context"
	"fmt"

	"github.com/crmsync/crmsync/playbook"
)

const demoUsage = `usage: crmsync [-store sqlite:PATH] demo [-seed N] [-json] [-plan] [-every D | -cron EXPR]

Run the reference workflow (HubSpot <-> Salesforce contacts under the
playbook's policy) with no credentials: both CRMs are fakes in this process,
seeded with a realistic data set. It syncs, lets simulated users edit both
sides, syncs again, and shows that a last pass writes nothing.

With -store sqlite:PATH the store is kept (created if absent), so that the
other commands can show what the demo did:

  crmsync -store sqlite:demo.db demo
  crmsync -store sqlite:demo.db status
  crmsync -store sqlite:demo.db conflicts list

Without -store the demo uses a temporary store and removes it. Flags after
"demo" are the reference workflow's (see "go run ./examples/hubspot-salesforce -h").
`

// errDemo reports a failed demo; the demo has already said why on stderr.
type errDemo struct{ code int }

func (e errDemo) Error() string { return fmt.Sprintf("demo failed (exit %d)", e.code) }

func (c *cli) cmdDemo(ctx context.Context, args []string) error {
	c.usage = demoUsage
	for _, a := range args {
		if a == "-h" || a == "-help" || a == "--help" {
			return errHelp
		}
	}
	if c.store != "" {
		scheme, path := splitScheme(c.store)
		if scheme != "sqlite" || path == "" {
			return usagef("demo: -store must be sqlite:PATH (got %q)", c.store)
		}
		args = append([]string{"-store", path}, args...)
	}
	code := playbook.Main(ctx, "crmsync demo", args, c.stdout, c.stderr, func(string) string { return "" })
	switch code {
	case 0:
		return nil
	case 2:
		return usagef("demo: bad flags")
	}
	return errDemo{code: code}
}
