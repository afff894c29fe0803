package playbook

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/hubspot/hubspottest"
	"github.com/crmsync/crmsync/store/sqlite"
)

// slackRecorder is an httptest Slack incoming webhook.
type slackRecorder struct {
	mu    sync.Mutex
	texts []string
}

func (s *slackRecorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	var m struct {
		Text string `json:"text"`
	}
	if json.Unmarshal(body, &m) != nil || m.Text == "" {
		http.Error(w, "invalid_payload", http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	s.texts = append(s.texts, m.Text)
	s.mu.Unlock()
	_, _ = w.Write([]byte("ok"))
}

func (s *slackRecorder) posts() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.texts...)
}

// TestSchemaDigestPostsChangesOnce: the daily digest posts a new field
// once, and nothing on a day when nothing changed.
func TestSchemaDigestPostsChangesOnce(t *testing.T) {
	ctx := context.Background()
	w, err := NewWorld(6)
	require.NoError(t, err)
	defer w.Close()
	hc, sc, err := w.Clients()
	require.NoError(t, err)
	slack := &slackRecorder{}
	srv := httptest.NewServer(slack)
	defer srv.Close()
	st, err := sqlite.Open(ctx, sqlite.Config{Path: t.TempDir() + "/digest.db"})
	require.NoError(t, err)
	defer st.Close()
	eng, err := crmsync.NewEngine(crmsync.Config{Store: st})
	require.NoError(t, err)
	pol := Policy()
	digest := &crmsync.SchemaDigest{A: hc, B: sc, ObjectA: "contacts", ObjectB: "Contact", Policy: &pol,
		Slack: &crmsync.SlackNotifier{WebhookURL: srv.URL}}

	report := func(info crmsync.RunInfo) crmsync.SchemaDigestReport {
		var rep struct {
			Result crmsync.SchemaDigestReport `json:"result"`
		}
		require.NoError(t, json.Unmarshal(info.Report, &rep))
		return rep.Result
	}

	// Day 1: the baseline.
	info, err := eng.Run(ctx, "schema-digest", digest)
	require.NoError(t, err)
	first := report(info)
	assert.True(t, first.Baseline)
	assert.Equal(t, crmsync.DigestWorkflow, info.Workflow)
	afterBaseline := len(slack.posts())
	if first.Empty() {
		assert.Zero(t, afterBaseline, "an empty baseline posts nothing")
	}

	// Day 2: nothing changed, nothing posted.
	info, err = eng.Run(ctx, "schema-digest", digest)
	require.NoError(t, err)
	assert.True(t, report(info).Empty())
	assert.Len(t, slack.posts(), afterBaseline, "nothing posted when nothing changed")

	// Day 3: a HubSpot admin adds a field and a lifecycle stage option.
	w.HubSpot().DefineProperty("contacts", hubspottest.Property{Name: "favourite_colour", Label: "Favourite colour", Type: "string", FieldType: "text"})
	info, err = eng.Run(ctx, "schema-digest", digest)
	require.NoError(t, err)
	third := report(info)
	assert.Equal(t, []string{"hubspot.favourite_colour"}, third.Added)
	assert.True(t, third.Posted)
	posts := slack.posts()
	require.Len(t, posts, afterBaseline+1, "posted once")
	assert.Contains(t, posts[len(posts)-1], "new field hubspot.favourite_colour")

	// Day 4: the same schema again: no second post.
	info, err = eng.Run(ctx, "schema-digest", digest)
	require.NoError(t, err)
	assert.True(t, report(info).Empty())
	assert.Len(t, slack.posts(), afterBaseline+1, "the change is posted once only")
}
