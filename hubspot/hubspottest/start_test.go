package hubspottest_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/crmsync/crmsync/hubspot/hubspottest"
	"github.com/crmsync/crmsync/internal/faketest"
)

// TestStartAndClose: Start serves on Config.Addr without a test, refuses a
// second start and a busy address, and Close stops serving.
func TestStartAndClose(t *testing.T) {
	addr := faketest.FreeAddr(t)
	srv, err := hubspottest.New(hubspottest.Config{Addr: addr, Prefix: "/hs", Contacts: 3})
	require.NoError(t, err)
	busy, err := hubspottest.New(hubspottest.Config{Addr: addr})
	require.NoError(t, err)

	faketest.StartAndClose(t, faketest.Life{Fake: srv, Busy: busy, Addr: addr,
		BaseURL: "http://" + addr + "/hs", Path: "/crm/v3/objects/contacts",
		Served: func() {
			assert.Equal(t, hubspottest.DefaultToken, srv.AccessToken())
			assert.Len(t, srv.All("contacts"), 3)
			assert.Equal(t, 1, srv.CallCount("list"))
			assert.Equal(t, srv.Calls("list"), srv.CallCount("list"))
		}})

	_, err = hubspottest.New(hubspottest.Config{Contacts: -1})
	assert.ErrorContains(t, err, "Contacts")
}
