package main

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// The example runs as a test too: the main job on its defaults, as a user
// runs it, in a child process.
func TestMainJob(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the command")
	}
	if os.Getenv("CRMSYNC_EXAMPLE_CHILD") == "1" {
		os.Args = []string{"hubspot-salesforce", "-seed", "100"}
		main()
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestMainJob$")
	cmd.Env = append(os.Environ(), "CRMSYNC_EXAMPLE_CHILD=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("main job: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "third pass (converged): 0 written") {
		t.Errorf("main job output:\n%s", out)
	}
}
