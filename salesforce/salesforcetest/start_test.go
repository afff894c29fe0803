package salesforcetest_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/crmsync/crmsync/internal/faketest"
	"github.com/crmsync/crmsync/salesforce/salesforcetest"
)

// TestStartAndClose: Start serves on Config.Addr without a test, refuses a
// second start and a busy address, and Close stops serving.
func TestStartAndClose(t *testing.T) {
	addr := faketest.FreeAddr(t)
	srv, err := salesforcetest.New(salesforcetest.Config{Addr: addr, Contacts: 3})
	require.NoError(t, err)
	busy, err := salesforcetest.New(salesforcetest.Config{Addr: addr})
	require.NoError(t, err)

	faketest.StartAndClose(t, faketest.Life{Fake: srv, Busy: busy, Addr: addr,
		BaseURL: "http://" + addr, Path: "/services/data/v66.0/limits",
		Served: func() {
			assert.Equal(t, salesforcetest.DefaultToken, srv.AccessToken())
			assert.Equal(t, srv.Token(), srv.AccessToken())
			assert.Len(t, srv.All(), 3)
			assert.Equal(t, 1, srv.CallCount("limits"))
			assert.Equal(t, srv.Calls(), srv.CallCounts())
		}})

	_, err = salesforcetest.New(salesforcetest.Config{Seed: 2, Contacts: 3})
	assert.ErrorContains(t, err, "Contacts")
	old, err := salesforcetest.New(salesforcetest.Config{Seed: 2})
	require.NoError(t, err)
	assert.Len(t, old.All(), 2, "Seed still seeds")
}
