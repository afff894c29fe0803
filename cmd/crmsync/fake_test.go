package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/crmsync/crmsync/internal/cmdtest"
	"github.com/crmsync/crmsync/playbook"
)

// startFake runs "crmsync fake" with args on free ports until the test
// ends and returns the NAME=VALUE lines it printed.
func startFake(t *testing.T, args ...string) map[string]string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var out, errOut cmdtest.LockedBuffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, append([]string{"fake", "-hubspot-addr", "127.0.0.1:0", "-salesforce-addr", "127.0.0.1:0", "-salesforce-pubsub-addr", "127.0.0.1:0"}, args...), &out, &errOut, nil)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case code := <-done:
			assert.Zero(t, code, "exit code after interrupt; stderr %q", errOut.String())
		case <-time.After(10 * time.Second):
			t.Error("fake did not stop after interrupt")
		}
	})
	require.Eventually(t, func() bool {
		select {
		case code := <-done:
			done <- code
			return true
		default:
		}
		return strings.Contains(out.String(), "# Serving until interrupted.")
	}, 10*time.Second, 5*time.Millisecond)
	require.Contains(t, out.String(), "# Serving until interrupted.", "stderr %q", errOut.String())
	vars := map[string]string{}
	for _, line := range strings.Split(out.String(), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") {
			vars[k] = v
		}
	}
	return vars
}

// send makes one request with a bearer token and decodes the JSON answer.
func send(t *testing.T, method, u, token, body string) (int, any) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, u, rd)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+token)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	var v any
	if len(raw) > 0 {
		require.NoError(t, json.Unmarshal(raw, &v), "%s %s: %s", method, u, raw)
	}
	return resp.StatusCode, v
}

// TestFakeServesOfficialClientCalls runs "crmsync fake" and makes the calls
// the official HubSpot client and jsforce make, on the reference
// workflow's custom fields, with a small query page size.
func TestFakeServesOfficialClientCalls(t *testing.T) {
	vars := startFake(t, "-seed", "5", "-query-page-size", "2")
	hsURL, hsTok := vars["HUBSPOT_BASE_URL"], vars["HUBSPOT_TOKEN"]
	sfURL, sfTok := vars["SALESFORCE_INSTANCE_URL"], vars["SALESFORCE_ACCESS_TOKEN"]
	require.NotEmpty(t, hsURL)
	require.NotEmpty(t, sfURL)

	// HubSpot basicApi: create with a standard and a custom property, get,
	// update, archive.
	hsLink, sfLink := playbook.LinkFields()
	status, v := send(t, http.MethodPost, hsURL+"/crm/v3/objects/contacts", hsTok,
		`{"properties":{"email":"new@example.com","jobtitle":"CTO","`+hsLink+`":"ext-1"},"associations":[]}`)
	require.Equal(t, http.StatusCreated, status, "%v", v)
	id := v.(map[string]any)["id"].(string)
	status, v = send(t, http.MethodGet, hsURL+"/crm/v3/objects/contacts/"+id+"?properties=jobtitle,"+hsLink, hsTok, "")
	require.Equal(t, http.StatusOK, status, "%v", v)
	assert.Equal(t, map[string]any{"jobtitle": "CTO", hsLink: "ext-1"}, v.(map[string]any)["properties"])
	status, _ = send(t, http.MethodPatch, hsURL+"/crm/v3/objects/contacts/"+id, hsTok, `{"properties":{"city":"Paris"}}`)
	assert.Equal(t, http.StatusOK, status)
	status, _ = send(t, http.MethodDelete, hsURL+"/crm/v3/objects/contacts/"+id, hsTok, "")
	assert.Equal(t, http.StatusNoContent, status)

	// Salesforce: a query pages by 2 through query locators.
	status, v = send(t, http.MethodGet, sfURL+"/services/data/v50.0/query?q="+url.QueryEscape("SELECT Id, "+sfLink+" FROM Contact"), sfTok, "")
	require.Equal(t, http.StatusOK, status, "%v", v)
	var ids []string
	for {
		page := v.(map[string]any)
		for _, r := range page["records"].([]any) {
			ids = append(ids, r.(map[string]any)["Id"].(string))
		}
		assert.LessOrEqual(t, len(page["records"].([]any)), 2)
		next, _ := page["nextRecordsUrl"].(string)
		if next == "" {
			break
		}
		status, v = send(t, http.MethodGet, sfURL+next, sfTok, "")
		require.Equal(t, http.StatusOK, status, "%v", v)
	}
	require.Len(t, ids, 5)

	// jsforce retrieve and destroy of many records (sObject Collections).
	status, v = send(t, http.MethodPost, sfURL+"/services/data/v50.0/composite/sobjects/Contact", sfTok,
		`{"ids":["`+ids[0]+`","`+ids[1]+`"],"fields":["Id","Email","Deal_Stage__c"]}`)
	require.Equal(t, http.StatusOK, status, "%v", v)
	recs := v.([]any)
	require.Len(t, recs, 2)
	assert.Equal(t, ids[1], recs[1].(map[string]any)["Id"])
	status, v = send(t, http.MethodDelete, sfURL+"/services/data/v50.0/composite/sobjects?ids="+ids[0]+","+ids[1]+"&allOrNone=true", sfTok, "")
	require.Equal(t, http.StatusOK, status, "%v", v)
	for _, r := range v.([]any) {
		assert.Equal(t, true, r.(map[string]any)["success"], "%v", r)
	}
}

// TestFakeQueryPageSizeFlag: a page size out of range is a one-line usage
// error.
func TestFakeQueryPageSizeFlag(t *testing.T) {
	for _, n := range []string{"0", "2001", "-3"} {
		var out, errOut bytes.Buffer
		code := run(context.Background(), []string{"fake", "-query-page-size", n}, &out, &errOut, nil)
		assert.Equal(t, exitUsage, code, n)
		assert.Equal(t, "crmsync: fake: -query-page-size must be from 1 to 2000, not "+n+" (crmsync fake -h for help)\n", errOut.String())
	}
}
