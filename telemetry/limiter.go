package telemetry

import (
	"context"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/crmsync/crmsync"
)

// Limiter wraps l, the limiter of system's client, to record how long each
// call waited for its turn (crmsync.ratelimit.pacing, in seconds): the
// time rate limits cost, before any 429.
func (o *Observer) Limiter(system string, l crmsync.Limiter) crmsync.Limiter {
	return &limiter{o: o, l: l, attrs: metric.WithAttributes(attribute.String("system", system))}
}

type limiter struct {
	o     *Observer
	l     crmsync.Limiter
	attrs metric.MeasurementOption
}

func (l *limiter) Acquire(ctx context.Context) (func(), error) {
	start := time.Now()
	release, err := l.l.Acquire(ctx)
	if err == nil {
		l.o.pacing.Record(context.WithoutCancel(ctx), time.Since(start).Seconds(), l.attrs)
	}
	return release, err
}

func (l *limiter) Pause(t time.Time) { l.l.Pause(t) }
