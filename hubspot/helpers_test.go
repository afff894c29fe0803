package hubspot_test

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/hubspot"
	"github.com/crmsync/crmsync/hubspot/hubspottest"
	"github.com/crmsync/crmsync/internal/clocktest"
	"github.com/stretchr/testify/require"
)

// newClock returns a clock for the fake's stamps.
func newClock() *clocktest.Clock {
	return clocktest.New(time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC))
}

// exchange is one request and response seen by the recorder.
type exchange struct {
	Method, Path string
	Query        string
	ReqBody      []byte
	Status       int
	RespBody     []byte
}

// recorder wraps the fake's handler and keeps every exchange.
type recorder struct {
	h  http.Handler
	mu sync.Mutex
	ex []exchange
}

func (rc *recorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	r.Body = io.NopCloser(bytes.NewReader(body))
	rw := &captureWriter{ResponseWriter: w, status: 200}
	rc.h.ServeHTTP(rw, r)
	rc.mu.Lock()
	rc.ex = append(rc.ex, exchange{Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery, ReqBody: body, Status: rw.status, RespBody: rw.buf.Bytes()})
	rc.mu.Unlock()
}

func (rc *recorder) exchanges(pathSuffix string) []exchange {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	var out []exchange
	for _, e := range rc.ex {
		if strings.HasSuffix(e.Path, pathSuffix) {
			out = append(out, e)
		}
	}
	return out
}

type captureWriter struct {
	http.ResponseWriter
	status int
	buf    bytes.Buffer
}

func (c *captureWriter) WriteHeader(s int) { c.status = s; c.ResponseWriter.WriteHeader(s) }
func (c *captureWriter) Write(b []byte) (int, error) {
	c.buf.Write(b)
	return c.ResponseWriter.Write(b)
}

// recordedFake serves a fake under a prefix behind a recorder.
func recordedFake(t *testing.T, cfg hubspottest.Config) (*hubspottest.Server, *recorder) {
	t.Helper()
	if cfg.Prefix == "" {
		cfg.Prefix = "/hs"
	}
	srv, err := hubspottest.New(cfg)
	require.NoError(t, err)
	rec := &recorder{h: srv.Handler()}
	hts := httptest.NewServer(rec)
	srv.URL = hts.URL + cfg.Prefix
	t.Cleanup(func() { srv.Close(); hts.Close() })
	return srv, rec
}

func unlimited(t *testing.T) crmsync.Limiter {
	t.Helper()
	l, err := crmsync.NewThrottle(crmsync.ThrottleConfig{})
	require.NoError(t, err)
	return l
}

// newClient returns a client for srv with fast retries and no pacing;
// mod adjusts the config.
func newClient(t *testing.T, srv *hubspottest.Server, mod ...func(*hubspot.Config)) *hubspot.Client {
	t.Helper()
	cfg := hubspot.Config{
		Token:               srv.Token,
		BaseURL:             srv.URL,
		HTTPClient:          &http.Client{Timeout: 5 * time.Second},
		Limiter:             unlimited(t),
		SearchLimiter:       unlimited(t),
		RetryInitial:        time.Millisecond,
		RetryMax:            5 * time.Millisecond,
		RateLimitWait:       5 * time.Millisecond,
		SearchRateLimitWait: 5 * time.Millisecond,
	}
	for _, m := range mod {
		m(&cfg)
	}
	c, err := hubspot.New(cfg)
	require.NoError(t, err)
	return c
}

func fastFake(t *testing.T, opts ...hubspottest.Option) *hubspottest.Server {
	return hubspottest.NewServer(t, append([]hubspottest.Option{hubspottest.WithoutRateLimits(), hubspottest.WithPrefix("/api")}, opts...)...)
}
