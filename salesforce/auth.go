package salesforce

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"
)

// JWTAuth configures the OAuth 2.0 JWT bearer flow (server to server).
type JWTAuth struct {
	// ClientID is the connected app's consumer key (the iss claim). Required.
	ClientID string
	// Username is the Salesforce user to act as (the sub claim). Required.
	Username string
	// PrivateKeyPEM is the RSA private key (PKCS #1 or PKCS #8 PEM) whose
	// certificate is uploaded to the app. Required.
	PrivateKeyPEM []byte
	// Audience is the aud claim: https://login.salesforce.com,
	// https://test.salesforce.com or an Experience Cloud site URL; "" means
	// Config.LoginURL (set it when LoginURL is a My Domain URL).
	Audience string
}

// ClientCredentialsAuth configures the OAuth 2.0 client credentials flow,
// which runs as the app's run-as user. Use the org's My Domain as LoginURL.
type ClientCredentialsAuth struct {
	// ClientID and ClientSecret are the app's consumer key and secret. Required.
	ClientID     string
	ClientSecret string
}

// RefreshTokenAuth configures the OAuth 2.0 refresh token flow.
type RefreshTokenAuth struct {
	// ClientID is the app's consumer key. Required.
	ClientID string
	// ClientSecret is the app's consumer secret; "" sends none.
	ClientSecret string
	// RefreshToken is the refresh token. Required.
	RefreshToken string
}

// jwtLifetime is how far ahead the JWT's exp is set (Salesforce allows at most 3 minutes).
const jwtLifetime = 2*time.Minute + 30*time.Second

func parseRSAKey(pemBytes []byte) (*rsa.PrivateKey, error) {
	block, _ := pem.Decode(pemBytes)
	if block == nil {
		return nil, errors.New("no PEM block")
	}
	if k, err := x509.ParsePKCS1PrivateKey(block.Bytes); err == nil {
		return k, nil
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, errors.New("not an RSA private key in PKCS #1 or PKCS #8 form")
	}
	rk, ok := k.(*rsa.PrivateKey)
	if !ok {
		return nil, errors.New("not an RSA private key")
	}
	return rk, nil
}

// signJWT builds an RS256 JWT with the given claims.
func signJWT(key *rsa.PrivateKey, claims map[string]any) (string, error) {
	enc := base64.RawURLEncoding
	header := enc.EncodeToString([]byte(`{"alg":"RS256"}`))
	body, err := json.Marshal(claims)
	if err != nil {
		return "", err
	}
	signing := header + "." + enc.EncodeToString(body)
	sum := sha256.Sum256([]byte(signing))
	sig, err := rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, sum[:])
	if err != nil {
		return "", err
	}
	return signing + "." + enc.EncodeToString(sig), nil
}

// tokenForm builds the form for one token request.
func (c *Client) tokenForm() (url.Values, error) {
	f := url.Values{}
	switch {
	case c.cfg.JWT != nil:
		aud := c.cfg.JWT.Audience
		if aud == "" {
			aud = strings.TrimRight(c.cfg.LoginURL, "/")
		}
		a, err := signJWT(c.jwtKey, map[string]any{
			"iss": c.cfg.JWT.ClientID,
			"sub": c.cfg.JWT.Username,
			"aud": aud,
			"exp": c.now().Add(jwtLifetime).Unix(),
		})
		if err != nil {
			return nil, fmt.Errorf("salesforce: token: sign jwt: %w", err)
		}
		f.Set("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer")
		f.Set("assertion", a)
	case c.cfg.ClientCredentials != nil:
		f.Set("grant_type", "client_credentials")
		f.Set("client_id", c.cfg.ClientCredentials.ClientID)
		f.Set("client_secret", c.cfg.ClientCredentials.ClientSecret)
	case c.cfg.RefreshToken != nil:
		f.Set("grant_type", "refresh_token")
		f.Set("refresh_token", c.cfg.RefreshToken.RefreshToken)
		f.Set("client_id", c.cfg.RefreshToken.ClientID)
		if c.cfg.RefreshToken.ClientSecret != "" {
			f.Set("client_secret", c.cfg.RefreshToken.ClientSecret)
		}
	default:
		return nil, errors.New("salesforce: token: no OAuth flow configured")
	}
	return f, nil
}

// session returns the current access token and API base, fetching a token
// first when there is none.
func (c *Client) session(ctx context.Context) (tok, base string, err error) {
	c.authMu.Lock()
	defer c.authMu.Unlock()
	if c.token != "" {
		return c.token, c.base, nil
	}
	if err := c.authenticate(ctx); err != nil {
		return "", "", err
	}
	return c.token, c.base, nil
}

// reauthenticate drops the token stale (if it is still the current one) and
// fetches a new one. It reports false when the client has no flow to get one.
func (c *Client) reauthenticate(ctx context.Context, stale string) (bool, error) {
	if c.cfg.AccessToken != "" {
		return false, nil
	}
	c.authMu.Lock()
	defer c.authMu.Unlock()
	if c.token != stale && c.token != "" {
		return true, nil // another call already renewed it
	}
	c.token = ""
	return true, c.authenticate(ctx)
}

// authenticate runs the configured OAuth flow; c.authMu is held.
func (c *Client) authenticate(ctx context.Context) error {
	form, err := c.tokenForm()
	if err != nil {
		return err
	}
	endpoint := strings.TrimRight(c.cfg.LoginURL, "/") + "/services/oauth2/token"
	resp, err := c.do(ctx, call{name: "token", endpoint: "oauth2/token", method: "POST", url: endpoint,
		body: []byte(form.Encode()), contentType: "application/x-www-form-urlencoded", idempotent: true, noAuth: true})
	if err != nil {
		return err
	}
	t, err := decodeToken(resp.status, resp.body)
	if err != nil {
		var ae *AuthError
		if errors.As(err, &ae) && ae.Status < 500 {
			return permanent(err)
		}
		return err
	}
	base := c.cfg.InstanceURL
	if base == "" {
		base = t.InstanceURL
	}
	u, perr := url.Parse(base)
	if base == "" || perr != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return &DecodeError{Call: "token", Status: resp.status, Reason: "token response without a usable instance_url"}
	}
	c.token = t.AccessToken
	c.base = strings.TrimRight(base, "/")
	return nil
}
