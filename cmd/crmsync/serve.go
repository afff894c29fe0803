package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/console"
	"github.com/crmsync/crmsync/telemetry"
)

const serveUsage = `usage: crmsync serve [-addr ADDR] [-interval D] [-proxy-header NAME] [-tls-cert FILE -tls-key FILE] [-secure-cookies]

Serve the web console over the store until interrupted: per key the last
runs and reports, cursors and lag, the lease holder and the next run; the
API budget of each CRM over time; errors grouped by type with the records
they hit; held conflicts to resolve; dead letters to replay or discard; one
record's audit history; the schema digest. It also serves /healthz (live),
/readyz (the store answers) and /metrics (Prometheus).

Operators sign in with the token in $CRMSYNC_CONSOLE_TOKEN (at least 16
characters), or, with -proxy-header, are the user a reverse proxy in front
of the console names in that header (set it only if the proxy strips the
header from clients' requests). Record values are shown to signed-in
operators only and never logged; every action is audited with who did it.

Flags:
  -addr ADDR            listen address (default 127.0.0.1:8080)
  -interval D           how often each key runs, to show the next run (default: not shown)
  -proxy-header NAME    trust this reverse-proxy header for the user (default: off)
  -tls-cert FILE        serve HTTPS with this certificate (and -tls-key)
  -tls-key FILE         the certificate's key
  -secure-cookies       mark cookies Secure (behind a TLS-terminating proxy; on with -tls-cert)
`

// TokenEnv is the environment variable holding the console's sign-in token.
const tokenEnv = "CRMSYNC_CONSOLE_TOKEN"

func (c *cli) cmdServe(ctx context.Context, args []string) error {
	c.usage = serveUsage
	fs := c.flags("serve")
	addr := fs.String("addr", "127.0.0.1:8080", "")
	interval := fs.Duration("interval", 0, "")
	proxy := fs.String("proxy-header", "", "")
	cert := fs.String("tls-cert", "", "")
	key := fs.String("tls-key", "", "")
	secure := fs.Bool("secure-cookies", false, "")
	rest, err := parseAll(fs, args)
	if err != nil {
		return err
	}
	if len(rest) > 0 {
		return usagef("serve: unexpected argument %q", rest[0])
	}
	if (*cert == "") != (*key == "") {
		return usagef("serve: give both -tls-cert and -tls-key, or neither")
	}
	if *interval < 0 {
		return usagef("serve: -interval must not be negative")
	}
	token := c.env(tokenEnv)
	if token == "" && *proxy == "" {
		return usagef("serve: no sign-in: set $%s (at least 16 characters) or -proxy-header", tokenEnv)
	}
	if token != "" && len(token) < 16 {
		return usagef("serve: $%s is shorter than 16 characters", tokenEnv)
	}
	mp, metrics, err := telemetry.NewPrometheus()
	if err != nil {
		return fmt.Errorf("serve: metrics: %w", err)
	}
	defer func() { _ = mp.Shutdown(context.WithoutCancel(ctx)) }()
	// The console runs no syncs itself; its provider lists the metrics an
	// embedding service with the same Observer would fill.
	if _, err := telemetry.New(telemetry.Config{MeterProvider: mp}); err != nil {
		return fmt.Errorf("serve: metrics: %w", err)
	}
	return c.withStore(ctx, func(st crmsync.Store) error {
		log := slog.New(slog.NewTextHandler(c.stderr, nil))
		con, err := console.New(console.Config{Store: st, Token: token, ProxyHeader: *proxy, Secure: *secure || *cert != "",
			Interval: *interval, Metrics: metrics, Logger: log, Now: now})
		if err != nil {
			return err
		}
		ln, err := net.Listen("tcp", *addr)
		if err != nil {
			return fmt.Errorf("serve: listen on %s: %w", *addr, err)
		}
		scheme := "http"
		if *cert != "" {
			scheme = "https"
		}
		fmt.Fprintf(c.stdout, "crmsync console on %s://%s (Ctrl-C to stop)\n", scheme, ln.Addr())
		srv := &http.Server{Handler: con, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second,
			WriteTimeout: 60 * time.Second, IdleTimeout: 2 * time.Minute}
		done := make(chan error, 1)
		go func() {
			if *cert != "" {
				done <- srv.ServeTLS(ln, *cert, *key)
			} else {
				done <- srv.Serve(ln)
			}
		}()
		select {
		case err := <-done:
			return fmt.Errorf("serve: %w", err)
		case <-ctx.Done():
		}
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(sctx); err != nil {
			return fmt.Errorf("serve: shut down: %w", err)
		}
		if err := <-done; err != nil && !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("serve: %w", err)
		}
		return nil
	})
}
