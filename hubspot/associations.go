package hubspot

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/crmsync/crmsync"
)

// Association pseudo-fields: a record's relations, read and written as if
// they were fields. Changes, Lookup, Write and Schema handle them on
// contacts (FieldCompanies) and deals (FieldCompanies, FieldContacts)
// through the associations v4 batch endpoints, in batches over every
// record of a call, never one call per record.
const (
	// FieldCompanies holds the id (a string) of the record's primary
	// company, or nil when it has none.
	FieldCompanies = "associations.companies"
	// FieldContacts holds a deal's associated contact ids as a sorted
	// []string, or nil when it has none.
	FieldContacts = "associations.contacts"
)

// HubSpot-defined association type ids used by the pseudo-fields. They
// depend on direction (the inverse of contact → company primary, 1, is
// company → contact 2).
const (
	ContactToCompany        = 279
	ContactToCompanyPrimary = 1
	DealToCompany           = 341
	DealToCompanyPrimary    = 5
	DealToContact           = 3
)

// Batch limits of the associations v4 endpoints.
const (
	// AssociationReadBatch is the most ids one batch read takes.
	AssociationReadBatch = 1000
	// AssociationWriteBatch is the most inputs one batch create (or
	// archive) takes.
	AssociationWriteBatch = 2000
)

// assocSpec is one pseudo-field of an object.
type assocSpec struct {
	field   string
	to      string
	primary int // the primary type id of a single reference; 0 for a set
	typeID  int // the type a new association gets
}

func (a assocSpec) set() bool { return a.primary == 0 }

// canonicalObject maps contacts, companies and deals as paths may name
// them to their plural; other names are returned as they are.
func canonicalObject(object string) string {
	switch object {
	case "contact", "contacts", "0-1":
		return "contacts"
	case "company", "companies", "0-2":
		return "companies"
	case "deal", "deals", "0-3":
		return "deals"
	}
	return object
}

// assocSpecs returns the pseudo-fields of an object.
func assocSpecs(object string) []assocSpec {
	switch canonicalObject(object) {
	case "contacts":
		return []assocSpec{{field: FieldCompanies, to: "companies", primary: ContactToCompanyPrimary, typeID: ContactToCompanyPrimary}}
	case "deals":
		return []assocSpec{
			{field: FieldCompanies, to: "companies", primary: DealToCompanyPrimary, typeID: DealToCompanyPrimary},
			{field: FieldContacts, to: "contacts", typeID: DealToContact},
		}
	}
	return nil
}

// splitAssocFields separates an object's pseudo-fields from its
// properties. fields keeps its nil-ness when it holds no pseudo-field.
func splitAssocFields(object string, fields []string) ([]string, []assocSpec) {
	specs := assocSpecs(object)
	if len(specs) == 0 {
		return fields, nil
	}
	var asked []assocSpec
	for _, s := range specs {
		if slices.Contains(fields, s.field) {
			asked = append(asked, s)
		}
	}
	if len(asked) == 0 {
		return fields, nil
	}
	props := make([]string, 0, len(fields))
	for _, f := range fields {
		if !strings.HasPrefix(f, "associations.") || !slices.ContainsFunc(asked, func(s assocSpec) bool { return s.field == f }) {
			props = append(props, f)
		}
	}
	return props, asked
}

// AssociationError is a failure to change a record's associations after
// its fields were written; the WriteResult keeps the record's id. Its
// Error text names the field, record id and category, never the message,
// which may quote values.
type AssociationError struct {
	// Field is the pseudo-field (FieldCompanies, FieldContacts).
	Field string
	// Object and ID name the record.
	Object, ID string
	// Category is HubSpot's error category, if it gave one.
	Category string
	// SubCategory is HubSpot's error subcategory, if it gave one
	// ("crm.associations.INVALID_OBJECT_IDS").
	SubCategory string
	// To is the id of the record the failed association named, when
	// HubSpot's error says which.
	To string
	// Message is HubSpot's message. It may quote record values: do not log it.
	Message string
	// Err is the cause when the whole call failed.
	Err error
}

func (e *AssociationError) Error() string {
	s := "hubspot: " + e.Field + " of " + e.Object + " " + e.ID
	if e.Category != "" {
		s += ": " + e.Category
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// Unwrap returns the cause, if any.
func (e *AssociationError) Unwrap() error { return e.Err }

// invalidObjectIDs is the subcategory of HubSpot's refusal of an
// association whose records are not live (archived or deleted).
const invalidObjectIDs = "crm.associations.INVALID_OBJECT_IDS"

// flexID is an id HubSpot sends as a JSON number (the guide's examples) or
// a string (the 2026 spec).
type flexID string

func (f *flexID) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*f = flexID(s)
		return nil
	}
	var n json.Number
	if err := json.Unmarshal(b, &n); err != nil {
		return err
	}
	*f = flexID(n.String())
	return nil
}

type assocTypeJSON struct {
	Category string  `json:"category"`
	TypeID   int     `json:"typeId"`
	Label    *string `json:"label"`
}

type assocTo struct {
	ToObjectID       flexID          `json:"toObjectId"`
	AssociationTypes []assocTypeJSON `json:"associationTypes"`
}

type assocReadResponse struct {
	Status  string `json:"status"`
	Results []struct {
		From struct {
			ID flexID `json:"id"`
		} `json:"from"`
		To     []assocTo `json:"to"`
		Paging *paging   `json:"paging"`
	} `json:"results"`
	Errors []standardError `json:"errors"`
}

type assocReadInput struct {
	ID    string `json:"id"`
	After string `json:"after,omitempty"`
}

func assocPath(from, to, op string) string {
	return "/crm/v4/associations/" + url.PathEscape(from) + "/" + url.PathEscape(to) + "/batch/" + op
}

// readAssociations returns the associations from each of ids to records
// of object to, with the v4 batch read: up to 1,000 ids per call, and the
// further pages of ids with many associations together in later calls. An
// id HubSpot reports without associations (OBJECT_NOT_FOUND) has none.
func (c *Client) readAssociations(ctx context.Context, from, to string, ids []string) (map[string][]assocTo, error) {
	out := make(map[string][]assocTo, len(ids))
	pending := make([]assocReadInput, 0, len(ids))
	seen := make(map[string]bool, len(ids))
	for _, id := range ids {
		if id != "" && !seen[id] {
			seen[id] = true
			pending = append(pending, assocReadInput{ID: id})
		}
	}
	call := "associations batch/read " + from + " to " + to
	for len(pending) > 0 {
		n := min(len(pending), AssociationReadBatch)
		chunk := pending[:n]
		pending = pending[n:]
		status, raw, err := c.do(ctx, request{endpoint: "associations/batch/read", call: call, object: from, method: http.MethodPost,
			path: assocPath(from, to, "read"), body: map[string]any{"inputs": chunk}})
		if err != nil {
			return nil, err
		}
		var resp assocReadResponse
		if err := decode(call, status, raw, &resp); err != nil {
			return nil, err
		}
		for _, e := range resp.Errors {
			if e.Category != "OBJECT_NOT_FOUND" {
				return nil, &APIError{Call: call, Status: status, Category: e.Category, Message: e.Message, Object: from}
			}
		}
		for _, r := range resp.Results {
			id := string(r.From.ID)
			if !seen[id] {
				return nil, &DecodeError{Call: call, Status: status, Reason: "result for an id not asked for"}
			}
			out[id] = append(out[id], r.To...)
			if r.Paging != nil && r.Paging.Next != nil && r.Paging.Next.After != "" {
				pending = append(pending, assocReadInput{ID: id, After: r.Paging.Next.After})
			}
		}
	}
	return out, nil
}

func (a assocTo) has(typeID int) bool {
	for _, t := range a.AssociationTypes {
		if t.Category == "HUBSPOT_DEFINED" && t.TypeID == typeID {
			return true
		}
	}
	return false
}

// primaryOf returns the id of the association holding the primary type, or "".
func primaryOf(list []assocTo, primary int) string {
	for _, a := range list {
		if a.has(primary) {
			return string(a.ToObjectID)
		}
	}
	return ""
}

func idsOf(list []assocTo) []string {
	out := make([]string, 0, len(list))
	for _, a := range list {
		if id := string(a.ToObjectID); !slices.Contains(out, id) {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return out
}

// fillAssociations sets the asked pseudo-fields of recs, one batch read
// per pseudo-field for up to 1,000 records.
func (c *Client) fillAssociations(ctx context.Context, object string, recs []crmsync.Record, specs []assocSpec) error {
	if len(recs) == 0 {
		return nil
	}
	ids := make([]string, len(recs))
	for i, r := range recs {
		ids[i] = r.ID
	}
	from := canonicalObject(object)
	for _, s := range specs {
		got, err := c.readAssociations(ctx, from, s.to, ids)
		if err != nil {
			return err
		}
		for _, r := range recs {
			if r.Fields == nil {
				continue
			}
			var v any
			if s.set() {
				if list := idsOf(got[r.ID]); len(list) > 0 {
					v = list
				}
			} else if p := primaryOf(got[r.ID], s.primary); p != "" {
				v = p
			}
			r.Fields[s.field] = v
		}
	}
	return nil
}

// assocSchema lists an object's pseudo-fields.
func assocSchema(object string) []crmsync.FieldSchema {
	var out []crmsync.FieldSchema
	for _, s := range assocSpecs(object) {
		t := crmsync.TypeReference
		if s.set() {
			t = crmsync.TypeReferences
		}
		out = append(out, crmsync.FieldSchema{Name: s.field, Type: t, RefObject: s.to})
	}
	return out
}

// assocWant is what one op asks of one pseudo-field: a primary id ("" for
// none) or a set.
type assocWant struct {
	one string
	set []string
}

// takeAssocFields removes the object's pseudo-fields from f (a copy is
// made when there are some) and returns what they ask, or an error naming
// the field whose value is not an id (a string) or a set of ids.
func takeAssocFields(object string, f crmsync.Fields) (crmsync.Fields, map[string]assocWant, error) {
	specs := assocSpecs(object)
	var wants map[string]assocWant
	for _, s := range specs {
		v, ok := f[s.field]
		if !ok {
			continue
		}
		var w assocWant
		switch v := v.(type) {
		case nil:
		case string:
			if s.set() {
				return nil, nil, fmt.Errorf("field %q: a set of ids is a list, not %T", s.field, v)
			}
			w.one = strings.TrimSpace(v)
		case json.Number:
			if s.set() {
				return nil, nil, fmt.Errorf("field %q: a set of ids is a list, not %T", s.field, v)
			}
			w.one = v.String()
		case []string:
			if !s.set() {
				return nil, nil, fmt.Errorf("field %q: holds one id, not a list", s.field)
			}
			w.set = slices.Clone(v)
		case []any:
			if !s.set() {
				return nil, nil, fmt.Errorf("field %q: holds one id, not a list", s.field)
			}
			for _, x := range v {
				id, ok := x.(string)
				if !ok {
					return nil, nil, fmt.Errorf("field %q: an id is a string, not %T", s.field, x)
				}
				w.set = append(w.set, id)
			}
		default:
			return nil, nil, fmt.Errorf("field %q: unsupported value type %T", s.field, v)
		}
		for i, id := range w.set {
			if w.set[i] = strings.TrimSpace(id); w.set[i] == "" {
				return nil, nil, fmt.Errorf("field %q: an empty id", s.field)
			}
		}
		slices.Sort(w.set)
		w.set = slices.Compact(w.set)
		if wants == nil {
			wants = map[string]assocWant{}
			f = maps.Clone(f) // the caller's op stays as it was
		}
		wants[s.field] = w
		delete(f, s.field)
	}
	return f, wants, nil
}

type assocPair struct {
	op       int
	from, to string
}

// writeAssociations changes the associations the ops ask for, on the
// records written without error: for each pseudo-field, one batch read of
// the current associations (records just created have none), batch
// creates of what is new, then batch archives of what must go (the old
// primary company; contacts out of a deal's set). A failure marks the op's
// result with an *AssociationError; an op whose creates failed archives
// nothing, so that a record never loses its primary for a failed move.
func (c *Client) writeAssociations(ctx context.Context, object string, wants []map[string]assocWant, results []crmsync.WriteResult) {
	from := canonicalObject(object)
	fail := func(i int, field string, e *AssociationError) {
		e.Field, e.Object, e.ID = field, from, results[i].ID
		// The record was just written, so an id HubSpot calls invalid is
		// the other end's: an archived (or deleted) record.
		gone := e.SubCategory == invalidObjectIDs && e.To != ""
		var err error = e
		if gone {
			err = &crmsync.ReferenceError{System: "hubspot", Object: from, Fields: []string{field}, IDs: []string{e.To}, Err: e}
		}
		if gone || permanentCategories[e.Category] || (e.Err != nil && crmsync.IsPermanent(e.Err)) {
			err = crmsync.Permanent(err)
		}
		var pe *crmsync.PartialWriteError
		prev := results[i].Err
		if prev == nil {
			results[i].Err = &crmsync.PartialWriteError{Fields: []string{field}, Err: err}
			return
		}
		if !errors.As(prev, &pe) {
			return
		}
		// Another failure of the op: the fields add up; references to
		// archived records add up while nothing else failed, and any other
		// failure takes their place (the op is parked).
		if !slices.Contains(pe.Fields, field) {
			pe.Fields = append(pe.Fields, field)
		}
		var re *crmsync.ReferenceError
		switch prevRef := errors.As(prev, &re); {
		case gone && prevRef:
			if !slices.Contains(re.Fields, field) {
				re.Fields = append(re.Fields, field)
			}
			if !slices.Contains(re.IDs, e.To) {
				re.IDs = append(re.IDs, e.To)
			}
		case !gone && prevRef:
			pe.Err = err
		}
	}
	for _, s := range assocSpecs(object) {
		var ops, read []int
		for i, w := range wants {
			if _, ok := w[s.field]; ok && results[i].Err == nil && results[i].ID != "" {
				ops = append(ops, i)
				if !results[i].Created {
					read = append(read, i)
				}
			}
		}
		if len(ops) == 0 {
			continue
		}
		ids := make([]string, len(read))
		for j, i := range read {
			ids[j] = results[i].ID
		}
		cur, err := c.readAssociations(ctx, from, s.to, ids)
		if err != nil {
			for _, i := range ops {
				fail(i, s.field, &AssociationError{Err: err})
			}
			continue
		}
		var creates, archives []assocPair
		for _, i := range ops {
			id, w := results[i].ID, wants[i][s.field]
			if s.set() {
				have := idsOf(cur[id])
				for _, t := range w.set {
					if !slices.Contains(have, t) {
						creates = append(creates, assocPair{i, id, t})
					}
				}
				for _, t := range have {
					if !slices.Contains(w.set, t) {
						archives = append(archives, assocPair{i, id, t})
					}
				}
				continue
			}
			old := primaryOf(cur[id], s.primary)
			if w.one != "" && w.one != old {
				creates = append(creates, assocPair{i, id, w.one})
			}
			if old != "" && old != w.one {
				archives = append(archives, assocPair{i, id, old})
			}
		}
		c.createAssociations(ctx, from, s, creates, func(i int, e *AssociationError) { fail(i, s.field, e) })
		archives = slices.DeleteFunc(archives, func(p assocPair) bool { return results[p.op].Err != nil })
		c.archiveAssociations(ctx, from, s, archives, func(i int, e *AssociationError) { fail(i, s.field, e) })
	}
}

type assocCreateInput struct {
	From readInput `json:"from"`
	To   readInput `json:"to"`
	// Types are the association's types.
	Types []assocSpecJSON `json:"types"`
}

type assocSpecJSON struct {
	AssociationCategory string `json:"associationCategory"`
	AssociationTypeID   int    `json:"associationTypeId"`
}

// createAssociations sends pairs with batch create, 2,000 per call, and
// reports each failed pair's op.
func (c *Client) createAssociations(ctx context.Context, from string, s assocSpec, pairs []assocPair, fail func(int, *AssociationError)) {
	call := "associations batch/create " + from + " to " + s.to
	for start := 0; start < len(pairs); start += AssociationWriteBatch {
		chunk := pairs[start:min(start+AssociationWriteBatch, len(pairs))]
		inputs := make([]assocCreateInput, len(chunk))
		for j, p := range chunk {
			inputs[j] = assocCreateInput{From: readInput{ID: p.from}, To: readInput{ID: p.to},
				Types: []assocSpecJSON{{AssociationCategory: "HUBSPOT_DEFINED", AssociationTypeID: s.typeID}}}
		}
		status, raw, err := c.do(ctx, request{endpoint: "associations/batch/create", call: call, object: from, method: http.MethodPost,
			path: assocPath(from, s.to, "create"), body: map[string]any{"inputs": inputs}})
		if err == nil {
			var resp batchResponse
			if err = decode(call, status, raw, &resp); err == nil {
				mapAssocErrors(chunk, resp.Errors, fail)
				continue
			}
		}
		for _, p := range chunk {
			fail(p.op, &AssociationError{Err: err})
		}
	}
}

// mapAssocErrors gives each per-pair error of a batch response to the ops
// whose pair it names (context fromObjectId and, if given, toObjectId); an
// error that names no pair of the call fails every op of it.
func mapAssocErrors(chunk []assocPair, errs []standardError, fail func(int, *AssociationError)) {
	for _, e := range errs {
		froms, tos := e.Context["fromObjectId"], e.Context["toObjectId"]
		hit := false
		for _, p := range chunk {
			if slices.Contains(froms, p.from) && (len(tos) == 0 || slices.Contains(tos, p.to)) {
				hit = true
				ae := &AssociationError{Category: e.Category, SubCategory: e.SubCategory, Message: e.Message}
				if len(tos) > 0 {
					ae.To = p.to
				}
				fail(p.op, ae)
			}
		}
		if !hit {
			for _, p := range chunk {
				fail(p.op, &AssociationError{Category: e.Category, Message: e.Message})
			}
		}
	}
}

type assocArchiveInput struct {
	From readInput   `json:"from"`
	To   []readInput `json:"to"`
}

// archiveAssociations removes every association of each pair with batch
// archive, one input per record, 2,000 inputs per call.
func (c *Client) archiveAssociations(ctx context.Context, from string, s assocSpec, pairs []assocPair, fail func(int, *AssociationError)) {
	if len(pairs) == 0 {
		return
	}
	var inputs []assocArchiveInput
	var opsOf [][]int
	at := map[string]int{}
	for _, p := range pairs {
		j, ok := at[p.from]
		if !ok {
			j = len(inputs)
			at[p.from] = j
			inputs = append(inputs, assocArchiveInput{From: readInput{ID: p.from}})
			opsOf = append(opsOf, nil)
		}
		inputs[j].To = append(inputs[j].To, readInput{ID: p.to})
		if !slices.Contains(opsOf[j], p.op) {
			opsOf[j] = append(opsOf[j], p.op)
		}
	}
	call := "associations batch/archive " + from + " to " + s.to
	for start := 0; start < len(inputs); start += AssociationWriteBatch {
		end := min(start+AssociationWriteBatch, len(inputs))
		_, _, err := c.do(ctx, request{endpoint: "associations/batch/archive", call: call, object: from, method: http.MethodPost,
			path: assocPath(from, s.to, "archive"), body: map[string]any{"inputs": inputs[start:end]}})
		if err == nil {
			continue
		}
		for _, ops := range opsOf[start:end] {
			for _, i := range ops {
				fail(i, &AssociationError{Err: err})
			}
		}
	}
}
