package crmsync

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Sentinel errors callers branch on with errors.Is.
var (
	// ErrNotFound is returned by Store methods when the thing asked for does not exist.
	ErrNotFound = errors.New("crmsync: not found")
	// ErrBusy is returned when another live run holds the lease for a key.
	ErrBusy = errors.New("crmsync: key is busy")
	// ErrLeaseLost is returned when a run's lease was taken over by another process:
	// the run may no longer commit step results or cursors.
	ErrLeaseLost = errors.New("crmsync: lease lost")
	// ErrDuplicateStep is returned when a step id is used twice in one run.
	ErrDuplicateStep = errors.New("crmsync: step id reused in run")
	// ErrDeadLettered is returned by Step when a step failed permanently and its
	// payload was parked in the dead-letter queue; the caller goes on with the next item.
	ErrDeadLettered = errors.New("crmsync: parked in dead-letter queue")
	// ErrDailyLimit is returned (wrapped) by a CRM client when the account's daily API
	// allocation is used up. A run stops with it instead of retrying.
	ErrDailyLimit = errors.New("crmsync: daily API limit reached")
	// ErrHistoryLost is returned (wrapped) by a CRM's Changes when it can no
	// longer list every change since the query's Since (Salesforce's
	// deleted-records window, say). The sync reports it and reads what the
	// API still holds.
	ErrHistoryLost = errors.New("crmsync: change history lost")
	// ErrUnauthorized is matched (errors.Is) by a CRM client's error when
	// the API refused the credentials or their scopes (HTTP 401, or a 403
	// that is not a rate limit). It says nothing about the records of the
	// call: the sync does not park them, the run stops and resumes once a
	// person has fixed the credentials.
	ErrUnauthorized = errors.New("crmsync: not authorized")
	// ErrRecordGone is matched (errors.Is) by a CRM client's per-record
	// write error when the record the op updates is archived, deleted or
	// read-only for good (HubSpot: not found, and its id resolves to
	// nothing; Salesforce: ENTITY_IS_DELETED naming no field, or a converted
	// Lead). It says the record went away after the sync read it: the sync
	// neither parks the write nor links anything for it (the pair keeps its
	// old base), and handles the archive (or conversion) when it reads it.
	ErrRecordGone = errors.New("crmsync: record archived or deleted")
	// ErrRunClosed is returned when a finished run is used again.
	ErrRunClosed = errors.New("crmsync: run is closed")
)

// FieldError is returned (wrapped) by a CRM client when the API refused a
// call because it names fields that do not exist or that the integration
// user may not see (Salesforce INVALID_FIELD, HubSpot PROPERTY_DOESNT_EXIST).
// The sync drops such fields from its reads and writes, reports them, and
// goes on with the others. It never carries record values.
type FieldError struct {
	System, Object string
	// Fields names the refused fields, where the API says which.
	Fields []string
}

func (e *FieldError) Error() string {
	if len(e.Fields) == 0 {
		return fmt.Sprintf("%s: %s: a field is not available", e.System, e.Object)
	}
	return fmt.Sprintf("%s: %s: fields not available: %s", e.System, e.Object, strings.Join(e.Fields, ", "))
}

// PartialWriteError is the per-record error of a write that made or
// updated the record but not all of it: a CRM client that writes a
// relation with calls of its own after the record (HubSpot associations,
// Salesforce contact roles) returns it, in a WriteResult that keeps the
// record's ID and Created, when those calls failed. Fields names the op's
// fields that were not written; Err is why (Permanent when no retry fixes
// it). The sync links the record (it exists) and writes those fields again
// later; a permanent failure is also parked. Its text is Err's.
type PartialWriteError struct {
	Fields []string
	Err    error
}

func (e *PartialWriteError) Error() string {
	if e.Err == nil {
		return "crmsync: fields not written: " + strings.Join(e.Fields, ", ")
	}
	return e.Err.Error()
}

// Unwrap returns the cause.
func (e *PartialWriteError) Unwrap() error { return e.Err }

// ReferenceError is the per-record error of a write a CRM client returns
// when the API refused reference fields of the op because the records they
// name are archived or deleted: HubSpot refuses an association to an
// archived company, Salesforce a lookup or a contact role naming a deleted
// record (ENTITY_IS_DELETED). It is no verdict on the record: the sync
// writes the record without those fields, keeps those references out of
// the pair's merge while either side names them, and parks nothing. The
// WriteResult keeps the record's ID when the record itself was written.
// Its text is Err's; it never carries record values.
type ReferenceError struct {
	System, Object string
	// Fields names the op's refused fields; empty when the API does not
	// say which (the sync then takes every reference field of the op).
	Fields []string
	// IDs are the referenced ids refused, as the op wrote them; empty when
	// the API does not say (the sync then takes every id the fields name).
	IDs []string
	// Err is the client's own error, if any.
	Err error
}

func (e *ReferenceError) Error() string {
	if e.Err != nil {
		return e.Err.Error()
	}
	return fmt.Sprintf("%s: %s: references to archived or deleted records refused: %s", e.System, e.Object, strings.Join(e.Fields, ", "))
}

// Unwrap returns the client's error, if any.
func (e *ReferenceError) Unwrap() error { return e.Err }

// DuplicateError is the per-record error of a write a CRM client returns
// when the API refused it because another record already holds a value
// that must be unique there (HubSpot: a contact's email, a CONFLICT naming
// "Existing ID: N"). ExistingID names that record. On a create, the sync
// takes it as a match that appeared while the pass ran (the record made or restored
// after the pass's match found none): it reads the record back and
// matches it as a change, and parks the create only if that does not link
// the two. Its text never carries record values.
type DuplicateError struct {
	System, Object string
	// ExistingID is the id of the record holding the unique value.
	ExistingID string
}

func (e *DuplicateError) Error() string {
	return fmt.Sprintf("%s: %s: a unique value is held by record %s", e.System, e.Object, e.ExistingID)
}

// permanentError marks an error that retrying cannot fix.
type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// Permanent wraps err so that Step stops retrying it. Permanent(nil) is nil.
// The result unwraps to err, so errors.Is and errors.As see through it.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err: err}
}

// IsPermanent reports whether any error in err's chain was marked with
// [Permanent], or is a [*StepError] replayed from a permanent failure.
func IsPermanent(err error) bool {
	var p *permanentError
	if errors.As(err, &p) {
		return true
	}
	var se *StepError
	return errors.As(err, &se) && se.Permanent
}

// RateLimitError reports that a call was refused for rate and may be repeated
// after RetryAfter. Step waits RetryAfter before the next attempt and does not
// count the wait as a failed attempt.
type RateLimitError struct {
	RetryAfter time.Duration
	Err        error
}

func (e *RateLimitError) Error() string {
	return fmt.Sprintf("rate limited, retry after %s: %v", e.RetryAfter, e.Err)
}

func (e *RateLimitError) Unwrap() error { return e.Err }

// RetryAfter wraps err so that Step waits d before trying again. RetryAfter(d, nil) is nil.
func RetryAfter(d time.Duration, err error) error {
	if err == nil {
		return nil
	}
	return &RateLimitError{RetryAfter: d, Err: err}
}

// StepError is a step's failure as stored in the Store: a resumed run that
// replays a failed step gets it back instead of calling the step again.
type StepError struct {
	Run       RunID
	Step      string
	Message   string
	Permanent bool
}

func (e *StepError) Error() string {
	return fmt.Sprintf("crmsync: run %s step %q failed: %s", e.Run, e.Step, e.Message)
}
