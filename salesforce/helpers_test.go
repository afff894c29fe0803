package salesforce_test

import (
	"sync"
	"testing"
	"time"

	"github.com/crmsync/crmsync/salesforce"
	"github.com/crmsync/crmsync/salesforce/salesforcetest"
	"github.com/stretchr/testify/require"
)

// clock is a controllable clock shared by the fake and the client.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// fixture is a fake org and a client pointed at it.
type fixture struct {
	clk *clock
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
