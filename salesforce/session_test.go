package salesforce_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/salesforce"
	"github.com/crmsync/crmsync/salesforce/salesforcetest"
)

func TestLatestChange(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	srv := salesforcetest.NewServer(t, salesforcetest.WithClock(clock))
	c, err := salesforce.New(salesforce.Config{HTTPClient: http.DefaultClient, InstanceURL: srv.BaseURL(), AccessToken: srv.AccessToken()})
	require.NoError(t, err)
	ctx := context.Background()

	_, ok, err := c.LatestChange(ctx, "Contact", time.Time{})
	require.NoError(t, err)
	assert.False(t, ok, "no records yet")

	ids := srv.SeedContacts(2)
	now = now.Add(time.Minute)
	require.NoError(t, srv.Edit(ids[0], crmsync.Fields{"Title": "CTO"}))
	latest, ok, err := c.LatestChange(ctx, "Contact", time.Time{})
	require.NoError(t, err)
	require.True(t, ok)
	assert.Equal(t, now, latest.UTC())

	_, ok, err = c.LatestChange(ctx, "Contact", latest)
	require.NoError(t, err)
	assert.False(t, ok, "nothing after the newest stamp")

	now = now.Add(time.Minute)
	require.NoError(t, srv.Delete(ids[1]))
	latest, ok, err = c.LatestChange(ctx, "Contact", latest)
	require.NoError(t, err)
	require.True(t, ok, "a deletion is a change")
	assert.Equal(t, now, latest.UTC())
	assert.Equal(t, 4, srv.CallCount("queryAll"), "one call each")
}

func TestSessionRenewsARefusedToken(t *testing.T) {
	t.Parallel()
	srv := salesforcetest.NewServer(t)
	c, err := salesforce.New(salesforce.Config{HTTPClient: http.DefaultClient, LoginURL: srv.BaseURL(),
		ClientCredentials: &salesforce.ClientCredentialsAuth{ClientID: salesforcetest.DefaultClientID, ClientSecret: salesforcetest.DefaultClientSecret}})
	require.NoError(t, err)
	ctx := context.Background()
	tok, inst, err := c.Session(ctx, "")
	require.NoError(t, err)
	assert.Equal(t, srv.BaseURL(), inst)
	again, _, err := c.Session(ctx, "some-older-token")
	require.NoError(t, err)
	assert.Equal(t, tok, again, "a token refused earlier is not the current one")
	renewed, _, err := c.Session(ctx, tok)
	require.NoError(t, err)
	assert.NotEqual(t, tok, renewed)

	static, err := salesforce.New(salesforce.Config{HTTPClient: http.DefaultClient, InstanceURL: srv.BaseURL(), AccessToken: "x"})
	require.NoError(t, err)
	_, _, err = static.Session(ctx, "x")
	assert.ErrorIs(t, err, salesforce.ErrSessionRefused)
}
