package salesforcetest

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// maxRetrieveIDs is the most ids one sObject Collections retrieve takes.
const maxRetrieveIDs = 2000

// lookupID returns the record with id (15 or 18 characters), deleted or
// not; s.mu is held.
func (s *Server) lookupID(id string) *record {
	if r := s.records[id]; r != nil {
		return r
	}
	if len(id) == 15 && idRe.MatchString(id) {
		return s.records[id18(id)]
	}
	return nil
}

// handleRetrieveMany serves sObject Collections retrieve: POST
// /composite/sobjects/{sobject} with {"ids":[...],"fields":[...]}, or GET
// with ids and fields as comma-separated query parameters. The answer is
// one entry per id in request order: the record with the fields asked for
// (and attributes), or null when no live record has that id.
func (s *Server) handleRetrieveMany(w http.ResponseWriter, r *http.Request) {
	o := s.objectOr404(w, r.PathValue("sobject"))
	if o == nil {
		return
	}
	var req struct {
		IDs    []string `json:"ids"`
		Fields []string `json:"fields"`
	}
	if r.Method == http.MethodPost {
		body, err := io.ReadAll(io.LimitReader(r.Body, 8<<20))
		if err != nil || json.Unmarshal(body, &req) != nil {
			writeError(w, http.StatusBadRequest, "JSON_PARSER_ERROR", "Unexpected character in the request body")
			return
		}
	} else {
		req.IDs = splitComma(r.URL.Query().Get("ids"))
		req.Fields = splitComma(r.URL.Query().Get("fields"))
	}
	switch {
	case len(req.IDs) == 0:
		writeError(w, http.StatusBadRequest, "REQUIRED_FIELD_MISSING", "At least 1 Id is required.")
		return
	case len(req.IDs) > maxRetrieveIDs:
		writeError(w, http.StatusBadRequest, "EXCEEDED_ID_LIMIT", fmt.Sprintf("record limit reached. cannot submit more than %d records into this call", maxRetrieveIDs))
		return
	case len(req.Fields) == 0:
		writeError(w, http.StatusBadRequest, "REQUIRED_FIELD_MISSING", "Required fields are missing: [fields]")
		return
	}
	names := make([]string, len(req.Fields))
	for i, f := range req.Fields {
		fd, ok := s.visible(o, strings.TrimSpace(f))
		if !ok {
			writeError(w, http.StatusBadRequest, "INVALID_FIELD", fmt.Sprintf("No such column '%s' on entity '%s'. "+
				"If you are attempting to use a custom field, be sure to append the '__c' after the custom field name. "+
				"Please reference your WSDL or the describe call for the appropriate names.", f, o.name))
			return
		}
		names[i] = fd.Name
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]any, len(req.IDs))
	for i, id := range req.IDs {
		if rec := s.lookupID(id); rec != nil && !rec.deleted && s.objOf(rec) == o {
			out[i] = s.render(r, rec, names)
		}
	}
	writeJSON(w, http.StatusOK, out)
}

func splitComma(v string) []string {
	var out []string
	for _, p := range strings.Split(v, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// handleDeleteMany serves sObject Collections delete: DELETE
// /composite/sobjects?ids=a,b[&allOrNone=true]. Each id gets a save
// result in request order; deleted records go to the recycle bin
// (IsDeleted, queryAll and getDeleted see them), all with one stamp.
func (s *Server) handleDeleteMany(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	ids := splitComma(q.Get("ids"))
	if len(ids) == 0 {
		writeError(w, http.StatusBadRequest, "REQUIRED_FIELD_MISSING", "At least 1 Id is required.")
		return
	}
	if len(ids) > 200 {
		writeError(w, http.StatusBadRequest, "EXCEEDED_ID_LIMIT", "record limit reached. cannot submit more than 200 records into this call")
		return
	}
	allOrNone := strings.EqualFold(q.Get("allOrNone"), "true")
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.stamp()
	results := make([]saveResult, len(ids))
	var targets []*record
	failed := false
	for i, id := range ids {
		var e *recError
		var rec *record
		switch {
		case !idRe.MatchString(id):
			e = &recError{"MALFORMED_ID", "malformed id " + id, []string{}}
		default:
			id := id
			results[i].ID = &id
			if rec = s.lookupID(id); rec == nil {
				e = &recError{"INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id", []string{}}
			} else if rec.deleted {
				e = &recError{"ENTITY_IS_DELETED", "entity is deleted", []string{}}
			} else {
				e = s.recordFault(map[string]any{}, rec)
			}
		}
		if e != nil {
			failed = true
			results[i].Errors = []recError{*e}
			continue
		}
		results[i].Success, results[i].Errors = true, []recError{}
		targets = append(targets, rec)
	}
	if allOrNone && failed {
		for i := range results {
			if results[i].Success {
				results[i] = saveResult{ID: results[i].ID, Errors: []recError{{"ALL_OR_NONE_OPERATION_ROLLED_BACK",
					"Record rolled back because not all records were valid and the request was using AllOrNone header", []string{}}}}
			}
		}
		targets = nil
	}
	for _, rec := range targets {
		s.deleteLocked(rec, now)
	}
	writeJSON(w, http.StatusOK, results)
}
