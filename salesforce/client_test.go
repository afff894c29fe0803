package salesforce_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"testing"
	"time"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/salesforce"
	"github.com/crmsync/crmsync/salesforce/salesforcetest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var ctx = context.Background()

func TestNewValidation(t *testing.T) {
	cc := &salesforce.ClientCredentialsAuth{ClientID: "id", ClientSecret: "secret"}
	tests := []struct {
		name string
		cfg  salesforce.Config
		want string // a substring naming the field
	}{
		{"no auth", salesforce.Config{LoginURL: "https://login.salesforce.com"}, "exactly one"},
		{"two auths", salesforce.Config{LoginURL: "https://x", AccessToken: "t", ClientCredentials: cc}, "exactly one"},
		{"token without instance", salesforce.Config{AccessToken: "t"}, "InstanceURL"},
		{"bad login url", salesforce.Config{LoginURL: "login.salesforce.com", ClientCredentials: cc}, "LoginURL"},
		{"bad instance url", salesforce.Config{LoginURL: "https://x", InstanceURL: "ftp://y", ClientCredentials: cc}, "InstanceURL"},
		{"bad version", salesforce.Config{LoginURL: "https://x", ClientCredentials: cc, APIVersion: "66"}, "APIVersion"},
		{"bad share", salesforce.Config{LoginURL: "https://x", ClientCredentials: cc, DailyShare: 1.5}, "DailyShare"},
		{"negative wait", salesforce.Config{LoginURL: "https://x", ClientCredentials: cc, RetryWait: -1}, "RetryWait"},
		{"short url limit", salesforce.Config{LoginURL: "https://x", ClientCredentials: cc, MaxURLLength: 10}, "MaxURLLength"},
		{"bad default field", salesforce.Config{LoginURL: "https://x", ClientCredentials: cc, DefaultFields: []string{"Id; DROP"}}, "DefaultFields"},
		{"jwt without key", salesforce.Config{LoginURL: "https://x", JWT: &salesforce.JWTAuth{ClientID: "a", Username: "u"}}, "JWT.PrivateKeyPEM"},
		{"jwt without user", salesforce.Config{LoginURL: "https://x", JWT: &salesforce.JWTAuth{ClientID: "a"}}, "JWT.Username"},
		{"cc without secret", salesforce.Config{LoginURL: "https://x", ClientCredentials: &salesforce.ClientCredentialsAuth{ClientID: "a"}}, "ClientCredentials"},
		{"refresh without token", salesforce.Config{LoginURL: "https://x", RefreshToken: &salesforce.RefreshTokenAuth{ClientID: "a"}}, "RefreshToken"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := salesforce.New(tt.cfg)
			require.Error(t, err, "New() error = %v, want one naming %q", err, tt.want)
			require.Contains(t, err.Error(), tt.want, "New() error = %v, want one naming %q", err, tt.want)
		})
	}
	c, err := salesforce.New(salesforce.Config{LoginURL: "https://login.salesforce.com", ClientCredentials: cc, APIVersion: "v64.0"})
	require.NoError(t, err, "New(valid)")
	require.Equal(t, "salesforce", c.System(), "System/Limits = %q %+v", c.System(), c.Limits())
	require.Equal(t, 200, c.Limits().WriteBatch, "System/Limits = %q %+v", c.System(), c.Limits())
	require.Equal(t, 200, c.Limits().LookupBatch, "System/Limits = %q %+v", c.System(), c.Limits())
}

func genKey(t *testing.T) (*rsa.PrivateKey, []byte) {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	der, err := x509.MarshalPKCS8PrivateKey(k)
	require.NoError(t, err)
	return k, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

func TestAuthFlows(t *testing.T) {
	key, keyPEM := genKey(t)
	_, otherPEM := genKey(t)
	srvOpt := func(c *salesforcetest.Config) {
		c.JWTPublicKey = &key.PublicKey
		c.Username = "sync@example.com"
	}
	tests := []struct {
		name     string
		auth     func(*salesforce.Config, *salesforcetest.Server)
		wantAuth bool // want an *AuthError
	}{
		{"jwt", func(c *salesforce.Config, _ *salesforcetest.Server) {
			c.ClientCredentials = nil
			c.JWT = &salesforce.JWTAuth{ClientID: "fake-client-id", Username: "sync@example.com", PrivateKeyPEM: keyPEM}
		}, false},
		{"jwt wrong key", func(c *salesforce.Config, _ *salesforcetest.Server) {
			c.ClientCredentials = nil
			c.JWT = &salesforce.JWTAuth{ClientID: "fake-client-id", Username: "sync@example.com", PrivateKeyPEM: otherPEM}
		}, true},
		{"jwt wrong user", func(c *salesforce.Config, _ *salesforcetest.Server) {
			c.ClientCredentials = nil
			c.JWT = &salesforce.JWTAuth{ClientID: "fake-client-id", Username: "other@example.com", PrivateKeyPEM: keyPEM}
		}, true},
		{"jwt clock behind", func(c *salesforce.Config, _ *salesforcetest.Server) {
			c.ClientCredentials = nil
			c.JWT = &salesforce.JWTAuth{ClientID: "fake-client-id", Username: "sync@example.com", PrivateKeyPEM: keyPEM}
			now := c.Now
			c.Now = func() time.Time { return now().Add(-10 * time.Minute) }
		}, true},
		{"client credentials", func(c *salesforce.Config, _ *salesforcetest.Server) {}, false},
		{"client credentials wrong secret", func(c *salesforce.Config, _ *salesforcetest.Server) {
			c.ClientCredentials = &salesforce.ClientCredentialsAuth{ClientID: "fake-client-id", ClientSecret: "nope"}
		}, true},
		{"refresh token", func(c *salesforce.Config, _ *salesforcetest.Server) {
			c.ClientCredentials = nil
			c.RefreshToken = &salesforce.RefreshTokenAuth{ClientID: "fake-client-id", ClientSecret: "fake-client-secret", RefreshToken: "fake-refresh-token"}
		}, false},
		{"refresh token revoked", func(c *salesforce.Config, _ *salesforcetest.Server) {
			c.ClientCredentials = nil
			c.RefreshToken = &salesforce.RefreshTokenAuth{ClientID: "fake-client-id", RefreshToken: "old"}
		}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var srv *salesforcetest.Server
			f := setup(t, func(c *salesforcetest.Config) { srvOpt(c) }, nil)
			srv = f.srv
			cfg := salesforce.Config{LoginURL: srv.URL, RetryWait: time.Millisecond, Now: f.clk.Now,
				ClientCredentials: &salesforce.ClientCredentialsAuth{ClientID: "fake-client-id", ClientSecret: "fake-client-secret"}}
			tt.auth(&cfg, srv)
			c, err := salesforce.New(cfg)
			require.NoError(t, err)
			srv.SeedN(3)
			for range 2 {
				_, err = c.Schema(ctx, "Contact")
				if err != nil {
					break
				}
			}
			var ae *salesforce.AuthError
			if tt.wantAuth {
				require.ErrorAs(t, err, &ae, "Schema() error = %v, want a permanent *AuthError", err)
				require.True(t, crmsync.IsPermanent(err), "Schema() error = %v, want a permanent *AuthError", err)
				return
			}
			require.NoError(t, err, "Schema()")
			got := srv.Calls()["token"]
			assert.Equal(t, 1, got, "token calls = %d, want 1 for two API calls", got)
		})
	}
}

func TestStaticTokenAndInstanceOverride(t *testing.T) {
	f := setup(t, nil, nil)
	c, err := salesforce.New(salesforce.Config{AccessToken: f.srv.Token(), InstanceURL: f.srv.URL, RetryWait: time.Millisecond})
	require.NoError(t, err)
	_, err = c.Schema(ctx, "Contact")
	require.NoError(t, err, "Schema()")
	assert.Equal(t, 0, f.srv.Calls()["token"], "static token fetched a token")
	// An expired static token cannot be renewed: permanent 401.
	f.srv.ExpireSessions()
	_, err = c.Schema(ctx, "Contact")
	var ae *salesforce.APIError
	require.ErrorAs(t, err, &ae, "Schema() after expiry = %v, want permanent 401 INVALID_SESSION_ID", err)
	require.Equal(t, 401, ae.Status, "Schema() after expiry = %v, want permanent 401 INVALID_SESSION_ID", err)
	require.Equal(t, "INVALID_SESSION_ID", ae.ErrorCode, "Schema() after expiry = %v, want permanent 401 INVALID_SESSION_ID", err)
	require.True(t, crmsync.IsPermanent(err), "Schema() after expiry = %v, want permanent 401 INVALID_SESSION_ID", err)
}

func TestExpiredSessionReauthenticatesOnce(t *testing.T) {
	f := setup(t, nil, nil)
	f.srv.SeedN(2)
	_, err := f.c.Lookup(ctx, "Contact", "Email", []string{"contact1@example.com"}, nil)
	require.NoError(t, err)
	f.srv.ExpireSessions()
	recs, err := f.c.Lookup(ctx, "Contact", "Email", []string{"contact1@example.com"}, nil)
	require.NoError(t, err, "Lookup after expiry = %d", len(recs))
	require.Len(t, recs, 1, "Lookup after expiry = %d, %v", len(recs), err)
	calls := f.srv.Calls()
	require.Equal(t, 2, calls["token"], "calls = %v, want 2 token and 3 query", calls)
	require.Equal(t, 3, calls["query"], "calls = %v, want 2 token and 3 query", calls)
}

func TestSessionExpiringTwiceFails(t *testing.T) {
	f := setup(t, nil, nil)
	// Every request gets a 401: the client re-authenticates once, then gives up.
	f.srv.Inject(salesforcetest.Fault{Endpoint: "describe", Times: 5, Status: 401,
		Body: `[{"message":"Session expired or invalid","errorCode":"INVALID_SESSION_ID"}]`})
	_, err := f.c.Schema(ctx, "Contact")
	var ae *salesforce.APIError
	require.ErrorAs(t, err, &ae, "Schema() = %v, want 401", err)
	require.Equal(t, 401, ae.Status, "Schema() = %v, want 401", err)
	got := f.srv.Calls()["describe"]
	require.Equal(t, 2, got, "describe calls = %d, want 2 (one retry after re-authentication)", got)
}

func TestSchema(t *testing.T) {
	f := setup(t, nil, nil)
	s, err := f.c.Schema(ctx, "Contact")
	require.NoError(t, err)
	by := map[string]crmsync.FieldSchema{}
	for _, fs := range s.Fields {
		by[fs.Name] = fs
	}
	checks := []struct {
		name string
		want crmsync.FieldSchema
	}{
		{"LastName", crmsync.FieldSchema{Name: "LastName", Type: crmsync.TypeString, Required: true}},
		{"Email", crmsync.FieldSchema{Name: "Email", Type: crmsync.TypeString}},
		{"DoNotCall", crmsync.FieldSchema{Name: "DoNotCall", Type: crmsync.TypeBool}},
		{"SystemModstamp", crmsync.FieldSchema{Name: "SystemModstamp", Type: crmsync.TypeDateTime, ReadOnly: true}},
		{"HubSpot_Id__c", crmsync.FieldSchema{Name: "HubSpot_Id__c", Type: crmsync.TypeString, Unique: true}},
		{"Score__c", crmsync.FieldSchema{Name: "Score__c", Type: crmsync.TypeNumber}},
		{"Birthdate", crmsync.FieldSchema{Name: "Birthdate", Type: crmsync.TypeDate}},
	}
	for _, c := range checks {
		got := by[c.name]
		got.Options = nil
		assert.Equal(t, c.want.Name, got.Name, "field %s = %+v, want %+v", c.name, got, c.want)
		assert.Equal(t, c.want.Type, got.Type, "field %s = %+v, want %+v", c.name, got, c.want)
		assert.Equal(t, c.want.Required, got.Required, "field %s = %+v, want %+v", c.name, got, c.want)
		assert.Equal(t, c.want.ReadOnly, got.ReadOnly, "field %s = %+v, want %+v", c.name, got, c.want)
		assert.Equal(t, c.want.Unique, got.Unique, "field %s = %+v, want %+v", c.name, got, c.want)
		assert.Equal(t, c.want.Restricted, got.Restricted, "field %s = %+v, want %+v", c.name, got, c.want)
	}
	st := by["Lifecycle_Stage__c"]
	if assert.Equal(t, crmsync.TypeEnum, st.Type, "Lifecycle_Stage__c = %+v", st) {
		if assert.True(t, st.Restricted, "Lifecycle_Stage__c = %+v", st) {
			if assert.Len(t, st.Options, 8, "Lifecycle_Stage__c = %+v", st) {
				assert.Equal(t, "subscriber", st.Options[0], "Lifecycle_Stage__c = %+v", st)
			}
		}
	}
	_, err = f.c.Schema(ctx, "Nope__c")
	assert.True(t, crmsync.IsPermanent(err), "Schema(unknown) = %v, want permanent", err)
	_, err = f.c.Schema(ctx, "Contact/../x")
	if assert.Error(t, err, "Schema(bad name)") {
		assert.Contains(t, err.Error(), "invalid object name", "Schema(bad name) = %v", err)
	}
}

func TestStats(t *testing.T) {
	f := setup(t, func(c *salesforcetest.Config) { c.DailyLimit = 1000 }, nil)
	f.srv.SeedN(1)
	_, err := f.c.Schema(ctx, "Contact")
	require.NoError(t, err)
	_, err = f.c.Lookup(ctx, "Contact", "id", []string{"003000000000000AAA"}, nil)
	require.NoError(t, err)
	st := f.c.Stats()
	assert.Equal(t, int64(1), st.Calls["oauth2/token"], "Stats().Calls = %v", st.Calls)
	assert.Equal(t, int64(1), st.Calls["describe"], "Stats().Calls = %v", st.Calls)
	assert.Equal(t, int64(1), st.Calls["query"], "Stats().Calls = %v", st.Calls)
	assert.Equal(t, int64(2), st.APIUsed, "Stats() usage = %d/%d, want 2/1000", st.APIUsed, st.APIMax)
	assert.Equal(t, int64(1000), st.APIMax, "Stats() usage = %d/%d, want 2/1000", st.APIUsed, st.APIMax)
}
