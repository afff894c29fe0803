package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/crmsync/crmsync/hubspot/hubspottest"
	"github.com/crmsync/crmsync/hubspot/webhook"
	"github.com/crmsync/crmsync/trigger"
)

// TestFakeSendsWebhooks: with -hubspot-webhook-url, a write to the HubSpot
// fake reaches a webhook.Handler at that URL, signed with the client
// secret the fake prints.
func TestFakeSendsWebhooks(t *testing.T) {
	var mu sync.Mutex
	var got []trigger.Event
	var secret string
	ready := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-ready
		h, err := webhook.New(webhook.Config{
			Secret: secret,
			Key:    func(portal int64) (string, bool) { return "portal", portal == hubspottest.DefaultPortalID },
			Trigger: func(_ context.Context, e trigger.Event) error {
				mu.Lock()
				defer mu.Unlock()
				got = append(got, e)
				return nil
			},
		})
		if !assert.NoError(t, err) {
			return
		}
		h.ServeHTTP(w, r)
	}))
	defer srv.Close()
	vars := startFake(t, "-seed", "2", "-hubspot-webhook-url", srv.URL+"/hooks")
	secret = vars["HUBSPOT_CLIENT_SECRET"]
	close(ready)
	code, _ := send(t, http.MethodPost, vars["HUBSPOT_BASE_URL"]+"/crm/v3/objects/contacts", vars["HUBSPOT_TOKEN"],
		`{"properties":{"email":"hook@example.com"}}`)
	require.Equal(t, http.StatusCreated, code)
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got) > 0
	}, 10*time.Second, 10*time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	assert.Equal(t, trigger.Event{Key: "portal", System: "hubspot", Reason: "contact.creation", Count: 1}, got[0])
}
