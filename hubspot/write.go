package hubspot

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/crmsync/crmsync"
)

type writeInput struct {
	ID                 string            `json:"id,omitempty"`
	IDProperty         string            `json:"idProperty,omitempty"`
	Properties         map[string]string `json:"properties"`
	Associations       []any             `json:"associations,omitempty"`
	ObjectWriteTraceID string            `json:"objectWriteTraceId"`
}

// createInput always carries associations, which the create schema requires.
type createInput struct {
	Properties         map[string]string `json:"properties"`
	Associations       []any             `json:"associations"`
	ObjectWriteTraceID string            `json:"objectWriteTraceId"`
}

// Write implements crmsync.CRM with batch create, update and upsert (upsert
// sends MatchField as idProperty and MatchValue as id). Ops are grouped by
// kind into calls of up to 100; each input carries the op's Key (or an
// index-based id when Key is empty or repeated) as objectWriteTraceId, so
// that per-record errors of a 207 response map back to their ops. Per-record
// validation failures are Permanent *RecordError; other per-record failures
// are transient *RecordError. A property HubSpot does not know (deleted, or
// never defined) fails its record with a *RecordError wrapping a
// *crmsync.FieldError that names the properties, never their values.
//
// Write returns one result per op, in the ops' order, and a nil error
// whenever it knows each op's outcome. A call HubSpot refuses whole (400,
// 409 or 413: one bad input can fail a batch, and email upserts have no
// partial success) is sent again one op per call, so that each op gets its
// own verdict. A call that fails as a whole for another reason (rate or
// daily limit, credentials, 5xx, network) stops the Write: its ops and
// those not sent yet carry that error as a transient one. When no op's
// outcome is known, Write returns nil results and that error.
//
// Creates are not idempotent, so batch/create is never sent again after a
// 5xx or a lost connection (the error is an *UnknownOutcomeError): a create
// op that names a unique property (MatchField and MatchValue) is sent as an
// upsert on it instead, which is safe to repeat. Updates and upserts are
// retried like every other call.
//
// An update whose id HubSpot no longer knows in batch calls (a merge made
// a new record; the old ids resolve only on a single GET) is looked up with
// a GET; if the id resolves to another record, the update is sent to that
// record and its result carries the new id. The sync relinks on it. If it
// resolves to nothing (archived or deleted), the op's error matches
// crmsync.ErrRecordGone.
//
// Association pseudo-fields (FieldCompanies, FieldContacts) are written
// after the records: a string id (nil or "" for none) for FieldCompanies,
// a []string or []any of ids (nil for none) for FieldContacts; any other
// value fails its op as INVALID_OP before anything is sent. For each
// pseudo-field the client reads the current associations of the records
// written (not of those just created) in one batch read per 1,000, creates
// what is new in batches of 2,000 (the primary type for a company:
// contact → company 1, deal → company 5; deal → contact 3 for contacts),
// then archives what must go: the old primary company (every association
// of that pair), contacts that left a deal's set. A record whose creates
// failed archives nothing, so it keeps its old primary. An update carrying
// only pseudo-fields writes no record. A failure is the op's
// *AssociationError (Permanent for a validation error, such as a company
// that does not exist) inside a *crmsync.PartialWriteError naming the
// pseudo-fields: the result keeps the record's id, since its fields were
// written. An association HubSpot refuses because the other record is
// archived or deleted (INVALID_OBJECT_IDS) is also a
// *crmsync.ReferenceError naming the field and that record's id.
func (c *Client) Write(ctx context.Context, object string, ops []crmsync.WriteOp) ([]crmsync.WriteResult, error) {
	if object == "" {
		return nil, crmsync.Permanent(errors.New("hubspot: write: object is required"))
	}
	results := make([]crmsync.WriteResult, len(ops))
	props := make([]map[string]string, len(ops))
	kinds := make([]crmsync.WriteKind, len(ops))
	groups := map[crmsync.WriteKind][]int{}
	wants := make([]map[string]assocWant, len(ops))
	hasAssoc := false
	known := false
	for i, op := range ops {
		fields, want, err := takeAssocFields(object, op.Fields)
		var p map[string]string
		if err == nil {
			p, err = properties(fields)
		}
		if err == nil {
			err = checkOp(op)
		}
		if err != nil {
			results[i].Err = crmsync.Permanent(&RecordError{Index: i, Key: op.Key, Category: "INVALID_OP", Message: err.Error()})
			known = true
			continue
		}
		props[i] = p
		kinds[i] = op.Kind
		if want != nil {
			wants[i], hasAssoc = want, true
			if op.Kind == crmsync.Update && len(p) == 0 {
				// Only associations change: no record write.
				results[i].ID = op.ID
				known = true
				continue
			}
		}
		if op.Kind == crmsync.Create && op.MatchField != "" && op.MatchValue != "" {
			kinds[i] = crmsync.Upsert
		}
		groups[kinds[i]] = append(groups[kinds[i]], i)
	}
	var callErr error
	var unsent []int
	for _, kind := range []crmsync.WriteKind{crmsync.Create, crmsync.Update, crmsync.Upsert} {
		idx := groups[kind]
		for start := 0; start < len(idx); start += 100 {
			chunk := idx[start:min(start+100, len(idx))]
			if callErr != nil {
				unsent = append(unsent, chunk...)
				continue
			}
			if err := c.writeChunk(ctx, object, kind, chunk, ops, props, results); err != nil {
				callErr = err
				unsent = append(unsent, chunk...)
				continue
			}
			known = true
		}
	}
	if callErr == nil {
		if hasAssoc {
			c.writeAssociations(ctx, object, wants, results)
		}
		return results, nil
	}
	if !known {
		return nil, callErr
	}
	if hasAssoc {
		c.writeAssociations(ctx, object, wants, results)
	}
	perOp := callErr
	if crmsync.IsPermanent(perOp) {
		// The call, not these records, was refused: they may be sent again.
		perOp = fmt.Errorf("hubspot: write not done: %s", callErr.Error())
	}
	for _, i := range unsent {
		results[i] = crmsync.WriteResult{Err: perOp}
	}
	return results, nil
}

func checkOp(op crmsync.WriteOp) error {
	switch op.Kind {
	case crmsync.Create:
	case crmsync.Update:
		if op.ID == "" {
			return errors.New("update without id")
		}
	case crmsync.Upsert:
		if op.MatchField == "" || op.MatchValue == "" {
			return errors.New("upsert without match field and value")
		}
	default:
		return fmt.Errorf("unknown write kind %q", op.Kind)
	}
	return nil
}

// properties renders field values as HubSpot's property strings.
func properties(f crmsync.Fields) (map[string]string, error) {
	out := make(map[string]string, len(f))
	for k, v := range f {
		switch v := v.(type) {
		case nil:
			out[k] = ""
		case string:
			out[k] = v
		case bool:
			out[k] = strconv.FormatBool(v)
		case float64:
			if math.IsNaN(v) || math.IsInf(v, 0) {
				return nil, fmt.Errorf("field %q: not a finite number", k)
			}
			out[k] = strconv.FormatFloat(v, 'f', -1, 64)
		case float32:
			out[k] = strconv.FormatFloat(float64(v), 'f', -1, 32)
		case int:
			out[k] = strconv.Itoa(v)
		case int64:
			out[k] = strconv.FormatInt(v, 10)
		case json.Number:
			out[k] = v.String()
		case time.Time:
			out[k] = v.UTC().Format("2006-01-02T15:04:05.000Z")
		case []string:
			out[k] = strings.Join(v, ";")
		default:
			return nil, fmt.Errorf("field %q: unsupported value type %T", k, v)
		}
	}
	return out, nil
}

// writeChunk sends one batch call for ops idx (all of one kind) and fills
// their results. It returns an error only when the call failed as a whole
// for a reason other than its inputs; the results of idx are then unset.
func (c *Client) writeChunk(ctx context.Context, object string, kind crmsync.WriteKind, idx []int, ops []crmsync.WriteOp, props []map[string]string, results []crmsync.WriteResult) error {
	trace := make([]string, len(idx))
	seen := map[string]bool{}
	for j, i := range idx {
		t := ops[i].Key
		for n := 0; t == "" || seen[t]; n++ {
			t = "crmsync-op-" + strconv.Itoa(i)
			if n > 0 {
				t += "-" + strconv.Itoa(n)
			}
		}
		seen[t] = true
		trace[j] = t
	}
	var inputs []any
	for j, i := range idx {
		op := ops[i]
		switch kind {
		case crmsync.Create:
			inputs = append(inputs, createInput{Properties: props[i], Associations: []any{}, ObjectWriteTraceID: trace[j]})
		case crmsync.Update:
			inputs = append(inputs, writeInput{ID: op.ID, Properties: props[i], ObjectWriteTraceID: trace[j]})
		case crmsync.Upsert:
			inputs = append(inputs, writeInput{ID: op.MatchValue, IDProperty: op.MatchField, Properties: props[i], ObjectWriteTraceID: trace[j]})
		}
	}
	endpoint := "batch/" + string(kind)
	call := endpoint + " " + object
	status, raw, err := c.do(ctx, request{endpoint: endpoint, call: call, object: object, method: http.MethodPost,
		path: objectPath(object) + "/" + endpoint, body: map[string]any{"inputs": inputs}, once: kind == crmsync.Create})
	if err != nil {
		var ae *APIError
		if !errors.As(err, &ae) || !crmsync.IsPermanent(err) || errors.Is(err, crmsync.ErrUnauthorized) {
			return err // the call failed, not these records
		}
		if len(idx) > 1 && refusesInputs(ae.Status) {
			// One bad input can fail a whole batch (upserts on email, inputs
			// HubSpot rejects before per-record processing, a payload too
			// large): send each op alone for its own verdict.
			for n, i := range idx {
				if err := c.writeChunk(ctx, object, kind, []int{i}, ops, props, results); err != nil {
					if n == 0 {
						return err
					}
					for _, k := range idx[n:] {
						results[k] = crmsync.WriteResult{Err: fmt.Errorf("hubspot: write not done: %s", err.Error())}
					}
					return nil
				}
			}
			return nil
		}
		// HubSpot refused these records (for a single op, or a refusal no
		// split can help, such as an unknown object type): each op gets
		// the verdict.
		fe := ae.fieldError()
		for _, i := range idx {
			re := &RecordError{Index: i, Key: ops[i].Key, Status: "error", Category: ae.Category, Message: ae.Message}
			if ae.Category == "CONFLICT" && len(idx) == 1 {
				re.ExistingID = existingID(ae.Message) // the one op's conflict
			}
			if fe != nil {
				re.Err = fe
			} else if re.ExistingID != "" {
				re.Err = &crmsync.DuplicateError{System: "hubspot", Object: object, ExistingID: re.ExistingID}
			}
			results[i] = crmsync.WriteResult{Err: crmsync.Permanent(re)}
		}
		return nil
	}
	var resp batchResponse
	if err := decode(call, status, raw, &resp); err != nil {
		return err
	}
	mapBatch(object, kind, idx, trace, ops, resp, results)
	if kind == crmsync.Update {
		c.followMerges(ctx, object, idx, ops, props, results)
	}
	return nil
}

// refusesInputs reports a status with which HubSpot refuses a whole batch
// for some of its inputs, before writing any of them: sending each input
// alone sorts the good from the bad.
func refusesInputs(status int) bool {
	return status == http.StatusBadRequest || status == http.StatusConflict || status == http.StatusRequestEntityTooLarge
}

// followMerges retries updates that failed as not found on the record their
// id now resolves to, if a merge gave it a new id.
func (c *Client) followMerges(ctx context.Context, object string, idx []int, ops []crmsync.WriteOp, props []map[string]string, results []crmsync.WriteResult) {
	for _, i := range idx {
		var re *RecordError
		if !errors.As(results[i].Err, &re) || re.Category != "OBJECT_NOT_FOUND" {
			continue
		}
		newID, err := c.resolveID(ctx, object, ops[i].ID)
		if err == nil && newID == "" && re.Err == nil {
			re.Err = crmsync.ErrRecordGone // archived or deleted since it was read
		}
		if err != nil || newID == "" || newID == ops[i].ID {
			continue // gone (or unknown): the not-found stands
		}
		moved := ops[i]
		moved.ID = newID
		one := []crmsync.WriteOp{moved}
		res := make([]crmsync.WriteResult, 1)
		if err := c.writeChunk(ctx, object, crmsync.Update, []int{0}, one, []map[string]string{props[i]}, res); err != nil {
			results[i] = crmsync.WriteResult{Err: fmt.Errorf("hubspot: update of merged record %s (now %s): %w", ops[i].ID, newID, err)}
			continue
		}
		if rerr := res[0].Err; rerr != nil {
			var re2 *RecordError
			if errors.As(rerr, &re2) {
				re2.Index, re2.Key = i, ops[i].Key
			}
		}
		results[i] = res[0]
	}
}

// ResolveID returns the id of the record id lives on now: id itself for a
// live record, the new record's id for one a merge took away (a single GET
// follows merges, batch calls do not), or "" when nothing has it (deleted,
// archived). It costs one call.
func (c *Client) ResolveID(ctx context.Context, object, id string) (string, error) {
	if object == "" || id == "" {
		return "", crmsync.Permanent(errors.New("hubspot: resolve: object and id are required"))
	}
	return c.resolveID(ctx, object, id)
}

// resolveID reads one record by id with a single GET, which (unlike batch
// calls) follows a merged-away id to the record it was merged into. It
// returns that record's id, or "" if the id resolves to nothing.
func (c *Client) resolveID(ctx context.Context, obj, id string) (string, error) {
	call := "get " + obj
	status, raw, err := c.do(ctx, request{endpoint: "get", call: call, object: obj, method: http.MethodGet,
		path: objectPath(obj) + "/" + url.PathEscape(id), query: url.Values{"properties": {"hs_object_id"}}})
	if err != nil {
		var ae *APIError
		if errors.As(err, &ae) && ae.Status == http.StatusNotFound {
			return "", nil
		}
		return "", err
	}
	var o object
	if err := decode(call, status, raw, &o); err != nil {
		return "", err
	}
	return o.ID, nil
}

// mapBatch assigns a batch response's results and errors to the ops: by
// objectWriteTraceId first, then by id (update) or match value (upsert),
// then in order for results that carry neither.
func mapBatch(obj string, kind crmsync.WriteKind, idx []int, trace []string, ops []crmsync.WriteOp, resp batchResponse, results []crmsync.WriteResult) {
	byTrace := make(map[string]int, len(idx))
	for j, t := range trace {
		byTrace[t] = j
	}
	done := make([]bool, len(idx))
	find := func(key string, byID bool) int {
		for j, i := range idx {
			if done[j] {
				continue
			}
			op := ops[i]
			if byID && kind == crmsync.Update && op.ID == key {
				return j
			}
			if kind == crmsync.Upsert && strings.EqualFold(op.MatchValue, key) {
				return j
			}
		}
		return -1
	}
	// Errors first, so positional assignment of results skips failed ops.
	var unmapped []standardError
	for _, e := range resp.Errors {
		var hits []int
		for _, t := range e.Context["objectWriteTraceId"] {
			if j, ok := byTrace[t]; ok && !done[j] {
				hits = append(hits, j)
			}
		}
		if len(hits) == 0 {
			for _, id := range e.Context["ids"] {
				if j := find(id, true); j >= 0 {
					hits = append(hits, j)
				}
			}
		}
		if len(hits) == 0 {
			unmapped = append(unmapped, e)
			continue
		}
		for _, j := range hits {
			done[j] = true
			results[idx[j]] = crmsync.WriteResult{Err: recordErr(obj, idx[j], ops[idx[j]].Key, e)}
		}
	}
	var loose []object
	for _, o := range resp.Results {
		j := -1
		if t, ok := byTrace[o.ObjectWriteTraceID]; ok && o.ObjectWriteTraceID != "" && !done[t] {
			j = t
		} else if kind == crmsync.Update {
			j = find(o.ID, true)
		} else if kind == crmsync.Upsert {
			for j2, i := range idx {
				if v := o.Properties[ops[i].MatchField]; !done[j2] && v != nil && strings.EqualFold(*v, ops[i].MatchValue) {
					j = j2
					break
				}
			}
		}
		if j < 0 {
			loose = append(loose, o)
			continue
		}
		done[j] = true
		results[idx[j]] = okResult(kind, o)
	}
	for j, i := range idx {
		if done[j] {
			continue
		}
		switch {
		case len(loose) > 0:
			results[i] = okResult(kind, loose[0])
			loose = loose[1:]
		case len(unmapped) > 0:
			results[i] = crmsync.WriteResult{Err: recordErr(obj, i, ops[i].Key, unmapped[0])}
		default:
			results[i] = crmsync.WriteResult{Err: &RecordError{Index: i, Key: ops[i].Key, Category: "NO_RESULT", Message: "batch response had no result for this input"}}
		}
	}
}

func okResult(kind crmsync.WriteKind, o object) crmsync.WriteResult {
	r := crmsync.WriteResult{ID: o.ID, Created: kind == crmsync.Create}
	if at, err := parseStamp(o.UpdatedAt); err == nil {
		r.ModifiedAt = at
	}
	if kind == crmsync.Upsert && o.New != nil {
		r.Created = *o.New
	}
	return r
}

func recordErr(object string, i int, key string, e standardError) error {
	re := &RecordError{Index: i, Key: key, Status: e.Status, Category: e.Category, Message: e.Message}
	if e.Category == "CONFLICT" {
		re.ExistingID = existingID(e.Message)
	}
	if names := missingProperties(e.Message, e.Errors); len(names) > 0 {
		re.Err = &crmsync.FieldError{System: "hubspot", Object: object, Fields: names}
	} else if re.ExistingID != "" {
		re.Err = &crmsync.DuplicateError{System: "hubspot", Object: object, ExistingID: re.ExistingID}
	}
	if permanentCategories[e.Category] {
		return crmsync.Permanent(re)
	}
	return re
}

// errorDetail is one entry of an error's "errors" list.
type errorDetail struct {
	Message string              `json:"message"`
	Code    string              `json:"code"`
	Context map[string][]string `json:"context"`
}

// missingProperties returns the properties an error says do not exist:
// from errors[].context.propertyName where code is PROPERTY_DOESNT_EXIST,
// else from the JSON list HubSpot embeds in "Property values were not
// valid: [...]" messages. Only names are read, never values.
func missingProperties(message string, details []errorDetail) []string {
	var names []string
	seen := map[string]bool{}
	add := func(n string) {
		if n != "" && !seen[n] {
			seen[n] = true
			names = append(names, n)
		}
	}
	for _, d := range details {
		if d.Code == "PROPERTY_DOESNT_EXIST" {
			for _, n := range d.Context["propertyName"] {
				add(n)
			}
		}
	}
	if len(names) > 0 || !strings.Contains(message, "PROPERTY_DOESNT_EXIST") {
		return names
	}
	if at := strings.IndexByte(message, '['); at >= 0 {
		var list []struct {
			Error string `json:"error"`
			Name  string `json:"name"`
		}
		if json.Unmarshal([]byte(message[at:]), &list) == nil {
			for _, v := range list {
				if v.Error == "PROPERTY_DOESNT_EXIST" {
					add(v.Name)
				}
			}
		}
	}
	return names
}
