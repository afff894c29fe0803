package salesforce

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/crmsync/crmsync"
)

// writeValue converts a field value to its JSON form: strings, numbers, bools
// and nil as they are, times in Salesforce's ".000+0000" form, string slices
// joined with ";" (multi-select picklists).
func writeValue(v any) (any, error) {
	switch x := v.(type) {
	case nil, string, bool, json.Number:
		return x, nil
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return nil, errors.New("not a finite number")
		}
		return x, nil
	case float32:
		return writeValue(float64(x))
	case int, int8, int16, int32, int64, uint, uint8, uint16, uint32, uint64:
		return x, nil
	case time.Time:
		return FormatDateTime(x), nil
	case *time.Time:
		if x == nil {
			return nil, nil
		}
		return FormatDateTime(*x), nil
	case []string:
		return strings.Join(x, ";"), nil
	}
	return nil, fmt.Errorf("unsupported value type %T", v)
}

// recordBody builds one sObject Collections record.
func recordBody(object string, op crmsync.WriteOp) (map[string]any, error) {
	rec := map[string]any{"attributes": map[string]string{"type": object}}
	for k, v := range op.Fields {
		if err := ValidName("field", k); err != nil {
			return nil, err
		}
		if strings.EqualFold(k, "id") {
			return nil, errors.New("salesforce: write: Id is not a writable field; use WriteOp.ID")
		}
		wv, err := writeValue(v)
		if err != nil {
			return nil, fmt.Errorf("salesforce: write: field %s: %w", k, err)
		}
		rec[k] = wv
	}
	switch op.Kind {
	case crmsync.Create:
	case crmsync.Update:
		if !idPattern.MatchString(op.ID) {
			return nil, errors.New("salesforce: update: missing or malformed record id")
		}
		rec["id"] = op.ID
	case crmsync.Upsert:
		if err := ValidName("field", op.MatchField); err != nil {
			return nil, fmt.Errorf("salesforce: upsert: MatchField: %w", err)
		}
		if op.MatchValue == "" {
			return nil, errors.New("salesforce: upsert: empty MatchValue")
		}
		rec[op.MatchField] = op.MatchValue
	default:
		return nil, fmt.Errorf("salesforce: write: unknown kind %q", op.Kind)
	}
	return rec, nil
}

// writeGroup is a set of ops sent to one endpoint.
type writeGroup struct {
	kind  crmsync.WriteKind
	match string
	idx   []int
}

// Write implements crmsync.CRM with sObject Collections: creates go to POST
// /composite/sobjects, updates to PATCH /composite/sobjects and upserts to
// PATCH /composite/sobjects/{object}/{MatchField}, 200 records per call,
// allOrNone false. Each result's Err is a *RecordError: crmsync.Permanent for
// validation errors, plain for UNABLE_TO_LOCK_ROW and the like. Ops that
// cannot be sent (bad field names, value types, ids) fail permanently on their
// own. A call refused as a whole (400 with an error array, 413, a 404 for an
// unknown external-id field) gives its permanent error to each of its ops'
// results; a field the API does not know or hides is named by a
// *crmsync.FieldError in that error's chain. A record refused for a lookup
// naming a deleted or missing record (ENTITY_IS_DELETED or
// INVALID_CROSS_REFERENCE_KEY naming the field) has a *crmsync.ReferenceError
// naming the field in its chain; an update of a deleted record
// (ENTITY_IS_DELETED naming no field) matches crmsync.ErrRecordGone.
// Write returns a non-nil error
// only when no op's outcome is known: every call failed for a reason that
// says nothing about its records (a dropped connection, a 5xx after the
// retries, refused credentials, the daily share spent) and no op was
// refused before sending; the ops of such a call carry its error when other
// outcomes are known.
func (c *Client) Write(ctx context.Context, object string, ops []crmsync.WriteOp) ([]crmsync.WriteResult, error) {
	if err := ValidName("object", object); err != nil {
		return nil, err
	}
	results := make([]crmsync.WriteResult, len(ops))
	bodies := make([]map[string]any, len(ops))
	var groups []*writeGroup
	byKey := map[string]*writeGroup{}
	known := 0                  // ops whose outcome is known
	roles := map[int][]string{} // contact roles to set, by op
	for i, op := range ops {
		if v, ok := op.Fields[ContactRolesField]; ok && isOpportunity(object) {
			ids, err := rolesValue(v)
			if err == nil && op.Kind == crmsync.Update && !idPattern.MatchString(op.ID) {
				err = errors.New("salesforce: update: missing or malformed record id")
			}
			if err != nil {
				results[i].Err = permanent(err)
				known++
				continue
			}
			roles[i] = ids
			op.Fields = without(op.Fields, ContactRolesField)
			if op.Kind == crmsync.Update && len(op.Fields) == 0 {
				// Nothing to write on the opportunity itself.
				results[i] = crmsync.WriteResult{ID: op.ID}
				known++
				continue
			}
		}
		rec, err := recordBody(object, op)
		if err != nil {
			results[i].Err = permanent(err)
			known++
			continue
		}
		bodies[i] = rec
		key := string(op.Kind)
		if op.Kind == crmsync.Upsert {
			key += "/" + op.MatchField
		}
		g := byKey[key]
		if g == nil {
			g = &writeGroup{kind: op.Kind, match: op.MatchField}
			byKey[key] = g
			groups = append(groups, g)
		}
		g.idx = append(g.idx, i)
	}
	var firstErr error
	for _, g := range groups {
		for start := 0; start < len(g.idx); start += MaxBatch {
			idx := g.idx[start:min(start+MaxBatch, len(g.idx))]
			recs := make([]map[string]any, len(idx))
			for j, i := range idx {
				recs[j] = bodies[i]
			}
			rs, err := c.writeBatch(ctx, object, g, recs)
			if err != nil {
				if refusedBatch(err) {
					err = withFieldError(err, object)
					known += len(idx)
				} else if firstErr == nil {
					firstErr = err
				}
				for _, i := range idx {
					results[i].Err = err
				}
				continue
			}
			known += len(idx)
			for j, i := range idx {
				results[i] = toWriteResult(object, g.kind, rs[j])
			}
		}
	}
	if known == 0 && firstErr != nil {
		return nil, firstErr
	}
	if len(roles) > 0 {
		c.writeRoles(ctx, ops, roles, results)
	}
	return results, nil
}

// without returns a copy of f without key.
func without(f crmsync.Fields, key string) crmsync.Fields {
	out := make(crmsync.Fields, len(f))
	for k, v := range f {
		if k != key {
			out[k] = v
		}
	}
	return out
}

// refusedBatch reports whether a failed collections call was refused as a
// whole for its content: a permanent refusal that is neither about the
// credentials nor about the daily allocation. Its records were not written.
func refusedBatch(err error) bool {
	var ae *APIError
	return crmsync.IsPermanent(err) && errors.As(err, &ae) && ae.Status >= 400 && ae.Status < 500 &&
		!errors.Is(err, crmsync.ErrUnauthorized) && !errors.Is(err, crmsync.ErrDailyLimit)
}

func toWriteResult(object string, kind crmsync.WriteKind, r collResult) crmsync.WriteResult {
	if r.Success {
		return crmsync.WriteResult{ID: r.ID, Created: kind == crmsync.Create || (kind == crmsync.Upsert && r.Created)}
	}
	e := r.Errors[0]
	re := &RecordError{StatusCode: e.StatusCode, Message: e.Message, Fields: e.Fields}
	if names := refusedFields(e.StatusCode, e.Message, e.Fields); names != nil {
		re.field = &crmsync.FieldError{System: "salesforce", Object: object, Fields: names}
	}
	if IsTransientStatusCode(e.StatusCode) {
		return crmsync.WriteResult{Err: re}
	}
	if goneReference(e.StatusCode) && len(e.Fields) > 0 {
		// A lookup naming a deleted (or purged) record: the record is
		// refused for that reference alone.
		return crmsync.WriteResult{Err: permanent(&crmsync.ReferenceError{System: "salesforce", Object: object, Fields: slices.Clone(e.Fields), Err: re})}
	}
	return crmsync.WriteResult{Err: permanent(re)}
}

// goneReference reports a status code with which Salesforce refuses a
// reference field naming a record that is deleted (ENTITY_IS_DELETED) or
// no longer exists (INVALID_CROSS_REFERENCE_KEY), when the error names the
// field.
func goneReference(code string) bool {
	return code == "ENTITY_IS_DELETED" || code == "INVALID_CROSS_REFERENCE_KEY"
}

// writeBatch sends one sObject Collections call.
func (c *Client) writeBatch(ctx context.Context, object string, g *writeGroup, recs []map[string]any) ([]collResult, error) {
	body, err := json.Marshal(map[string]any{"allOrNone": false, "records": recs})
	if err != nil {
		return nil, permanent(fmt.Errorf("salesforce: %s: encode: %w", g.kind, err))
	}
	cl := call{name: string(g.kind), endpoint: "composite/sobjects", path: "/composite/sobjects",
		body: body, contentType: "application/json", idempotent: true}
	switch g.kind {
	case crmsync.Create:
		// A create repeated after a lost response could make duplicates, so
		// it is retried only after 503 (not processed).
		cl.method, cl.idempotent = http.MethodPost, false
	case crmsync.Update:
		cl.method = http.MethodPatch
	case crmsync.Upsert:
		cl.method = http.MethodPatch
		cl.path += "/" + object + "/" + g.match
	}
	resp, err := c.do(ctx, cl)
	if err != nil {
		return nil, err
	}
	return decodeCollection(string(g.kind), resp.status, resp.body, len(recs))
}

// Schema implements crmsync.CRM with GET /sobjects/{object}/describe.
func (c *Client) Schema(ctx context.Context, object string) (crmsync.Schema, error) {
	if err := ValidName("object", object); err != nil {
		return crmsync.Schema{}, err
	}
	resp, err := c.do(ctx, call{name: "describe", endpoint: "describe", method: http.MethodGet,
		path: "/sobjects/" + object + "/describe", idempotent: true})
	if err != nil {
		return crmsync.Schema{}, err
	}
	s, err := decodeDescribe("describe", resp.status, resp.body)
	if err == nil && isOpportunity(object) {
		s.Fields = append(s.Fields, crmsync.FieldSchema{Name: ContactRolesField, Type: crmsync.TypeReferences, RefObject: "Contact"})
	}
	return s, err
}
