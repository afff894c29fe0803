package crmsync

import (
	"context"
	"encoding/json"
	"fmt"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

// slackServer is a fake incoming webhook: it answers with the queued
// statuses, then 200 "ok", and records every message's text.
type slackServer struct {
	*httptest.Server
	mu       sync.Mutex
	statuses []int
	texts    []string
	bad      []string
}

func newSlackServer(t *testing.T, statuses ...int) *slackServer {
	s := &slackServer{statuses: statuses}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		defer s.mu.Unlock()
		body, _ := io.ReadAll(r.Body)
		var msg struct {
			Text string `json:"text"`
		}
		if r.Method != http.MethodPost || r.URL.Path != "/services/T000/B000/XXXX" ||
			r.Header.Get("Content-Type") != "application/json" || json.Unmarshal(body, &msg) != nil || msg.Text == "" {
			s.bad = append(s.bad, r.Method+" "+r.URL.Path)
			w.WriteHeader(http.StatusBadRequest)
			io.WriteString(w, "invalid_payload")
			return
		}
		s.texts = append(s.texts, msg.Text)
		if len(s.statuses) > 0 {
			st := s.statuses[0]
			s.statuses = s.statuses[1:]
			if st == http.StatusTooManyRequests {
				w.Header().Set("Retry-After", "0")
			}
			w.WriteHeader(st)
			fmt.Fprintf(w, "status_%d", st)
			return
		}
		io.WriteString(w, "ok")
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *slackServer) posts() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.bad) > 0 {
		panic(fmt.Sprintf("malformed webhook requests: %v", s.bad))
	}
	return append([]string(nil), s.texts...)
}

func (s *slackServer) notifier() *SlackNotifier {
	return &SlackNotifier{WebhookURL: s.URL + "/services/T000/B000/XXXX", HTTPClient: s.Client(),
		MinBackoff: time.Millisecond, MaxBackoff: 2 * time.Millisecond}
}

func stormConflicts(n int) []Conflict {
	cs := make([]Conflict, n)
	for i := range cs {
		cs[i] = Conflict{ID: fmt.Sprintf("c%04d", i), SystemA: hs, SystemB: sf,
			RecordA: fmt.Sprintf("%d", 1000+i), RecordB: fmt.Sprintf("003%015d", i),
			Field: "phone", FieldA: "phone", FieldB: "Phone", Type: TypeString,
			Base: "+1 555 0100", A: fmt.Sprintf("+1 555 %04d", i), B: "secret-b-value",
			Winner: sf, Rule: "most-recent"}
	}
	return cs
}

func TestSlackOneMessagePerCall(t *testing.T) {
	srv := newSlackServer(t)
	n := srv.notifier()
	require.NoError(t, n.HandleConflicts(context.Background(), "run-1", stormConflicts(1200)))
	posts := srv.posts()
	require.Len(t, posts, 1, "%d messages for one call, want 1", len(posts))
	msg := posts[0]
	for _, want := range []string{"run-1", "1200 conflicting edits", "phone on hubspot 1000 / salesforce 003000000000000000", "salesforce won (most-recent)", "…and 1150 more", "secret-b-value"} {
		assert.Contains(t, msg, want, "message lacks %q:\n%s", want, msg)
	}
	if err := n.HandleConflicts(context.Background(), "run-2", nil); err != nil || len(srv.posts()) != 1 {
		t.Errorf("no conflicts: err %v, %d posts; want nothing posted", err, len(srv.posts()))
	}
}

func TestSlackRetries(t *testing.T) {
	srv := newSlackServer(t, 503, 500, 429)
	require.NoError(t, srv.notifier().HandleConflicts(context.Background(), "run-1", stormConflicts(2)), "HandleConflicts after 5xx and 429")
	got := len(srv.posts())
	assert.Equal(t, 4, got, "%d attempts, want 4 (3 refused, 1 accepted)", got)

	// A refusal no retry can fix is not retried and is permanent.
	srv = newSlackServer(t, 404)
	err := srv.notifier().HandleConflicts(context.Background(), "run-1", stormConflicts(2))
	var se *SlackError
	if assert.ErrorAs(t, err, &se, "HandleConflicts on 404 = %v, want a permanent *SlackError", err) {
		assert.Equal(t, 404, se.Status, "HandleConflicts on 404 = %v, want a permanent *SlackError", err)
		assert.True(t, IsPermanent(err), "HandleConflicts on 404 = %v, want a permanent *SlackError", err)
	}
	got = len(srv.posts())
	assert.Equal(t, 1, got, "%d attempts on 404, want 1", got)

	// Attempts are capped, and the error does not carry the secret URL.
	srv = newSlackServer(t, 500, 500, 500, 500)
	n := srv.notifier()
	n.MaxAttempts = 3
	err = n.HandleConflicts(context.Background(), "run-1", stormConflicts(1))
	if assert.ErrorAs(t, err, &se, "HandleConflicts after 3 x 500 = %v, want a transient *SlackError", err) {
		assert.Equal(t, 500, se.Status, "HandleConflicts after 3 x 500 = %v, want a transient *SlackError", err)
		assert.False(t, IsPermanent(err), "HandleConflicts after 3 x 500 = %v, want a transient *SlackError", err)
	}
	got = len(srv.posts())
	assert.Equal(t, 3, got, "%d attempts, want 3", got)
	assert.NotContains(t, err.Error(), "XXXX", "error %q carries the webhook URL", err)
}

func TestSlackNetworkErrorHidesURL(t *testing.T) {
	srv := newSlackServer(t)
	n := srv.notifier()
	srv.Close()
	n.MaxAttempts = 2
	err := n.HandleConflicts(context.Background(), "run-1", stormConflicts(1))
	require.Error(t, err, "HandleConflicts to a closed server succeeded")
	assert.NotContains(t, err.Error(), "XXXX", "error %q carries the webhook URL", err)
	assert.NotContains(t, err.Error(), "/services/", "error %q carries the webhook URL", err)
}

func TestSlackContextCancelled(t *testing.T) {
	srv := newSlackServer(t, 500, 500, 500, 500, 500)
	n := srv.notifier()
	n.MinBackoff, n.MaxBackoff = time.Hour, time.Hour
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.HandleConflicts(ctx, "run-1", stormConflicts(1)) }()
	for len(srv.posts()) == 0 {
		time.Sleep(time.Millisecond)
	}
	cancel()
	err := <-done
	assert.ErrorIs(t, err, context.Canceled, "HandleConflicts after cancel = %v, want context.Canceled", err)
}

func TestSlackRedacts(t *testing.T) {
	cs := stormConflicts(3)
	cs = append(cs, Conflict{ID: "cx", SystemA: hs, SystemB: sf, RecordA: "7", RecordB: "003B", Field: "lifecyclestage",
		FieldA: "lifecyclestage", FieldB: "Lifecycle_Stage__c", A: "customer", B: "Opportunity", Base: "lead", Winner: hs, Rule: "owner(hubspot)", Held: true})
	values := []string{"+1 555 0000", "+1 555 0100", "secret-b-value", "customer", "Opportunity", "lead\""}

	srv := newSlackServer(t)
	n := srv.notifier()
	n.Redact = true
	require.NoError(t, n.HandleConflicts(context.Background(), "run-1", cs))
	msg := srv.posts()[0]
	for _, v := range values {
		assert.NotContains(t, msg, v, "redacted message carries a value %q:\n%s", v, msg)
	}
	for _, want := range []string{"phone", "1000", "003000000000000000", "lifecyclestage", "held", "1 held for a person"} {
		assert.Contains(t, msg, want, "redacted message lacks %q:\n%s", want, msg)
	}

	// Redacting some fields keeps the others' values.
	srv = newSlackServer(t)
	n = srv.notifier()
	n.RedactFields = []string{"Phone"}
	require.NoError(t, n.HandleConflicts(context.Background(), "run-1", cs))
	msg = srv.posts()[0]
	assert.NotContains(t, msg, "secret-b-value", "message carries a redacted field's value:\n%s", msg)
	assert.NotContains(t, msg, "+1 555 0000", "message carries a redacted field's value:\n%s", msg)
	assert.Contains(t, msg, `"customer"`, "message lacks the unredacted field's values:\n%s", msg)
	assert.Contains(t, msg, `"Opportunity"`, "message lacks the unredacted field's values:\n%s", msg)
}

func TestSlackEscapesMarkup(t *testing.T) {
	n := &SlackNotifier{}
	msg := n.Message("run-1", []Conflict{{ID: "c", Field: "f", A: "<!channel> & co", B: "x"}})
	assert.NotContains(t, msg, "<!channel>", "Message did not escape Slack markup:\n%s", msg)
	assert.Contains(t, msg, "&lt;!channel&gt; &amp; co", "Message did not escape Slack markup:\n%s", msg)
}

func TestConflictHandlerFunc(t *testing.T) {
	var got []Conflict
	var h ConflictHandler = ConflictHandlerFunc(func(_ context.Context, run RunID, cs []Conflict) error {
		got = cs
		return nil
	})
	err := h.HandleConflicts(context.Background(), "r", stormConflicts(2))
	assert.NoError(t, err, "ConflictHandlerFunc: err %v, got %d conflicts", err, len(got))
	assert.Len(t, got, 2, "ConflictHandlerFunc: err %v, got %d conflicts", err, len(got))
}

func TestConflictPrintsNoValues(t *testing.T) {
	c := stormConflicts(1)[0]
	for _, s := range []string{fmt.Sprint(c), fmt.Sprintf("%v", c), c.String(), c.LogValue().String()} {
		assert.NotContains(t, s, "secret-b-value", "printed conflict carries a value: %s", s)
		assert.NotContains(t, s, "555", "printed conflict carries a value: %s", s)
	}
}
