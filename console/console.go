// Package console is crmsync's web console: a small server-rendered site
// over any Store, for the operator who is told "a person resolves the
// conflict". It shows, per key, the last runs and their reports, cursors
// and their lag, the lease holder and the next run; the API budget of each
// CRM over time; errors grouped by type with the records they hit; held
// conflicts with both values, resolved by a pick or a value; dead letters,
// replayed or discarded; and one record's audit history. It needs no
// JavaScript.
//
// Record values are personal data: every page but sign-in and the health
// endpoints needs a signed-in operator, and the console never logs a value
// (its access log has the method, the route, the status and who). Operators
// sign in with the token from Config.Token (CRMSYNC_CONSOLE_TOKEN for
// crmsync serve), compared in constant time, or, when Config.ProxyHeader is
// set, are taken as the user a reverse proxy names in that header. The
// session cookie is HttpOnly and SameSite=Strict (and Secure with
// Config.Secure); every form carries a CSRF token and a POST without it is
// refused; redirects go to local paths only. Every action is written to
// the audit trail (kind "operator") with who did it.
//
// /healthz answers 200 while the process lives; /readyz answers 200 when
// the Store answers a query, 503 otherwise. Neither needs a session.
package console

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/crmsync/crmsync"
)

// Cookie names.
const (
	sessionCookie = "crmsync_session"
	signinCookie  = "crmsync_signin"
)

// Config configures a Server.
type Config struct {
	// Store is what the console shows and acts on. Required.
	Store crmsync.Store
	// Token signs an operator in; it is compared in constant time. Required
	// unless ProxyHeader is set; when both are empty New fails.
	Token string
	// ProxyHeader, if set, names the header a reverse proxy in front of the
	// console sets to the signed-in user ("X-Forwarded-User"): a request
	// with it is that user, with no token. Off by default: set it only when
	// the proxy strips the header from clients' requests.
	ProxyHeader string
	// Secure marks the cookies Secure (served over TLS).
	Secure bool
	// Interval is how often each key runs (the worker's Interval), to show
	// when a key runs next; zero means the console does not say.
	Interval time.Duration
	// Metrics, if set, is served at /metrics (no session: metrics hold no
	// record values).
	Metrics http.Handler
	// SessionTTL is how long a session lives; zero means 12 hours.
	SessionTTL time.Duration
	// Logger receives the access log and errors; nil means none.
	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Server is the console's http.Handler. It is safe for concurrent use.
type Server struct {
	cfg   Config
	st    crmsync.Store
	log   *slog.Logger
	mux   *http.ServeMux
	pages *pages

	mu       sync.Mutex
	sessions map[string]*session
}

type session struct {
	user    string
	csrf    string
	expires time.Time
}

// New validates c and returns a Server.
func New(c Config) (*Server, error) {
	if c.Store == nil {
		return nil, errors.New("console: Config.Store is nil")
	}
	if c.Token == "" && c.ProxyHeader == "" {
		return nil, errors.New("console: Config.Token is empty and no ProxyHeader is set: nobody could sign in")
	}
	if c.Token != "" && len(c.Token) < 16 {
		return nil, errors.New("console: Config.Token is shorter than 16 characters")
	}
	if c.SessionTTL == 0 {
		c.SessionTTL = 12 * time.Hour
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	log := c.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	p, err := loadPages()
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: c, st: c.Store, log: log, pages: p, sessions: map[string]*session{}}
	s.routes()
	return s, nil
}

func (s *Server) routes() {
	m := http.NewServeMux()
	m.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	m.HandleFunc("GET /readyz", s.readyz)
	if s.cfg.Metrics != nil {
		m.Handle("GET /metrics", s.cfg.Metrics)
	}
	m.HandleFunc("GET /signin", s.signinForm)
	m.HandleFunc("POST /signin", s.signin)
	m.HandleFunc("POST /signout", s.authed(s.signout))
	m.HandleFunc("GET /{$}", s.authed(s.overview))
	m.HandleFunc("GET /runs/{id}", s.authed(s.runPage))
	m.HandleFunc("GET /budget", s.authed(s.budget))
	m.HandleFunc("GET /errors", s.authed(s.errorsPage))
	m.HandleFunc("GET /conflicts", s.authed(s.conflicts))
	m.HandleFunc("GET /conflicts/{id}", s.authed(s.conflict))
	m.HandleFunc("POST /conflicts/{id}/resolve", s.authed(s.resolve))
	m.HandleFunc("GET /deadletters", s.authed(s.deadLetters))
	m.HandleFunc("GET /deadletters/{id}", s.authed(s.deadLetter))
	m.HandleFunc("POST /deadletters/{id}/{action}", s.authed(s.letterAction))
	m.HandleFunc("GET /record", s.authed(s.record))
	m.HandleFunc("GET /digest", s.authed(s.digest))
	s.mux = m
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rec := &statusWriter{ResponseWriter: w, status: http.StatusOK}
	h := rec.Header()
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'")
	h.Set("Cache-Control", "no-store")
	s.mux.ServeHTTP(rec, r)
	// The access log: route and status, never a query value or form field.
	s.log.Info("console request", "method", r.Method, "route", r.Pattern, "status", rec.status, "user", rec.user)
}

type statusWriter struct {
	http.ResponseWriter
	status int
	user   string
}

func (w *statusWriter) WriteHeader(code int) {
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
	defer cancel()
	if _, err := s.st.ListRuns(ctx, "", 1); err != nil {
		s.log.Warn("readyz: store unreachable", "err", err)
		http.Error(w, "store unreachable", http.StatusServiceUnavailable)
		return
	}
	_, _ = w.Write([]byte("ok\n"))
}

func randomToken() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// equal compares secrets in constant time (their hashes, so that the
// length does not show either).
func equal(a, b string) bool {
	ha, hb := sha256.Sum256([]byte(a)), sha256.Sum256([]byte(b))
	return subtle.ConstantTimeCompare(ha[:], hb[:]) == 1
}

func (s *Server) cookie(name, value string, maxAge int) *http.Cookie {
	return &http.Cookie{Name: name, Value: value, Path: "/", MaxAge: maxAge, HttpOnly: true,
		SameSite: http.SameSiteStrictMode, Secure: s.cfg.Secure}
}

// newSession signs user in and sets the session cookie.
func (s *Server) newSession(w http.ResponseWriter, user string) *session {
	id := randomToken()
	sess := &session{user: user, csrf: randomToken(), expires: s.cfg.Now().Add(s.cfg.SessionTTL)}
	s.mu.Lock()
	now := s.cfg.Now()
	for k, v := range s.sessions {
		if now.After(v.expires) {
			delete(s.sessions, k)
		}
	}
	s.sessions[id] = sess
	s.mu.Unlock()
	http.SetCookie(w, s.cookie(sessionCookie, id, int(s.cfg.SessionTTL.Seconds())))
	return sess
}

// session returns the request's live session.
func (s *Server) session(r *http.Request) (*session, string) {
	c, err := r.Cookie(sessionCookie)
	if err != nil || c.Value == "" {
		return nil, ""
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	sess, ok := s.sessions[c.Value]
	if !ok {
		return nil, ""
	}
	if s.cfg.Now().After(sess.expires) {
		delete(s.sessions, c.Value)
		return nil, ""
	}
	return sess, c.Value
}

// proxyUser is the user the reverse proxy names, if the console trusts one.
func (s *Server) proxyUser(r *http.Request) string {
	if s.cfg.ProxyHeader == "" {
		return ""
	}
	return strings.TrimSpace(r.Header.Get(s.cfg.ProxyHeader))
}

// authed lets signed-in operators through: a GET without a session goes
// to sign-in (and back), any other request is refused; a POST must carry
// the session's CSRF token.
func (s *Server) authed(h func(http.ResponseWriter, *http.Request, *session)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		sess, _ := s.session(r)
		if pu := s.proxyUser(r); pu != "" {
			if sess == nil || sess.user != "proxy:"+pu {
				if r.Method != http.MethodGet {
					s.fail(w, r, http.StatusForbidden, "no console session: reload the page and try again")
					return
				}
				sess = s.newSession(w, "proxy:"+pu)
			}
		}
		if sess == nil {
			if r.Method == http.MethodGet {
				http.Redirect(w, r, "/signin?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
				return
			}
			s.fail(w, r, http.StatusForbidden, "not signed in")
			return
		}
		if sw, ok := w.(*statusWriter); ok {
			sw.user = sess.user
		}
		if r.Method == http.MethodPost {
			if err := r.ParseForm(); err != nil {
				s.fail(w, r, http.StatusBadRequest, "unreadable form")
				return
			}
			if tok := r.PostForm.Get("csrf"); tok == "" || !equal(tok, sess.csrf) {
				s.fail(w, r, http.StatusForbidden, "missing or wrong CSRF token: reload the page and try again")
				return
			}
		}
		h(w, r, sess)
	}
}

// safeNext is next if it is a path on this site, else "/".
func safeNext(next string) string {
	if next == "" || !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") || strings.ContainsAny(next, "\\\r\n\t") {
		return "/"
	}
	u, err := url.Parse(next)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil {
		return "/"
	}
	return next
}

func (s *Server) signinForm(w http.ResponseWriter, r *http.Request) {
	tok := randomToken()
	http.SetCookie(w, s.cookie(signinCookie, tok, 600))
	s.render(w, r, "signin", nil, map[string]any{"CSRF": tok, "Next": safeNext(r.URL.Query().Get("next")),
		"Token": s.cfg.Token != ""})
}

func (s *Server) signin(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		s.fail(w, r, http.StatusBadRequest, "unreadable form")
		return
	}
	c, err := r.Cookie(signinCookie)
	if err != nil || c.Value == "" || !equal(c.Value, r.PostForm.Get("csrf")) {
		s.fail(w, r, http.StatusForbidden, "missing or wrong CSRF token: open the sign-in page again")
		return
	}
	next := safeNext(r.PostForm.Get("next"))
	user := ""
	if pu := s.proxyUser(r); pu != "" {
		user = "proxy:" + pu
	} else if s.cfg.Token != "" && equal(r.PostForm.Get("token"), s.cfg.Token) {
		name := strings.TrimSpace(r.PostForm.Get("name"))
		if name == "" || len(name) > 64 || strings.ContainsAny(name, "\r\n\t") {
			name = "operator"
		}
		user = "token:" + name
	}
	if user == "" {
		s.log.Warn("console sign-in refused", "remote", r.RemoteAddr)
		s.fail(w, r, http.StatusUnauthorized, "wrong token")
		return
	}
	http.SetCookie(w, s.cookie(signinCookie, "", -1))
	s.newSession(w, user)
	s.log.Info("console sign-in", "user", user)
	http.Redirect(w, r, next, http.StatusSeeOther)
}

func (s *Server) signout(w http.ResponseWriter, r *http.Request, _ *session) {
	if _, id := s.session(r); id != "" {
		s.mu.Lock()
		delete(s.sessions, id)
		s.mu.Unlock()
	}
	http.SetCookie(w, s.cookie(sessionCookie, "", -1))
	http.Redirect(w, r, "/signin", http.StatusSeeOther)
}

// fail renders a one-line error page.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, code int, msg string) {
	s.render(w, r, "error", nil, map[string]any{"Code": code, "Status": http.StatusText(code), "Message": msg}, code)
}

// audit writes an operator action to the audit trail.
func (s *Server) audit(ctx context.Context, sess *session, key string, records []string, detail map[string]any) error {
	detail["by"] = sess.user
	row := crmsync.AuditEntry{Time: s.cfg.Now(), Key: key, Kind: crmsync.AuditOperator, RecordIDs: records, Detail: mustJSON(detail)}
	if err := s.st.AppendAudit(ctx, []crmsync.AuditEntry{row}); err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	return nil
}
