package hubspottest_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/crmsync/crmsync/hubspot/hubspottest"
	"github.com/crmsync/crmsync/hubspot/webhook"
	"github.com/crmsync/crmsync/trigger"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// receiver is an app's webhook endpoint: the real webhook.Handler, behind
// a wrapper that records the batches and can fail or stall requests.
type receiver struct {
	srv *httptest.Server

	mu       sync.Mutex
	batches  [][]map[string]any
	triggers []trigger.Event
	fail     int           // answer the next fail requests with 500
	stall    int           // hold the next stall requests for stallFor
	stallFor time.Duration // before they are handled
}

func newReceiver(t *testing.T) *receiver {
	rc := &receiver{}
	h, err := webhook.New(webhook.Config{
		Secret: hubspottest.DefaultClientSecret,
		Key: func(portal int64) (string, bool) {
			return fmt.Sprint(portal), portal == hubspottest.DefaultPortalID
		},
		Trigger: func(_ context.Context, e trigger.Event) error {
			rc.mu.Lock()
			defer rc.mu.Unlock()
			rc.triggers = append(rc.triggers, e)
			return nil
		},
	})
	require.NoError(t, err)
	rc.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		rc.mu.Lock()
		fail := rc.fail > 0
		if fail {
			rc.fail--
		}
		stall := rc.stall > 0
		if stall {
			rc.stall--
		}
		rc.mu.Unlock()
		if stall {
			select {
			case <-time.After(rc.stallFor):
			case <-r.Context().Done():
				return
			}
		}
		if fail {
			http.Error(w, "down", http.StatusInternalServerError)
			return
		}
		rec := httptest.NewRecorder()
		r.Body = io.NopCloser(bytes.NewReader(body))
		h.ServeHTTP(rec, r)
		if rec.Code == http.StatusNoContent {
			var events []map[string]any
			require.NoError(t, json.Unmarshal(body, &events))
			rc.mu.Lock()
			rc.batches = append(rc.batches, events)
			rc.mu.Unlock()
		}
		w.WriteHeader(rec.Code)
	}))
	t.Cleanup(rc.srv.Close)
	return rc
}

func (rc *receiver) events() []map[string]any {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	var out []map[string]any
	for _, b := range rc.batches {
		out = append(out, b...)
	}
	return out
}

func waitWebhooks(t *testing.T, s *hubspottest.Server) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(t, s.WaitWebhooks(ctx))
}

// apiCall sends an API request to the fake as a client would.
func apiCall(t *testing.T, s *hubspottest.Server, method, path, body string) {
	t.Helper()
	req, err := http.NewRequest(method, s.BaseURL()+path, strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+s.AccessToken())
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	require.Less(t, resp.StatusCode, 300, "%s %s", method, path)
}

func TestWebhooksAfterWritesInSignedBatches(t *testing.T) {
	s := hubspottest.NewServer(t, hubspottest.WithoutRateLimits())
	rc := newReceiver(t)
	require.NoError(t, s.SendWebhooks(hubspottest.WebhookConfig{URL: rc.srv.URL + "/hooks", BatchSize: 7}))

	var inputs []string
	for i := range 20 {
		inputs = append(inputs, fmt.Sprintf(`{"properties":{"email":"w%d@example.com"}}`, i))
	}
	apiCall(t, s, http.MethodPost, "/crm/v3/objects/contacts/batch/create", `{"inputs":[`+strings.Join(inputs, ",")+`]}`)
	ids := s.Seed("contacts", map[string]string{"email": "ui@example.com"})
	require.NoError(t, s.Edit("contacts", ids[0], map[string]string{"firstname": "Ada"}))
	require.NoError(t, s.Archive("contacts", ids[0]))
	waitWebhooks(t, s)

	events := rc.events()
	require.Len(t, events, 23, "20 API creations, a UI creation, an edit and a deletion")
	rc.mu.Lock()
	for _, b := range rc.batches {
		assert.LessOrEqual(t, len(b), 7, "BatchSize caps a request")
	}
	assert.GreaterOrEqual(t, len(rc.batches), 4)
	var triggered int
	for _, tr := range rc.triggers {
		triggered += tr.Count
	}
	rc.mu.Unlock()
	assert.Equal(t, 23, triggered, "every event reached the handler's trigger")
	count := map[string]int{}
	for _, e := range events {
		count[fmt.Sprint(e["subscriptionType"], " ", e["changeSource"])]++
		assert.EqualValues(t, hubspottest.DefaultPortalID, e["portalId"])
		assert.EqualValues(t, 0, e["attemptNumber"])
	}
	assert.Equal(t, map[string]int{
		"contact.creation INTEGRATION":  20,
		"contact.creation CRM_UI":       1,
		"contact.propertyChange CRM_UI": 1,
		"contact.deletion CRM_UI":       1,
	}, count)
	st := s.WebhookStats()
	assert.Equal(t, hubspottest.WebhookStats{Events: 23, Delivered: 23, Requests: st.Requests}, st)
}

func TestWebhooksRetryAfterErrorsAndTimeouts(t *testing.T) {
	s := hubspottest.NewServer(t, hubspottest.WithoutRateLimits())
	rc := newReceiver(t)
	rc.fail = 2
	require.NoError(t, s.SendWebhooks(hubspottest.WebhookConfig{
		URL: rc.srv.URL, RetryDelay: func(int) time.Duration { return 10 * time.Millisecond },
	}))
	s.Seed("contacts", map[string]string{"email": "a@example.com"})
	waitWebhooks(t, s)
	events := rc.events()
	require.Len(t, events, 1)
	assert.EqualValues(t, 2, events[0]["attemptNumber"], "the third try is accepted")
	st := s.WebhookStats()
	assert.Equal(t, 2, st.Retries)
	assert.Equal(t, 1, st.Delivered)

	// A reply slower than the timeout counts as a failure.
	rc.mu.Lock()
	rc.stall, rc.stallFor = 1, 2*time.Second
	rc.mu.Unlock()
	require.NoError(t, s.SendWebhooks(hubspottest.WebhookConfig{
		URL: rc.srv.URL, Timeout: 200 * time.Millisecond, RetryDelay: func(int) time.Duration { return 10 * time.Millisecond },
	}))
	s.Seed("contacts", map[string]string{"email": "b@example.com"})
	waitWebhooks(t, s)
	st = s.WebhookStats()
	assert.Equal(t, 1, st.Retries, "the stalled request is sent again")
	assert.Equal(t, 1, st.Delivered)
}

func TestWebhooksGiveUpAfterAttempts(t *testing.T) {
	s := hubspottest.NewServer(t, hubspottest.WithoutRateLimits())
	rc := newReceiver(t)
	rc.fail = 100
	require.NoError(t, s.SendWebhooks(hubspottest.WebhookConfig{
		URL: rc.srv.URL, Attempts: 3, RetryDelay: func(int) time.Duration { return time.Millisecond },
	}))
	s.Seed("contacts", map[string]string{"email": "a@example.com"})
	waitWebhooks(t, s)
	assert.Equal(t, hubspottest.WebhookStats{Events: 1, Dropped: 1, Requests: 3, Retries: 2}, s.WebhookStats())
	assert.Empty(t, rc.events())
}
