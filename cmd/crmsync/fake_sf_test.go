package main

import (
	"io"
	"net/http"
	"net/url"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/crmsync/crmsync/internal/cmdtest"
)

func TestFakeSeedsSalesforceAccountsAndLeads(t *testing.T) {
	vars := startFake(t, "-seed", "5", "-salesforce-accounts", "2", "-salesforce-leads", "3")
	count := func(soql string) []any {
		t.Helper()
		st, v := send(t, http.MethodGet, vars["SALESFORCE_INSTANCE_URL"]+"/services/data/v66.0/query?q="+url.QueryEscape(soql), vars["SALESFORCE_ACCESS_TOKEN"], "")
		require.Equal(t, http.StatusOK, st, "%v", v)
		return v.(map[string]any)["records"].([]any)
	}
	accounts := count("SELECT Id FROM Account")
	assert.Len(t, accounts, 2)
	assert.Len(t, count("SELECT Id FROM Lead WHERE IsConverted = false"), 3)
	contacts := count("SELECT Id, AccountId FROM Contact")
	require.Len(t, contacts, 5)
	for _, c := range contacts {
		assert.Regexp(t, "^001", c.(map[string]any)["AccountId"], "every contact has an account")
	}
	var stderr cmdtest.LockedBuffer
	assert.Equal(t, exitUsage, run(t.Context(), []string{"fake", "-salesforce-accounts", "-1"}, io.Discard, &stderr, nil))
	assert.Contains(t, stderr.String(), "-salesforce-accounts")
}
