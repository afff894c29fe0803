package crmsync

import (
	"context"
	"time"
)

// Observer follows an Engine's runs, steps, rate-limit waits and audit rows,
// for traces and metrics (package telemetry implements it with
// OpenTelemetry) without the engine depending on a telemetry library.
// Observers see ids, keys, step ids and counts, never record values.
// Implementations must be safe for concurrent use and must not block long.
type Observer interface {
	// RunStarted is called once a run holds its key's lease, with the run
	// as started (Attempts > 1 for a resumed run). The context it returns
	// is the run's: steps and the workflow run in it (a span rides along).
	// done is called once, with the run as stored and Engine.Run's error.
	RunStarted(ctx context.Context, run RunInfo) (context.Context, func(end RunInfo, err error))
	// StepStarted is called before each attempt of a step's function (a
	// step replayed from the Store makes no attempt); done is called with
	// the attempt's error.
	StepStarted(ctx context.Context, run RunInfo, step string, attempt int) (context.Context, func(err error))
	// RateLimited is called when a step waits out a rate limit.
	RateLimited(ctx context.Context, run RunInfo, step string, wait time.Duration)
	// Audited is called with audit rows once the Store has kept them, as
	// Config.OnAudit is.
	Audited(ctx context.Context, rows []AuditEntry)
}
