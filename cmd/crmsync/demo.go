package main

import (
	"context"

	"github.com/crmsync/crmsync/playbook"
)

const demoUsage = `usage: crmsync demo [-store SPEC] [-seed N] [-json] [-plan] [-every D | -cron EXPR] [-v]

Run the reference workflow (HubSpot <-> Salesforce contacts under the
playbook's policy) with no credentials: both CRMs are fakes in this process,
seeded with a realistic data set. It syncs, lets simulated users edit both
sides, syncs again, and shows that a last pass writes nothing.

The store is kept, so that the other commands can show what the demo did.
Without -store (or $CRMSYNC_STORE) it is demo.db in your cache folder,
replaced at each start; the demo's last line names it:

  crmsync demo
  crmsync -store sqlite:$HOME/.cache/crmsync/demo.db status     (Linux)

With -store the store is yours (SQLite or PostgreSQL, created if absent); it
must hold no runs yet, since the fakes start empty at each start:

  crmsync -store sqlite:demo.db demo
  crmsync -store sqlite:demo.db conflicts list

Flags after "demo" are the reference workflow's (see
"go run ./examples/hubspot-salesforce -h").
`

func (c *cli) cmdDemo(ctx context.Context, args []string) error {
	c.usage = demoUsage
	for _, a := range args {
		if a == "-h" || a == "-help" || a == "--help" {
			return errHelp
		}
	}
	if c.store != "" {
		args = append([]string{"-store", c.store}, args...)
	}
	// The demo reads no credentials: its CRMs are in this process.
	if code := playbook.Main(ctx, "crmsync demo", args, c.stdout, c.stderr, func(string) string { return "" }); code != 0 {
		return reported{code: code}
	}
	return nil
}
