package worker_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/playbook"
	"github.com/crmsync/crmsync/store/sqlite"
	"github.com/crmsync/crmsync/telemetry"
	"github.com/crmsync/crmsync/worker"
)

func scrape(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(b)
}

// TestWorkerHandler: a worker syncing the playbook over the fakes serves
// its metrics at /metrics, /healthz, and /readyz while its store answers.
func TestWorkerHandler(t *testing.T) {
	ctx := context.Background()
	st, err := sqlite.Open(ctx, sqlite.Config{Path: t.TempDir() + "/w.db"})
	require.NoError(t, err)
	mp, metrics, err := telemetry.NewPrometheus()
	require.NoError(t, err)
	obs, err := telemetry.New(telemetry.Config{MeterProvider: mp})
	require.NoError(t, err)
	world, err := playbook.NewWorld(20)
	require.NoError(t, err)
	defer world.Close()
	s, err := world.SyncHTTP(obs.HTTPClient("hubspot", nil), obs.HTTPClient("salesforce", nil))
	require.NoError(t, err)
	eng, err := crmsync.NewEngine(crmsync.Config{Store: st, Observer: obs})
	require.NoError(t, err)
	ran := make(chan struct{}, 1)
	w, err := worker.New(worker.Config{Engine: eng, Keys: []string{"team-a"}, Interval: time.Hour, Tick: 10 * time.Millisecond,
		Workflow: func(string) crmsync.Workflow { return s }, Metrics: metrics,
		OnRun: func(string, crmsync.RunInfo, error) {
			select {
			case ran <- struct{}{}:
			default:
			}
		}})
	require.NoError(t, err)
	srv := httptest.NewServer(w.Handler())
	defer srv.Close()

	wctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- w.Run(wctx) }()
	select {
	case <-ran:
	case <-time.After(30 * time.Second):
		t.Fatal("the worker ran no key")
	}
	stop()
	require.NoError(t, <-done)

	code, body := scrape(t, srv.URL+"/healthz")
	assert.Equal(t, http.StatusOK, code)
	assert.Equal(t, "ok\n", body)
	code, _ = scrape(t, srv.URL+"/readyz")
	assert.Equal(t, http.StatusOK, code)
	code, body = scrape(t, srv.URL+"/metrics")
	assert.Equal(t, http.StatusOK, code)
	assert.Contains(t, body, `crmsync_run_duration_seconds_count{key="team-a",`)
	assert.Regexp(t, `crmsync_api_calls_total\{endpoint="[^"]+",[^}]*system="salesforce"`, body)

	require.NoError(t, st.Close())
	code, _ = scrape(t, srv.URL+"/readyz")
	assert.Equal(t, http.StatusServiceUnavailable, code, "store closed: not ready")
}
