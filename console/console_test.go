package console_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"html"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/console"
	"github.com/crmsync/crmsync/playbook"
	"github.com/crmsync/crmsync/store/sqlite"
)

const token = "test-console-token-0123456789"

// syncedStore is an SQLite store after two real passes over the fakes,
// with users' edits between them: it holds runs, conflicts (some held)
// and dead letters.
type syncedStore struct {
	st    *sqlite.Store
	world *playbook.World
	sync  *crmsync.Sync
	eng   *crmsync.Engine
}

func newSyncedStore(t *testing.T) *syncedStore {
	t.Helper()
	ctx := context.Background()
	w, err := playbook.NewWorld(140)
	require.NoError(t, err)
	t.Cleanup(w.Close)
	st, err := sqlite.Open(ctx, sqlite.Config{Path: t.TempDir() + "/console.db"})
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close() })
	s, err := w.Sync()
	require.NoError(t, err)
	eng, err := crmsync.NewEngine(crmsync.Config{Store: st})
	require.NoError(t, err)
	_, err = eng.Run(ctx, "team-a", s)
	require.NoError(t, err)
	require.NoError(t, w.SimulateEdits())
	_, err = eng.Run(ctx, "team-a", s)
	require.NoError(t, err)
	return &syncedStore{st: st, world: w, sync: s, eng: eng}
}

// template is a synced store built once, closed, and copied for each
// test that needs no fakes after it (see copiedStore).
var template struct {
	once sync.Once
	dir  string
	err  error
}

func TestMain(m *testing.M) {
	flag.Parse()
	code := m.Run()
	if template.dir != "" {
		_ = os.RemoveAll(template.dir)
	}
	os.Exit(code)
}

// copiedStore opens a copy of the template store: runs, conflicts (some
// held) and dead letters made by two real passes, without their fakes.
func copiedStore(t *testing.T) *syncedStore {
	t.Helper()
	template.once.Do(func() {
		template.dir, template.err = os.MkdirTemp("", "crmsync-console-")
		if template.err != nil {
			return
		}
		template.err = buildTemplate(filepath.Join(template.dir, "console.db"))
	})
	require.NoError(t, template.err)
	dst := filepath.Join(t.TempDir(), "console.db")
	b, err := os.ReadFile(filepath.Join(template.dir, "console.db"))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(dst, b, 0o600))
	st, err := sqlite.Open(context.Background(), sqlite.Config{Path: dst})
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close() })
	return &syncedStore{st: st}
}

// buildTemplate makes the template store at path.
func buildTemplate(path string) error {
	ctx := context.Background()
	w, err := playbook.NewWorld(140)
	if err != nil {
		return err
	}
	defer w.Close()
	st, err := sqlite.Open(ctx, sqlite.Config{Path: path})
	if err != nil {
		return err
	}
	s, err := w.Sync()
	if err != nil {
		return errors.Join(err, st.Close())
	}
	eng, err := crmsync.NewEngine(crmsync.Config{Store: st})
	if err != nil {
		return errors.Join(err, st.Close())
	}
	if _, err := eng.Run(ctx, "team-a", s); err != nil {
		return errors.Join(err, st.Close())
	}
	if err := w.SimulateEdits(); err != nil {
		return errors.Join(err, st.Close())
	}
	if _, err := eng.Run(ctx, "team-a", s); err != nil {
		return errors.Join(err, st.Close())
	}
	return st.Close()
}

func (s *syncedStore) held(t *testing.T) crmsync.Conflict {
	t.Helper()
	cs, err := s.st.ListConflicts(context.Background(), crmsync.ConflictFilter{State: crmsync.ConflictHeld})
	require.NoError(t, err)
	require.NotEmpty(t, cs, "the second pass holds conflicts")
	return cs[0]
}

func (s *syncedStore) parked(t *testing.T) crmsync.DeadLetter {
	t.Helper()
	ds, err := s.st.ListDeadLetters(context.Background(), crmsync.DeadLetterQuery{Status: crmsync.DeadParked})
	require.NoError(t, err)
	require.NotEmpty(t, ds, "the world has records Salesforce refuses")
	return ds[0]
}

// logBuf is a concurrency-safe log sink.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

type bundle struct {
	*syncedStore
	srv  *httptest.Server
	logs *logBuf
}

func setup(t *testing.T, mod func(*console.Config)) *bundle {
	t.Helper()
	ss := copiedStore(t)
	logs := &logBuf{}
	cfg := console.Config{Store: ss.st, Token: token, Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	if mod != nil {
		mod(&cfg)
	}
	c, err := console.New(cfg)
	require.NoError(t, err)
	srv := httptest.NewServer(c)
	t.Cleanup(srv.Close)
	return &bundle{syncedStore: ss, srv: srv, logs: logs}
}

// client does not follow redirects, so that tests see them.
func client(t *testing.T) *http.Client {
	jar, err := cookiejar.New(nil)
	require.NoError(t, err)
	return &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

var csrfField = regexp.MustCompile(`name="csrf" value="([0-9a-f]+)"`)

func get(t *testing.T, c *http.Client, u string) (*http.Response, string) {
	t.Helper()
	resp, err := c.Get(u)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, string(b)
}

func post(t *testing.T, c *http.Client, u string, form url.Values) (*http.Response, string) {
	t.Helper()
	resp, err := c.PostForm(u, form)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, string(b)
}

func csrfOf(t *testing.T, page string) string {
	t.Helper()
	m := csrfField.FindStringSubmatch(page)
	require.NotNil(t, m, "page has a CSRF field")
	return m[1]
}

// signIn signs c in as name and returns the response to the sign-in POST.
func (b *bundle) signIn(t *testing.T, c *http.Client, name, next string) *http.Response {
	t.Helper()
	_, page := get(t, c, b.srv.URL+"/signin")
	resp, _ := post(t, c, b.srv.URL+"/signin", url.Values{"csrf": {csrfOf(t, page)}, "token": {token}, "name": {name}, "next": {next}})
	return resp
}

func TestSignInRefusals(t *testing.T) {
	b := setup(t, nil)
	c := client(t)

	resp, _ := get(t, c, b.srv.URL+"/conflicts")
	assert.Equal(t, http.StatusSeeOther, resp.StatusCode, "no session: to sign-in")
	assert.Equal(t, "/signin?next=%2Fconflicts", resp.Header.Get("Location"))

	_, page := get(t, c, b.srv.URL+"/signin")
	resp, body := post(t, c, b.srv.URL+"/signin", url.Values{"csrf": {csrfOf(t, page)}, "token": {"wrong-token-wrong-token"}})
	assert.Equal(t, http.StatusUnauthorized, resp.StatusCode, "wrong token")
	assert.Contains(t, body, "wrong token")
	resp, _ = get(t, c, b.srv.URL+"/")
	assert.Equal(t, http.StatusSeeOther, resp.StatusCode, "still not signed in")

	_, page = get(t, c, b.srv.URL+"/signin")
	resp, _ = post(t, c, b.srv.URL+"/signin", url.Values{"token": {token}})
	assert.Equal(t, http.StatusForbidden, resp.StatusCode, "sign-in without its CSRF token")
	resp, _ = post(t, c, b.srv.URL+"/signin", url.Values{"token": {token}, "csrf": {csrfOf(t, page) + "0"}})
	assert.Equal(t, http.StatusForbidden, resp.StatusCode, "sign-in with a wrong CSRF token")

	// A fresh client (no sign-in cookie) with a token it saw elsewhere.
	resp, _ = post(t, client(t), b.srv.URL+"/signin", url.Values{"token": {token}, "csrf": {csrfOf(t, page)}})
	assert.Equal(t, http.StatusForbidden, resp.StatusCode, "sign-in CSRF token without its cookie")

	x := b.held(t)
	resp, _ = post(t, client(t), b.srv.URL+"/conflicts/"+x.ID+"/resolve", url.Values{"pick": {x.SystemA}})
	assert.Equal(t, http.StatusForbidden, resp.StatusCode, "an action with no session")

	_, err := console.New(console.Config{Store: b.st})
	assert.ErrorContains(t, err, "nobody could sign in")
	_, err = console.New(console.Config{Store: b.st, Token: "short"})
	assert.ErrorContains(t, err, "shorter than 16")
}

func TestSessionCookieFlags(t *testing.T) {
	for _, secure := range []bool{false, true} {
		b := setup(t, func(c *console.Config) { c.Secure = secure })
		c := client(t)
		resp := b.signIn(t, c, "alice", "/")
		require.Equal(t, http.StatusSeeOther, resp.StatusCode)
		var session *http.Cookie
		for _, ck := range resp.Cookies() {
			if ck.Name == "crmsync_session" && ck.Value != "" {
				session = ck
			}
		}
		require.NotNil(t, session, "session cookie set")
		assert.True(t, session.HttpOnly, "HttpOnly")
		assert.Equal(t, http.SameSiteStrictMode, session.SameSite, "SameSite=Strict")
		assert.Equal(t, secure, session.Secure, "Secure iff TLS")
		assert.Equal(t, "/", session.Path)
	}
}

func TestCSRFRequiredOnActions(t *testing.T) {
	b := setup(t, nil)
	c := client(t)
	require.Equal(t, http.StatusSeeOther, b.signIn(t, c, "alice", "/").StatusCode)
	x := b.held(t)
	_, page := get(t, c, b.srv.URL+"/conflicts/"+x.ID)
	tok := csrfOf(t, page)
	u := b.srv.URL + "/conflicts/" + x.ID + "/resolve"

	resp, body := post(t, c, u, url.Values{"pick": {x.SystemB}})
	assert.Equal(t, http.StatusForbidden, resp.StatusCode, "no CSRF token")
	assert.Contains(t, body, "CSRF")
	resp, _ = post(t, c, u, url.Values{"pick": {x.SystemB}, "csrf": {strings.Repeat("0", len(tok))}})
	assert.Equal(t, http.StatusForbidden, resp.StatusCode, "wrong CSRF token")
	got, err := b.st.GetConflict(context.Background(), x.ID)
	require.NoError(t, err)
	assert.Equal(t, crmsync.ConflictHeld, got.State, "refused actions change nothing")

	// Another operator's session has its own token.
	c2 := client(t)
	require.Equal(t, http.StatusSeeOther, b.signIn(t, c2, "bob", "/").StatusCode)
	resp, _ = post(t, c2, u, url.Values{"pick": {x.SystemB}, "csrf": {tok}})
	assert.Equal(t, http.StatusForbidden, resp.StatusCode, "a token of another session")

	resp, _ = post(t, c, u, url.Values{"pick": {x.SystemB}, "csrf": {tok}})
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	got, err = b.st.GetConflict(context.Background(), x.ID)
	require.NoError(t, err)
	assert.Equal(t, crmsync.ConflictChosen, got.State)
	require.NotNil(t, got.Resolution)
	assert.Equal(t, x.SystemB, got.Resolution.Pick)

	rows, err := b.st.QueryAudit(context.Background(), crmsync.AuditQuery{Kind: crmsync.AuditOperator})
	require.NoError(t, err)
	require.Len(t, rows, 1, "the action is audited")
	var d map[string]any
	require.NoError(t, json.Unmarshal(rows[0].Detail, &d))
	assert.Equal(t, "token:alice", d["by"], "with who did it")
	assert.Equal(t, "resolve-conflict", d["action"])
	assert.Equal(t, []string{x.RecordA, x.RecordB}, rows[0].RecordIDs)
}

func TestOpenRedirectRefused(t *testing.T) {
	b := setup(t, nil)
	for next, want := range map[string]string{
		"/conflicts":                  "/conflicts",
		"/record?id=123":              "/record?id=123",
		"//evil.example.com/":         "/",
		"https://evil.example.com/":   "/",
		"/\\evil.example.com":         "/",
		"javascript:alert(1)":         "/",
		"":                            "/",
		"/%0d%0aSet-Cookie:%20x=y":    "/%0d%0aSet-Cookie:%20x=y",
		"http:/evil.example.com":      "/",
		"\t//evil.example.com":        "/",
		"/ok\r\nLocation: //evil.com": "/",
	} {
		resp := b.signIn(t, client(t), "alice", next)
		require.Equal(t, http.StatusSeeOther, resp.StatusCode, "next %q", next)
		assert.Equal(t, want, resp.Header.Get("Location"), "next %q", next)
	}
}

// TestValuesNeverLogged: the console's log names routes, statuses and who,
// never a record value, a value typed by the operator or the token.
func TestValuesNeverLogged(t *testing.T) {
	b := setup(t, nil)
	c := client(t)
	require.Equal(t, http.StatusSeeOther, b.signIn(t, c, "alice", "/").StatusCode)
	x := b.held(t)
	d := b.parked(t)
	for _, p := range []string{"/", "/conflicts", "/conflicts/" + x.ID, "/deadletters", "/deadletters/" + itoa(d.ID),
		"/errors", "/budget", "/record?id=" + x.RecordA, "/runs/" + string(d.Run)} {
		resp, _ := get(t, c, b.srv.URL+p)
		require.Equal(t, http.StatusOK, resp.StatusCode, p)
	}
	_, page := get(t, c, b.srv.URL+"/conflicts/"+x.ID)
	assert.Contains(t, html.UnescapeString(page), jsonText(x.A), "the signed-in operator sees the values")
	assert.Contains(t, html.UnescapeString(page), jsonText(x.B))
	secret := "+1 555 0100 secret"
	resp, _ := post(t, c, b.srv.URL+"/conflicts/"+x.ID+"/resolve", url.Values{"csrf": {csrfOf(t, page)}, "pick": {"value"}, "value": {secret}})
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)

	logs := b.logs.String()
	require.Contains(t, logs, "console request", "the access log is on")
	assert.Contains(t, logs, "token:alice")
	for _, v := range []string{jsonText(x.A), jsonText(x.B), secret, token, "@"} {
		assert.NotContains(t, logs, strings.Trim(v, `"`), "log holds %q", v)
	}
	rows, err := b.st.QueryAudit(context.Background(), crmsync.AuditQuery{Kind: crmsync.AuditOperator})
	require.NoError(t, err)
	require.Len(t, rows, 1)
	assert.NotContains(t, string(rows[0].Detail), "secret", "the audit row names the pick, not the value")
}

func TestReplayAndDiscardDeadLetters(t *testing.T) {
	b := setup(t, nil)
	c := client(t)
	require.Equal(t, http.StatusSeeOther, b.signIn(t, c, "carol", "/").StatusCode)
	ds, err := b.st.ListDeadLetters(context.Background(), crmsync.DeadLetterQuery{Status: crmsync.DeadParked})
	require.NoError(t, err)
	require.GreaterOrEqual(t, len(ds), 2)
	_, page := get(t, c, b.srv.URL+"/deadletters")
	tok := csrfOf(t, page)

	resp, _ := post(t, c, b.srv.URL+"/deadletters/"+itoa(ds[0].ID)+"/replay", url.Values{})
	assert.Equal(t, http.StatusForbidden, resp.StatusCode, "no CSRF token")
	resp, _ = post(t, c, b.srv.URL+"/deadletters/"+itoa(ds[0].ID)+"/replay", url.Values{"csrf": {tok}})
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	resp, _ = post(t, c, b.srv.URL+"/deadletters/"+itoa(ds[1].ID)+"/discard", url.Values{"csrf": {tok}})
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	resp, body := post(t, c, b.srv.URL+"/deadletters/"+itoa(ds[1].ID)+"/replay", url.Values{"csrf": {tok}})
	assert.Equal(t, http.StatusConflict, resp.StatusCode, "a discarded letter stays discarded")
	assert.Contains(t, body, "is discarded")

	d0, err := b.st.GetDeadLetter(context.Background(), ds[0].ID)
	require.NoError(t, err)
	assert.Equal(t, crmsync.DeadReplay, d0.Status)
	d1, err := b.st.GetDeadLetter(context.Background(), ds[1].ID)
	require.NoError(t, err)
	assert.Equal(t, crmsync.DeadDiscarded, d1.Status)
	rows, err := b.st.QueryAudit(context.Background(), crmsync.AuditQuery{Kind: crmsync.AuditOperator})
	require.NoError(t, err)
	require.Len(t, rows, 2)
	assert.Contains(t, string(rows[0].Detail), `"replay-dead-letter"`)
	assert.Contains(t, string(rows[1].Detail), `"discard-dead-letter"`)
	assert.Contains(t, string(rows[1].Detail), `"by":"token:carol"`)
}

func TestPagesAnswerTheOperatorsQuestions(t *testing.T) {
	b := setup(t, nil)
	c := client(t)
	require.Equal(t, http.StatusSeeOther, b.signIn(t, c, "alice", "/").StatusCode)

	_, page := get(t, c, b.srv.URL+"/")
	assert.Contains(t, page, "team-a")
	assert.Contains(t, page, "Needs attention", "held conflicts and dead letters wait")
	assert.Contains(t, page, "held conflict(s)")
	assert.Regexp(t, `<td>hubspot</td><td><code>[0-9T:.-]+Z</code></td>`, page, "cursors")

	_, page = get(t, c, b.srv.URL+"/budget")
	assert.Contains(t, page, `id="budget-hubspot"`)
	assert.Contains(t, page, `id="budget-salesforce"`)
	assert.Contains(t, page, "calls left today")

	_, page = get(t, c, b.srv.URL+"/errors")
	assert.Contains(t, page, "dead letter (salesforce)")
	d := b.parked(t)
	assert.Contains(t, page, `/record?id=`+d.RecordID, "the records an error hit")

	x := b.held(t)
	_, page = get(t, c, b.srv.URL+"/conflicts")
	assert.Contains(t, page, x.ID)
	_, page = get(t, c, b.srv.URL+"/record?id="+url.QueryEscape(x.RecordB))
	assert.Contains(t, page, `class="kind-conflict"`, "the record's history has its conflict")
	assert.Contains(t, page, `class="kind-write"`, "and the writes that made it")
}

func TestHealthAndReadiness(t *testing.T) {
	b := setup(t, func(c *console.Config) {
		c.Metrics = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("crmsync_up 1\n")) })
	})
	c := client(t)
	resp, body := get(t, c, b.srv.URL+"/healthz")
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, "ok\n", body)
	resp, _ = get(t, c, b.srv.URL+"/readyz")
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	resp, body = get(t, c, b.srv.URL+"/metrics")
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, "crmsync_up 1\n", body)

	require.NoError(t, b.st.Close())
	resp, body = get(t, c, b.srv.URL+"/readyz")
	assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, "store closed: not ready")
	assert.Equal(t, "store unreachable\n", body)
	resp, _ = get(t, c, b.srv.URL+"/healthz")
	assert.Equal(t, http.StatusOK, resp.StatusCode, "still live")
}

func TestProxyHeader(t *testing.T) {
	// Off by default: the header means nothing.
	b := setup(t, nil)
	req, err := http.NewRequest(http.MethodGet, b.srv.URL+"/", nil)
	require.NoError(t, err)
	req.Header.Set("X-Forwarded-User", "mallory")
	resp, err := client(t).Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusSeeOther, resp.StatusCode, "header ignored unless configured")

	b = setup(t, func(c *console.Config) { c.ProxyHeader = "X-Forwarded-User"; c.Token = "" })
	c := client(t)
	do := func(method, path string, form url.Values) (*http.Response, string) {
		var body io.Reader
		if form != nil {
			body = strings.NewReader(form.Encode())
		}
		req, err := http.NewRequest(method, b.srv.URL+path, body)
		require.NoError(t, err)
		req.Header.Set("X-Forwarded-User", "bob")
		if form != nil {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
		resp, err := c.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	x := b.held(t)
	resp, page := do(http.MethodGet, "/conflicts/"+x.ID, nil)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Contains(t, page, "proxy:bob")
	resp, _ = do(http.MethodPost, "/conflicts/"+x.ID+"/resolve", url.Values{"pick": {x.SystemA}})
	assert.Equal(t, http.StatusForbidden, resp.StatusCode, "CSRF still required")
	resp, _ = do(http.MethodPost, "/conflicts/"+x.ID+"/resolve", url.Values{"pick": {x.SystemA}, "csrf": {csrfOf(t, page)}})
	assert.Equal(t, http.StatusSeeOther, resp.StatusCode)
	rows, err := b.st.QueryAudit(context.Background(), crmsync.AuditQuery{Kind: crmsync.AuditOperator})
	require.NoError(t, err)
	require.Len(t, rows, 1)
	assert.Contains(t, string(rows[0].Detail), `"by":"proxy:bob"`)
}

func itoa(n int64) string {
	b, _ := json.Marshal(n)
	return string(b)
}

func jsonText(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
