package salesforcetest

import (
	"bytes"
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"time"
)

// checkJWT validates a JWT bearer assertion.
func (s *Server) checkJWT(r *http.Request, a string) error {
	parts := strings.Split(a, ".")
	if len(parts) != 3 {
		return errors.New("invalid assertion")
	}
	enc := base64.RawURLEncoding
	hb, err1 := enc.DecodeString(parts[0])
	cb, err2 := enc.DecodeString(parts[1])
	sig, err3 := enc.DecodeString(parts[2])
	if err1 != nil || err2 != nil || err3 != nil {
		return errors.New("invalid assertion")
	}
	var hdr struct {
		Alg string `json:"alg"`
	}
	var claims struct {
		Iss string `json:"iss"`
		Sub string `json:"sub"`
		Aud string `json:"aud"`
		Exp int64  `json:"exp"`
	}
	if json.Unmarshal(hb, &hdr) != nil || json.Unmarshal(cb, &claims) != nil || hdr.Alg != "RS256" {
		return errors.New("invalid assertion")
	}
	if s.cfg.JWTPublicKey != nil {
		sum := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
		if rsa.VerifyPKCS1v15(s.cfg.JWTPublicKey, crypto.SHA256, sum[:], sig) != nil {
			return errors.New("invalid assertion signature")
		}
	}
	if claims.Iss != s.cfg.ClientID {
		return errors.New("client identifier invalid")
	}
	if s.cfg.Username != "" && claims.Sub != s.cfg.Username {
		return errors.New("user hasn't approved this consumer")
	}
	switch strings.TrimRight(claims.Aud, "/") {
	case s.baseURL(r), "https://login.salesforce.com", "https://test.salesforce.com":
	default:
		return errors.New("audience is invalid")
	}
	now := s.now().Unix()
	if claims.Exp <= now {
		return errors.New("expired authorization code")
	}
	if claims.Exp > now+3*60+10 {
		return errors.New("expiration is too far in the future")
	}
	return nil
}

var (
	idRe    = regexp.MustCompile(`^[A-Za-z0-9]{15}([A-Za-z0-9]{3})?$`)
	emailRe = regexp.MustCompile(`^[^@\s]+@[^@\s]+\.[^@\s]+$`)
	dateRe2 = regexp.MustCompile(`^\d{4}-\d{2}-\d{2}$`)
)

type recError struct {
	StatusCode string   `json:"statusCode"`
	Message    string   `json:"message"`
	Fields     []string `json:"fields"`
}

type saveResult struct {
	ID      *string    `json:"id,omitempty"`
	Success bool       `json:"success"`
	Errors  []recError `json:"errors"`
	Created *bool      `json:"created,omitempty"`
}

// handleCollection serves sObject Collections create, update and upsert.
func (s *Server) handleCollection(w http.ResponseWriter, r *http.Request, kind, extField string) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 50<<20))
	if err != nil {
		writeError(w, http.StatusBadRequest, "JSON_PARSER_ERROR", "could not read the request body")
		return
	}
	if results, ok := s.collection(w, kind, r.PathValue("sobject"), extField, body, true); ok {
		writeJSON(w, http.StatusOK, results)
	}
}

// collection carries out a collections create, update or upsert of body
// and returns the results in request order; when the request fails as a
// whole it writes the error and reports false. refusals applies
// Config.RefuseBatches.
func (s *Server) collection(w http.ResponseWriter, kind, pathObject, extField string, body []byte, refusals bool) ([]saveResult, bool) {
	var req struct {
		AllOrNone bool                         `json:"allOrNone"`
		Records   []map[string]json.RawMessage `json:"records"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		writeError(w, http.StatusBadRequest, "JSON_PARSER_ERROR", "Unexpected character in the request body")
		return nil, false
	}
	if len(req.Records) == 0 {
		writeError(w, http.StatusBadRequest, "INVALID_FIELD", "Records are required")
		return nil, false
	}
	if len(req.Records) > 200 {
		writeError(w, http.StatusBadRequest, "EXCEEDED_ID_LIMIT", "record limit reached. cannot submit more than 200 records into this call")
		return nil, false
	}
	var ext fieldDef
	var upsertObj *sobject
	if kind == "upsert" {
		upsertObj = s.object(pathObject)
		fd, ok := s.visible(upsertObj, extField)
		if !ok || !fd.ExternalID {
			writeError(w, http.StatusNotFound, "NOT_FOUND", "Provided external ID field does not exist or is not accessible: "+extField)
			return nil, false
		}
		ext = fd
	}
	// Decode and check every record's type and field names first: a bad one
	// fails the whole request, as in Salesforce.
	recs := make([]map[string]any, len(req.Records))
	objs := make([]*sobject, len(req.Records))
	for i, raw := range req.Records {
		var attrs struct {
			Type string `json:"type"`
		}
		if a, ok := raw["attributes"]; !ok || json.Unmarshal(a, &attrs) != nil || attrs.Type == "" {
			writeError(w, http.StatusBadRequest, "INVALID_TYPE", "Must send a concrete entity type.")
			return nil, false
		}
		o := s.object(attrs.Type)
		if o == nil || (upsertObj != nil && o != upsertObj) {
			writeError(w, http.StatusBadRequest, "INVALID_TYPE", fmt.Sprintf("sObject type '%s' is not supported.", attrs.Type))
			return nil, false
		}
		objs[i] = o
		rec := map[string]any{}
		for k, v := range raw {
			if k == "attributes" {
				continue
			}
			fd, ok := o.byName[strings.ToLower(k)]
			if !ok {
				writeError(w, http.StatusBadRequest, "INVALID_FIELD", fmt.Sprintf("No such column '%s' on sobject of type %s", k, o.name))
				return nil, false
			}
			val, err := decodeValue(v)
			if err != nil {
				writeError(w, http.StatusBadRequest, "JSON_PARSER_ERROR", "Cannot deserialize value for field "+fd.Name)
				return nil, false
			}
			rec[fd.Name] = val
		}
		recs[i] = rec
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if refusals {
		if status, code, msg := s.refuseBatch(body); status != 0 {
			writeError(w, status, code, msg)
			return nil, false
		}
	}
	// One DML operation: every record it writes gets the same stamp.
	now := s.stamp()
	// Duplicate external ids within one upsert fail each record concerned.
	dupExt := map[string]int{}
	if kind == "upsert" {
		for _, rec := range recs {
			if v, ok := rec[ext.Name].(string); ok && v != "" {
				dupExt[strings.ToLower(v)]++
			}
		}
	}
	type undo struct {
		id   string
		prev *record // nil: the record was created
	}
	var undos []undo
	results := make([]saveResult, len(recs))
	failed := false
	for i, rec := range recs {
		o := objs[i]
		var res saveResult
		var target *record
		create := kind == "create"
		var e *recError
		switch kind {
		case "update":
			id, _ := rec["Id"].(string)
			delete(rec, "Id")
			switch {
			case id == "":
				e = &recError{"MISSING_ARGUMENT", "Id not specified in an update call", nil}
			case !idRe.MatchString(id):
				e = &recError{"MALFORMED_ID", "malformed id " + id, []string{"Id"}}
			default:
				res.ID = &id
				target = s.records[id]
				if target == nil && len(id) == 15 {
					target = s.records[id18(id)]
				}
				switch {
				case target == nil:
					e = &recError{"INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id", nil}
				case s.objOf(target) != o:
					e = &recError{"MALFORMED_ID", o.name + " ID: id value of incorrect type: " + id, []string{"Id"}}
				case target.deleted:
					e = &recError{"ENTITY_IS_DELETED", "entity is deleted", nil}
				default:
					e = convertedLead(target)
				}
			}
		case "upsert":
			v, _ := rec[ext.Name].(string)
			if _, hasID := rec["Id"]; hasID {
				e = &recError{"INVALID_FIELD", "Id may not be set in an upsert by external id", []string{"Id"}}
			} else if v == "" {
				e = &recError{"REQUIRED_FIELD_MISSING", "Required fields are missing: [" + ext.Name + "]", []string{ext.Name}}
			} else if dupExt[strings.ToLower(v)] > 1 {
				e = &recError{"DUPLICATE_EXTERNAL_ID", "Duplicate external id specified: " + v, []string{ext.Name}}
			} else {
				target = s.findExt(o, ext.Name, v, nil)
				create = target == nil
				if target != nil {
					e = convertedLead(target)
				}
				c := create
				res.Created = &c
				if target != nil {
					res.ID = &target.id
				}
			}
		case "create":
			if _, hasID := rec["Id"]; hasID {
				e = &recError{"INVALID_FIELD", "cannot specify Id in an insert call", []string{"Id"}}
			}
		}
		if e == nil {
			e = s.hiddenIn(o, rec)
		}
		if e == nil {
			e = s.recordFault(rec, target)
		}
		if e == nil {
			e = s.validate(o, rec, target, create)
		}
		if e != nil {
			failed = true
			res.Success = false
			res.Errors = []recError{*e}
			if kind == "upsert" {
				res.Created = nil
			}
			results[i] = res
			continue
		}
		if create {
			target = s.newRecordOf(o, now)
			undos = append(undos, undo{id: target.id})
		} else {
			undos = append(undos, undo{id: target.id, prev: target.clone()})
		}
		for k, v := range rec {
			if sv, ok := v.(string); ok && sv == "" {
				v = nil
			}
			s.setField(target, k, v)
		}
		target.modified, target.stamp, target.modifiedBy = now, now, s.cfg.UserID
		id := target.id
		res.ID = &id
		res.Success = true
		res.Errors = []recError{}
		results[i] = res
	}
	if req.AllOrNone && failed {
		created := map[string]bool{}
		for j := len(undos) - 1; j >= 0; j-- {
			u := undos[j]
			s.unindexRecord(s.records[u.id])
			if u.prev == nil {
				delete(s.records, u.id)
				created[u.id] = true
			} else {
				s.records[u.id] = u.prev
				s.indexRecord(u.prev)
			}
		}
		if len(created) > 0 {
			s.order = slices.DeleteFunc(s.order, func(x string) bool { return created[x] })
		}
		for i := range results {
			if results[i].Success {
				results[i] = saveResult{Success: false, Errors: []recError{{"ALL_OR_NONE_OPERATION_ROLLED_BACK",
					"Record rolled back because not all records were valid and the request was using AllOrNone header", []string{}}}}
			}
		}
	}
	s.publish(savedChanges(s, kind, recs, results)...)
	for i := range results {
		if results[i].Errors == nil {
			results[i].Errors = []recError{}
		}
		for j := range results[i].Errors {
			if results[i].Errors[j].Fields == nil {
				results[i].Errors[j].Fields = []string{}
			}
		}
	}
	return results, true
}

// findExt returns the oldest live record but except whose field (a unique
// or external-id field) holds v, compared case-insensitively; s.mu is held.
func (s *Server) findExt(o *sobject, field, v string, except *record) *record {
	if idx := o.uniq[field]; idx != nil {
		var found *record
		for _, rec := range idx[foldKey(v)] {
			if rec != except && !rec.deleted && (found == nil || rec.seq < found.seq) {
				found = rec
			}
		}
		return found
	}
	for _, id := range s.order {
		rec := s.records[id]
		if rec == except || rec.deleted || s.objOf(rec) != o {
			continue
		}
		if have, ok := rec.fields[field].(string); ok && strings.EqualFold(have, v) {
			return rec
		}
	}
	return nil
}

// recordFault returns an injected failure for rec; s.mu is held.
func (s *Server) recordFault(rec map[string]any, target *record) *recError {
	var keys []string
	for _, f := range []string{"Email", s.cfg.ExternalIDField} {
		if v, ok := rec[f].(string); ok {
			keys = append(keys, v)
		}
		if target != nil {
			if v, ok := target.fields[f].(string); ok {
				keys = append(keys, v)
			}
		}
	}
	if target != nil {
		keys = append(keys, target.id)
	}
	for _, k := range keys {
		f := s.recordFaults[strings.ToLower(k)]
		if f == nil {
			continue
		}
		if f.times > 0 {
			f.times--
			if f.times == 0 {
				delete(s.recordFaults, strings.ToLower(k))
			}
		}
		return &recError{f.code, f.message, []string{}}
	}
	return nil
}

// validate checks a record's values; s.mu is held.
func (s *Server) validate(o *sobject, rec map[string]any, target *record, create bool) *recError {
	names := make([]string, 0, len(rec))
	for k := range rec {
		names = append(names, k)
	}
	slices.Sort(names)
	for _, k := range names {
		v := rec[k]
		fd := o.byName[strings.ToLower(k)]
		if (create && !fd.Createable) || (!create && !fd.Updateable) {
			return &recError{"INVALID_FIELD_FOR_INSERT_UPDATE", "Unable to create/update fields: " + fd.Name, []string{fd.Name}}
		}
		if sv, ok := v.(string); ok && sv == "" {
			v = nil
		}
		if v == nil {
			if !fd.Nillable {
				if fd.Type == "boolean" {
					return &recError{"INVALID_TYPE_ON_FIELD_IN_RECORD", fd.Name + ": value not of required type", []string{fd.Name}}
				}
				return &recError{"REQUIRED_FIELD_MISSING", "Required fields are missing: [" + fd.Name + "]", []string{fd.Name}}
			}
			// Clearing a restricted picklist is allowed; only a required
			// field (handled above) refuses null.
			continue
		}
		bad := func() *recError {
			return &recError{"INVALID_TYPE_ON_FIELD_IN_RECORD", fd.Name + ": value not of required type", []string{fd.Name}}
		}
		switch baseType(fd.Type) {
		case "id":
			id, e := s.checkRef(fd, v)
			if e != nil {
				return e
			}
			rec[k] = id
		case "boolean":
			if _, ok := v.(bool); !ok {
				return bad()
			}
		case "double":
			if _, ok := numberValue(v); !ok {
				return bad()
			}
		case "datetime":
			sv, ok := v.(string)
			if !ok {
				return bad()
			}
			if _, err := parseAnyTime(sv); err != nil {
				return bad()
			}
		case "date":
			sv, ok := v.(string)
			if !ok || !dateRe2.MatchString(sv) {
				return bad()
			}
			if _, err := time.Parse("2006-01-02", sv); err != nil {
				return bad()
			}
		default:
			sv, ok := v.(string)
			if !ok {
				return bad()
			}
			if fd.Length > 0 && len([]rune(sv)) > fd.Length {
				return &recError{"STRING_TOO_LONG", fd.Name + ": data value too large", []string{fd.Name}}
			}
			if fd.Type == "email" && !emailRe.MatchString(sv) {
				return &recError{"INVALID_EMAIL_ADDRESS", fd.Name + ": invalid email address", []string{fd.Name}}
			}
			if fd.Restricted && !slices.Contains(fd.Picklist, sv) {
				return &recError{"INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST", fd.Name + ": bad value for restricted picklist field", []string{fd.Name}}
			}
			if fd.Unique && s.findExt(o, fd.Name, sv, target) != nil {
				return &recError{"DUPLICATE_VALUE", "duplicate value found: " + fd.Name + " duplicates value on another record", []string{}}
			}
		}
	}
	if create {
		for _, f := range o.required {
			if v, ok := rec[f]; !ok || v == nil || v == "" {
				return &recError{"REQUIRED_FIELD_MISSING", "Required fields are missing: [" + f + "]", []string{f}}
			}
		}
	}
	return nil
}

// checkRef checks a reference field's value and returns the 18-character
// id it refers to; s.mu is held. The id must be well formed, of the
// field's object, and of a live record.
func (s *Server) checkRef(fd fieldDef, v any) (string, *recError) {
	id, ok := v.(string)
	if !ok || !idRe.MatchString(id) {
		return "", &recError{"MALFORMED_ID", fd.Name + ": id value of incorrect type", []string{fd.Name}}
	}
	if o := s.objectOfID(id); o == nil || o.name != fd.RefTo {
		return "", &recError{"FIELD_INTEGRITY_EXCEPTION", fd.Name + ": id value of incorrect type: " + id, []string{fd.Name}}
	}
	target := s.lookupID(id)
	switch {
	case target == nil:
		return "", &recError{"INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id", []string{fd.Name}}
	case target.deleted:
		return "", &recError{"ENTITY_IS_DELETED", "entity is deleted", []string{fd.Name}}
	}
	return target.id, nil
}

// convertedLead refuses a write to a converted Lead, as Salesforce does.
func convertedLead(target *record) *recError {
	if target.obj != nil && target.obj.name == objLead && target.fields["IsConverted"] == true {
		return &recError{"CANNOT_UPDATE_CONVERTED_LEAD", "cannot reference converted lead", []string{}}
	}
	return nil
}

// decodeValue decodes one field value of a write; numbers become float64,
// or json.Number when float64 cannot hold their digits.
func decodeValue(raw json.RawMessage) (any, error) {
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return nil, err
	}
	if n, ok := v.(json.Number); ok {
		return exactNumber(n), nil
	}
	return v, nil
}

// hiddenIn refuses a record that names a field hidden from the integration
// user (HideField), as Salesforce does for a field without read access or
// deleted: INVALID_FIELD "No such column"; s.mu is held.
func (s *Server) hiddenIn(o *sobject, rec map[string]any) *recError {
	names := make([]string, 0, len(rec))
	for k := range rec {
		names = append(names, k)
	}
	slices.Sort(names)
	for _, k := range names {
		if s.hidden[hiddenKey(o, k)] {
			return &recError{"INVALID_FIELD", fmt.Sprintf("No such column '%s' on sobject of type %s", k, o.name), []string{}}
		}
	}
	return nil
}
