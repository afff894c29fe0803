package hubspottest_test

import (
	"net"
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/crmsync/crmsync/hubspot/hubspottest"
)

// TestStartAndClose: Start serves on Config.Addr without a test, refuses a
// second start and a busy address, and Close stops serving.
func TestStartAndClose(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())

	srv, err := hubspottest.New(hubspottest.Config{Addr: addr, Prefix: "/hs", Contacts: 3})
	require.NoError(t, err)
	require.NoError(t, srv.Start())
	assert.Equal(t, "http://"+addr+"/hs", srv.BaseURL())
	assert.Equal(t, hubspottest.DefaultToken, srv.AccessToken())
	assert.Len(t, srv.All("contacts"), 3)
	assert.ErrorContains(t, srv.Start(), "already started")

	busy, err := hubspottest.New(hubspottest.Config{Addr: addr})
	require.NoError(t, err)
	assert.ErrorContains(t, busy.Start(), "listen on "+addr)

	req, err := http.NewRequest(http.MethodGet, srv.BaseURL()+"/crm/v3/objects/contacts", nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+srv.AccessToken())
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	require.NoError(t, resp.Body.Close())
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, 1, srv.CallCount("list"))
	assert.Equal(t, srv.Calls("list"), srv.CallCount("list"))

	srv.Close()
	srv.Close() // twice is fine
	_, err = http.DefaultClient.Do(req)
	assert.Error(t, err, "served after Close")

	_, err = hubspottest.New(hubspottest.Config{Contacts: -1})
	assert.ErrorContains(t, err, "Contacts")
}
