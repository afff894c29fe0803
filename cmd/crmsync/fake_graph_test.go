package main

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/crmsync/crmsync/internal/cmdtest"
)

// TestFakeSeedsHubSpotCompaniesAndDeals runs "crmsync fake" with companies
// and deals and reads them, and their associations, over the v3 and v4 APIs.
func TestFakeSeedsHubSpotCompaniesAndDeals(t *testing.T) {
	vars := startFake(t, "-seed", "4", "-hubspot-companies", "2", "-hubspot-deals", "3")
	hsURL, hsTok := vars["HUBSPOT_BASE_URL"], vars["HUBSPOT_TOKEN"]

	status, body := send(t, "GET", hsURL+"/crm/v3/objects/companies?limit=100", hsTok, "")
	require.Equal(t, 200, status)
	companies := body.(map[string]any)["results"].([]any)
	require.Len(t, companies, 2)
	status, body = send(t, "GET", hsURL+"/crm/v3/objects/deals?limit=100", hsTok, "")
	require.Equal(t, 200, status)
	require.Len(t, body.(map[string]any)["results"], 3)

	status, body = send(t, "GET", hsURL+"/crm/v3/objects/contacts?limit=100", hsTok, "")
	require.Equal(t, 200, status)
	contacts := body.(map[string]any)["results"].([]any)
	require.Len(t, contacts, 4)
	first := contacts[0].(map[string]any)["id"].(string)
	status, body = send(t, "POST", hsURL+"/crm/v4/associations/contacts/companies/batch/read", hsTok, `{"inputs":[{"id":"`+first+`"}]}`)
	require.Equal(t, 200, status)
	to := body.(map[string]any)["results"].([]any)[0].(map[string]any)["to"].([]any)
	require.Len(t, to, 1)
	var typeIDs []float64
	for _, ty := range to[0].(map[string]any)["associationTypes"].([]any) {
		typeIDs = append(typeIDs, ty.(map[string]any)["typeId"].(float64))
	}
	assert.Equal(t, []float64{1, 279}, typeIDs, "the contact's primary company")

}

func TestFakeRefusesNegativeGraphCounts(t *testing.T) {
	var out, errOut cmdtest.LockedBuffer
	code := run(t.Context(), []string{"fake", "-hubspot-companies", "-1"}, &out, &errOut, nil)
	assert.NotZero(t, code)
	assert.Contains(t, errOut.String(), "-hubspot-companies and -hubspot-deals must not be negative")
}
