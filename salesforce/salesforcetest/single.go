package salesforcetest

import (
	"encoding/json"
	"io"
	"net/http"
	"time"
)

// singleBody reads a single-record write's body (the record's fields,
// without attributes) and returns it as a one-record collections request
// of type Contact, with extra fields set; it writes the error and reports
// false if the body is not a JSON object.
func singleBody(w http.ResponseWriter, r *http.Request, extra map[string]any) ([]byte, bool) {
	raw, err := io.ReadAll(io.LimitReader(r.Body, 50<<20))
	rec := map[string]json.RawMessage{}
	if err != nil || json.Unmarshal(raw, &rec) != nil {
		writeError(w, http.StatusBadRequest, "JSON_PARSER_ERROR", "Unexpected character in the request body")
		return nil, false
	}
	delete(rec, "attributes")
	for k, v := range extra {
		b, _ := json.Marshal(v)
		rec[k] = b
	}
	rec["attributes"] = json.RawMessage(`{"type":"Contact"}`)
	body, _ := json.Marshal(map[string]any{"allOrNone": false, "records": []any{rec}})
	return body, true
}

// writeSingleErr answers a single-record call whose record failed as
// Salesforce does: 404 when the record does not exist or is deleted, else
// 400, with the error as a top-level error body.
func writeSingleErr(w http.ResponseWriter, e recError) {
	switch e.StatusCode {
	case "INVALID_CROSS_REFERENCE_KEY", "MALFORMED_ID":
		writeError(w, http.StatusNotFound, "NOT_FOUND", "The requested resource does not exist")
	case "ENTITY_IS_DELETED":
		writeError(w, http.StatusNotFound, "ENTITY_IS_DELETED", "entity is deleted", []string{}...)
	default:
		writeError(w, http.StatusBadRequest, e.StatusCode, e.Message, e.Fields...)
	}
}

// handleCreateOne is POST /sobjects/Contact: 201 {"id","success","errors"}.
func (s *Server) handleCreateOne(w http.ResponseWriter, r *http.Request) {
	if !s.isContact(w, r.PathValue("sobject")) {
		return
	}
	body, ok := singleBody(w, r, nil)
	if !ok {
		return
	}
	res, ok := s.collection(w, "create", "", "", body, false)
	if !ok {
		return
	}
	if !res[0].Success {
		writeSingleErr(w, res[0].Errors[0])
		return
	}
	writeJSON(w, http.StatusCreated, map[string]any{"id": *res[0].ID, "success": true, "errors": []any{}})
}

// handleUpdateOne is PATCH /sobjects/Contact/{id}: 204.
func (s *Server) handleUpdateOne(w http.ResponseWriter, r *http.Request) {
	if !s.isContact(w, r.PathValue("sobject")) {
		return
	}
	body, ok := singleBody(w, r, map[string]any{"Id": r.PathValue("id")})
	if !ok {
		return
	}
	res, ok := s.collection(w, "update", "", "", body, false)
	if !ok {
		return
	}
	if !res[0].Success {
		writeSingleErr(w, res[0].Errors[0])
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// handleUpsertOne is PATCH /sobjects/Contact/{field}/{value}: 201 with
// created true for a new record, 200 with created false for an update.
func (s *Server) handleUpsertOne(w http.ResponseWriter, r *http.Request) {
	if !s.isContact(w, r.PathValue("sobject")) {
		return
	}
	field := r.PathValue("field")
	fd, ok := s.visible(s.contact, field)
	if !ok || !fd.ExternalID {
		writeError(w, http.StatusNotFound, "NOT_FOUND", "Provided external ID field does not exist or is not accessible: "+field)
		return
	}
	body, ok := singleBody(w, r, map[string]any{fd.Name: r.PathValue("value")})
	if !ok {
		return
	}
	res, ok := s.collection(w, "upsert", "Contact", fd.Name, body, false)
	if !ok {
		return
	}
	if !res[0].Success {
		writeSingleErr(w, res[0].Errors[0])
		return
	}
	status := http.StatusOK
	if *res[0].Created {
		status = http.StatusCreated
	}
	writeJSON(w, status, map[string]any{"id": *res[0].ID, "success": true, "errors": []any{}, "created": *res[0].Created})
}

// handleDeleteOne is DELETE /sobjects/Contact/{id}: 204, the record to the
// recycle bin.
func (s *Server) handleDeleteOne(w http.ResponseWriter, r *http.Request) {
	if !s.isContact(w, r.PathValue("sobject")) {
		return
	}
	id := r.PathValue("id")
	s.mu.Lock()
	defer s.mu.Unlock()
	rec := s.lookupID(id)
	switch {
	case rec == nil:
		writeError(w, http.StatusNotFound, "NOT_FOUND", "The requested resource does not exist")
		return
	case rec.deleted:
		writeError(w, http.StatusNotFound, "ENTITY_IS_DELETED", "entity is deleted", []string{}...)
		return
	}
	if e := s.recordFault(map[string]any{}, rec); e != nil {
		writeSingleErr(w, *e)
		return
	}
	s.deleteLocked(rec, s.stamp())
	w.WriteHeader(http.StatusNoContent)
}

// handleUpdated is getUpdated: GET /sobjects/Contact/updated/?start=&end=,
// the ids of live records whose SystemModstamp is in [start, end], with
// latestDateCovered; start must be within 30 days and precede end by more
// than a minute.
func (s *Server) handleUpdated(w http.ResponseWriter, r *http.Request) {
	o := s.objectOr404(w, r.PathValue("sobject"))
	if o == nil {
		return
	}
	start, err1 := parseAnyTime(r.URL.Query().Get("start"))
	end, err2 := parseAnyTime(r.URL.Query().Get("end"))
	if err1 != nil || err2 != nil {
		writeError(w, http.StatusBadRequest, "MALFORMED_QUERY", "start and end must be ISO-8601 dates")
		return
	}
	if !end.After(start.Add(time.Minute)) {
		writeError(w, http.StatusBadRequest, "INVALID_REPLICATION_DATE", "start must precede end by more than one minute")
		return
	}
	if start.Before(s.now().Add(-30 * 24 * time.Hour)) {
		writeError(w, http.StatusBadRequest, "INVALID_REPLICATION_DATE", "start date is too far in the past")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	ids := []string{}
	for _, id := range s.order {
		rec := s.records[id]
		if s.objOf(rec) == o && !rec.deleted && !rec.stamp.Before(start) && !rec.stamp.After(end) {
			ids = append(ids, id)
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"ids": ids, "latestDateCovered": end.UTC().Truncate(time.Minute).Format(dateTimeLayout)})
}

// handleGlobal is describeGlobal: GET /sobjects, listing the sObjects the
// fake holds.
func (s *Server) handleGlobal(w http.ResponseWriter, r *http.Request) {
	var list []any
	for _, o := range s.objectList {
		base := "/services/data/" + r.PathValue("version") + "/sobjects/" + o.name
		list = append(list, map[string]any{
			"name": o.name, "label": o.name, "labelPlural": o.plural, "keyPrefix": o.prefix, "custom": false,
			"createable": true, "updateable": true, "deletable": true, "queryable": true, "replicateable": true,
			"retrieveable": true, "searchable": o.name != objContactRole, "undeletable": o.name != objContactRole, "mergeable": o.mergeable,
			"urls": map[string]string{"sobject": base, "describe": base + "/describe", "rowTemplate": base + "/{ID}"},
		})
	}
	writeJSON(w, http.StatusOK, map[string]any{"encoding": "UTF-8", "maxBatchSize": 200, "sobjects": list})
}
