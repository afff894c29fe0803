package salesforcetest

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"
)

// The credentials the fake accepts by default (Config's "" values).
const (
	DefaultToken        = "fake-salesforce-token"
	DefaultClientID     = "fake-client-id"
	DefaultClientSecret = "fake-client-secret"
	DefaultRefreshToken = "fake-refresh-token"
	// DefaultUserID is the user every token acts as (Config.UserID ""):
	// the LastModifiedById of the records written through the API.
	DefaultUserID = "005Fk0000000001AAA"
	// PersonUserID is the LastModifiedById of the records seeded, edited
	// or merged through the test helpers, as a person in the UI.
	PersonUserID = "005Fk0000000002AAA"
)

// Option adjusts the Config of NewServer. It is a plain func(*Config), so
// option funcs written before it was named still fit.
type Option = func(*Config)

// WithConfig replaces the whole Config.
func WithConfig(c Config) Option { return func(dst *Config) { *dst = c } }

// WithContacts creates n generated contacts at start (Config.Contacts).
func WithContacts(n int) Option { return func(c *Config) { c.Contacts = n } }

// WithAddr sets the address Start listens on (Config.Addr).
func WithAddr(addr string) Option { return func(c *Config) { c.Addr = addr } }

// WithClock sets the clock for stamps and token expiry (Config.Now).
func WithClock(now func() time.Time) Option { return func(c *Config) { c.Now = now } }

// WithQueryPageSize caps query pages at n records (Config.QueryPageSize).
func WithQueryPageSize(n int) Option { return func(c *Config) { c.QueryPageSize = n } }

// WithAPIVersions serves the REST API versions from min to max ("50.0" or
// "v50.0"; Config.MinAPIVersion and MaxAPIVersion).
func WithAPIVersions(min, max string) Option {
	return func(c *Config) { c.MinAPIVersion, c.MaxAPIVersion = min, max }
}

// Start listens on Config.Addr (127.0.0.1 and a free port if "") and
// serves the fake in the background until Close; it sets URL. It needs no
// test: programs and other tools use it too. It reports an error if the
// address cannot be listened on or the server was started before.
func (s *Server) Start() error {
	addr := s.cfg.Addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.hs != nil {
		return errors.New("salesforcetest: Start: already started")
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("salesforcetest: listen on %s: %w", addr, err)
	}
	s.hs = &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second}
	s.URL = "http://" + l.Addr().String()
	go func(hs *http.Server) { _ = hs.Serve(l) }(s.hs)
	return nil
}

// Close ends hanging requests and, if Start started the server, stops it
// (its listener and connections). It is safe to call more than once.
func (s *Server) Close() {
	s.close.Do(func() { close(s.done) })
	s.mu.Lock()
	hs := s.hs
	s.mu.Unlock()
	if hs != nil {
		_ = hs.Close()
	}
	s.stopPubSub()
}

// BaseURL returns the base URL clients use, both as instance URL and as
// login URL: URL, read safely.
func (s *Server) BaseURL() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.URL
}

// AccessToken returns the access token valid from the start
// (Config.Token), for a client with a static token.
func (s *Server) AccessToken() string { return s.cfg.Token }

// CallCounts returns the requests received per endpoint: "token",
// "versions", "query", "queryAll", "queryMore", "create", "update",
// "upsert", "delete", "retrieveMany" (sObject Collections), "createOne",
// "updateOne", "upsertOne", "deleteOne", "retrieve" (one record),
// "describeGlobal", "describe", "updated", "deleted", "limits". Refused
// requests count.
func (s *Server) CallCounts() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]int, len(s.calls))
	for k, v := range s.calls {
		out[k] = v
	}
	return out
}

// CallCount returns the requests received for one endpoint (names as in
// CallCounts).
func (s *Server) CallCount(endpoint string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[endpoint]
}
