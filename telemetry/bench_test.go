package telemetry_test

import (
	"context"
	"strconv"
	"testing"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/store/memory"
	"github.com/crmsync/crmsync/telemetry"
)

// BenchmarkStepObserved measures what the Observer adds to a step: a run
// of 100 steps, each committing one audit row, with and without tracing
// and metrics (an in-memory span recorder and a manual metric reader).
func BenchmarkStepObserved(b *testing.B) {
	for _, observed := range []bool{false, true} {
		b.Run("observed="+strconv.FormatBool(observed), func(b *testing.B) {
			cfg := crmsync.Config{Store: memory.New()}
			if observed {
				obs, err := telemetry.New(telemetry.Config{
					TracerProvider: sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(tracetest.NewSpanRecorder())),
					MeterProvider:  sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader())),
				})
				if err != nil {
					b.Fatal(err)
				}
				cfg.Observer = obs
			}
			eng, err := crmsync.NewEngine(cfg)
			if err != nil {
				b.Fatal(err)
			}
			wf := crmsync.WorkflowFunc(func(ctx context.Context, run *crmsync.Run) error {
				for i := range 100 {
					_, err := crmsync.Step(ctx, run, "s"+strconv.Itoa(i), func(ctx context.Context, a *crmsync.Attempt) (int, error) {
						a.Audit(crmsync.AuditEntry{Kind: crmsync.AuditWrite, System: "hubspot", RecordIDs: []string{"1"}})
						return i, nil
					}, nil)
					if err != nil {
						return err
					}
				}
				return nil
			})
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := eng.Run(context.Background(), "k"+strconv.Itoa(i), wf); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/100, "ns/step")
		})
	}
}
