package hubspot

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/crmsync/crmsync"
)

// object is HubSpot's record JSON (SimplePublicObject and its variants).
type object struct {
	ID                 string             `json:"id"`
	Properties         map[string]*string `json:"properties"`
	CreatedAt          string             `json:"createdAt"`
	UpdatedAt          string             `json:"updatedAt"`
	Archived           bool               `json:"archived"`
	ArchivedAt         string             `json:"archivedAt,omitempty"`
	New                *bool              `json:"new,omitempty"`
	ObjectWriteTraceID string             `json:"objectWriteTraceId,omitempty"`
}

// record converts an object to a crmsync.Record. Unparseable stamps are an
// error: the sync's cursor depends on them.
func (o object) record(call string) (crmsync.Record, error) {
	if o.ID == "" {
		return crmsync.Record{}, &DecodeError{Call: call, Status: 200, Reason: "record without id"}
	}
	r := crmsync.Record{ID: o.ID, Archived: o.Archived, Fields: make(crmsync.Fields, len(o.Properties))}
	for k, v := range o.Properties {
		if v == nil {
			r.Fields[k] = nil
		} else {
			r.Fields[k] = *v
		}
	}
	if v := o.Properties[mergedProperty]; v != nil {
		for _, id := range strings.Split(*v, ";") {
			if id = strings.TrimSpace(id); id != "" {
				r.MergedFrom = append(r.MergedFrom, id)
			}
		}
	}
	var err error
	if r.CreatedAt, err = parseStamp(o.CreatedAt); err != nil {
		return crmsync.Record{}, &DecodeError{Call: call, Status: 200, Reason: "record " + o.ID + ": bad createdAt", Err: err}
	}
	if r.ModifiedAt, err = parseStamp(o.UpdatedAt); err != nil {
		return crmsync.Record{}, &DecodeError{Call: call, Status: 200, Reason: "record " + o.ID + ": bad updatedAt", Err: err}
	}
	return r, nil
}

func parseStamp(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, errors.New("not an RFC 3339 time")
	}
	return t.UTC(), nil
}

// modifiedProperty is the property search filters on for changes.
func modifiedProperty(obj string) string {
	if obj == "contacts" || obj == "contact" || obj == "0-1" {
		return "lastmodifieddate"
	}
	return "hs_lastmodifieddate"
}

func objectPath(obj string) string { return "/crm/v3/objects/" + url.PathEscape(obj) }

type filter struct {
	PropertyName string   `json:"propertyName"`
	Operator     string   `json:"operator"`
	Value        string   `json:"value,omitempty"`
	HighValue    string   `json:"highValue,omitempty"`
	Values       []string `json:"values,omitempty"`
}

type filterGroup struct {
	Filters []filter `json:"filters"`
}

type sort struct {
	PropertyName string `json:"propertyName"`
	Direction    string `json:"direction"`
}

type searchRequest struct {
	FilterGroups []filterGroup `json:"filterGroups"`
	Sorts        []sort        `json:"sorts"`
	Properties   []string      `json:"properties,omitempty"`
	Limit        int           `json:"limit"`
	After        string        `json:"after,omitempty"`
}

type nextPage struct {
	After string `json:"after"`
}

type paging struct {
	Next *nextPage `json:"next"`
}

type searchResponse struct {
	Total   int      `json:"total"`
	Results []object `json:"results"`
	Paging  *paging  `json:"paging"`
}

// pageToken is Changes' continuation state, base64url JSON.
type pageToken struct {
	After  string `json:"a,omitempty"` // search or list paging cursor
	LastID string `json:"l,omitempty"` // highest id seen before the last restart
	Since  int64  `json:"s"`           // window, epoch ms
	Until  int64  `json:"u,omitempty"`
}

func (t pageToken) encode() string {
	b, _ := json.Marshal(t)
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodePageToken(s string) (pageToken, error) {
	var t pageToken
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err == nil {
		err = json.Unmarshal(b, &t)
	}
	if err != nil {
		return t, crmsync.Permanent(errors.New("hubspot: changes: malformed page token"))
	}
	return t, nil
}

// epochFloor is the lowest stamp a search filter may hold: HubSpot answers
// a filter at the epoch with a 500, so a window from the zero time starts
// 1 s past it.
const epochFloor = 1000

// mergedProperty lists the ids merged into a record (semicolon-separated).
const mergedProperty = "hs_merged_object_ids"

// Changes implements crmsync.CRM. Search is eventually consistent and may
// answer with a record's previous values, so it serves only as a list of
// the ids that changed: live records are searched with the object's
// modification stamp (lastmodifieddate for contacts, hs_lastmodifieddate
// otherwise) in [Since, Until), asking for no properties but the id and
// the stamp, sorted by hs_object_id; the records themselves are then read
// by id with batch read (100 ids per call, the properties in the body, so
// no policy is too wide for search's 3,000-character body). A record read
// this way is the latest; one whose stamp is now past Until (changed again
// since) is left out, for a later window to return, and so are ids that
// vanished between the two calls (archived, merged). Pages continue
// above the last id seen (keyset paging), which never reaches the search
// cap. Since is floored at 1 s past the epoch. Archived records come from
// the list API and are filtered by archivedAt here. A PageToken carries its
// window: a continued query keeps the window it started with.
//
// When Fields is given, hs_merged_object_ids is read too and fills
// Record.MergedFrom; it stays out of Fields unless asked for. Association
// pseudo-fields in Fields are filled as Lookup fills them, for live
// records; archived records are read without them (HubSpot's association
// reads leave archived records out).
func (c *Client) Changes(ctx context.Context, q crmsync.ChangeQuery) (crmsync.Page, error) {
	if q.Object == "" {
		return crmsync.Page{}, crmsync.Permanent(errors.New("hubspot: changes: ChangeQuery.Object is required"))
	}
	tok := pageToken{Since: q.Since.UnixMilli()}
	if !q.Until.IsZero() {
		tok.Until = q.Until.UnixMilli()
	}
	if q.PageToken != "" {
		var err error
		if tok, err = decodePageToken(q.PageToken); err != nil {
			return crmsync.Page{}, err
		}
	}
	if q.Archived {
		return c.archivedChanges(ctx, q, tok)
	}
	limit := 200
	if q.PageSize > 0 && q.PageSize < limit {
		limit = q.PageSize
	}
	mod := modifiedProperty(q.Object)
	filters := []filter{{PropertyName: mod, Operator: "GTE", Value: strconv.FormatInt(max(tok.Since, epochFloor), 10)}}
	if tok.Until != 0 {
		filters = append(filters, filter{PropertyName: mod, Operator: "LT", Value: strconv.FormatInt(max(tok.Until, epochFloor), 10)})
	}
	if tok.LastID != "" {
		filters = append(filters, filter{PropertyName: "hs_object_id", Operator: "GT", Value: tok.LastID})
	}
	body := searchRequest{
		FilterGroups: []filterGroup{{Filters: filters}},
		Sorts:        []sort{{PropertyName: "hs_object_id", Direction: "ASCENDING"}},
		Properties:   []string{"hs_object_id", mod},
		Limit:        limit,
		After:        tok.After,
	}
	call := "search " + q.Object
	status, raw, err := c.do(ctx, request{endpoint: "search", call: call, object: q.Object, method: http.MethodPost,
		path: objectPath(q.Object) + "/search", body: body, search: true})
	if err != nil {
		return crmsync.Page{}, err
	}
	var resp searchResponse
	if err := decode(call, status, raw, &resp); err != nil {
		return crmsync.Page{}, err
	}
	ids := make([]string, 0, len(resp.Results))
	for _, o := range resp.Results {
		if o.ID == "" {
			return crmsync.Page{}, &DecodeError{Call: call, Status: status, Reason: "record without id"}
		}
		ids = append(ids, o.ID)
	}
	page, err := c.readByID(ctx, q.Object, ids, q.Fields)
	if err != nil {
		return crmsync.Page{}, err
	}
	if tok.Until != 0 {
		// A record changed again after the window (search still had its
		// older stamp) belongs to a later window: returned here it would
		// carry a stamp past Until, and a cursor taken from it would
		// skip what changed between.
		page = slices.DeleteFunc(page, func(r crmsync.Record) bool { return r.ModifiedAt.UnixMilli() >= tok.Until })
	}
	if resp.Paging == nil || resp.Paging.Next == nil || resp.Paging.Next.After == "" {
		return crmsync.Page{Records: page, Total: resp.Total}, nil
	}
	// Keyset paging: the next page asks for ids above the last one seen
	// rather than an offset. Records that leave the window meanwhile (a
	// sync's own write-backs bump lastmodifieddate past Until) would shift
	// an offset and skip others; ids do not move. It also never reaches
	// the search cap, since every page is a fresh query.
	if len(ids) == 0 {
		return crmsync.Page{}, &DecodeError{Call: call, Status: status, Reason: "empty page with a next page"}
	}
	next := tok
	next.After = ""
	next.LastID = ids[len(ids)-1]
	return crmsync.Page{Records: page, Next: next.encode(), Total: resp.Total}, nil
}

// readByID reads records by id with batch read, in the order of ids; ids
// with no live record are left out.
func (c *Client) readByID(ctx context.Context, obj string, ids, fields []string) ([]crmsync.Record, error) {
	if len(ids) == 0 {
		return []crmsync.Record{}, nil
	}
	recs, err := c.Lookup(ctx, obj, "id", ids, fields)
	if err != nil {
		return nil, err
	}
	byID := make(map[string]crmsync.Record, len(recs))
	for _, r := range recs {
		byID[r.ID] = r
	}
	out := make([]crmsync.Record, 0, len(recs))
	for _, id := range ids {
		if r, ok := byID[id]; ok {
			out = append(out, r)
			delete(byID, id)
		}
	}
	return out, nil
}

func toRecords(call string, objs []object) ([]crmsync.Record, error) {
	out := make([]crmsync.Record, 0, len(objs))
	for _, o := range objs {
		r, err := o.record(call)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

type listResponse struct {
	Results []object `json:"results"`
	Paging  *paging  `json:"paging"`
}

// archivedChanges lists archived records and keeps those archived in the window.
func (c *Client) archivedChanges(ctx context.Context, q crmsync.ChangeQuery, tok pageToken) (crmsync.Page, error) {
	limit := 100
	if q.PageSize > 0 && q.PageSize < limit {
		limit = q.PageSize
	}
	query := url.Values{"archived": {"true"}, "limit": {strconv.Itoa(limit)}}
	if tok.After != "" {
		query.Set("after", tok.After)
	}
	if props, _ := splitAssocFields(q.Object, q.Fields); len(props) > 0 {
		// An archived record's associations are not read: HubSpot's
		// association reads leave archived records out.
		query.Set("properties", strings.Join(withMerged(props), ","))
	}
	call := "list archived " + q.Object
	status, raw, err := c.do(ctx, request{endpoint: "list", call: call, method: http.MethodGet, path: objectPath(q.Object), query: query})
	if err != nil {
		return crmsync.Page{}, err
	}
	var resp listResponse
	if err := decode(call, status, raw, &resp); err != nil {
		return crmsync.Page{}, err
	}
	var page crmsync.Page
	for _, o := range resp.Results {
		r, err := o.record(call)
		if err != nil {
			return crmsync.Page{}, err
		}
		at := r.ModifiedAt
		if o.ArchivedAt != "" {
			if at, err = parseStamp(o.ArchivedAt); err != nil {
				return crmsync.Page{}, &DecodeError{Call: call, Status: status, Reason: "record " + o.ID + ": bad archivedAt", Err: err}
			}
			r.ModifiedAt = at
		}
		ms := at.UnixMilli()
		if ms < tok.Since || (tok.Until != 0 && ms >= tok.Until) {
			continue
		}
		r.Archived = true
		if !slices.Contains(q.Fields, mergedProperty) {
			delete(r.Fields, mergedProperty)
		}
		page.Records = append(page.Records, r)
	}
	if resp.Paging != nil && resp.Paging.Next != nil && resp.Paging.Next.After != "" {
		next := tok
		next.After = resp.Paging.Next.After
		page.Next = next.encode()
	}
	return page, nil
}

type readInput struct {
	ID string `json:"id"`
}

type batchReadRequest struct {
	Properties            []string    `json:"properties"`
	PropertiesWithHistory []string    `json:"propertiesWithHistory,omitempty"`
	IDProperty            string      `json:"idProperty,omitempty"`
	Inputs                []readInput `json:"inputs"`
}

// standardError is one error of a 207 batch response.
type standardError struct {
	Status      string              `json:"status"`
	Category    string              `json:"category"`
	SubCategory string              `json:"subCategory"`
	Message     string              `json:"message"`
	Context     map[string][]string `json:"context"`
	Errors      []errorDetail       `json:"errors"`
}

type batchResponse struct {
	Status    string          `json:"status"`
	Results   []object        `json:"results"`
	NumErrors int             `json:"numErrors"`
	Errors    []standardError `json:"errors"`
}

// Lookup implements crmsync.CRM with batch read: field "id" reads by record
// id, any other field is sent as idProperty (it must be a unique property,
// such as email). A field that is not a unique property (a company's
// domain) is looked up with the search API instead: an IN filter on the
// values (lower-cased, as HubSpot requires), as many values per call as
// the 3,000-character body allows, the ids found then read in batches.
// Whether a property is unique is read once per object from its
// definitions. Search lags writes by a few seconds: a record made moments
// ago may not be found. Lists longer than 100 are split into several calls.
// Values with no record are absent from the result. Association
// pseudo-fields among fields (FieldCompanies, FieldContacts) are read with
// the associations v4 batch read, one call per pseudo-field for up to
// 1,000 records (plus one for further pages of records with many).
func (c *Client) Lookup(ctx context.Context, object, field string, values []string, fields []string) ([]crmsync.Record, error) {
	if object == "" || field == "" {
		return nil, crmsync.Permanent(errors.New("hubspot: lookup: object and field are required"))
	}
	if field != "id" && field != "hs_object_id" && !(field == "email" && modifiedProperty(object) == "lastmodifieddate") {
		unique, err := c.uniqueProperty(ctx, object, field)
		if err != nil {
			return nil, err
		}
		if !unique {
			ids, err := c.searchIn(ctx, object, field, values)
			if err != nil {
				return nil, err
			}
			return c.Lookup(ctx, object, "id", ids, fields)
		}
	}
	fields, specs := splitAssocFields(object, fields)
	var out []crmsync.Record
	for start := 0; start < len(values); start += 100 {
		chunk := values[start:min(start+100, len(values))]
		body := batchReadRequest{Properties: withMerged(fields), Inputs: make([]readInput, len(chunk))}
		if field != "id" {
			body.IDProperty = field
		}
		for i, v := range chunk {
			body.Inputs[i] = readInput{ID: v}
		}
		call := "batch/read " + object
		status, raw, err := c.do(ctx, request{endpoint: "batch/read", call: call, method: http.MethodPost,
			path: objectPath(object) + "/batch/read", body: body})
		if err != nil {
			return nil, err
		}
		var resp batchResponse
		if err := decode(call, status, raw, &resp); err != nil {
			return nil, err
		}
		for _, e := range resp.Errors {
			if e.Category != "OBJECT_NOT_FOUND" {
				return nil, &APIError{Call: call, Status: status, Category: e.Category, Message: e.Message}
			}
		}
		recs, err := toRecords(call, resp.Results)
		if err != nil {
			return nil, err
		}
		if !slices.Contains(fields, mergedProperty) {
			for _, r := range recs {
				delete(r.Fields, mergedProperty)
			}
		}
		out = append(out, recs...)
	}
	if len(specs) > 0 {
		if err := c.fillAssociations(ctx, object, out, specs); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// withMerged adds hs_merged_object_ids to a non-empty property list (an
// empty one asks for HubSpot's default properties and stays empty).
func withMerged(fields []string) []string {
	if len(fields) == 0 {
		return []string{}
	}
	if slices.Contains(fields, mergedProperty) {
		return fields
	}
	return append(slices.Clip(fields), mergedProperty)
}

type archiveRequest struct {
	Inputs []readInput `json:"inputs"`
}

// Archive archives the records with the given ids, 100 per call. Ids that
// do not exist are ignored, as HubSpot does.
func (c *Client) Archive(ctx context.Context, object string, ids []string) error {
	if object == "" {
		return crmsync.Permanent(errors.New("hubspot: archive: object is required"))
	}
	for start := 0; start < len(ids); start += 100 {
		chunk := ids[start:min(start+100, len(ids))]
		body := archiveRequest{Inputs: make([]readInput, len(chunk))}
		for i, id := range chunk {
			body.Inputs[i] = readInput{ID: id}
		}
		if _, _, err := c.do(ctx, request{endpoint: "batch/archive", call: "batch/archive " + object,
			method: http.MethodPost, path: objectPath(object) + "/batch/archive", body: body}); err != nil {
			return fmt.Errorf("hubspot: archive %d records from index %d: %w", len(chunk), start, err)
		}
	}
	return nil
}

// CountChanges implements crmsync.ChangeCounter: how many live records
// search lists with a last-modified stamp in [q.Since, q.Until), from the
// total of a one-record search page (one search call, no batch read). It
// sees what search sees, index lag included.
func (c *Client) CountChanges(ctx context.Context, q crmsync.ChangeQuery) (int, error) {
	if q.Object == "" || q.Archived {
		return 0, crmsync.Permanent(errors.New("hubspot: count changes: a live object is required"))
	}
	mod := modifiedProperty(q.Object)
	filters := []filter{{PropertyName: mod, Operator: "GTE", Value: strconv.FormatInt(max(q.Since.UnixMilli(), epochFloor), 10)}}
	if !q.Until.IsZero() {
		filters = append(filters, filter{PropertyName: mod, Operator: "LT", Value: strconv.FormatInt(max(q.Until.UnixMilli(), epochFloor), 10)})
	}
	body := searchRequest{
		FilterGroups: []filterGroup{{Filters: filters}},
		Sorts:        []sort{{PropertyName: "hs_object_id", Direction: "ASCENDING"}},
		Properties:   []string{"hs_object_id"},
		Limit:        1,
	}
	call := "count " + q.Object
	status, raw, err := c.do(ctx, request{endpoint: "search", call: call, object: q.Object, method: http.MethodPost,
		path: objectPath(q.Object) + "/search", body: body, search: true})
	if err != nil {
		return 0, err
	}
	var resp searchResponse
	if err := decode(call, status, raw, &resp); err != nil {
		return 0, err
	}
	return resp.Total, nil
}

var _ crmsync.ChangeCounter = (*Client)(nil)

// uniqueProperty says whether object's property field is unique (usable as
// idProperty), from the object's property definitions, read once.
func (c *Client) uniqueProperty(ctx context.Context, object, field string) (bool, error) {
	c.mu.Lock()
	known, ok := c.unique[object]
	c.mu.Unlock()
	if !ok {
		props, err := c.Properties(ctx, object)
		if err != nil {
			return false, err
		}
		known = map[string]bool{}
		for _, p := range props {
			known[p.Name] = p.HasUniqueValue
		}
		c.mu.Lock()
		if c.unique == nil {
			c.unique = map[string]map[string]bool{}
		}
		c.unique[object] = known
		c.mu.Unlock()
	}
	return known[field], nil
}

// searchBodyMax is the most characters of a search body the client sends
// (HubSpot refuses bodies over 3,000).
const searchBodyMax = 2800

// searchIn returns the ids of object's live records whose property field
// holds one of values (compared lower-cased), with search IN filters sized
// to the body limit and keyset paging.
func (c *Client) searchIn(ctx context.Context, object, field string, values []string) ([]string, error) {
	var vals []string
	seen := map[string]bool{}
	for _, v := range values {
		v = strings.ToLower(strings.TrimSpace(v))
		if v != "" && !seen[v] {
			seen[v] = true
			vals = append(vals, v)
		}
	}
	var ids []string
	got := map[string]bool{}
	for len(vals) > 0 {
		n, size := 0, 300+len(field) // the body around the values
		for n < len(vals) {
			b, _ := json.Marshal(vals[n])
			if n > 0 && size+len(b)+1 > searchBodyMax {
				break
			}
			size += len(b) + 1
			n++
		}
		chunk := vals[:n]
		vals = vals[n:]
		last := ""
		for {
			filters := []filter{{PropertyName: field, Operator: "IN", Values: chunk}}
			if last != "" {
				filters = append(filters, filter{PropertyName: "hs_object_id", Operator: "GT", Value: last})
			}
			body := searchRequest{FilterGroups: []filterGroup{{Filters: filters}},
				Sorts:      []sort{{PropertyName: "hs_object_id", Direction: "ASCENDING"}},
				Properties: []string{"hs_object_id"}, Limit: 200}
			call := "search " + object
			status, raw, err := c.do(ctx, request{endpoint: "search", call: call, object: object, method: http.MethodPost,
				path: objectPath(object) + "/search", body: body, search: true})
			if err != nil {
				return nil, err
			}
			var resp searchResponse
			if err := decode(call, status, raw, &resp); err != nil {
				return nil, err
			}
			for _, o := range resp.Results {
				if o.ID == "" {
					return nil, &DecodeError{Call: call, Status: status, Reason: "record without id"}
				}
				if !got[o.ID] {
					got[o.ID] = true
					ids = append(ids, o.ID)
				}
				last = o.ID
			}
			if resp.Paging == nil || resp.Paging.Next == nil || resp.Paging.Next.After == "" || len(resp.Results) == 0 {
				break
			}
		}
	}
	return ids, nil
}
