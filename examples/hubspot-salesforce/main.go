// Command hubspot-salesforce is the reference workflow: it keeps HubSpot and
// Salesforce contacts in step both ways under the playbook's
// field-ownership policy. With no credentials it syncs two in-process fake
// CRMs seeded with a realistic data set; see package playbook and README.
//
//	go run ./examples/hubspot-salesforce [-store PATH] [-json] [-plan] [-every 5m | -cron EXPR]
package main

import (
	"context"
	"os"
	"os/signal"

	"github.com/crmsync/crmsync/playbook"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	os.Exit(playbook.Main(ctx, "hubspot-salesforce", os.Args[1:], os.Stdout, os.Stderr, os.Getenv))
}
