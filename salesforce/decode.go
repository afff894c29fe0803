package salesforce

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/big"
	"strconv"
	"strings"
	"time"

	"github.com/crmsync/crmsync"
)

// bodyKind says what a response body looks like before it is decoded.
func bodyKind(body []byte) string {
	b := bytes.TrimSpace(body)
	switch {
	case len(b) == 0:
		return "empty"
	case b[0] == '<':
		return "html"
	case b[0] == '[':
		return "array"
	case b[0] == '{':
		return "object"
	}
	return "other"
}

// sfError is one entry of a top-level error array.
type sfError struct {
	Message   string   `json:"message"`
	ErrorCode string   `json:"errorCode"`
	Fields    []string `json:"fields"`
}

// decodeError turns a non-2xx body into an *APIError; a body that is not
// Salesforce's error array still yields an *APIError with the status alone.
func decodeError(call string, status int, body []byte) *APIError {
	e := &APIError{Call: call, Status: status}
	switch bodyKind(body) {
	case "array":
		var errs []sfError
		if json.Unmarshal(body, &errs) == nil && len(errs) > 0 {
			e.ErrorCode, e.Message, e.Fields = errs[0].ErrorCode, errs[0].Message, errs[0].Fields
		}
	case "object":
		// Some endpoints (and proxies) answer with a single object.
		var one sfError
		if json.Unmarshal(body, &one) == nil {
			e.ErrorCode, e.Message, e.Fields = one.ErrorCode, one.Message, one.Fields
		}
	}
	return e
}

// errorInArray reports an error array where a success body was expected: a 200
// carrying [{"errorCode": ...}].
func errorInArray(call string, status int, body []byte) *APIError {
	if bodyKind(body) != "array" {
		return nil
	}
	var errs []map[string]json.RawMessage
	if json.Unmarshal(body, &errs) != nil || len(errs) == 0 {
		return nil
	}
	if _, ok := errs[0]["errorCode"]; !ok {
		return nil
	}
	return decodeError(call, status, body)
}

// expectObject checks that body is a JSON object, or returns the typed error
// for what it is instead.
func expectObject(call string, status int, body []byte) error {
	switch k := bodyKind(body); k {
	case "object":
		return nil
	case "array":
		if e := errorInArray(call, status, body); e != nil {
			return e
		}
		return &DecodeError{Call: call, Status: status, Reason: "unexpected json array"}
	case "html":
		return &DecodeError{Call: call, Status: status, Reason: "html page instead of json"}
	default:
		return &DecodeError{Call: call, Status: status, Reason: k + " body instead of json"}
	}
}

// queryResult is one page of a SOQL query.
type queryResult struct {
	TotalSize      int
	Done           bool
	NextRecordsURL string
	Records        []crmsync.Record
	// RolesNext holds, by index in Records, the nextRecordsUrl of a
	// contact-role subquery result that did not fit in the page.
	RolesNext map[int]string
}

// decodeQuery decodes a /query or /queryAll page.
func decodeQuery(call string, status int, body []byte) (queryResult, error) {
	if err := expectObject(call, status, body); err != nil {
		return queryResult{}, err
	}
	var raw struct {
		TotalSize      *int                         `json:"totalSize"`
		Done           *bool                        `json:"done"`
		NextRecordsURL string                       `json:"nextRecordsUrl"`
		Records        []map[string]json.RawMessage `json:"records"`
	}
	if err := json.Unmarshal(body, &raw); err != nil {
		return queryResult{}, &DecodeError{Call: call, Status: status, Reason: "query result", Err: err}
	}
	if raw.Done == nil || raw.Records == nil {
		return queryResult{}, &DecodeError{Call: call, Status: status, Reason: "query result without done or records"}
	}
	if !*raw.Done && raw.NextRecordsURL == "" {
		return queryResult{}, &DecodeError{Call: call, Status: status, Reason: "query result not done but without nextRecordsUrl"}
	}
	q := queryResult{Done: *raw.Done, NextRecordsURL: raw.NextRecordsURL}
	if raw.TotalSize != nil {
		q.TotalSize = *raw.TotalSize
	}
	q.Records = make([]crmsync.Record, 0, len(raw.Records))
	for i, m := range raw.Records {
		r, err := decodeRecord(m)
		if err == nil {
			err = decodeRoles(m, &r, i, &q)
		}
		if err != nil {
			return queryResult{}, &DecodeError{Call: call, Status: status, Reason: fmt.Sprintf("record %d", i), Err: err}
		}
		q.Records = append(q.Records, r)
	}
	return q, nil
}

// decodeRecord turns one JSON record into a Record. Scalar values become
// string, float64, bool or nil, except numbers that float64 cannot hold
// exactly (above 2^53, or with more significant digits than float64 keeps),
// which become json.Number so that their digits survive; nested objects
// (relationships, subqueries) and the attributes key are left out. A
// MasterRecordId sets MergedInto.
func decodeRecord(m map[string]json.RawMessage) (crmsync.Record, error) {
	r := crmsync.Record{Fields: crmsync.Fields{}}
	for k, raw := range m {
		if k == "attributes" {
			continue
		}
		v, err := decodeScalar(raw)
		if err != nil {
			return crmsync.Record{}, fmt.Errorf("field %s: %w", k, err)
		}
		switch v.(type) {
		case string, float64, bool, nil, json.Number:
			r.Fields[k] = v
		default:
			continue
		}
	}
	id, _ := r.Fields["Id"].(string)
	r.ID = id
	if s, ok := r.Fields["SystemModstamp"].(string); ok {
		t, err := ParseDateTime(s)
		if err != nil {
			return crmsync.Record{}, errors.New("bad SystemModstamp")
		}
		r.ModifiedAt = t
	} else if s, ok := r.Fields["LastModifiedDate"].(string); ok {
		if t, err := ParseDateTime(s); err == nil {
			r.ModifiedAt = t
		}
	}
	if s, ok := r.Fields["CreatedDate"].(string); ok {
		if t, err := ParseDateTime(s); err == nil {
			r.CreatedAt = t
		}
	}
	if b, ok := r.Fields["IsDeleted"].(bool); ok {
		r.Archived = b
	}
	if s, ok := r.Fields["MasterRecordId"].(string); ok && r.Archived && idPattern.MatchString(s) {
		r.MergedInto = s
	}
	// A converted Lead lives on as its Contact.
	if s, ok := r.Fields["ConvertedContactId"].(string); ok && r.Fields["IsConverted"] == true && idPattern.MatchString(s) && r.MergedInto == "" {
		r.MergedInto = s
	}
	return r, nil
}

// childResult is a subquery's result nested in a parent record.
type childResult struct {
	Done           bool                         `json:"done"`
	NextRecordsURL string                       `json:"nextRecordsUrl"`
	Records        []map[string]json.RawMessage `json:"records"`
}

// decodeRoles reads the contact-role subquery of an Opportunity, when the
// record has one, into r.Fields[ContactRolesField]: the sorted contact ids,
// nil for none. A result that goes on in another page is noted in q.
func decodeRoles(m map[string]json.RawMessage, r *crmsync.Record, i int, q *queryResult) error {
	raw, ok := m[ContactRolesField]
	if !ok {
		return nil
	}
	ids, next, err := decodeChildIDs(raw)
	if err != nil {
		return err
	}
	r.Fields[ContactRolesField] = rolesField(ids)
	if next != "" {
		if q.RolesNext == nil {
			q.RolesNext = map[int]string{}
		}
		q.RolesNext[i] = next
	}
	return nil
}

// decodeChildIDs reads the ContactId of each row of a nested subquery
// result (null for no rows); next is its nextRecordsUrl when not done.
func decodeChildIDs(raw json.RawMessage) (ids []string, next string, err error) {
	if k := bodyKind(raw); k != "object" {
		if strings.TrimSpace(string(raw)) == "null" {
			return nil, "", nil
		}
		return nil, "", fmt.Errorf("%s: %s instead of a subquery result", ContactRolesField, k)
	}
	var res childResult
	if err := json.Unmarshal(raw, &res); err != nil {
		return nil, "", fmt.Errorf("%s: %w", ContactRolesField, err)
	}
	if !res.Done && res.NextRecordsURL == "" {
		return nil, "", fmt.Errorf("%s: not done but without nextRecordsUrl", ContactRolesField)
	}
	ids, err = contactIDs(res.Records)
	if err != nil {
		return nil, "", err
	}
	if !res.Done {
		next = res.NextRecordsURL
	}
	return sortIDs(ids), next, nil
}

// contactIDs reads the ContactId of contact-role rows.
func contactIDs(rows []map[string]json.RawMessage) ([]string, error) {
	ids := make([]string, 0, len(rows))
	for _, row := range rows {
		var id string
		if err := json.Unmarshal(row["ContactId"], &id); err != nil || !idPattern.MatchString(id) {
			return nil, fmt.Errorf("%s: a row without a ContactId", ContactRolesField)
		}
		ids = append(ids, id)
	}
	return ids, nil
}

// decodeScalar decodes one JSON value, numbers as by exactNumber.
func decodeScalar(raw json.RawMessage) (any, error) {
	b := bytes.TrimSpace(raw)
	if len(b) > 0 && (b[0] == '-' || (b[0] >= '0' && b[0] <= '9')) {
		var n json.Number
		if err := json.Unmarshal(b, &n); err != nil {
			return nil, err
		}
		return exactNumber(n), nil
	}
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		return nil, err
	}
	return v, nil
}

// exactNumber returns a JSON number as float64 when float64 holds it
// exactly as written (its shortest form is the same decimal value, as for
// 19.99 or 42), else as the json.Number itself: Salesforce numbers carry up
// to 18 digits, and 123456789012345678 as float64 would read back as
// 123456789012345680.
func exactNumber(n json.Number) any {
	f, err := strconv.ParseFloat(string(n), 64)
	if err != nil || math.IsInf(f, 0) {
		return n
	}
	if len(n) <= 15 && !strings.ContainsAny(string(n), "eE") {
		return f // at most 15 significant digits: float64 holds them
	}
	want, ok1 := new(big.Rat).SetString(string(n))
	got, ok2 := new(big.Rat).SetString(strconv.FormatFloat(f, 'g', -1, 64))
	if ok1 && ok2 && want.Cmp(got) == 0 {
		return f
	}
	return n
}

// collResult is one entry of an sObject Collections result.
type collResult struct {
	ID      string
	Success bool
	Created bool
	Errors  []RecordError
}

// decodeCollection decodes an sObject Collections result array of n entries.
func decodeCollection(call string, status int, body []byte, n int) ([]collResult, error) {
	switch k := bodyKind(body); k {
	case "array":
	case "html":
		return nil, &DecodeError{Call: call, Status: status, Reason: "html page instead of json"}
	default:
		return nil, &DecodeError{Call: call, Status: status, Reason: k + " body instead of a result array"}
	}
	if e := errorInArray(call, status, body); e != nil {
		return nil, e
	}
	var raw []struct {
		ID      *string `json:"id"`
		Success *bool   `json:"success"`
		Created bool    `json:"created"`
		Errors  []struct {
			StatusCode string   `json:"statusCode"`
			Message    string   `json:"message"`
			Fields     []string `json:"fields"`
		} `json:"errors"`
	}
	if err := json.Unmarshal(body, &raw); err != nil {
		return nil, &DecodeError{Call: call, Status: status, Reason: "collection result", Err: err}
	}
	if n >= 0 && len(raw) != n {
		return nil, &DecodeError{Call: call, Status: status, Reason: fmt.Sprintf("%d results for %d records", len(raw), n)}
	}
	out := make([]collResult, len(raw))
	for i, r := range raw {
		if r.Success == nil {
			return nil, &DecodeError{Call: call, Status: status, Reason: fmt.Sprintf("result %d without success", i)}
		}
		c := collResult{Success: *r.Success, Created: r.Created}
		if r.ID != nil {
			c.ID = *r.ID
		}
		for _, e := range r.Errors {
			c.Errors = append(c.Errors, RecordError{StatusCode: e.StatusCode, Message: e.Message, Fields: e.Fields})
		}
		if !c.Success && len(c.Errors) == 0 {
			c.Errors = []RecordError{{StatusCode: "UNKNOWN_EXCEPTION"}}
		}
		out[i] = c
	}
	return out, nil
}

// decodeSaveResult decodes a single-record save result ({"id","success","errors"}).
func decodeSaveResult(call string, status int, body []byte) (collResult, error) {
	if err := expectObject(call, status, body); err != nil {
		return collResult{}, err
	}
	rs, err := decodeCollection(call, status, append(append([]byte{'['}, body...), ']'), 1)
	if err != nil {
		return collResult{}, err
	}
	return rs[0], nil
}

// describeField is one field of a describe result.
type describeField struct {
	Name               string   `json:"name"`
	Type               string   `json:"type"`
	Nillable           bool     `json:"nillable"`
	Createable         bool     `json:"createable"`
	Updateable         bool     `json:"updateable"`
	Calculated         bool     `json:"calculated"`
	Unique             bool     `json:"unique"`
	ExternalID         bool     `json:"externalId"`
	DefaultedOnCreate  bool     `json:"defaultedOnCreate"`
	RestrictedPicklist bool     `json:"restrictedPicklist"`
	ReferenceTo        []string `json:"referenceTo"`
	PicklistValues     []struct {
		Value  string `json:"value"`
		Active bool   `json:"active"`
	} `json:"picklistValues"`
}

// decodeDescribe decodes GET /sobjects/{object}/describe into a Schema.
func decodeDescribe(call string, status int, body []byte) (crmsync.Schema, error) {
	if err := expectObject(call, status, body); err != nil {
		return crmsync.Schema{}, err
	}
	var raw struct {
		Name   string           `json:"name"`
		Fields *[]describeField `json:"fields"`
	}
	if err := json.Unmarshal(body, &raw); err != nil {
		return crmsync.Schema{}, &DecodeError{Call: call, Status: status, Reason: "describe result", Err: err}
	}
	if raw.Name == "" || raw.Fields == nil {
		return crmsync.Schema{}, &DecodeError{Call: call, Status: status, Reason: "describe result without name or fields"}
	}
	s := crmsync.Schema{Object: raw.Name, Fields: make([]crmsync.FieldSchema, 0, len(*raw.Fields))}
	for _, f := range *raw.Fields {
		fs := crmsync.FieldSchema{
			Name:       f.Name,
			Type:       fieldType(f.Type),
			Unique:     f.Unique || f.ExternalID,
			ReadOnly:   !f.Updateable || f.Calculated,
			Required:   f.Createable && !f.Nillable && !f.DefaultedOnCreate,
			Restricted: f.RestrictedPicklist,
		}
		if f.Type == "email" {
			fs.Format = "email"
		}
		if f.Type == "reference" && len(f.ReferenceTo) == 1 {
			fs.RefObject = f.ReferenceTo[0]
		}
		if fs.Type == crmsync.TypeEnum || fs.Type == crmsync.TypeMultiEnum {
			for _, p := range f.PicklistValues {
				if p.Active {
					fs.Options = append(fs.Options, p.Value)
				}
			}
		}
		s.Fields = append(s.Fields, fs)
	}
	return s, nil
}

// fieldType maps a Salesforce field type to the common FieldType.
func fieldType(t string) crmsync.FieldType {
	switch t {
	case "string", "textarea", "email", "phone", "url", "id", "encryptedstring", "combobox":
		return crmsync.TypeString
	case "double", "currency", "percent", "int", "long":
		return crmsync.TypeNumber
	case "boolean":
		return crmsync.TypeBool
	case "date":
		return crmsync.TypeDate
	case "datetime":
		return crmsync.TypeDateTime
	case "picklist":
		return crmsync.TypeEnum
	case "multipicklist":
		return crmsync.TypeMultiEnum
	case "reference":
		return crmsync.TypeReference
	}
	return crmsync.TypeOther
}

// token is a successful OAuth token response.
type token struct {
	AccessToken string
	InstanceURL string
	IssuedAt    time.Time
}

// decodeToken decodes an OAuth token endpoint response of any status.
func decodeToken(status int, body []byte) (token, error) {
	const call = "token"
	if status/100 != 2 {
		ae := &AuthError{Status: status}
		if bodyKind(body) == "object" {
			var e struct {
				Error       string `json:"error"`
				Description string `json:"error_description"`
			}
			if json.Unmarshal(body, &e) == nil {
				ae.Code, ae.Description = e.Error, e.Description
			}
		}
		return token{}, ae
	}
	if err := expectObject(call, status, body); err != nil {
		return token{}, err
	}
	var raw struct {
		AccessToken string `json:"access_token"`
		InstanceURL string `json:"instance_url"`
		IssuedAt    string `json:"issued_at"`
		Error       string `json:"error"`
	}
	if err := json.Unmarshal(body, &raw); err != nil {
		return token{}, &DecodeError{Call: call, Status: status, Reason: "token response", Err: err}
	}
	if raw.Error != "" {
		return token{}, &AuthError{Status: status, Code: raw.Error}
	}
	if raw.AccessToken == "" {
		return token{}, &DecodeError{Call: call, Status: status, Reason: "token response without access_token"}
	}
	t := token{AccessToken: raw.AccessToken, InstanceURL: raw.InstanceURL}
	if ms, err := strconv.ParseInt(raw.IssuedAt, 10, 64); err == nil {
		t.IssuedAt = time.UnixMilli(ms)
	}
	return t, nil
}

// deletedInfo is the part of a getDeleted response the client uses.
type deletedInfo struct {
	EarliestDateAvailable time.Time
	LatestDateCovered     time.Time
	IDs                   []string
}

// decodeDeleted decodes GET /sobjects/{object}/deleted/.
func decodeDeleted(call string, status int, body []byte) (deletedInfo, error) {
	if err := expectObject(call, status, body); err != nil {
		return deletedInfo{}, err
	}
	var raw struct {
		DeletedRecords []struct {
			ID string `json:"id"`
		} `json:"deletedRecords"`
		Earliest string `json:"earliestDateAvailable"`
		Latest   string `json:"latestDateCovered"`
	}
	if err := json.Unmarshal(body, &raw); err != nil {
		return deletedInfo{}, &DecodeError{Call: call, Status: status, Reason: "getDeleted result", Err: err}
	}
	var d deletedInfo
	var err error
	if raw.Earliest == "" {
		return deletedInfo{}, &DecodeError{Call: call, Status: status, Reason: "getDeleted result without earliestDateAvailable"}
	}
	if d.EarliestDateAvailable, err = ParseDateTime(raw.Earliest); err != nil {
		return deletedInfo{}, &DecodeError{Call: call, Status: status, Reason: "earliestDateAvailable", Err: err}
	}
	if raw.Latest != "" {
		if d.LatestDateCovered, err = ParseDateTime(raw.Latest); err != nil {
			return deletedInfo{}, &DecodeError{Call: call, Status: status, Reason: "latestDateCovered", Err: err}
		}
	}
	for _, r := range raw.DeletedRecords {
		d.IDs = append(d.IDs, r.ID)
	}
	return d, nil
}

// parseLimitInfo parses "api-usage=N/M" out of a Sforce-Limit-Info header.
func parseLimitInfo(h string) (used, max int64, ok bool) {
	for _, part := range strings.Split(h, ";") {
		k, v, found := strings.Cut(strings.TrimSpace(part), "=")
		if !found || strings.TrimSpace(k) != "api-usage" {
			continue
		}
		a, b, found := strings.Cut(strings.TrimSpace(v), "/")
		if !found {
			return 0, 0, false
		}
		u, err1 := strconv.ParseInt(a, 10, 64)
		m, err2 := strconv.ParseInt(b, 10, 64)
		if err1 != nil || err2 != nil || u < 0 || m <= 0 {
			return 0, 0, false
		}
		return u, m, true
	}
	return 0, 0, false
}
