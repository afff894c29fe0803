package salesforce

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/crmsync/crmsync"
)

// ErrDeletedWindowLost is returned (wrapped) by Changes with Archived set when
// Salesforce no longer holds every deletion since the query's Since: it is
// older than the 15-day recycle-bin window, or the org's delete log starts
// later. The caller must reconcile in full instead.
// It wraps crmsync.ErrHistoryLost and is permanent: retrying cannot bring
// the window back.
var ErrDeletedWindowLost = fmt.Errorf("salesforce: deleted-records window lost: %w", crmsync.ErrHistoryLost)

// ErrConvertedLead matches (errors.Is) the per-record error of a write to a
// converted Lead, which Salesforce refuses with CANNOT_UPDATE_CONVERTED_LEAD:
// a converted Lead is read-only, and the person lives on in its
// ConvertedContactId (Record.MergedInto). The error is permanent.
var ErrConvertedLead = errors.New("salesforce: lead is converted")

// APIError is an error response of the REST API: the HTTP status and the
// first entry of Salesforce's JSON error array.
type APIError struct {
	// Call names the client call ("query", "update", ...).
	Call string
	// Status is the HTTP status code.
	Status int
	// ErrorCode is Salesforce's errorCode ("INVALID_FIELD", "NOT_FOUND", ...).
	ErrorCode string
	// Message is Salesforce's message. It is left out of Error() because
	// Salesforce messages may quote record values or query text.
	Message string
	// Fields lists the fields the error is about, if any.
	Fields []string

	field *crmsync.FieldError
}

// Unwrap returns a *crmsync.FieldError when the API refused the call for
// fields it does not know or hides from the user (INVALID_FIELD "No such
// column", INVALID_FIELD_FOR_INSERT_UPDATE), naming them; nil otherwise.
func (e *APIError) Unwrap() error {
	if e.field == nil {
		return nil
	}
	return e.field
}

// Is reports a 401, or a 403 that is not REQUEST_LIMIT_EXCEEDED, as
// crmsync.ErrUnauthorized.
func (e *APIError) Is(target error) bool {
	return target == crmsync.ErrUnauthorized &&
		(e.Status == 401 || (e.Status == 403 && e.ErrorCode != "REQUEST_LIMIT_EXCEEDED"))
}

// Error describes the failure by call, status, code and fields (never the message).
func (e *APIError) Error() string {
	s := fmt.Sprintf("salesforce: %s: http %d", e.Call, e.Status)
	if e.ErrorCode != "" {
		s += " " + e.ErrorCode
	}
	if len(e.Fields) > 0 {
		s += " (fields " + strings.Join(e.Fields, ", ") + ")"
	}
	return s
}

// RecordError is a per-record failure in an sObject Collections result.
type RecordError struct {
	// StatusCode is Salesforce's statusCode ("REQUIRED_FIELD_MISSING", ...).
	StatusCode string
	// Message is Salesforce's message. It is left out of Error() because
	// Salesforce messages may quote record values or query text.
	Message string
	// Fields lists the fields the error is about, if any.
	Fields []string

	field *crmsync.FieldError
}

// Unwrap returns a *crmsync.FieldError when the record was refused for
// fields the API does not know, hides from the user (INVALID_FIELD) or will
// not let it write (INVALID_FIELD_FOR_INSERT_UPDATE), naming them; nil
// otherwise.
func (e *RecordError) Unwrap() error {
	if e.field == nil {
		return nil
	}
	return e.field
}

// Is reports a refused write to a converted Lead
// (CANNOT_UPDATE_CONVERTED_LEAD) as ErrConvertedLead, and both that and a
// write to a deleted record (ENTITY_IS_DELETED naming no field, so not a
// reference) as crmsync.ErrRecordGone.
func (e *RecordError) Is(target error) bool {
	switch target {
	case ErrConvertedLead:
		return e.StatusCode == "CANNOT_UPDATE_CONVERTED_LEAD"
	case crmsync.ErrRecordGone:
		return e.StatusCode == "CANNOT_UPDATE_CONVERTED_LEAD" || (e.StatusCode == "ENTITY_IS_DELETED" && len(e.Fields) == 0)
	}
	return false
}

// Error describes the failure by status code and fields (never the message).
func (e *RecordError) Error() string {
	s := "salesforce: record: " + e.StatusCode
	if len(e.Fields) > 0 {
		s += " (fields " + strings.Join(e.Fields, ", ") + ")"
	}
	return s
}

// AuthError is a refusal from the OAuth token endpoint.
type AuthError struct {
	// Status is the HTTP status code.
	Status int
	// Code and Description are the OAuth error and error_description.
	Code        string
	Description string
}

// Error describes the token endpoint's refusal.
func (e *AuthError) Error() string {
	s := fmt.Sprintf("salesforce: token: http %d", e.Status)
	if e.Code != "" {
		s += " " + e.Code
	}
	if e.Description != "" {
		s += ": " + e.Description
	}
	return s
}

// DecodeError reports a response body that could not be understood: malformed
// or truncated JSON, an HTML page from a proxy, an unexpected shape, or a body
// over the size limit.
type DecodeError struct {
	// Call names the client call.
	Call string
	// Status is the HTTP status code.
	Status int
	// Reason says what was wrong.
	Reason string
	// Err is the underlying decoding error, if any.
	Err error
}

// Error describes what was wrong with the body.
func (e *DecodeError) Error() string {
	s := fmt.Sprintf("salesforce: %s: http %d: bad response: %s", e.Call, e.Status, e.Reason)
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// Unwrap returns the underlying decoding error.
func (e *DecodeError) Unwrap() error { return e.Err }

// transientStatusCodes are per-record status codes that a later retry can fix.
var transientStatusCodes = map[string]bool{
	"UNABLE_TO_LOCK_ROW":                true,
	"ALL_OR_NONE_OPERATION_ROLLED_BACK": true,
	"REQUEST_RUNNING_TOO_LONG":          true,
	"SERVER_UNAVAILABLE":                true,
	"UNKNOWN_EXCEPTION":                 true,
}

// IsTransientStatusCode reports whether a per-record statusCode is worth
// retrying (UNABLE_TO_LOCK_ROW and the like). Validation errors are not.
func IsTransientStatusCode(code string) bool { return transientStatusCodes[code] }

// noSuchColumn finds the field names in Salesforce's INVALID_FIELD message
// ("No such column 'Secret__c' on entity 'Contact'...", after the SOQL
// snippet and "ERROR at Row:1:Column:NN" on a query).
var noSuchColumn = regexp.MustCompile(`No such column '([A-Za-z][A-Za-z0-9_]{0,79})'`)

// refusedFields returns the fields an error says the API does not know,
// hides (field-level security) or will not write, or nil when the error is
// about something else. Only names are taken from the message, never values.
func refusedFields(code, message string, fields []string) []string {
	var names []string
	add := func(n string) {
		n = strings.TrimSpace(n)
		if identPattern.MatchString(n) && !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	switch code {
	case "INVALID_FIELD":
		for _, m := range noSuchColumn.FindAllStringSubmatch(message, -1) {
			add(m[1])
		}
	case "INVALID_FIELD_FOR_INSERT_UPDATE":
		for _, f := range fields {
			add(f)
		}
		if len(names) == 0 {
			// "Unable to create/update fields: A, B. Please check ..."
			if _, rest, ok := strings.Cut(message, "fields: "); ok {
				rest, _, _ = strings.Cut(rest, ". ")
				for _, f := range strings.Split(strings.TrimSuffix(rest, "."), ",") {
					add(f)
				}
			}
		}
	}
	return names
}

// withFieldError names, in err's *APIError, the fields the API refused for
// object (see APIError.Unwrap); it returns err.
func withFieldError(err error, object string) error {
	var ae *APIError
	if errors.As(err, &ae) && ae.field == nil {
		if names := refusedFields(ae.ErrorCode, ae.Message, ae.Fields); names != nil {
			ae.field = &crmsync.FieldError{System: "salesforce", Object: object, Fields: names}
		}
	}
	return err
}
