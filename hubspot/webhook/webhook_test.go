package webhook_test

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/crmsync/crmsync/hubspot/webhook"
	"github.com/crmsync/crmsync/trigger"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const secret = "app-client-secret-7f3a"

// A value that must never reach a log line.
const secretValue = "ada.lovelace@example.com"

var batch = []byte(`[
 {"eventId":1,"subscriptionId":12345,"portalId":62515,"appId":54321,"occurredAt":1764500000000,"subscriptionType":"contact.creation","attemptNumber":0,"objectId":123,"changeSource":"CRM","changeFlag":"NEW"},
 {"eventId":2,"subscriptionId":12346,"portalId":62515,"appId":54321,"occurredAt":1764500000500,"subscriptionType":"contact.propertyChange","attemptNumber":0,"objectId":123,"propertyName":"email","propertyValue":"` + secretValue + `","changeSource":"CRM_UI"},
 {"eventId":3,"subscriptionId":12346,"portalId":777,"appId":54321,"occurredAt":1764500000100,"subscriptionType":"contact.propertyChange","attemptNumber":0,"objectId":9,"propertyName":"phone","propertyValue":"+1 555 0100","changeSource":"API"},
 {"eventId":4,"subscriptionId":12346,"portalId":999,"appId":54321,"occurredAt":1764500000100,"subscriptionType":"contact.deletion","attemptNumber":1,"objectId":10}
]`)

// sign computes the v3 signature independently of the package.
func sign(secret, method, uri string, body []byte, ts string) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(method + uri + string(body) + ts))
	return base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

type bundle struct {
	srv  *httptest.Server
	logs *bytes.Buffer
	now  time.Time

	mu       sync.Mutex
	triggers []trigger.Event
}

func (b *bundle) got() []trigger.Event {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]trigger.Event(nil), b.triggers...)
}

func setup(t *testing.T, adjust ...func(*webhook.Config)) *bundle {
	t.Helper()
	b := &bundle{logs: &bytes.Buffer{}, now: time.UnixMilli(1764500001000)}
	var logMu sync.Mutex
	c := webhook.Config{
		Secret: secret,
		Key: func(portal int64) (string, bool) {
			switch portal {
			case 62515:
				return "team-a", true
			case 777:
				return "team-b", true
			}
			return "", false
		},
		Trigger: func(_ context.Context, e trigger.Event) error {
			b.mu.Lock()
			defer b.mu.Unlock()
			b.triggers = append(b.triggers, e)
			return nil
		},
		MaxBody: 4096,
		Logger:  slog.New(slog.NewTextHandler(lockedWriter{&logMu, b.logs}, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Now:     func() time.Time { return b.now },
	}
	for _, f := range adjust {
		f(&c)
	}
	h, err := webhook.New(c)
	require.NoError(t, err)
	b.srv = httptest.NewServer(h)
	t.Cleanup(b.srv.Close)
	return b
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// post sends body to the handler with the given headers.
func (b *bundle) post(t *testing.T, method string, body []byte, headers map[string]string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(method, b.srv.URL+"/hooks/hubspot?portal=all", bytes.NewReader(body))
	require.NoError(t, err)
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := b.srv.Client().Do(req)
	require.NoError(t, err)
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

// signed returns the headers HubSpot would send for body at time at.
func (b *bundle) signed(secret, method string, body []byte, at time.Time) map[string]string {
	ts := strconv.FormatInt(at.UnixMilli(), 10)
	return map[string]string{
		webhook.HeaderTimestamp: ts,
		webhook.HeaderSignature: sign(secret, method, b.srv.URL+"/hooks/hubspot?portal=all", body, ts),
	}
}

func TestSignedBatchTriggersEachKeyOnce(t *testing.T) {
	b := setup(t)
	resp := b.post(t, http.MethodPost, batch, b.signed(secret, http.MethodPost, batch, b.now.Add(-time.Second)))
	assert.Equal(t, http.StatusNoContent, resp.StatusCode)
	assert.Equal(t, []trigger.Event{
		{Key: "team-a", System: "hubspot", Reason: "contact.propertyChange", Count: 2},
		{Key: "team-b", System: "hubspot", Reason: "contact.propertyChange", Count: 1},
	}, b.got(), "one trigger per key; portal 999 is not synced")
	assert.NotContains(t, b.logs.String(), secretValue)
}

func TestSignatureMatchesSign(t *testing.T) {
	body := []byte(`[{"eventId":1}]`)
	assert.Equal(t, sign(secret, "POST", "https://example.com/h?x=1", body, "1764500000000"),
		webhook.Sign(secret, "POST", "https://example.com/h?x=1", body, "1764500000000"))
}

func TestRefusedRequestsDoNoWorkAndLogNoValue(t *testing.T) {
	big := []byte("[" + strings.Repeat(`{"portalId":62515,"propertyValue":"`+secretValue+`"},`, 200) + `{"portalId":62515}]`)
	for _, tc := range []struct {
		name    string
		method  string
		body    []byte
		headers func(b *bundle) map[string]string
		status  int
		reason  string
	}{
		{"unsigned", http.MethodPost, batch, func(b *bundle) map[string]string { return nil }, http.StatusUnauthorized, "unsigned"},
		{"no timestamp", http.MethodPost, batch, func(b *bundle) map[string]string {
			h := b.signed(secret, http.MethodPost, batch, b.now)
			delete(h, webhook.HeaderTimestamp)
			return h
		}, http.StatusUnauthorized, "unsigned"},
		{"timestamp not a number", http.MethodPost, batch, func(b *bundle) map[string]string {
			h := b.signed(secret, http.MethodPost, batch, b.now)
			h[webhook.HeaderTimestamp] = "yesterday"
			return h
		}, http.StatusUnauthorized, "not epoch milliseconds"},
		{"wrong secret", http.MethodPost, batch, func(b *bundle) map[string]string {
			return b.signed("another-app-secret", http.MethodPost, batch, b.now)
		}, http.StatusUnauthorized, "bad signature"},
		{"body changed after signing", http.MethodPost, batch, func(b *bundle) map[string]string {
			return b.signed(secret, http.MethodPost, []byte(`[]`), b.now)
		}, http.StatusUnauthorized, "bad signature"},
		{"timestamp changed after signing", http.MethodPost, batch, func(b *bundle) map[string]string {
			h := b.signed(secret, http.MethodPost, batch, b.now.Add(-time.Minute))
			h[webhook.HeaderTimestamp] = strconv.FormatInt(b.now.UnixMilli(), 10)
			return h
		}, http.StatusUnauthorized, "bad signature"},
		{"signature not base64", http.MethodPost, batch, func(b *bundle) map[string]string {
			h := b.signed(secret, http.MethodPost, batch, b.now)
			h[webhook.HeaderSignature] = "%%%"
			return h
		}, http.StatusUnauthorized, "not base64"},
		{"stale (over 5 minutes)", http.MethodPost, batch, func(b *bundle) map[string]string {
			return b.signed(secret, http.MethodPost, batch, b.now.Add(-5*time.Minute-time.Second))
		}, http.StatusUnauthorized, "stale"},
		{"from the future", http.MethodPost, batch, func(b *bundle) map[string]string {
			return b.signed(secret, http.MethodPost, batch, b.now.Add(6*time.Minute))
		}, http.StatusUnauthorized, "stale"},
		{"oversized", http.MethodPost, big, func(b *bundle) map[string]string {
			return b.signed(secret, http.MethodPost, big, b.now)
		}, http.StatusRequestEntityTooLarge, "body over 4096 bytes"},
		{"not a POST", http.MethodPut, batch, func(b *bundle) map[string]string {
			return b.signed(secret, http.MethodPut, batch, b.now)
		}, http.StatusMethodNotAllowed, "not POST"},
		{"signed but not JSON", http.MethodPost, []byte(`{"portalId":` + secretValue), func(b *bundle) map[string]string {
			return b.signed(secret, http.MethodPost, []byte(`{"portalId":`+secretValue), b.now)
		}, http.StatusBadRequest, "not a JSON array"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := setup(t)
			headers := tc.headers(b)
			resp := b.post(t, tc.method, tc.body, headers)
			assert.Equal(t, tc.status, resp.StatusCode)
			assert.Empty(t, b.got(), "a refused request triggers nothing")
			logs := b.logs.String()
			assert.Contains(t, logs, tc.reason, "the log says why")
			assert.Equal(t, 1, strings.Count(logs, "\n"), "one line per refusal: %s", logs)
			assert.NotContains(t, logs, secretValue, "no record value in the log")
			assert.NotContains(t, logs, secret, "no secret in the log")
			for _, v := range headers {
				assert.NotContains(t, logs, v, "no header value in the log")
			}
		})
	}
}

func TestAnswersWithoutWaitingForThePass(t *testing.T) {
	passStarted := make(chan struct{})
	var once sync.Once
	release := make(chan struct{})
	defer close(release)
	co, err := trigger.New(trigger.Config{
		Quiet: time.Millisecond, MaxWait: time.Millisecond,
		Run: func(ctx context.Context, p trigger.Pass) error {
			once.Do(func() { close(passStarted) })
			select {
			case <-release:
			case <-ctx.Done():
			}
			return nil
		},
	})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); co.Run(ctx) }()
	defer func() { <-done }()
	defer cancel()

	b := setup(t, func(c *webhook.Config) { c.Trigger = co.Record })
	resp := b.post(t, http.MethodPost, batch, b.signed(secret, http.MethodPost, batch, b.now))
	assert.Equal(t, http.StatusNoContent, resp.StatusCode)
	<-passStarted // the pass runs after the answer, and is still running
	resp = b.post(t, http.MethodPost, batch, b.signed(secret, http.MethodPost, batch, b.now))
	assert.Equal(t, http.StatusNoContent, resp.StatusCode, "answered while a pass of the key runs")
}

func TestTriggerFailureAsksForRetry(t *testing.T) {
	b := setup(t, func(c *webhook.Config) {
		c.Trigger = func(context.Context, trigger.Event) error { return errors.New("store down") }
	})
	resp := b.post(t, http.MethodPost, batch, b.signed(secret, http.MethodPost, batch, b.now))
	assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, "HubSpot retries a 5xx")
}

func TestIgnoreSources(t *testing.T) {
	events := []webhook.Event{
		{PortalID: 1, SubscriptionType: "contact.propertyChange", SourceID: "app-42"},
		{PortalID: 1, SubscriptionType: "contact.creation", SourceID: "userId:7"},
	}
	key := func(int64) (string, bool) { return "k", true }
	got := webhook.Triggers(events, key, map[string]bool{"app-42": true})
	assert.Equal(t, []trigger.Event{{Key: "k", System: "hubspot", Reason: "contact.creation", Count: 1}}, got)
	assert.Empty(t, webhook.Triggers(events[:1], key, map[string]bool{"app-42": true}))
}

func TestNewRequestIsAccepted(t *testing.T) {
	b := setup(t)
	req, err := webhook.NewRequest(context.Background(), secret, b.srv.URL+"/x", batch, b.now)
	require.NoError(t, err)
	resp, err := b.srv.Client().Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusNoContent, resp.StatusCode)
}

func TestConfigRequired(t *testing.T) {
	key := func(int64) (string, bool) { return "", false }
	trig := func(context.Context, trigger.Event) error { return nil }
	for _, tc := range []struct {
		c    webhook.Config
		want string
	}{
		{webhook.Config{Key: key, Trigger: trig}, "Secret is empty"},
		{webhook.Config{Secret: "s", Trigger: trig}, "Key is nil"},
		{webhook.Config{Secret: "s", Key: key}, "Trigger is nil"},
		{webhook.Config{Secret: "s", Key: key, Trigger: trig, MaxBody: -1}, "must not be negative"},
	} {
		_, err := webhook.New(tc.c)
		assert.ErrorContains(t, err, tc.want)
	}
}

func FuzzTriggers(f *testing.F) {
	f.Add(batch)
	f.Add([]byte(`[]`))
	f.Add([]byte(`[{"portalId":1},{"portalId":1,"occurredAt":-5}]`))
	f.Fuzz(func(t *testing.T, body []byte) {
		var events []webhook.Event
		if err := jsonUnmarshal(body, &events); err != nil {
			return
		}
		got := webhook.Triggers(events, func(p int64) (string, bool) { return fmt.Sprint(p % 3), p%3 != 0 }, nil)
		total := 0
		for _, e := range got {
			require.NotEmpty(t, e.Key)
			require.Positive(t, e.Count)
			total += e.Count
		}
		require.LessOrEqual(t, total, len(events))
	})
}

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }
