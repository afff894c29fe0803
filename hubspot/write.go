package hubspot

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
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
// are transient *RecordError.
//
// Write always returns one result per op, in the ops' order. When a whole
// call fails, its ops carry that call's error and Write also returns the
// first such error; ops in other calls keep their own results. A call
// refused whole with a 400 or 409 is retried one op per call, so one bad
// record does not fail the others.
//
// Calls are retried after 5xx and network failures like every other call,
// so a batch create whose first attempt landed unseen may create twice:
// create through Upsert on a unique property holding the other system's id
// where that matters.
func (c *Client) Write(ctx context.Context, object string, ops []crmsync.WriteOp) ([]crmsync.WriteResult, error) {
	if object == "" {
		return nil, crmsync.Permanent(errors.New("hubspot: write: object is required"))
	}
	results := make([]crmsync.WriteResult, len(ops))
	props := make([]map[string]string, len(ops))
	groups := map[crmsync.WriteKind][]int{}
	for i, op := range ops {
		p, err := properties(op.Fields)
		if err == nil {
			err = checkOp(op)
		}
		if err != nil {
			results[i].Err = crmsync.Permanent(&RecordError{Index: i, Key: op.Key, Category: "INVALID_OP", Message: err.Error()})
			continue
		}
		props[i] = p
		groups[op.Kind] = append(groups[op.Kind], i)
	}
	var first error
	for _, kind := range []crmsync.WriteKind{crmsync.Create, crmsync.Update, crmsync.Upsert} {
		idx := groups[kind]
		for start := 0; start < len(idx); start += 100 {
			err := c.writeChunk(ctx, object, kind, idx[start:min(start+100, len(idx))], ops, props, results)
			if err != nil && first == nil {
				first = err
			}
		}
	}
	return results, first
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
// their results.
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
	status, raw, err := c.do(ctx, request{endpoint: endpoint, call: call, method: http.MethodPost,
		path: objectPath(object) + "/" + endpoint, body: map[string]any{"inputs": inputs}})
	if err != nil {
		var ae *APIError
		if len(idx) > 1 && crmsync.IsPermanent(err) && errors.As(err, &ae) && (ae.Status == http.StatusBadRequest || ae.Status == http.StatusConflict) {
			// One bad input can fail a whole batch (upserts on email, inputs
			// HubSpot rejects before per-record processing): isolate it.
			var first error
			for _, i := range idx {
				if err := c.writeChunk(ctx, object, kind, []int{i}, ops, props, results); err != nil && first == nil {
					first = err
				}
			}
			return first
		}
		for _, i := range idx {
			results[i] = crmsync.WriteResult{Err: err}
		}
		return err
	}
	var resp batchResponse
	if err := decode(call, status, raw, &resp); err != nil {
		for _, i := range idx {
			results[i] = crmsync.WriteResult{Err: err}
		}
		return err
	}
	mapBatch(kind, idx, trace, ops, resp, results)
	return nil
}

// mapBatch assigns a batch response's results and errors to the ops: by
// objectWriteTraceId first, then by id (update) or match value (upsert),
// then in order for results that carry neither.
func mapBatch(kind crmsync.WriteKind, idx []int, trace []string, ops []crmsync.WriteOp, resp batchResponse, results []crmsync.WriteResult) {
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
			results[idx[j]] = crmsync.WriteResult{Err: recordErr(idx[j], ops[idx[j]].Key, e)}
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
			results[i] = crmsync.WriteResult{Err: recordErr(i, ops[i].Key, unmapped[0])}
		default:
			results[i] = crmsync.WriteResult{Err: &RecordError{Index: i, Key: ops[i].Key, Category: "NO_RESULT", Message: "batch response had no result for this input"}}
		}
	}
}

func okResult(kind crmsync.WriteKind, o object) crmsync.WriteResult {
	r := crmsync.WriteResult{ID: o.ID, Created: kind == crmsync.Create}
	if kind == crmsync.Upsert && o.New != nil {
		r.Created = *o.New
	}
	return r
}

func recordErr(i int, key string, e standardError) error {
	re := &RecordError{Index: i, Key: key, Status: e.Status, Category: e.Category, Message: e.Message}
	if permanentCategories[e.Category] {
		return crmsync.Permanent(re)
	}
	return re
}
