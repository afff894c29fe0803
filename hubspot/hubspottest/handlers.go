package hubspottest

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"path"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// maxBody caps request bodies the fake reads.
const maxBody = 1 << 20

func readBody(w http.ResponseWriter, r *http.Request, v any) ([]byte, bool) {
	b, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil || len(b) > maxBody {
		writeError(w, http.StatusBadRequest, "VALIDATION_ERROR", "request body unreadable or too large")
		return nil, false
	}
	if err := json.Unmarshal(b, v); err != nil {
		writeError(w, http.StatusBadRequest, "VALIDATION_ERROR", "Invalid input JSON on line 1: "+err.Error())
		return nil, false
	}
	return b, true
}

func splitList(v string) []string {
	if v == "" {
		return nil
	}
	var out []string
	for _, p := range strings.Split(v, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func (s *Server) serveProperties(w http.ResponseWriter, object string) {
	s.mu.Lock()
	st := s.store(object)
	out := make([]map[string]any, len(st.props))
	for i, p := range st.props {
		out[i] = p.json()
	}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{"results": out})
}

func (s *Server) serveList(w http.ResponseWriter, r *http.Request, object string) {
	q := r.URL.Query()
	limit := 10
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 100 {
			writeError(w, http.StatusBadRequest, "VALIDATION_ERROR", "limit must be between 1 and 100")
			return
		}
		limit = n
	}
	var after int64
	if v := q.Get("after"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			writeError(w, http.StatusBadRequest, "VALIDATION_ERROR", "after must be a record id")
			return
		}
		after = n
	}
	archived := q.Get("archived") == "true"
	selected := queryList(q, "properties")
	s.mu.Lock()
	var results []map[string]any
	var next string
	for _, rc := range s.store(object).order {
		if rc.num < after || rc.archived != archived {
			continue
		}
		if len(results) == limit {
			next = rc.id
			break
		}
		results = append(results, rc.json(s.store(object), object, selected, false))
	}
	s.mu.Unlock()
	body := map[string]any{"results": nonNil(results)}
	if next != "" {
		body["paging"] = map[string]any{"next": map[string]any{"after": next, "link": "?after=" + next}}
	}
	writeJSON(w, http.StatusOK, body)
}

func nonNil(v []map[string]any) []map[string]any {
	if v == nil {
		return []map[string]any{}
	}
	return v
}

func (s *Server) serveGet(w http.ResponseWriter, r *http.Request, object, id string) {
	q := r.URL.Query()
	s.mu.Lock()
	defer s.mu.Unlock()
	var rc *rec
	if idp := q.Get("idProperty"); idp != "" && idp != "hs_object_id" {
		rc = s.findBy(object, idp, id)
	} else if x := s.store(object).resolve(id); x != nil && x.archived == (q.Get("archived") == "true") {
		rc = x // a merged-away id resolves to the record it went into
	}
	if rc == nil {
		writeError(w, http.StatusNotFound, "OBJECT_NOT_FOUND", "resource not found")
		return
	}
	writeJSON(w, http.StatusOK, rc.json(s.store(object), object, queryList(q, "properties"), false))
}

type filterJSON struct {
	PropertyName string   `json:"propertyName"`
	Operator     string   `json:"operator"`
	Value        *string  `json:"value"`
	HighValue    *string  `json:"highValue"`
	Values       []string `json:"values"`
}

type searchJSON struct {
	FilterGroups []struct {
		Filters []filterJSON `json:"filters"`
	} `json:"filterGroups"`
	Sorts      []json.RawMessage `json:"sorts"`
	Properties []string          `json:"properties"`
	Limit      *int              `json:"limit"`
	After      string            `json:"after"`
	Query      string            `json:"query"`
}

var operators = map[string]bool{"EQ": true, "NEQ": true, "LT": true, "LTE": true, "GT": true, "GTE": true, "BETWEEN": true,
	"IN": true, "NOT_IN": true, "HAS_PROPERTY": true, "NOT_HAS_PROPERTY": true, "CONTAINS_TOKEN": true, "NOT_CONTAINS_TOKEN": true}

func (s *Server) serveSearch(w http.ResponseWriter, r *http.Request, object string) {
	var req searchJSON
	raw, ok := readBody(w, r, &req)
	if !ok {
		return
	}
	bad := func(msg string) { writeError(w, http.StatusBadRequest, "VALIDATION_ERROR", msg) }
	if len(raw) > 3000 {
		bad("request body exceeds 3000 characters")
		return
	}
	limit := 10
	if req.Limit != nil {
		limit = *req.Limit
	}
	if limit < 1 || limit > 200 {
		bad("limit must be between 1 and 200")
		return
	}
	total := 0
	if len(req.FilterGroups) > 5 {
		bad("too many filter groups (max 5)")
		return
	}
	for _, g := range req.FilterGroups {
		if len(g.Filters) > 6 {
			bad("too many filters in a group (max 6)")
			return
		}
		total += len(g.Filters)
		for _, f := range g.Filters {
			if !operators[f.Operator] || f.PropertyName == "" {
				bad("invalid filter")
				return
			}
		}
	}
	if total > 18 {
		bad("too many filters (max 18)")
		return
	}
	if len(req.Sorts) > 1 {
		bad("only one sort is supported")
		return
	}
	sortProp, desc := "hs_object_id", false
	if len(req.Sorts) == 1 {
		var obj struct{ PropertyName, Direction string }
		var str string
		switch {
		case json.Unmarshal(req.Sorts[0], &obj) == nil && obj.PropertyName != "":
			sortProp, desc = obj.PropertyName, obj.Direction == "DESCENDING"
		case json.Unmarshal(req.Sorts[0], &str) == nil && str != "":
			sortProp, desc = strings.TrimPrefix(str, "-"), strings.HasPrefix(str, "-")
		default:
			bad("invalid sort")
			return
		}
	}
	after := 0
	if req.After != "" {
		n, err := strconv.Atoi(req.After)
		if err != nil || n < 0 {
			bad("after must be a number")
			return
		}
		after = n
	}
	if after+limit > s.cfg.SearchCap {
		bad(fmt.Sprintf("paging past %d results is not supported", s.cfg.SearchCap))
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.store(object)
	groups := compileGroups(st, req)
	for _, g := range groups {
		for _, f := range g {
			if f.p != nil && (f.p.Type == "datetime" || f.p.Type == "date") && f.op != "HAS_PROPERTY" && f.op != "NOT_HAS_PROPERTY" &&
				f.val.msOK && f.val.ms <= 0 {
				// HubSpot answers a time filter at (or before) the epoch
				// with a 500 (API-FACTS-2 §1.3).
				writeError(w, http.StatusInternalServerError, "INTERNAL_ERROR", "internal error")
				return
			}
		}
	}
	var hits []*rec
	byID := true // every hit's hs_object_id is its own id
	for _, rc := range st.order {
		if rc.archived {
			continue
		}
		if rc = s.searchView(rc); rc == nil || rc.archived {
			continue // not indexed yet
		}
		if len(groups) == 0 || matchAny(groups, rc) {
			hits = append(hits, rc)
			byID = byID && rc.props["hs_object_id"] == rc.id
		}
	}
	sp := st.prop(sortProp)
	if sortProp == "hs_object_id" && sp != nil && sp.Type == "number" && byID {
		// st.order is already by id, which is the numeric order of
		// hs_object_id and of the tie-break alike.
		if desc {
			slices.Reverse(hits)
		}
	} else {
		sort.Slice(hits, func(i, j int) bool {
			c := compare(sp, hits[i].props[sortProp], hits[j].props[sortProp])
			if c == 0 {
				c = cmpInt(hits[i].num, hits[j].num)
			}
			if desc {
				return c > 0
			}
			return c < 0
		})
	}
	selected := req.Properties
	if len(selected) == 0 {
		selected = nil
	}
	results := []map[string]any{}
	for i := after; i < len(hits) && i < after+limit; i++ {
		results = append(results, hits[i].json(st, object, selected, true))
	}
	body := map[string]any{"total": len(hits), "results": results}
	if after+limit < len(hits) {
		n := strconv.Itoa(after + limit)
		body["paging"] = map[string]any{"next": map[string]any{"after": n, "link": "?after=" + n}}
	}
	writeJSON(w, http.StatusOK, body)
}

// operand is a filter value parsed once per search.
type operand struct {
	lower string
	ms    int64
	msOK  bool
	f     float64
	fOK   bool
}

func newOperand(v string) operand {
	o := operand{lower: strings.ToLower(v)}
	o.ms, o.msOK = millis(v)
	if f, err := strconv.ParseFloat(v, 64); err == nil && !math.IsNaN(f) {
		o.f, o.fOK = f, true
	}
	return o
}

// compareTo is compare(p, a, b) with b parsed beforehand.
func compareTo(p *Property, a string, b *operand) int {
	if p != nil {
		switch p.Type {
		case "datetime", "date":
			if b.msOK {
				if x, ok := millis(a); ok {
					return cmpInt(x, b.ms)
				}
			}
		case "number":
			if b.fOK {
				if x, err := strconv.ParseFloat(a, 64); err == nil && !math.IsNaN(x) {
					switch {
					case x < b.f:
						return -1
					case x > b.f:
						return 1
					}
					return 0
				}
			}
		}
	}
	return strings.Compare(strings.ToLower(a), b.lower)
}

// filter is a search filter compiled against the object's properties.
type filter struct {
	name    string
	op      string
	p       *Property
	val, hi operand
	token   string // CONTAINS_TOKEN pattern
	values  []operand
}

func compileGroups(st *objectStore, req searchJSON) [][]filter {
	groups := make([][]filter, len(req.FilterGroups))
	for i, g := range req.FilterGroups {
		for _, f := range g.Filters {
			c := filter{name: f.PropertyName, op: f.Operator, p: st.prop(f.PropertyName)}
			if f.Value != nil {
				c.token = *f.Value
			}
			c.val = newOperand(c.token)
			hi := ""
			if f.HighValue != nil {
				hi = *f.HighValue
			}
			c.hi = newOperand(hi)
			for _, v := range f.Values {
				c.values = append(c.values, newOperand(v))
			}
			groups[i] = append(groups[i], c)
		}
	}
	return groups
}

func matchAny(groups [][]filter, rc *rec) bool {
	for _, g := range groups {
		all := true
		for i := range g {
			if !g[i].match(rc.props) {
				all = false
				break
			}
		}
		if all {
			return true
		}
	}
	return false
}

func (f *filter) match(props map[string]string) bool {
	v, has := props[f.name]
	has = has && v != ""
	switch f.op {
	case "HAS_PROPERTY":
		return has
	case "NOT_HAS_PROPERTY":
		return !has
	case "NEQ":
		return !has || compareTo(f.p, v, &f.val) != 0
	case "NOT_IN":
		return !has || !f.in(v)
	case "NOT_CONTAINS_TOKEN":
		return !has || !containsToken(v, f.token)
	}
	if !has {
		return false
	}
	switch f.op {
	case "EQ":
		return compareTo(f.p, v, &f.val) == 0
	case "LT":
		return compareTo(f.p, v, &f.val) < 0
	case "LTE":
		return compareTo(f.p, v, &f.val) <= 0
	case "GT":
		return compareTo(f.p, v, &f.val) > 0
	case "GTE":
		return compareTo(f.p, v, &f.val) >= 0
	case "BETWEEN":
		return compareTo(f.p, v, &f.val) >= 0 && compareTo(f.p, v, &f.hi) <= 0
	case "IN":
		return f.in(v)
	case "CONTAINS_TOKEN":
		return containsToken(v, f.token)
	}
	return false
}

func (f *filter) in(v string) bool {
	for i := range f.values {
		if compareTo(f.p, v, &f.values[i]) == 0 {
			return true
		}
	}
	return false
}

func containsToken(v, pattern string) bool {
	pattern = strings.ToLower(pattern)
	for _, tok := range append(strings.Fields(strings.ToLower(v)), strings.ToLower(v)) {
		if ok, _ := path.Match(pattern, tok); ok {
			return true
		}
	}
	return false
}

// compare orders two property values by the property's type: datetimes
// (epoch ms or ISO 8601) and numbers numerically, the rest as
// case-insensitive strings.
func compare(p *Property, a, b string) int {
	if p != nil {
		switch p.Type {
		case "datetime", "date":
			x, ok1 := millis(a)
			y, ok2 := millis(b)
			if ok1 && ok2 {
				return cmpInt(x, y)
			}
		case "number":
			x, err1 := strconv.ParseFloat(a, 64)
			y, err2 := strconv.ParseFloat(b, 64)
			if err1 == nil && err2 == nil && !math.IsNaN(x) && !math.IsNaN(y) {
				switch {
				case x < y:
					return -1
				case x > y:
					return 1
				}
				return 0
			}
		}
	}
	return strings.Compare(strings.ToLower(a), strings.ToLower(b))
}

func millis(s string) (int64, bool) {
	if isInt(s) {
		if n, err := strconv.ParseInt(s, 10, 64); err == nil {
			return n, true
		}
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t.UnixMilli(), true
	}
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t.UnixMilli(), true
	}
	return 0, false
}

// isInt reports whether s has the form strconv.ParseInt accepts in base
// 10 (range aside), sparing it the error it allocates otherwise.
func isInt(s string) bool {
	if s != "" && (s[0] == '+' || s[0] == '-') {
		s = s[1:]
	}
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func cmpInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

type batchReadJSON struct {
	Properties            []string `json:"properties"`
	PropertiesWithHistory []string `json:"propertiesWithHistory"`
	IDProperty            string   `json:"idProperty"`
	Inputs                []struct {
		ID string `json:"id"`
	} `json:"inputs"`
}

func batchSizeOK(w http.ResponseWriter, n int) bool {
	if n > 100 {
		writeError(w, http.StatusBadRequest, "VALIDATION_ERROR", "Batch input size exceeds limit of 100")
		return false
	}
	if n == 0 {
		writeError(w, http.StatusBadRequest, "VALIDATION_ERROR", "inputs must not be empty")
		return false
	}
	return true
}

func batchBody(results []map[string]any, errs []map[string]any, started time.Time) map[string]any {
	body := map[string]any{
		"status":      "COMPLETE",
		"results":     nonNil(results),
		"startedAt":   stamp(started),
		"completedAt": stamp(started),
		"requestedAt": stamp(started),
	}
	if len(errs) > 0 {
		body["numErrors"] = len(errs)
		body["errors"] = errs
	}
	return body
}

func (s *Server) serveBatchRead(w http.ResponseWriter, r *http.Request, object string) {
	var req batchReadJSON
	if _, ok := readBody(w, r, &req); !ok || !batchSizeOK(w, len(req.Inputs)) {
		return
	}
	archived := r.URL.Query().Get("archived") == "true"
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.store(object)
	if req.IDProperty != "" && req.IDProperty != "hs_object_id" {
		if p := st.prop(req.IDProperty); p == nil || !(p.Unique || (isContacts(object) && p.Name == "email")) {
			writeError(w, http.StatusBadRequest, "VALIDATION_ERROR", "idProperty is not a unique property")
			return
		}
	}
	selected := req.Properties
	if len(selected) == 0 {
		selected = nil
	}
	var results []map[string]any
	var missing []string
	seen := map[string]bool{}
	for _, in := range req.Inputs {
		var rc *rec
		if archived && (req.IDProperty == "" || req.IDProperty == "hs_object_id") {
			if x := st.recs[in.ID]; x != nil && x.archived {
				rc = x
			}
		} else if !archived {
			rc = s.findBy(object, req.IDProperty, in.ID)
		}
		if rc == nil {
			missing = append(missing, in.ID)
			continue
		}
		if !seen[rc.id] {
			seen[rc.id] = true
			results = append(results, rc.json(st, object, selected, true))
		}
	}
	started := s.now()
	if len(missing) == 0 {
		writeJSON(w, http.StatusOK, batchBody(results, nil, started))
		return
	}
	errs := []map[string]any{{
		"status":   "error",
		"category": "OBJECT_NOT_FOUND",
		"message":  "Could not get some " + strings.ToUpper(strings.TrimSuffix(object, "s")) + " objects, they may be deleted or not exist. Check that ids are valid.",
		"context":  map[string][]string{"ids": missing},
		"errors":   []any{},
		"links":    map[string]string{},
	}}
	writeJSON(w, http.StatusMultiStatus, batchBody(results, errs, started))
}

func (s *Server) serveBatchArchive(w http.ResponseWriter, r *http.Request, object string) {
	var req struct {
		Inputs []struct {
			ID string `json:"id"`
		} `json:"inputs"`
	}
	if _, ok := readBody(w, r, &req); !ok || !batchSizeOK(w, len(req.Inputs)) {
		return
	}
	s.mu.Lock()
	st := s.store(object)
	for _, in := range req.Inputs {
		if rc := st.recs[in.ID]; rc != nil {
			s.archive(rc)
		}
	}
	s.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

type writeJSONInput struct {
	ID                 string             `json:"id"`
	IDProperty         string             `json:"idProperty"`
	Properties         map[string]*string `json:"properties"`
	ObjectWriteTraceID string             `json:"objectWriteTraceId"`
}

// recErr is one per-record failure.
type recErr struct {
	category, code, message string
	// props names the properties that do not exist (PROPERTY_DOESNT_EXIST).
	props []string
}

// details is the error's "errors" list.
func (e *recErr) details() []any {
	if len(e.props) == 0 {
		return []any{map[string]any{"message": e.message, "code": e.code}}
	}
	out := make([]any, len(e.props))
	for i, n := range e.props {
		out[i] = map[string]any{"message": fmt.Sprintf("Property %q does not exist", n), "code": "PROPERTY_DOESNT_EXIST",
			"context": map[string][]string{"propertyName": {n}}}
	}
	return out
}

// missingPropsErr is HubSpot's error for properties that do not exist: the
// message embeds a JSON list of the invalid properties.
func missingPropsErr(names []string) *recErr {
	list := make([]map[string]any, len(names))
	for i, n := range names {
		list[i] = map[string]any{"isValid": false, "message": fmt.Sprintf("Property %q does not exist", n),
			"error": "PROPERTY_DOESNT_EXIST", "name": n, "localizedErrorMessage": fmt.Sprintf("Property %q does not exist", n)}
	}
	b, _ := json.Marshal(list)
	return &recErr{category: "VALIDATION_ERROR", code: "PROPERTY_DOESNT_EXIST", message: "Property values were not valid: " + string(b), props: names}
}

func (s *Server) serveBatchWrite(w http.ResponseWriter, r *http.Request, object, kind string) {
	var req struct {
		Inputs []writeJSONInput `json:"inputs"`
	}
	if _, ok := readBody(w, r, &req); !ok || !batchSizeOK(w, len(req.Inputs)) {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch s.refuseBatch(len(req.Inputs)) {
	case http.StatusBadRequest:
		writeError(w, http.StatusBadRequest, "VALIDATION_ERROR", "batch refused: invalid input")
		return
	case http.StatusConflict:
		writeError(w, http.StatusConflict, "CONFLICT", "batch refused: conflicting inputs")
		return
	case http.StatusRequestEntityTooLarge:
		writeError(w, http.StatusRequestEntityTooLarge, "VALIDATION_ERROR", "request payload too large")
		return
	}
	st := s.store(object)
	type plan struct {
		in     writeJSONInput
		props  map[string]string
		target *rec // update or upsert match
		err    *recErr
	}
	plans := make([]plan, len(req.Inputs))
	allTraced := true
	claimed := map[string]int{} // unique prop + value → input index, within this batch
	for i, in := range req.Inputs {
		p := plan{in: in, props: map[string]string{}}
		for k, v := range in.Properties {
			if v != nil {
				p.props[k] = *v
			} else {
				p.props[k] = ""
			}
		}
		if in.ObjectWriteTraceID == "" {
			allTraced = false
		}
		switch kind {
		case "update":
			if in.ID == "" {
				writeError(w, http.StatusBadRequest, "VALIDATION_ERROR", "update input without id")
				return
			}
			p.target = s.findBy(object, in.IDProperty, in.ID)
			if p.target == nil {
				p.err = &recErr{category: "OBJECT_NOT_FOUND", code: "OBJECT_NOT_FOUND", message: "Object not found."}
			}
		case "upsert":
			if in.ID == "" || in.IDProperty == "" {
				writeError(w, http.StatusBadRequest, "VALIDATION_ERROR", "upsert input needs id and idProperty")
				return
			}
			up := st.prop(in.IDProperty)
			if up == nil || !(up.Unique || (isContacts(object) && up.Name == "email")) {
				writeError(w, http.StatusBadRequest, "VALIDATION_ERROR", "idProperty is not a unique property")
				return
			}
			p.target = s.findBy(object, in.IDProperty, in.ID)
			if p.target == nil {
				p.props[in.IDProperty] = in.ID
			}
		}
		if p.err == nil {
			p.err = s.validate(object, st, p.props, p.target, i, claimed)
		}
		if p.err == nil {
			if cat := s.injected(in, p.props); cat != "" {
				p.err = &recErr{category: cat, code: cat, message: "injected record failure"}
			}
		}
		plans[i] = p
	}
	var failed []int
	for i, p := range plans {
		if p.err != nil {
			failed = append(failed, i)
		}
	}
	emailUpsert := kind == "upsert" && len(req.Inputs) > 0 && req.Inputs[0].IDProperty == "email"
	if len(failed) > 0 && (!allTraced || emailUpsert) {
		// Without a trace id on every input (or for email upserts, which
		// do not support partial success) HubSpot fails the whole batch.
		e := plans[failed[0]].err
		status := http.StatusBadRequest
		if e.category == "CONFLICT" {
			status = http.StatusConflict
		}
		writeJSON(w, status, map[string]any{
			"status":        "error",
			"message":       e.message,
			"correlationId": correlationID(),
			"category":      e.category,
			"errors":        e.details(),
		})
		return
	}
	started := s.now()
	var results, errs []map[string]any
	for _, p := range plans {
		if p.err != nil {
			ctx := map[string][]string{}
			if p.in.ObjectWriteTraceID != "" {
				ctx["objectWriteTraceId"] = []string{p.in.ObjectWriteTraceID}
			}
			if p.in.ID != "" {
				ctx["ids"] = []string{p.in.ID}
			}
			errs = append(errs, map[string]any{
				"status":   "error",
				"category": p.err.category,
				"message":  p.err.message,
				"context":  ctx,
				"errors":   p.err.details(),
				"links":    map[string]string{},
			})
			continue
		}
		rc, created := p.target, false
		if rc == nil {
			rc, created = s.newRecAt(object, p.props, started), true
		} else {
			st.set(rc, p.props)
			s.touch(object, rc, started)
		}
		sel := defaultReturned(object)
		for k := range p.props {
			sel = append(sel, k)
		}
		out := rc.json(st, object, sel, false)
		if p.in.ObjectWriteTraceID != "" {
			out["objectWriteTraceId"] = p.in.ObjectWriteTraceID
		}
		if kind == "upsert" {
			out["new"] = created
		}
		results = append(results, out)
	}
	status := http.StatusOK
	if kind == "create" {
		status = http.StatusCreated
	}
	if len(errs) > 0 {
		status = http.StatusMultiStatus
	}
	writeJSON(w, status, batchBody(results, errs, started))
}

// injected returns the category of a FailRecords failure for the input.
func (s *Server) injected(in writeJSONInput, props map[string]string) string {
	for _, k := range []string{in.ID, props["email"]} {
		if k == "" {
			continue
		}
		if cat, ok := s.failRecords[strings.ToLower(k)]; ok {
			return cat
		}
	}
	return ""
}

// validate checks one input's properties against the object's definitions,
// uniqueness and required properties; s.mu is held.
func (s *Server) validate(object string, st *objectStore, props map[string]string, target *rec, idx int, claimed map[string]int) *recErr {
	names := make([]string, 0, len(props))
	for k := range props {
		names = append(names, k)
	}
	sort.Strings(names)
	var missing []string
	for _, k := range names {
		if st.prop(k) == nil {
			missing = append(missing, k)
		}
	}
	if len(missing) > 0 {
		return missingPropsErr(missing)
	}
	for _, k := range names {
		v := props[k]
		p := st.prop(k)
		switch {
		case p.ReadOnly:
			return &recErr{category: "VALIDATION_ERROR", code: "READ_ONLY_VALUE", message: fmt.Sprintf("Property values were not valid: %q is a read only property", k)}
		case v == "":
			continue
		case p.Type == "enumeration":
			for _, part := range strings.Split(strings.TrimPrefix(v, ";"), ";") {
				if !contains(p.Options, part) {
					return &recErr{category: "VALIDATION_ERROR", code: "INVALID_OPTION", message: fmt.Sprintf("Property values were not valid: invalid option for %q", k)}
				}
			}
		case p.Type == "number":
			if _, err := strconv.ParseFloat(v, 64); err != nil {
				return &recErr{category: "VALIDATION_ERROR", code: "INVALID_INTEGER", message: fmt.Sprintf("Property values were not valid: %q is not a number", k)}
			}
		case p.Type == "datetime" || p.Type == "date":
			if _, ok := millis(v); !ok {
				return &recErr{category: "VALIDATION_ERROR", code: "INVALID_DATE", message: fmt.Sprintf("Property values were not valid: %q is not a date", k)}
			}
		case k == "email" && isContacts(object):
			if at := strings.IndexByte(v, '@'); at < 1 || at == len(v)-1 {
				return &recErr{category: "VALIDATION_ERROR", code: "INVALID_EMAIL", message: "Property values were not valid: invalid email"}
			}
		}
	}
	if target == nil {
		switch canonical(object) {
		case "companies":
			if props["name"] == "" && props["domain"] == "" {
				return &recErr{category: "VALIDATION_ERROR", code: "REQUIRED_PROPERTY", message: "Property values were not valid: a company needs a name or a domain"}
			}
		case "deals":
			for _, k := range []string{"dealname", "dealstage"} {
				if props[k] == "" {
					return &recErr{category: "VALIDATION_ERROR", code: "REQUIRED_PROPERTY", message: fmt.Sprintf("Property values were not valid: %q is required", k)}
				}
			}
		}
	}
	for _, p := range st.props {
		if !p.Required {
			continue
		}
		v, set := props[p.Name]
		if (target == nil && v == "") || (target != nil && set && v == "") {
			return &recErr{category: "VALIDATION_ERROR", code: "REQUIRED_PROPERTY", message: fmt.Sprintf("Property values were not valid: %q is required", p.Name)}
		}
	}
	for _, u := range st.uniqueProps(object) {
		v := props[u]
		if v == "" {
			continue
		}
		key := u + "\x00" + strings.ToLower(v)
		if other := s.findBy(object, u, v); other != nil && other != target {
			return &recErr{category: "CONFLICT", code: "OBJECT_ALREADY_EXISTS", message: "A record already exists with this value of " + u + ". Existing ID: " + other.id}
		}
		if j, ok := claimed[key]; ok && j != idx {
			return &recErr{category: "CONFLICT", code: "DUPLICATE_VALUE", message: "Another input in this batch has the same value of " + u}
		}
		claimed[key] = idx
	}
	return nil
}

func contains(list []string, v string) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

// serveToken is the OAuth v3 token endpoint (refresh_token grant).
func (s *Server) serveToken(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]any{"error": "invalid_request", "error_description": "malformed form body", "status": "BAD_REQUEST", "message": "malformed form body"})
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case r.PostForm.Get("grant_type") != "refresh_token":
		writeJSON(w, http.StatusBadRequest, map[string]any{"error": "unsupported_grant_type", "error_description": "only refresh_token is supported", "status": "BAD_GRANT_TYPE", "message": "only refresh_token is supported"})
	case r.PostForm.Get("client_id") != s.cfg.ClientID || r.PostForm.Get("client_secret") != s.cfg.ClientSecret:
		writeJSON(w, http.StatusBadRequest, map[string]any{"error": "invalid_client", "error_description": "client id or secret mismatch", "status": "BAD_CLIENT_ID", "message": "client id or secret mismatch"})
	case r.PostForm.Get("refresh_token") != s.cfg.RefreshToken:
		writeJSON(w, http.StatusBadRequest, map[string]any{"error": "invalid_grant", "error_description": "refresh token is invalid, expired or revoked", "status": "BAD_REFRESH_TOKEN", "message": "refresh token is invalid, expired or revoked"})
	default:
		s.tokenSeq++
		tok := "hubspottest-access-" + strconv.Itoa(s.tokenSeq) + "-" + correlationID()
		s.tokens[tok] = s.now().Add(s.cfg.TokenTTL)
		writeJSON(w, http.StatusOK, map[string]any{
			"token_type":    "bearer",
			"refresh_token": s.cfg.RefreshToken,
			"access_token":  tok,
			"expires_in":    int(s.cfg.TokenTTL / time.Second),
			"hub_id":        1234567,
			"scopes":        []string{"oauth", "crm.objects.contacts.read", "crm.objects.contacts.write"},
		})
	}
}
