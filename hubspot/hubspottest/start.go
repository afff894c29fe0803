package hubspottest

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"
)

// WithContacts creates n generated contacts at start (Config.Contacts).
func WithContacts(n int) Option { return func(c *Config) { c.Contacts = n } }

// WithAddr sets the address Start listens on (Config.Addr).
func WithAddr(addr string) Option { return func(c *Config) { c.Addr = addr } }

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
		return errors.New("hubspottest: Start: already started")
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("hubspottest: listen on %s: %w", addr, err)
	}
	s.hs = &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second}
	s.URL = s.URLFor(l.Addr())
	go func(hs *http.Server) { _ = hs.Serve(l) }(s.hs)
	return nil
}

// Close releases hanging requests and, if Start started the server, stops
// it (its listener and connections). It is safe to call more than once.
func (s *Server) Close() {
	s.StopWebhooks()
	s.release()
	s.mu.Lock()
	hs := s.hs
	s.mu.Unlock()
	if hs != nil {
		_ = hs.Close()
	}
}

// BaseURL returns the base URL clients use (scheme, host and Prefix): URL,
// read safely.
func (s *Server) BaseURL() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.URL
}

// AccessToken returns the private-app token the fake accepts (Token).
func (s *Server) AccessToken() string { return s.cfg.Token }

// CallCount returns the requests received for one endpoint (names as in
// CallCounts).
func (s *Server) CallCount(endpoint string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[endpoint]
}
