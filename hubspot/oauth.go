package hubspot

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/crmsync/crmsync"
	"golang.org/x/oauth2"
)

// tokenSource refreshes OAuth access tokens with golang.org/x/oauth2 and can
// be told to drop a token HubSpot refused before its expiry.
type tokenSource struct {
	c       *Client
	cfg     *oauth2.Config
	mu      sync.Mutex
	refresh string
	tok     *oauth2.Token
}

func newTokenSource(c *Client, o OAuth, tokenURL string) *tokenSource {
	return &tokenSource{
		c: c,
		cfg: &oauth2.Config{
			ClientID:     o.ClientID,
			ClientSecret: o.ClientSecret,
			Endpoint:     oauth2.Endpoint{TokenURL: tokenURL, AuthStyle: oauth2.AuthStyleInParams},
		},
		refresh: o.RefreshToken,
	}
}

// token returns a valid access token, refreshing it if needed.
func (s *tokenSource) token(ctx context.Context) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tok.Valid() {
		return s.tok.AccessToken, nil
	}
	if err := s.c.count("oauth/token"); err != nil {
		return "", err
	}
	ctx = context.WithValue(ctx, oauth2.HTTPClient, s.c.hc)
	tok, err := s.cfg.TokenSource(ctx, &oauth2.Token{RefreshToken: s.refresh}).Token()
	if err != nil {
		// The library's error text quotes the response body; keep only the
		// status and the OAuth error code.
		var re *oauth2.RetrieveError
		if errors.As(err, &re) {
			status := 0
			if re.Response != nil {
				status = re.Response.StatusCode
			}
			e := fmt.Errorf("hubspot: oauth token refresh: http %d %s", status, re.ErrorCode)
			if status >= 400 && status < 500 && status != 429 {
				return "", crmsync.Permanent(e)
			}
			return "", &netError{call: "oauth token refresh", err: e}
		}
		if ctx.Err() != nil {
			return "", fmt.Errorf("hubspot: oauth token refresh: %w", ctx.Err())
		}
		return "", &netError{call: "oauth token refresh", err: err}
	}
	if tok.AccessToken == "" {
		return "", &DecodeError{Call: "oauth token refresh", Status: 200, Reason: "no access token in response"}
	}
	if tok.RefreshToken != "" {
		s.refresh = tok.RefreshToken
	}
	s.tok = tok
	return tok.AccessToken, nil
}

// invalidate drops the current access token so the next call refreshes it.
func (s *tokenSource) invalidate() {
	s.mu.Lock()
	s.tok = nil
	s.mu.Unlock()
}
