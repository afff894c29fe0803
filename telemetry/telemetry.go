// Package telemetry traces and measures crmsync runs with OpenTelemetry.
//
// An [Observer] is a [crmsync.Observer]: set it as crmsync.Config.Observer
// and every run gets a span ("crmsync.run"), every attempt of a step a
// child span ("crmsync.step"), with the key, run id, step id and attempt
// as attributes, never record values. It also keeps these metrics:
//
//	crmsync.api.calls          counter    system, endpoint, status (HTTPClient)
//	crmsync.api.rate_limited   counter    system, endpoint: 429 responses (HTTPClient)
//	crmsync.ratelimit.waits    counter    key: waits a step made for a rate limit
//	crmsync.ratelimit.wait     histogram  key: their length, in seconds
//	crmsync.ratelimit.pacing   histogram  system: each call's wait for its limiter (Limiter), in seconds
//	crmsync.writes             counter    system, object, direction, kind (create, update, ...)
//	crmsync.conflicts          counter    key, held (true, false)
//	crmsync.dead_letters       counter    key, system
//	crmsync.run.duration       histogram  key, status, in seconds
//	crmsync.cursor.lag         gauge      key, cursor: how far behind now a sync cursor is, in seconds
//	crmsync.api.budget.used    gauge      system: daily API calls used, as the last pass learnt
//	crmsync.api.budget.limit   gauge      system: the daily allocation
//
// API calls are counted by the HTTP clients [Observer.HTTPClient] returns:
// hand them to hubspot.Config.HTTPClient and salesforce.Config.HTTPClient.
//
// The providers are the global ones (otel.GetTracerProvider,
// otel.GetMeterProvider) unless Config names others, so that a service
// that already set up OpenTelemetry gets crmsync's spans and metrics in its
// own pipeline. [NewPrometheus] makes a meter provider with a /metrics
// handler, as crmsync serve and worker processes use.
package telemetry

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/crmsync/crmsync"
)

// scope is the instrumentation scope of crmsync's spans and metrics.
const scope = "github.com/crmsync/crmsync"

// Config configures an Observer. Every field is optional.
type Config struct {
	// TracerProvider makes the spans; nil means otel.GetTracerProvider().
	TracerProvider trace.TracerProvider
	// MeterProvider makes the metrics; nil means otel.GetMeterProvider().
	MeterProvider metric.MeterProvider
	// Now is the clock of cursor lag; nil means time.Now.
	Now func() time.Time
}

// Observer traces and measures runs; see the package documentation. It is
// safe for concurrent use.
type Observer struct {
	tracer trace.Tracer
	now    func() time.Time

	apiCalls, rateLimited, waits, writes, conflicts, dead metric.Int64Counter
	wait, runDuration, pacing                             metric.Float64Histogram

	mu      sync.Mutex
	cursors map[[2]string]time.Time // key, cursor -> position
	budgets map[string]crmsync.APIBudget
}

var _ crmsync.Observer = (*Observer)(nil)

// New returns an Observer that records through c's providers.
func New(c Config) (*Observer, error) {
	tp, mp := c.TracerProvider, c.MeterProvider
	if tp == nil {
		tp = otel.GetTracerProvider()
	}
	if mp == nil {
		mp = otel.GetMeterProvider()
	}
	o := &Observer{tracer: tp.Tracer(scope), now: c.Now, cursors: map[[2]string]time.Time{}, budgets: map[string]crmsync.APIBudget{}}
	if o.now == nil {
		o.now = time.Now
	}
	m := mp.Meter(scope)
	var errs []error
	counter := func(name, desc string) metric.Int64Counter {
		c, err := m.Int64Counter(name, metric.WithDescription(desc))
		errs = append(errs, err)
		return c
	}
	o.apiCalls = counter("crmsync.api.calls", "HTTP calls to a CRM API, by system, endpoint and status")
	o.rateLimited = counter("crmsync.api.rate_limited", "CRM API responses refusing a call for rate (429)")
	o.waits = counter("crmsync.ratelimit.waits", "Waits a step made for a rate limit")
	o.writes = counter("crmsync.writes", "Records written, by system, object, direction and kind")
	o.conflicts = counter("crmsync.conflicts", "Fields changed on both sides to different values")
	o.dead = counter("crmsync.dead_letters", "Payloads parked in the dead-letter queue")
	var err error
	o.wait, err = m.Float64Histogram("crmsync.ratelimit.wait", metric.WithUnit("s"), metric.WithDescription("Length of rate-limit waits"))
	errs = append(errs, err)
	o.pacing, err = m.Float64Histogram("crmsync.ratelimit.pacing", metric.WithUnit("s"), metric.WithDescription("Time a call waited for its client's rate limiter"))
	errs = append(errs, err)
	o.runDuration, err = m.Float64Histogram("crmsync.run.duration", metric.WithUnit("s"), metric.WithDescription("Run wall time, by key and outcome"))
	errs = append(errs, err)
	lag, err := m.Float64ObservableGauge("crmsync.cursor.lag", metric.WithUnit("s"), metric.WithDescription("How far behind now a sync cursor is"))
	errs = append(errs, err)
	used, err := m.Int64ObservableGauge("crmsync.api.budget.used", metric.WithDescription("Daily API calls used, as the last pass learnt"))
	errs = append(errs, err)
	limit, err := m.Int64ObservableGauge("crmsync.api.budget.limit", metric.WithDescription("Daily API allocation, as the last pass learnt"))
	errs = append(errs, err)
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	_, err = m.RegisterCallback(func(_ context.Context, ob metric.Observer) error {
		o.mu.Lock()
		defer o.mu.Unlock()
		now := o.now()
		for k, t := range o.cursors {
			ob.ObserveFloat64(lag, now.Sub(t).Seconds(), metric.WithAttributes(attribute.String("key", k[0]), attribute.String("cursor", k[1])))
		}
		for sys, b := range o.budgets {
			attrs := metric.WithAttributes(attribute.String("system", sys))
			ob.ObserveInt64(used, b.Used, attrs)
			ob.ObserveInt64(limit, b.Limit, attrs)
		}
		return nil
	}, lag, used, limit)
	if err != nil {
		return nil, err
	}
	return o, nil
}

// RunStarted implements crmsync.Observer: it opens the run's span.
func (o *Observer) RunStarted(ctx context.Context, run crmsync.RunInfo) (context.Context, func(crmsync.RunInfo, error)) {
	ctx, span := o.tracer.Start(ctx, "crmsync.run", trace.WithAttributes(
		attribute.String("crmsync.key", run.Key),
		attribute.String("crmsync.run.id", string(run.ID)),
		attribute.String("crmsync.workflow", run.Workflow),
		attribute.Int("crmsync.attempt", run.Attempts),
	))
	start := time.Now()
	return ctx, func(end crmsync.RunInfo, err error) {
		status := string(end.Status)
		if status == "" {
			status = "error"
		}
		span.SetAttributes(attribute.String("crmsync.run.status", status))
		if err != nil {
			span.SetStatus(codes.Error, errorKind(err))
		}
		span.End()
		o.runDuration.Record(context.WithoutCancel(ctx), time.Since(start).Seconds(),
			metric.WithAttributes(attribute.String("key", run.Key), attribute.String("status", status)))
		o.noteReport(run.Key, end.Report)
	}
}

// errorKind names an error's class for a span status, never its text
// (which may quote a CRM's message about a record).
func errorKind(err error) string {
	switch {
	case errors.Is(err, crmsync.ErrBusy):
		return "busy"
	case errors.Is(err, crmsync.ErrLeaseLost):
		return "lease lost"
	case errors.Is(err, crmsync.ErrDailyLimit):
		return "daily limit"
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return "cancelled"
	case crmsync.IsPermanent(err):
		return "permanent"
	}
	return "transient"
}

// noteReport keeps a sync report's cursors and budgets for the gauges.
func (o *Observer) noteReport(key string, report json.RawMessage) {
	var rep struct {
		Result struct {
			Cursors map[string]string            `json:"cursors"`
			Budget  map[string]crmsync.APIBudget `json:"budget"`
		} `json:"result"`
	}
	if len(report) == 0 || json.Unmarshal(report, &rep) != nil {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	for name, v := range rep.Result.Cursors {
		if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
			o.cursors[[2]string{key, name}] = t
		}
	}
	for sys, b := range rep.Result.Budget {
		o.budgets[sys] = b
	}
}

// StepStarted implements crmsync.Observer: it opens a span for the attempt.
func (o *Observer) StepStarted(ctx context.Context, run crmsync.RunInfo, step string, attempt int) (context.Context, func(error)) {
	ctx, span := o.tracer.Start(ctx, "crmsync.step", trace.WithAttributes(
		attribute.String("crmsync.key", run.Key),
		attribute.String("crmsync.run.id", string(run.ID)),
		attribute.String("crmsync.step", step),
		attribute.Int("crmsync.attempt", attempt),
	))
	return ctx, func(err error) {
		if err != nil {
			span.SetStatus(codes.Error, errorKind(err))
		}
		span.End()
	}
}

// RateLimited implements crmsync.Observer.
func (o *Observer) RateLimited(ctx context.Context, run crmsync.RunInfo, _ string, wait time.Duration) {
	attrs := metric.WithAttributes(attribute.String("key", run.Key))
	o.waits.Add(ctx, 1, attrs)
	o.wait.Record(ctx, wait.Seconds(), attrs)
}

// Audited implements crmsync.Observer: it counts writes, conflicts and dead
// letters from their audit rows.
func (o *Observer) Audited(ctx context.Context, rows []crmsync.AuditEntry) {
	for _, r := range rows {
		switch r.Kind {
		case crmsync.AuditWrite:
			var d struct {
				Direction string `json:"direction"`
				Op        string `json:"op"`
				Object    string `json:"object"`
			}
			_ = json.Unmarshal(r.Detail, &d)
			o.writes.Add(ctx, 1, metric.WithAttributes(attribute.String("system", r.System),
				attribute.String("object", d.Object), attribute.String("direction", d.Direction), attribute.String("kind", d.Op)))
		case crmsync.AuditConflict:
			var d struct {
				Held    bool `json:"held"`
				Applied bool `json:"applied"`
			}
			_ = json.Unmarshal(r.Detail, &d)
			if d.Applied {
				continue // a person's choice applied: the conflict was counted when found
			}
			o.conflicts.Add(ctx, 1, metric.WithAttributes(attribute.String("key", r.Key), attribute.Bool("held", d.Held)))
		case crmsync.AuditDeadLetter:
			o.dead.Add(ctx, 1, metric.WithAttributes(attribute.String("key", r.Key), attribute.String("system", r.System)))
		}
	}
}

// HTTPClient returns an HTTP client for a CRM client of system ("hubspot",
// "salesforce") that counts its calls by endpoint and status; base is the
// client to wrap (its transport is used), nil meaning http.DefaultClient.
func (o *Observer) HTTPClient(system string, base *http.Client) *http.Client {
	c := http.Client{}
	if base != nil {
		c = *base
	}
	c.Transport = o.Transport(system, c.Transport)
	return &c
}

// Transport wraps base (nil: http.DefaultTransport) to count calls to
// system by endpoint (the URL path with ids as {id}) and status.
func (o *Observer) Transport(system string, base http.RoundTripper) http.RoundTripper {
	if base == nil {
		base = http.DefaultTransport
	}
	return &transport{o: o, system: system, base: base}
}

type transport struct {
	o      *Observer
	system string
	base   http.RoundTripper
}

func (t *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.base.RoundTrip(req)
	status := "error"
	if err == nil {
		status = strconv.Itoa(resp.StatusCode)
	}
	ep := Endpoint(req.URL.Path)
	ctx := context.WithoutCancel(req.Context())
	t.o.apiCalls.Add(ctx, 1, metric.WithAttributes(attribute.String("system", t.system),
		attribute.String("endpoint", ep), attribute.String("status", status)))
	if err == nil && resp.StatusCode == http.StatusTooManyRequests {
		t.o.rateLimited.Add(ctx, 1, metric.WithAttributes(attribute.String("system", t.system), attribute.String("endpoint", ep)))
	}
	return resp, err
}

// Endpoint is a URL path with its record ids, query locators and other
// per-call segments replaced by {id}, so that metrics stay few:
// "/crm/v3/objects/contacts/1234" gives "/crm/v3/objects/contacts/{id}".
func Endpoint(path string) string {
	segs := strings.Split(path, "/")
	for i, s := range segs {
		if isID(s) {
			segs[i] = "{id}"
		}
	}
	return strings.Join(segs, "/")
}

// isID reports a path segment that names one record or one call: all
// digits, or a long token with digits (Salesforce ids, query locators).
func isID(s string) bool {
	if s == "" {
		return false
	}
	digits, other := 0, 0
	for _, r := range s {
		switch {
		case r >= '0' && r <= '9':
			digits++
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r == '-', r == '_':
			other++
		default:
			return false // "v60.0", "@email"
		}
	}
	return digits == len(s) || (digits > 0 && len(s) >= 15)
}
