package salesforce

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/crmsync/crmsync"
)

// Session returns the access token and instance URL the client calls the
// API with, fetching a token first when it has none, for other Salesforce
// APIs that take the same session (the Pub/Sub API). refused is a token
// such an API just refused, or "": when it is still the current token, the
// client fetches a new one first (a static AccessToken cannot be renewed:
// then it returns ErrSessionRefused).
func (c *Client) Session(ctx context.Context, refused string) (token, instanceURL string, err error) {
	tok, base, err := c.session(ctx)
	if err != nil {
		return "", "", err
	}
	if refused == "" || tok != refused {
		return tok, base, nil
	}
	ok, err := c.reauthenticate(ctx, refused)
	if err != nil {
		return "", "", err
	}
	if !ok {
		return "", "", ErrSessionRefused
	}
	return c.session(ctx)
}

// ErrSessionRefused reports that an API refused the client's static access
// token, which the client cannot renew.
var ErrSessionRefused = errors.New("salesforce: access token refused and cannot be renewed")

// LatestChange returns the newest SystemModstamp of object's records,
// deleted ones included, that is after after (zero: of any record), and
// false when there is none: one queryAll call,
// "SELECT Id, SystemModstamp FROM object WHERE SystemModstamp > after
// ORDER BY SystemModstamp DESC LIMIT 1". A probe for orgs without Change
// Data Capture calls it on a short interval.
func (c *Client) LatestChange(ctx context.Context, object string, after time.Time) (time.Time, bool, error) {
	if err := ValidName("object", object); err != nil {
		return time.Time{}, false, crmsync.Permanent(err)
	}
	soql := "SELECT Id, SystemModstamp FROM " + object
	if !after.IsZero() {
		soql += " WHERE SystemModstamp > " + FormatSOQLDateTime(after)
	}
	soql += " ORDER BY SystemModstamp DESC LIMIT 1"
	res, err := c.query(ctx, "queryAll", "/queryAll", soql, http.Header{})
	if err != nil {
		return time.Time{}, false, fmt.Errorf("salesforce: latest change of %s: %w", object, err)
	}
	if len(res.Records) == 0 {
		return time.Time{}, false, nil
	}
	return res.Records[0].ModifiedAt, true, nil
}
