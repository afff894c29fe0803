package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// -plan, as a user runs it, says what the first pass then does on the same
// data set (the fakes seed the same contacts at each start), and lists the
// writes without their values; -plan-values shows them.
func TestMainJobPlanMatchesFirstPass(t *testing.T) {
	if args := os.Getenv("CRMSYNC_EXAMPLE_PLAN_ARGS"); args != "" {
		require.NoError(t, json.Unmarshal([]byte(args), &os.Args))
		main()
		return
	}
	if testing.Short() {
		t.Skip("runs the command in child processes")
	}
	run := func(args ...string) string {
		t.Helper()
		b, err := json.Marshal(append([]string{"hubspot-salesforce", "-seed", "300", "-store", filepath.Join(t.TempDir(), "s.db")}, args...))
		require.NoError(t, err)
		cmd := exec.Command(os.Args[0], "-test.run=^TestMainJobPlanMatchesFirstPass$")
		cmd.Env = append(os.Environ(), "CRMSYNC_EXAMPLE_PLAN_ARGS="+string(b), "CRMSYNC_STORE=")
		out, err := cmd.Output()
		require.NoError(t, err, "%v:\n%s", args, out)
		return string(out)
	}
	plan, pass, values := run("-plan"), run(), run("-plan-values")

	counts := regexp.MustCompile(`(?m)^read .*\n(  .*dead letters \d+\n)+`)
	planCounts := counts.FindString(plan)
	require.NotEmpty(t, planCounts, plan)
	assert.Equal(t, regexp.MustCompile(` \(plan: nothing was written\)`).ReplaceAllString(planCounts, ""), counts.FindString(pass))
	written := regexp.MustCompile(`(?m)^(?:plan|first pass \(initial sync\)): (\d+) written$`)
	require.Len(t, written.FindStringSubmatch(plan), 2)
	require.Len(t, written.FindStringSubmatch(pass), 2)
	assert.Equal(t, written.FindStringSubmatch(pass)[1], written.FindStringSubmatch(plan)[1])

	assert.Regexp(t, `(?m)^  hubspot->salesforce +create +hubspot \d+ -> salesforce new-salesforce-\d+: Email, FirstName, LastName`, plan)
	assert.Regexp(t, `(?m)^  hubspot->salesforce +refused +hubspot \d+ -> salesforce \(new\): .*required field LastName missing`, plan)
	assert.NotContains(t, plan, "example.com")
	assert.Regexp(t, `Email="[^"]+@[a-z]+\.example\.com"`, values)
}
