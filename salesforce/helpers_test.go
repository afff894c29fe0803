package salesforce_test

import (
	"testing"
	"time"

	"github.com/crmsync/crmsync/internal/clocktest"
	"github.com/crmsync/crmsync/salesforce"
	"github.com/crmsync/crmsync/salesforce/salesforcetest"
	"github.com/stretchr/testify/require"
)

// newClock returns the clock shared by the fake and the client.
func newClock() *clocktest.Clock {
	return clocktest.New(time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC))
}

// fixture is a fake org and a client pointed at it.
type fixture struct {
	clk *clocktest.Clock
	srv *salesforcetest.Server
	c   *salesforce.Client
}

// setup starts a fake (changed by srvOpt) and a client with client
// credentials (changed by cliOpt), both on one controllable clock.
func setup(t *testing.T, srvOpt func(*salesforcetest.Config), cliOpt func(*salesforce.Config)) *fixture {
	t.Helper()
	clk := newClock()
	srv := salesforcetest.NewServer(t, func(c *salesforcetest.Config) {
		c.Now = clk.Now
		if srvOpt != nil {
			srvOpt(c)
		}
	})
	cfg := salesforce.Config{
		LoginURL:          srv.URL,
		ClientCredentials: &salesforce.ClientCredentialsAuth{ClientID: "fake-client-id", ClientSecret: "fake-client-secret"},
		RetryWait:         time.Millisecond,
		RequestTimeout:    5 * time.Second,
		Now:               clk.Now,
	}
	if cliOpt != nil {
		cliOpt(&cfg)
	}
	c, err := salesforce.New(cfg)
	require.NoError(t, err, "New")
	return &fixture{clk: clk, srv: srv, c: c}
}
