package salesforce

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/crmsync/crmsync"
)

// urlReserve is room kept in a lookup URL for the instance host, which is not
// known before the first token.
const urlReserve = 256

// lookupChunks splits values into IN lists of at most MaxBatch values whose
// query URL stays within maxURL.
func lookupChunks(prefix string, values []string, maxURL int) ([][]string, error) {
	fixed := urlReserve + len(url.QueryEscape(prefix+")"))
	var chunks [][]string
	var cur []string
	size := fixed
	for _, v := range values {
		n := len(url.QueryEscape(QuoteSOQL(v) + ", "))
		if fixed+n > maxURL {
			return nil, fmt.Errorf("salesforce: lookup: a value is too long for one query (%d bytes)", len(v))
		}
		if len(cur) == MaxBatch || (len(cur) > 0 && size+n > maxURL) {
			chunks = append(chunks, cur)
			cur, size = nil, fixed
		}
		cur = append(cur, v)
		size += n
	}
	if len(cur) > 0 {
		chunks = append(chunks, cur)
	}
	return chunks, nil
}

// Lookup implements crmsync.CRM: it queries the records of object whose field
// holds one of values (field "id" means Id), with one SOQL IN query per 200
// values or fewer when the URL would grow past Config.MaxURLLength. Values are
// escaped; field and object names are validated. A field the API does not
// know or hides fails the call with a *crmsync.FieldError in the chain.
func (c *Client) Lookup(ctx context.Context, object, field string, values []string, fields []string) ([]crmsync.Record, error) {
	if err := ValidName("object", object); err != nil {
		return nil, err
	}
	if strings.EqualFold(field, "id") {
		field = "Id"
	}
	if err := ValidName("field", field); err != nil {
		return nil, err
	}
	sel, err := c.selectList(object, fields, mustFields(object, "Id", "SystemModstamp", "IsDeleted", field)...)
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	var vals []string
	for _, v := range values {
		if v != "" && !seen[v] {
			seen[v] = true
			vals = append(vals, v)
		}
	}
	if len(vals) == 0 {
		return nil, nil
	}
	prefix := "SELECT " + strings.Join(sel, ", ") + " FROM " + object + " WHERE " + field + " IN ("
	chunks, err := lookupChunks(c.dataPath()+"/query?q="+prefix, vals, c.cfg.MaxURLLength)
	if err != nil {
		return nil, permanent(err)
	}
	var out []crmsync.Record
	got := map[string]bool{}
	for _, chunk := range chunks {
		quoted := make([]string, len(chunk))
		for i, v := range chunk {
			quoted[i] = QuoteSOQL(v)
		}
		res, err := c.query(ctx, "lookup", "/query", prefix+strings.Join(quoted, ", ")+")", http.Header{})
		for {
			if err == nil && len(res.RolesNext) > 0 {
				err = c.followRoles(ctx, &res)
			}
			if err != nil {
				return nil, withFieldError(err, object)
			}
			for _, r := range res.Records {
				if r.ID != "" && !got[r.ID] {
					got[r.ID] = true
					out = append(out, r)
				}
			}
			if res.Done {
				break
			}
			res, err = c.queryMore(ctx, res.NextRecordsURL, nil)
		}
	}
	return out, nil
}

// MergedAway implements crmsync.MergedAwayLister: for each of winners that
// deleted records of object were merged into, their ids, read from the
// recycle bin through queryAll (MasterRecordId IN, one query per 200 ids or
// fewer). Objects Salesforce does not merge (see mergeable) have none.
func (c *Client) MergedAway(ctx context.Context, object string, winners []string) (map[string][]string, error) {
	if err := ValidName("object", object); err != nil {
		return nil, err
	}
	out := map[string][]string{}
	if !mergeable(object) {
		return out, nil
	}
	seen := map[string]bool{}
	var vals []string
	for _, v := range winners {
		if v != "" && !seen[v] {
			seen[v] = true
			vals = append(vals, v)
		}
	}
	if len(vals) == 0 {
		return out, nil
	}
	prefix := "SELECT Id, IsDeleted, MasterRecordId FROM " + object + " WHERE IsDeleted = true AND MasterRecordId IN ("
	chunks, err := lookupChunks(c.dataPath()+"/queryAll?q="+prefix, vals, c.cfg.MaxURLLength)
	if err != nil {
		return nil, permanent(err)
	}
	for _, chunk := range chunks {
		quoted := make([]string, len(chunk))
		for i, v := range chunk {
			quoted[i] = QuoteSOQL(v)
		}
		res, err := c.query(ctx, "merged-away", "/queryAll", prefix+strings.Join(quoted, ", ")+")", http.Header{})
		for {
			if err != nil {
				return nil, withFieldError(err, object)
			}
			for _, r := range res.Records {
				if r.MergedInto != "" && seen[r.MergedInto] && !slices.Contains(out[r.MergedInto], r.ID) {
					out[r.MergedInto] = append(out[r.MergedInto], r.ID)
				}
			}
			if res.Done {
				break
			}
			res, err = c.queryMore(ctx, res.NextRecordsURL, nil)
		}
	}
	return out, nil
}

var _ crmsync.MergedAwayLister = (*Client)(nil)
