package salesforcetest_test

import (
	"net"
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/crmsync/crmsync/salesforce/salesforcetest"
)

// TestStartAndClose: Start serves on Config.Addr without a test, refuses a
// second start and a busy address, and Close stops serving.
func TestStartAndClose(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())

	srv, err := salesforcetest.New(salesforcetest.Config{Addr: addr, Contacts: 3})
	require.NoError(t, err)
	require.NoError(t, srv.Start())
	assert.Equal(t, "http://"+addr, srv.BaseURL())
	assert.Equal(t, salesforcetest.DefaultToken, srv.AccessToken())
	assert.Equal(t, srv.Token(), srv.AccessToken())
	assert.Len(t, srv.All(), 3)
	assert.ErrorContains(t, srv.Start(), "already started")

	busy, err := salesforcetest.New(salesforcetest.Config{Addr: addr})
	require.NoError(t, err)
	assert.ErrorContains(t, busy.Start(), "listen on "+addr)

	req, err := http.NewRequest(http.MethodGet, srv.BaseURL()+"/services/data/v66.0/limits", nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+srv.AccessToken())
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	require.NoError(t, resp.Body.Close())
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, 1, srv.CallCount("limits"))
	assert.Equal(t, srv.Calls(), srv.CallCounts())

	srv.Close()
	srv.Close() // twice is fine
	_, err = http.DefaultClient.Do(req)
	assert.Error(t, err, "served after Close")

	_, err = salesforcetest.New(salesforcetest.Config{Seed: 2, Contacts: 3})
	assert.ErrorContains(t, err, "Contacts")
	old, err := salesforcetest.New(salesforcetest.Config{Seed: 2})
	require.NoError(t, err)
	assert.Len(t, old.All(), 2, "Seed still seeds")
}
