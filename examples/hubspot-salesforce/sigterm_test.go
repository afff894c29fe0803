package main

import (
	"testing"

	"github.com/crmsync/crmsync/internal/cmdtest"
)

// TestSIGTERMReleasesLease: a container stop sends SIGTERM. The main job,
// in the middle of a pass, stops cleanly and gives its key's lease up, so
// the next start (in a new container) does not wait for the lease to expire.
func TestSIGTERMReleasesLease(t *testing.T) {
	cmdtest.SIGTERMReleasesLease(t, cmdtest.Job{
		Name: "main job",
		Args: func(path string) []string {
			return []string{"hubspot-salesforce", "-seed", "3000", "-every", "1h", "-store", path}
		},
		Main: main,
	})
}
