package playbook

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// -plan lists each write a pass would make (direction, kind, record ids,
// field names) without the values, which are personal data; a write
// Salesforce would refuse says so. -plan-values adds the values.
func TestMainPlanListsTheWrites(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the reference workflow")
	}
	code, out, errOut := mainRun(t, nil, "-plan", "-seed", "110")
	require.Equal(t, 0, code, errOut)
	assert.Contains(t, out, "plan: ")
	assert.Contains(t, out, "writes planned: ")
	lines := strings.Split(out, "\n")
	var creates, updates, refused []string
	for _, l := range lines {
		switch f := strings.Fields(l); {
		case len(f) > 2 && f[1] == "create":
			creates = append(creates, l)
		case len(f) > 2 && f[1] == "update":
			updates = append(updates, l)
		case len(f) > 2 && f[1] == "refused":
			refused = append(refused, l)
		}
	}
	require.NotEmpty(t, creates)
	require.NotEmpty(t, updates)
	require.Len(t, refused, 1, out)
	// The companies come first (parents first), then the people.
	assert.Regexp(t, `(?m)^  hubspot->salesforce +create +hubspot \d+ -> salesforce new-salesforce-\d+: BillingCity, Name, Website`, creates[0])
	assert.Regexp(t, `(?m)^  hubspot->salesforce +create +hubspot \d+ -> salesforce new-salesforce-\d+: Email, FirstName, LastName`, strings.Join(creates, "\n"))
	assert.Regexp(t, `-> (salesforce 003|hubspot \d)`, updates[0])
	assert.Contains(t, refused[0], "required field LastName missing")
	assert.Contains(t, refused[0], "a dead letter")
	for _, value := range []string{"example.com", "Lovelace", "Hopper", "+1 415"} {
		assert.NotContains(t, out, value, "values are shown only with -plan-values")
	}

	code, out, errOut = mainRun(t, nil, "-plan-values", "-seed", "110")
	require.Equal(t, 0, code, errOut)
	assert.Regexp(t, `create +hubspot \d+ -> salesforce new-salesforce-\d+: Email="[^"]+@(hs|both)\.example\.com", FirstName="`, out)
}

// With -json the plan's report carries the list; values only with
// -plan-values.
func TestMainPlanJSON(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the reference workflow")
	}
	for _, withValues := range []bool{false, true} {
		args := []string{"-plan", "-json", "-seed", "30"}
		if withValues {
			args = append(args, "-plan-values")
		}
		code, out, errOut := mainRun(t, nil, args...)
		require.Equal(t, 0, code, errOut)
		var got struct {
			Report struct {
				Plan    bool `json:"plan"`
				Planned []struct {
					Direction string         `json:"direction"`
					Kind      string         `json:"kind"`
					SourceID  string         `json:"source_id"`
					Fields    []string       `json:"fields"`
					Values    map[string]any `json:"values"`
				} `json:"planned"`
			} `json:"report"`
		}
		require.NoError(t, json.Unmarshal([]byte(out), &got), out)
		assert.True(t, got.Report.Plan)
		require.NotEmpty(t, got.Report.Planned)
		for _, pw := range got.Report.Planned {
			assert.NotEmpty(t, pw.Direction)
			assert.NotEmpty(t, pw.SourceID)
			assert.NotEmpty(t, pw.Fields)
			if withValues {
				assert.Len(t, pw.Values, len(pw.Fields))
			} else {
				assert.Nil(t, pw.Values)
			}
		}
		assert.Equal(t, withValues, strings.Contains(out, "example.com"))
	}
}
