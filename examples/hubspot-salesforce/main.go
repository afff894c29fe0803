// Command hubspot-salesforce is the reference workflow: it keeps HubSpot and
// Salesforce contacts in step both ways under the playbook's
// field-ownership policy. With no credentials it syncs two in-process fake
// CRMs seeded with a realistic data set; see package playbook and README.
//
//	go run ./examples/hubspot-salesforce [-store SPEC] [-json] [-plan [-plan-values]] [-every 5m | -cron EXPR]
//	go run ./examples/hubspot-salesforce -live [-live-edits N] [-live-gap 2s] [-every 5m]
//
// With -live, passes run within seconds of each change: the HubSpot fake
// sends signed webhooks, Salesforce is probed, and simulated users edit
// both sides while the job prints how long each edit took to cross.
//
// The store defaults, against the in-process fakes, to demo.db in the
// user's cache folder, kept for the crmsync command to open; its last line
// says where.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/crmsync/crmsync/playbook"
)

// main stops cleanly on Ctrl-C and on SIGTERM (a container stop): the pass
// in flight ends, its run stays open to resume, and the key's lease is
// released so that the next start need not wait for it to expire.
func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := playbook.Main(ctx, "hubspot-salesforce", os.Args[1:], os.Stdout, os.Stderr, os.Getenv)
	stop()
	os.Exit(code)
}
