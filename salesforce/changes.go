package salesforce

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/crmsync/crmsync"
)

// DeletedWindow is how far back Salesforce keeps deleted records for queryAll
// and getDeleted.
const DeletedWindow = 15 * 24 * time.Hour

// pageToken is the decoded form of a Page.Next token: the nextRecordsUrl to
// follow and the last (SystemModstamp, Id) returned, to restart from when the
// query locator has expired.
type pageToken struct {
	URL   string `json:"u,omitempty"`
	Stamp string `json:"t,omitempty"`
	ID    string `json:"i,omitempty"`
	// Seen counts the records returned since the query (or its restart)
	// began, for Page.Total.
	Seen int `json:"n,omitempty"`
}

const tokenPrefix = "sf1."

// idPattern matches record ids (18 characters from the API, 15 in the UI).
var idPattern = regexp.MustCompile(`^[A-Za-z0-9]{15}(?:[A-Za-z0-9]{3})?$`)

func (p pageToken) encode() string {
	b, _ := json.Marshal(p)
	return tokenPrefix + base64.RawURLEncoding.EncodeToString(b)
}

func decodePageToken(s string) (pageToken, error) {
	var p pageToken
	rest, ok := strings.CutPrefix(s, tokenPrefix)
	if !ok {
		return p, errors.New("salesforce: changes: page token is not ours")
	}
	b, err := base64.RawURLEncoding.DecodeString(rest)
	if err != nil || json.Unmarshal(b, &p) != nil {
		return p, errors.New("salesforce: changes: malformed page token")
	}
	if p.URL != "" && (!strings.HasPrefix(p.URL, "/services/data/") || strings.ContainsAny(p.URL, "?#@\\") || strings.Contains(p.URL, "..")) {
		return p, errors.New("salesforce: changes: page token holds a bad nextRecordsUrl")
	}
	if (p.Stamp == "") != (p.ID == "") {
		return p, errors.New("salesforce: changes: page token holds half a position")
	}
	if p.Stamp != "" {
		if _, err := ParseDateTime(p.Stamp); err != nil {
			return p, errors.New("salesforce: changes: page token holds a bad stamp")
		}
		if !idPattern.MatchString(p.ID) {
			return p, errors.New("salesforce: changes: page token holds a bad id")
		}
	}
	return p, nil
}

// fieldList returns the fields to select: must, then fields (or the
// defaults), without repeats, each validated.
func (c *Client) fieldList(fields []string, must ...string) ([]string, error) {
	if fields == nil {
		fields = c.fields
	}
	seen := map[string]bool{}
	var out []string
	for _, f := range append(append([]string(nil), must...), fields...) {
		if err := ValidName("field", f); err != nil {
			return nil, err
		}
		k := strings.ToLower(f)
		if !seen[k] {
			seen[k] = true
			out = append(out, f)
		}
	}
	return out, nil
}

// changesSOQL builds the change query; after, when set, restarts past the
// (SystemModstamp, Id) position; notBy, when set, leaves out the records
// that user changed last.
func changesSOQL(object string, fields []string, q crmsync.ChangeQuery, after pageToken, notBy string) string {
	var where []string
	if q.Archived {
		where = append(where, "IsDeleted = true")
	}
	if notBy != "" {
		where = append(where, "LastModifiedById != "+QuoteSOQL(notBy))
	}
	if !q.Since.IsZero() {
		where = append(where, "SystemModstamp >= "+FormatSOQLDateTime(q.Since))
	}
	if !q.Until.IsZero() {
		where = append(where, "SystemModstamp < "+FormatSOQLDateTime(q.Until))
	}
	if after.Stamp != "" {
		t, _ := ParseDateTime(after.Stamp)
		ts := FormatSOQLDateTime(t)
		where = append(where, fmt.Sprintf("(SystemModstamp > %s OR (SystemModstamp = %s AND Id > %s))", ts, ts, QuoteSOQL(after.ID)))
	}
	s := "SELECT " + strings.Join(fields, ", ") + " FROM " + object
	if len(where) > 0 {
		s += " WHERE " + strings.Join(where, " AND ")
	}
	return s + " ORDER BY SystemModstamp, Id"
}

// mergeable reports whether object is one Salesforce merges (Lead, Contact,
// Account): its deleted records carry MasterRecordId.
func mergeable(object string) bool {
	switch strings.ToLower(object) {
	case "lead", "contact", "account":
		return true
	}
	return false
}

// Changes implements crmsync.CRM. It queries records whose SystemModstamp is in
// [q.Since, q.Until), ordered by (SystemModstamp, Id); with q.Archived it
// queries deleted records through queryAll and first checks that the
// recycle-bin window still covers q.Since, failing with an error wrapping
// ErrDeletedWindowLost when it does not. A deleted Lead, Contact or Account
// that a merge took away has Record.MergedInto set to the winner
// (MasterRecordId, selected with the archived read). A query naming a field
// the API does not know or hides (INVALID_FIELD) fails with a permanent
// error whose chain holds a *crmsync.FieldError naming it. With
// q.OthersOnly and Config.SkipOwnWrites, records whose LastModifiedById is
// the token's user are left out (not for q.Archived). An expired query locator
// (INVALID_QUERY_LOCATOR) restarts the query after the last record returned.
func (c *Client) Changes(ctx context.Context, q crmsync.ChangeQuery) (crmsync.Page, error) {
	if err := ValidName("object", q.Object); err != nil {
		return crmsync.Page{}, err
	}
	must := []string{"Id", "SystemModstamp", "IsDeleted"}
	if q.Archived && mergeable(q.Object) {
		must = append(must, "MasterRecordId")
	}
	fields, err := c.selectList(q.Object, q.Fields, mustFields(q.Object, must...)...)
	if err != nil {
		return crmsync.Page{}, err
	}
	name, endpoint := "query", "/query"
	if q.Archived {
		name, endpoint = "queryAll", "/queryAll"
	}
	hdr := http.Header{}
	if q.PageSize > 0 {
		n := min(max(q.PageSize, 200), 2000)
		hdr.Set("Sforce-Query-Options", "batchSize="+strconv.Itoa(n))
	}
	var notBy string
	if q.OthersOnly && !q.Archived && c.cfg.SkipOwnWrites {
		if notBy, err = c.ownUserID(ctx); err != nil {
			return crmsync.Page{}, err
		}
	}
	var pos pageToken
	var res queryResult
	if q.PageToken == "" {
		if q.Archived {
			if err := c.checkDeletedWindow(ctx, q.Object, q.Since); err != nil {
				return crmsync.Page{}, err
			}
		}
		res, err = c.query(ctx, name, endpoint, changesSOQL(q.Object, fields, q, pageToken{}, notBy), hdr)
	} else {
		if pos, err = decodePageToken(q.PageToken); err != nil {
			return crmsync.Page{}, permanent(err)
		}
		if pos.URL != "" {
			res, err = c.queryMore(ctx, pos.URL, hdr)
			var ae *APIError
			if errors.As(err, &ae) && ae.ErrorCode == "INVALID_QUERY_LOCATOR" {
				res, err = c.query(ctx, name, endpoint, changesSOQL(q.Object, fields, q, pos, notBy), hdr)
				pos.Seen = 0
			}
		} else {
			res, err = c.query(ctx, name, endpoint, changesSOQL(q.Object, fields, q, pos, notBy), hdr)
			pos.Seen = 0
		}
	}
	if err == nil && len(res.RolesNext) > 0 {
		err = c.followRoles(ctx, &res)
	}
	if err != nil {
		return crmsync.Page{}, withFieldError(err, q.Object)
	}
	page := crmsync.Page{Records: res.Records}
	if res.TotalSize > pos.Seen {
		page.Total = res.TotalSize - pos.Seen
	}
	pos.Seen += len(res.Records)
	if n := len(res.Records); n > 0 {
		last := res.Records[n-1]
		if last.ID == "" || last.ModifiedAt.IsZero() {
			return crmsync.Page{}, &DecodeError{Call: name, Status: 200, Reason: "record without Id or SystemModstamp"}
		}
		pos.Stamp, pos.ID = FormatDateTime(last.ModifiedAt), last.ID
	}
	if !res.Done {
		pos.URL = res.NextRecordsURL
		page.Next = pos.encode()
	}
	return page, nil
}

// query runs one SOQL query and returns its first page.
func (c *Client) query(ctx context.Context, name, endpoint, soql string, hdr http.Header) (queryResult, error) {
	resp, err := c.do(ctx, call{name: name, endpoint: strings.TrimPrefix(endpoint, "/"), method: http.MethodGet,
		path: endpoint + "?q=" + url.QueryEscape(soql), header: hdr, idempotent: true})
	if err != nil {
		return queryResult{}, err
	}
	return decodeQuery(name, resp.status, resp.body)
}

// queryMore follows a nextRecordsUrl.
func (c *Client) queryMore(ctx context.Context, next string, hdr http.Header) (queryResult, error) {
	if !strings.HasPrefix(next, "/services/data/") {
		return queryResult{}, &DecodeError{Call: "query/next", Status: 200, Reason: "nextRecordsUrl outside /services/data/"}
	}
	resp, err := c.do(ctx, call{name: "query/next", endpoint: "query/next", method: http.MethodGet, path: next, header: hdr, idempotent: true})
	if err != nil {
		return queryResult{}, err
	}
	return decodeQuery("query/next", resp.status, resp.body)
}

// checkDeletedWindow fails with ErrDeletedWindowLost when deletions since
// since may no longer be listed.
func (c *Client) checkDeletedWindow(ctx context.Context, object string, since time.Time) error {
	now := c.now()
	if since.IsZero() || now.Sub(since) > DeletedWindow {
		return crmsync.Permanent(fmt.Errorf("salesforce: changes %s: since is older than %s: %w", object, DeletedWindow, ErrDeletedWindowLost))
	}
	start := since
	if now.Sub(start) < 2*time.Minute {
		start = now.Add(-2 * time.Minute)
	}
	v := url.Values{}
	v.Set("start", start.UTC().Format(time.RFC3339))
	v.Set("end", now.UTC().Format(time.RFC3339))
	resp, err := c.do(ctx, call{name: "getDeleted", endpoint: "sobjects/deleted", method: http.MethodGet,
		path: "/sobjects/" + object + "/deleted/?" + v.Encode(), idempotent: true})
	if err != nil {
		var ae *APIError
		if errors.As(err, &ae) && ae.ErrorCode == "INVALID_REPLICATION_DATE" {
			return crmsync.Permanent(fmt.Errorf("salesforce: changes %s: %w", object, ErrDeletedWindowLost))
		}
		return err
	}
	d, err := decodeDeleted("getDeleted", resp.status, resp.body)
	if err != nil {
		return err
	}
	if d.EarliestDateAvailable.After(since) {
		return crmsync.Permanent(fmt.Errorf("salesforce: changes %s: delete log starts %s, after since: %w",
			object, FormatDateTime(d.EarliestDateAvailable), ErrDeletedWindowLost))
	}
	return nil
}

// FiltersOwnWrites implements crmsync.OwnWriteFilter: it reports
// Config.SkipOwnWrites.
func (c *Client) FiltersOwnWrites() bool { return c.cfg.SkipOwnWrites }

var _ crmsync.OwnWriteFilter = (*Client)(nil)

// ownUserID returns the token's user id: Config.UserID, or the user_id the
// userinfo endpoint reports, asked once.
func (c *Client) ownUserID(ctx context.Context) (string, error) {
	c.userMu.Lock()
	defer c.userMu.Unlock()
	if c.userID != "" {
		return c.userID, nil
	}
	if c.cfg.UserID != "" {
		c.userID = c.cfg.UserID
		return c.userID, nil
	}
	resp, err := c.do(ctx, call{name: "userinfo", endpoint: "oauth2/userinfo", method: http.MethodGet,
		path: "/services/oauth2/userinfo", idempotent: true})
	if err != nil {
		return "", err
	}
	var info struct {
		UserID string `json:"user_id"`
	}
	if err := json.Unmarshal(resp.body, &info); err != nil || !idPattern.MatchString(info.UserID) {
		return "", &DecodeError{Call: "userinfo", Status: resp.status, Reason: "no valid user_id"}
	}
	c.userID = info.UserID
	return c.userID, nil
}
