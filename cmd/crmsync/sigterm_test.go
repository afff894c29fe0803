package main

import (
	"testing"

	"github.com/crmsync/crmsync/internal/cmdtest"
)

// TestSIGTERMReleasesLease: a container stop sends SIGTERM. "crmsync demo
// -every", in the middle of a pass, stops cleanly and gives its key's lease
// up, so the next start does not wait for the lease to expire.
func TestSIGTERMReleasesLease(t *testing.T) {
	cmdtest.SIGTERMReleasesLease(t, cmdtest.Job{
		Name: "demo",
		Args: func(path string) []string {
			return []string{"crmsync", "-store", "sqlite:" + path, "demo", "-seed", "3000", "-every", "1h"}
		},
		Main: main,
	})
}
