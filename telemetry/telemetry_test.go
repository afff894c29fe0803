package telemetry_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/playbook"
	"github.com/crmsync/crmsync/store/memory"
	"github.com/crmsync/crmsync/telemetry"
)

type bundle struct {
	obs    *telemetry.Observer
	spans  *tracetest.SpanRecorder
	reader *sdkmetric.ManualReader
	world  *playbook.World
	eng    *crmsync.Engine
	sync   *crmsync.Sync
}

// setup runs two real passes of the playbook over both fakes, users'
// edits between them, with the clients' HTTP instrumented.
func setup(t *testing.T) *bundle {
	t.Helper()
	b := &bundle{spans: tracetest.NewSpanRecorder(), reader: sdkmetric.NewManualReader()}
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(b.spans))
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(b.reader))
	var err error
	b.obs, err = telemetry.New(telemetry.Config{TracerProvider: tp, MeterProvider: mp})
	require.NoError(t, err)
	// 150 contacts: a few of them are ones Salesforce refuses.
	b.world, err = playbook.NewWorld(150)
	require.NoError(t, err)
	t.Cleanup(b.world.Close)
	b.sync, err = b.world.SyncHTTP(b.obs.HTTPClient("hubspot", nil), b.obs.HTTPClient("salesforce", nil))
	require.NoError(t, err)
	b.eng, err = crmsync.NewEngine(crmsync.Config{Store: memory.New(), Observer: b.obs})
	require.NoError(t, err)
	ctx := context.Background()
	_, err = b.eng.Run(ctx, "team-a", b.sync)
	require.NoError(t, err)
	require.NoError(t, b.world.SimulateEdits())
	_, err = b.eng.Run(ctx, "team-a", b.sync)
	require.NoError(t, err)
	return b
}

func (b *bundle) metrics(t *testing.T) map[string]metricdata.Metrics {
	t.Helper()
	var rm metricdata.ResourceMetrics
	require.NoError(t, b.reader.Collect(context.Background(), &rm))
	out := map[string]metricdata.Metrics{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			out[m.Name] = m
		}
	}
	return out
}

// sum adds the points of a counter whose attributes include want.
func sum(t *testing.T, m metricdata.Metrics, want ...attribute.KeyValue) int64 {
	t.Helper()
	s, ok := m.Data.(metricdata.Sum[int64])
	require.True(t, ok, "%s is a sum of int64, not %T", m.Name, m.Data)
	var n int64
	for _, p := range s.DataPoints {
		match := true
		for _, kv := range want {
			if v, ok := p.Attributes.Value(kv.Key); !ok || v != kv.Value {
				match = false
			}
		}
		if match {
			n += p.Value
		}
	}
	return n
}

func TestSpansPerRunAndStep(t *testing.T) {
	b := setup(t)
	var runs, steps int
	for _, s := range b.spans.Ended() {
		attrs := map[attribute.Key]attribute.Value{}
		for _, kv := range s.Attributes() {
			attrs[kv.Key] = kv.Value
		}
		switch s.Name() {
		case "crmsync.run":
			runs++
			assert.Equal(t, "team-a", attrs["crmsync.key"].AsString())
			assert.NotEmpty(t, attrs["crmsync.run.id"].AsString())
		case "crmsync.step":
			steps++
			assert.Equal(t, "team-a", attrs["crmsync.key"].AsString())
			assert.NotEmpty(t, attrs["crmsync.step"].AsString())
			assert.GreaterOrEqual(t, attrs["crmsync.attempt"].AsInt64(), int64(1))
			require.True(t, s.Parent().IsValid(), "a step span has the run's span as parent")
		}
		for _, kv := range s.Attributes() {
			assert.NotContains(t, kv.Value.String(), "@", "span %s attribute %s holds an email", s.Name(), kv.Key)
		}
	}
	assert.Equal(t, 2, runs, "one span per run")
	assert.Greater(t, steps, 4, "a span per step attempt")
}

func TestMetricsReadBack(t *testing.T) {
	b := setup(t)
	m := b.metrics(t)
	for _, name := range []string{"crmsync.api.calls", "crmsync.writes", "crmsync.conflicts", "crmsync.dead_letters",
		"crmsync.run.duration", "crmsync.cursor.lag", "crmsync.api.budget.used", "crmsync.api.budget.limit"} {
		_, ok := m[name]
		require.True(t, ok, "metric %s not recorded", name)
	}
	hs := sum(t, m["crmsync.api.calls"], attribute.String("system", "hubspot"))
	sf := sum(t, m["crmsync.api.calls"], attribute.String("system", "salesforce"))
	assert.Equal(t, int64(b.world.HubSpot().DailyUsed()), hs, "hubspot calls counted = calls the fake served")
	assert.Positive(t, sf, "salesforce calls")
	assert.Positive(t, sum(t, m["crmsync.api.calls"], attribute.String("system", "salesforce"), attribute.String("status", "200")))
	created := sum(t, m["crmsync.writes"], attribute.String("object", "Contact"), attribute.String("direction", "hubspot->salesforce"))
	assert.Positive(t, created, "writes to Salesforce contacts")
	assert.Positive(t, sum(t, m["crmsync.conflicts"]), "conflicts (the second pass holds some)")
	assert.Positive(t, sum(t, m["crmsync.dead_letters"]), "dead letters (the world has records Salesforce refuses)")

	h, ok := m["crmsync.run.duration"].Data.(metricdata.Histogram[float64])
	require.True(t, ok)
	var n uint64
	for _, p := range h.DataPoints {
		n += p.Count
	}
	assert.Equal(t, uint64(2), n, "two runs timed")

	lag, ok := m["crmsync.cursor.lag"].Data.(metricdata.Gauge[float64])
	require.True(t, ok)
	systems := map[string]bool{}
	for _, p := range lag.DataPoints {
		v, _ := p.Attributes.Value("cursor")
		systems[v.AsString()] = true
		assert.GreaterOrEqual(t, p.Value, 0.0)
	}
	assert.Equal(t, map[string]bool{"hubspot": true, "salesforce": true}, systems)

	used, ok := m["crmsync.api.budget.used"].Data.(metricdata.Gauge[int64])
	require.True(t, ok)
	for _, p := range used.DataPoints {
		if v, _ := p.Attributes.Value("system"); v.AsString() == "hubspot" {
			assert.Equal(t, int64(b.world.HubSpot().DailyUsed()), p.Value)
		}
	}
}

// TestPrometheusEndpoint scrapes /metrics after a pass.
func TestPrometheusEndpoint(t *testing.T) {
	mp, handler, err := telemetry.NewPrometheus()
	require.NoError(t, err)
	obs, err := telemetry.New(telemetry.Config{MeterProvider: mp})
	require.NoError(t, err)
	w, err := playbook.NewWorld(20)
	require.NoError(t, err)
	defer w.Close()
	s, err := w.SyncHTTP(obs.HTTPClient("hubspot", nil), obs.HTTPClient("salesforce", nil))
	require.NoError(t, err)
	eng, err := crmsync.NewEngine(crmsync.Config{Store: memory.New(), Observer: obs})
	require.NoError(t, err)
	_, err = eng.Run(context.Background(), "team-a", s)
	require.NoError(t, err)

	srv := httptest.NewServer(handler)
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	text := string(body)
	assert.Contains(t, text, `crmsync_api_calls_total{`)
	assert.Contains(t, text, `system="hubspot"`)
	assert.Contains(t, text, `crmsync_run_duration_seconds_count{`)
	assert.Contains(t, text, `crmsync_writes_total{`)
	assert.False(t, strings.Contains(text, "@"), "no record values (emails) in metrics")
}

// TestLimiterRecordsPacing: every call through a wrapped limiter records
// its wait, under its system.
func TestLimiterRecordsPacing(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	obs, err := telemetry.New(telemetry.Config{MeterProvider: sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))})
	require.NoError(t, err)
	th, err := crmsync.NewThrottle(crmsync.ThrottleConfig{InFlight: 2})
	require.NoError(t, err)
	lim := obs.Limiter("hubspot", th)
	for range 5 {
		release, err := lim.Acquire(context.Background())
		require.NoError(t, err)
		release()
	}
	var rm metricdata.ResourceMetrics
	require.NoError(t, reader.Collect(context.Background(), &rm))
	var count uint64
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != "crmsync.ratelimit.pacing" {
				continue
			}
			for _, p := range m.Data.(metricdata.Histogram[float64]).DataPoints {
				v, _ := p.Attributes.Value("system")
				assert.Equal(t, "hubspot", v.AsString())
				count += p.Count
			}
		}
	}
	assert.Equal(t, uint64(5), count, "one measurement per call")
}
