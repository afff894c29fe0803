package main

import (
	"context"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/crmsync/crmsync/internal/cmdtest"
)

var servingOn = regexp.MustCompile(`crmsync console on (http://\S+)`)

// TestServe starts the console on the fixture's store and checks the
// health endpoints, /metrics and that pages need a session; Ctrl-C (ctx)
// stops it with exit 0.
func TestServe(t *testing.T) {
	f := fill(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errOut cmdtest.LockedBuffer
	env := func(k string) string {
		switch k {
		case "CRMSYNC_STORE":
			return "sqlite:" + f.path
		case tokenEnv:
			return "serve-test-token-0123456789"
		}
		return ""
	}
	code := make(chan int, 1)
	go func() { code <- run(ctx, []string{"serve", "-addr", "127.0.0.1:0"}, &out, &errOut, env) }()

	var base string
	require.Eventually(t, func() bool {
		m := servingOn.FindStringSubmatch(out.String())
		if m != nil {
			base = m[1]
		}
		return m != nil
	}, 10*time.Second, 10*time.Millisecond, "serve prints its address; stderr: %s", errOut.String())

	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	getBody := func(path string) (int, string) {
		resp, err := noFollow.Get(base + path)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return resp.StatusCode, string(b)
	}
	st, body := getBody("/healthz")
	assert.Equal(t, http.StatusOK, st)
	assert.Equal(t, "ok\n", body)
	st, _ = getBody("/readyz")
	assert.Equal(t, http.StatusOK, st, "the store answers")
	st, body = getBody("/metrics")
	assert.Equal(t, http.StatusOK, st)
	assert.Contains(t, body, "# TYPE", "Prometheus text format")
	st, _ = getBody("/conflicts")
	assert.Equal(t, http.StatusSeeOther, st, "pages need a session")

	cancel()
	select {
	case c := <-code:
		assert.Equal(t, exitOK, c, "stderr: %s", errOut.String())
	case <-time.After(15 * time.Second):
		t.Fatal("serve did not stop on interrupt")
	}
	assert.False(t, strings.Contains(errOut.String(), "serve-test-token"), "the token is never logged")
}

func TestServeRefusesWithoutSignIn(t *testing.T) {
	f := fill(t)
	res := invoke(context.Background(), "sqlite:"+f.path, "serve")
	assert.Equal(t, exitUsage, res.code)
	assert.Equal(t, "crmsync: serve: no sign-in: set $CRMSYNC_CONSOLE_TOKEN (at least 16 characters) or -proxy-header (crmsync serve -h for help)\n", res.stderr)
}
