package worker

import (
	"context"
	"net/http"
	"time"
)

// Handler returns the worker's HTTP endpoints for containers and
// monitoring: /healthz answers 200 while the process serves it (live),
// /readyz 200 while the Store answers a query and 503 otherwise, and
// /metrics serves Config.Metrics if set (a Prometheus handler, say the one
// telemetry.NewPrometheus returns). Serve it with an http.Server of your
// own beside Run.
func (w *Worker) Handler() http.Handler {
	m := http.NewServeMux()
	m.HandleFunc("GET /healthz", func(rw http.ResponseWriter, _ *http.Request) { _, _ = rw.Write([]byte("ok\n")) })
	m.HandleFunc("GET /readyz", func(rw http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
		defer cancel()
		if _, err := w.store.ListRuns(ctx, "", 1); err != nil {
			w.log.Warn("readyz: store unreachable", "err", err)
			http.Error(rw, "store unreachable", http.StatusServiceUnavailable)
			return
		}
		_, _ = rw.Write([]byte("ok\n"))
	})
	if w.cfg.Metrics != nil {
		m.Handle("GET /metrics", w.cfg.Metrics)
	}
	return m
}
