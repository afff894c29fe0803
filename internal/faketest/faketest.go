// Package faketest checks what the two CRM fakes, hubspottest and
// salesforcetest, share: how they start and stop outside a test.
package faketest

import (
	"net"
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Fake is a CRM fake that runs without a test.
type Fake interface {
	Start() error
	Close()
	BaseURL() string
	AccessToken() string
}

// FreeAddr returns a loopback address with a port nothing listens on.
func FreeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())
	return addr
}

// Life is a fake's start and stop as StartAndClose checks them.
type Life struct {
	// Fake is built to listen on Addr, and not started.
	Fake Fake
	// Busy is another fake built to listen on Addr, and not started.
	Busy Fake
	Addr string
	// BaseURL is the base URL Fake serves at once started.
	BaseURL string
	// Path is a GET endpoint under BaseURL that answers 200 to the
	// fake's access token.
	Path string
	// Served, if set, runs after the GET of Path, before Close.
	Served func()
}

// StartAndClose checks that l.Fake's Start serves on its address without
// a test, refuses a second start and a busy address, that it answers a
// request with its access token, and that Close stops serving (twice is
// fine).
func StartAndClose(t *testing.T, l Life) {
	t.Helper()
	srv := l.Fake
	require.NoError(t, srv.Start())
	assert.Equal(t, l.BaseURL, srv.BaseURL())
	assert.ErrorContains(t, srv.Start(), "already started")
	assert.ErrorContains(t, l.Busy.Start(), "listen on "+l.Addr)

	req, err := http.NewRequest(http.MethodGet, srv.BaseURL()+l.Path, nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+srv.AccessToken())
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	require.NoError(t, resp.Body.Close())
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	if l.Served != nil {
		l.Served()
	}

	srv.Close()
	srv.Close() // twice is fine
	_, err = http.DefaultClient.Do(req)
	assert.Error(t, err, "served after Close")
}
