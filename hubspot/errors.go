package hubspot

import (
	"fmt"
	"net/http"
	"regexp"
	"strconv"

	"github.com/crmsync/crmsync"
)

// APIError is a HubSpot error response: a non-2xx status with HubSpot's
// error body. Its Error text names the call, status, category and correlation
// id but never the message, which may quote record values; read Message for it.
type APIError struct {
	// Call names the client call ("search contacts", "batch/create contacts").
	Call string
	// Status is the HTTP status code.
	Status int
	// Category is HubSpot's error category ("VALIDATION_ERROR", "RATE_LIMITS").
	Category string
	// SubCategory is HubSpot's finer category, if any.
	SubCategory string
	// PolicyName is the rate-limit policy of a 429 ("TEN_SECONDLY_ROLLING", "DAILY").
	PolicyName string
	// Message is HubSpot's human-readable message. It may quote record values:
	// do not log it.
	Message string
	// CorrelationID identifies the request to HubSpot support.
	CorrelationID string
	// Object is the object type of the call, where it has one.
	Object string
	// details are the error's "errors" entries.
	details []errorDetail
}

// fieldError returns a *crmsync.FieldError naming the properties the error
// says do not exist, or nil.
func (e *APIError) fieldError() *crmsync.FieldError {
	if names := missingProperties(e.Message, e.details); len(names) > 0 {
		return &crmsync.FieldError{System: "hubspot", Object: e.Object, Fields: names}
	}
	return nil
}

// Unwrap returns a *crmsync.FieldError when HubSpot refused the call for
// properties that do not exist, else nil.
func (e *APIError) Unwrap() error {
	if fe := e.fieldError(); fe != nil {
		return fe
	}
	return nil
}

// Error names the call, status, category, policy and correlation id.
// Is reports a 401 or a 403 for missing scopes as crmsync.ErrUnauthorized.
func (e *APIError) Is(target error) bool {
	return target == crmsync.ErrUnauthorized && (e.Status == http.StatusUnauthorized || e.Status == http.StatusForbidden)
}

func (e *APIError) Error() string {
	s := "hubspot: " + e.Call + ": http " + strconv.Itoa(e.Status)
	if e.Category != "" {
		s += " " + e.Category
	}
	if e.PolicyName != "" {
		s += " policy " + e.PolicyName
	}
	if e.CorrelationID != "" {
		s += " (correlation id " + e.CorrelationID + ")"
	}
	return s
}

// DecodeError reports a response the client could not use: malformed or
// truncated JSON, an HTML page, a 2xx carrying an error body, or a body over
// the size cap. It is transient: the next attempt may get a good response.
type DecodeError struct {
	// Call names the client call.
	Call string
	// Status is the HTTP status code of the response.
	Status int
	// Reason says what was wrong ("malformed json", "html body", "body too large").
	Reason string
	// Err is the underlying decoder error, if any.
	Err error
}

// Error names the call, status and reason.
func (e *DecodeError) Error() string {
	s := fmt.Sprintf("hubspot: %s: http %d: %s", e.Call, e.Status, e.Reason)
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// Unwrap returns the decoder's error.
func (e *DecodeError) Unwrap() error { return e.Err }

// RecordError is a per-record failure from a batch call (a 207 multi-status
// error, or an op the client refused before sending). Its Error text names the
// op's index, key and category, never the record's values.
type RecordError struct {
	// Index is the op's index in the Write call.
	Index int
	// Key is the op's idempotency key (its objectWriteTraceId), if it had one.
	Key string
	// Status is the per-record status HubSpot reported ("error"), if any.
	Status string
	// Category is HubSpot's error category ("VALIDATION_ERROR", "CONFLICT").
	Category string
	// Message is HubSpot's message. It may quote record values: do not log it.
	Message string
	// ExistingID is, on a CONFLICT, the id of the record that holds the
	// unique value already (HubSpot's "Existing ID: N"), if the message
	// names one.
	ExistingID string
	// Err is the cause where the client knows more: a *crmsync.FieldError
	// for properties HubSpot does not know.
	Err error
}

// Unwrap returns the cause, if any.
func (e *RecordError) Unwrap() error { return e.Err }

// Error names the op's index, key and category, and the existing record's
// id on a conflict.
func (e *RecordError) Error() string {
	s := "hubspot: record " + strconv.Itoa(e.Index)
	if e.Key != "" {
		s += " (key " + strconv.Quote(e.Key) + ")"
	}
	s += ": " + e.Category
	if e.ExistingID != "" {
		s += " (existing id " + e.ExistingID + ")"
	}
	return s
}

// existingIDPattern finds the id in HubSpot's conflict messages ("... Existing
// ID: 12345"); only digits are taken, never a value the message quotes.
var existingIDPattern = regexp.MustCompile(`Existing ID: ([0-9]+)`)

// existingID returns the record id a conflict message names, or "".
func existingID(message string) string {
	if m := existingIDPattern.FindStringSubmatch(message); m != nil {
		return m[1]
	}
	return ""
}

// UnknownOutcomeError reports a call that is not idempotent (batch create)
// whose request may have landed but whose response was lost: a 5xx or a
// dropped connection. The client does not send it again; the caller decides
// (an upsert on a unique property is safe to send again, a blind create is
// not). It is transient.
type UnknownOutcomeError struct {
	// Call names the client call.
	Call string
	// Err is the failure that lost the response.
	Err error
}

// Error names the call and the failure.
func (e *UnknownOutcomeError) Error() string {
	return "hubspot: " + e.Call + ": outcome unknown, not sent again: " + e.Err.Error()
}

// Unwrap returns the failure.
func (e *UnknownOutcomeError) Unwrap() error { return e.Err }

// permanentCategories are per-record error categories no retry can fix.
var permanentCategories = map[string]bool{
	"VALIDATION_ERROR":       true,
	"CONFLICT":               true,
	"OBJECT_ALREADY_EXISTS":  true,
	"OBJECT_NOT_FOUND":       true,
	"INVALID_PARAMS":         true,
	"PROPERTY_DOESNT_EXIST":  true,
	"MISSING_SCOPES":         true,
	"INVALID_AUTHENTICATION": true,
	"BAD_REQUEST":            true,
	"INVALID_EMAIL":          true,
	"DUPLICATE_VALUE":        true,
}
