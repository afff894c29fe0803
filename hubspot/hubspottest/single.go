package hubspottest

import (
	"net/http"
	"net/url"
)

// queryList reads a list query parameter in either form clients send it:
// one comma-joined value (properties=a,b) or the parameter repeated
// (properties=a&properties=b, the OpenAPI files' form/explode style).
func queryList(q url.Values, name string) []string {
	var out []string
	for _, v := range q[name] {
		out = append(out, splitList(v)...)
	}
	return out
}

// singleInput is the body of a single-record create or update
// (SimplePublicObjectInputForCreate, SimplePublicObjectInput); associations
// are accepted and ignored.
type singleInput struct {
	Properties   map[string]*string `json:"properties"`
	Associations []any              `json:"associations"`
}

func (in singleInput) props() map[string]string {
	out := make(map[string]string, len(in.Properties))
	for k, v := range in.Properties {
		if v != nil {
			out[k] = *v
		} else {
			out[k] = ""
		}
	}
	return out
}

// writeRecErr answers a single-record write's failure as HubSpot does: the
// error body with the category's status (409 for CONFLICT, 404 for
// OBJECT_NOT_FOUND, 500 for INTERNAL_ERROR, else 400).
func writeRecErr(w http.ResponseWriter, e *recErr) {
	status := http.StatusBadRequest
	switch e.category {
	case "CONFLICT":
		status = http.StatusConflict
	case "OBJECT_NOT_FOUND":
		status = http.StatusNotFound
	case "INTERNAL_ERROR":
		status = http.StatusInternalServerError
	}
	writeJSON(w, status, map[string]any{
		"status":        "error",
		"message":       e.message,
		"correlationId": correlationID(),
		"category":      e.category,
		"errors":        e.details(),
	})
}

// written renders rec after a write: the default properties and those
// written.
func (s *Server) written(st *objectStore, object string, rc *rec, props map[string]string) map[string]any {
	sel := defaultReturned(object)
	for k := range props {
		sel = append(sel, k)
	}
	return rc.json(st, object, sel, false)
}

// serveCreate is POST /crm/v3/objects/{type}: 201 with the new record.
func (s *Server) serveCreate(w http.ResponseWriter, r *http.Request, object string) {
	var in singleInput
	if _, ok := readBody(w, r, &in); !ok {
		return
	}
	if in.Properties == nil {
		writeError(w, http.StatusBadRequest, "VALIDATION_ERROR", "properties are required")
		return
	}
	props := in.props()
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.store(object)
	e := s.validate(object, st, props, nil, 0, map[string]int{})
	if e == nil {
		if cat := s.injected(writeJSONInput{}, props); cat != "" {
			e = &recErr{category: cat, code: cat, message: "injected record failure"}
		}
	}
	if e != nil {
		writeRecErr(w, e)
		return
	}
	rc := s.newRecAt(object, props, s.now())
	writeJSON(w, http.StatusCreated, s.written(st, object, rc, props))
}

// serveUpdate is PATCH /crm/v3/objects/{type}/{id}[?idProperty=]: 200 with
// the record, 404 when no live record has that id.
func (s *Server) serveUpdate(w http.ResponseWriter, r *http.Request, object, id string) {
	var in singleInput
	if _, ok := readBody(w, r, &in); !ok {
		return
	}
	props := in.props()
	idp := r.URL.Query().Get("idProperty")
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.store(object)
	if idp != "" && idp != "hs_object_id" {
		if p := st.prop(idp); p == nil || !(p.Unique || (isContacts(object) && p.Name == "email")) {
			writeError(w, http.StatusBadRequest, "VALIDATION_ERROR", "idProperty is not a unique property")
			return
		}
	}
	target := s.findBy(object, idp, id)
	if target == nil {
		writeError(w, http.StatusNotFound, "OBJECT_NOT_FOUND", "resource not found")
		return
	}
	e := s.validate(object, st, props, target, 0, map[string]int{})
	if e == nil {
		if cat := s.injected(writeJSONInput{ID: target.id}, props); cat != "" {
			e = &recErr{category: cat, code: cat, message: "injected record failure"}
		}
	}
	if e != nil {
		writeRecErr(w, e)
		return
	}
	st.set(target, props)
	s.touch(object, target, s.now())
	writeJSON(w, http.StatusOK, s.written(st, object, target, props))
}

// serveArchive is DELETE /crm/v3/objects/{type}/{id}: the record moves to
// the recycle bin; 204 whether or not it existed, as HubSpot answers.
func (s *Server) serveArchive(w http.ResponseWriter, object, id string) {
	s.mu.Lock()
	if rc := s.store(object).recs[id]; rc != nil {
		s.archive(rc)
	}
	s.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}
