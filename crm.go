package crmsync

import (
	"context"
	"log/slog"
	"strconv"
	"time"
)

// Fields holds a record's field values as decoded from the CRM's JSON: string,
// float64, bool or nil, and json.Number for a number float64 cannot hold
// exactly (its JSON form keeps every digit). A field that was not fetched has no key; a cleared field
// has a nil or "" value. Fields never prints or logs its values: record values
// are personal data.
type Fields map[string]any

// String reports how many fields there are, never their values.
func (f Fields) String() string { return "Fields(" + strconv.Itoa(len(f)) + " values redacted)" }

// LogValue redacts the values for log/slog.
func (f Fields) LogValue() slog.Value { return slog.StringValue(f.String()) }

// Record is one CRM record as the sync sees it.
type Record struct {
	// ID is the record's id in its own system.
	ID string `json:"id"`
	// Fields are the fetched field values.
	Fields Fields `json:"fields,omitempty"`
	// FieldTimes holds per-field change times where the API gives them (HubSpot
	// property history); it may be nil.
	FieldTimes map[string]time.Time `json:"field_times,omitempty"`
	// CreatedAt and ModifiedAt are the system's own record stamps.
	CreatedAt  time.Time `json:"created_at,omitzero"`
	ModifiedAt time.Time `json:"modified_at,omitzero"`
	// Archived reports a record archived (HubSpot) or deleted to the recycle bin (Salesforce).
	Archived bool `json:"archived,omitempty"`
	// MergedInto is set on a record that a merge took away: the id of the
	// record it was merged into (Salesforce MasterRecordId of a deleted
	// loser; for HubSpot, the id an old id now resolves to). The person
	// lives on in that record: the sync relinks, it never archives.
	MergedInto string `json:"merged_into,omitempty"`
	// MergedFrom lists the ids of records merged into this one, where the
	// API says (HubSpot hs_merged_object_ids).
	MergedFrom []string `json:"merged_from,omitempty"`
}

// LogValue logs the record id only.
func (r Record) LogValue() slog.Value { return slog.StringValue(r.ID) }

// ChangeQuery asks a CRM for one page of records changed in a time window.
type ChangeQuery struct {
	// Object is the object type in the CRM's own naming ("contacts", "Contact").
	Object string
	// Since is the inclusive lower bound on the modification stamp.
	Since time.Time
	// Until is the exclusive upper bound; zero means no upper bound.
	Until time.Time
	// Fields lists the fields to fetch; nil means the client's default set.
	Fields []string
	// Archived lists archived (deleted) records instead of live ones.
	Archived bool
	// PageToken continues a previous query; "" starts it. Tokens are opaque,
	// JSON-safe strings that stay valid across process restarts.
	PageToken string
	// PageSize is a hint; zero means the API's maximum.
	PageSize int
	// OthersOnly leaves out the records whose last change the client's own
	// user made, on a CRM that is an OwnWriteFilter; others ignore it.
	OthersOnly bool
}

// Page is one page of a change query.
type Page struct {
	Records []Record `json:"records"`
	// Next continues the query; "" means the query is done.
	Next string `json:"next,omitempty"`
	// Total is how many records the API says the query matches from this
	// page on (this page included), when it says; zero means unknown. It
	// feeds progress estimates only.
	Total int `json:"total,omitempty"`
}

// WriteKind says what a WriteOp does.
type WriteKind string

// The write kinds. Deletes are never sent: archiving travels as a field value.
const (
	Create WriteKind = "create"
	Update WriteKind = "update"
	// Upsert creates or updates the record whose unique field MatchField
	// holds MatchValue, so that repeating it never makes a duplicate.
	Upsert WriteKind = "upsert"
)

// WriteOp is one record write in a batch.
type WriteOp struct {
	Kind WriteKind `json:"kind"`
	// ID is the record to update (Update).
	ID string `json:"id,omitempty"`
	// MatchField and MatchValue name the unique (external id) field and its
	// value for Upsert.
	MatchField string `json:"match_field,omitempty"`
	MatchValue string `json:"match_value,omitempty"`
	// Fields are the values to write; only the fields to change.
	Fields Fields `json:"fields,omitempty"`
	// Key is the write's idempotency key. Clients send it where the API has a
	// place for it (HubSpot objectWriteTraceId).
	Key string `json:"key,omitempty"`
	// Source is, on a create (Upsert) made by a Sync, the record on the
	// other side whose change the write carries, for a CRM that routes new
	// records by it (see [Routed]). It is not part of the payload.
	Source *Record `json:"-"`
}

// WriteResult is the outcome of one WriteOp, at the same index.
type WriteResult struct {
	// ID is the record id written: set on success, and with Err when the
	// record was made or updated but part of the op was not written (a
	// [PartialWriteError]).
	ID string `json:"id,omitempty"`
	// Created reports that the write made a new record.
	Created bool `json:"created,omitempty"`
	// ModifiedAt is the record's stamp after the write, where the API
	// answers it (HubSpot's updatedAt); zero when unknown. The sync
	// measures with it how far the CRM's stamps run behind its own clock.
	ModifiedAt time.Time `json:"modified_at,omitzero"`
	// Err is nil on success. A per-record failure that retrying cannot fix is
	// marked with Permanent; any other error may be retried. A
	// [ReferenceError] says a reference field names an archived or deleted
	// record, and [ErrRecordGone] that the record updated is archived or
	// deleted: the sync parks neither. A [DuplicateError] on a create says
	// another record holds a value that must be unique: the sync reads that
	// record and matches it, and parks the create only if they do not link.
	Err error `json:"-"`
}

// FieldType is a field's type, in terms common to both CRMs.
type FieldType string

// The field types.
const (
	TypeString     FieldType = "string"
	TypeNumber     FieldType = "number"
	TypeBool       FieldType = "bool"
	TypeDate       FieldType = "date"
	TypeDateTime   FieldType = "datetime"
	TypeEnum       FieldType = "enum"
	TypeMultiEnum  FieldType = "multienum"
	TypeReference  FieldType = "reference"
	TypeReferences FieldType = "references"
	TypeOther      FieldType = "other"
)

// FieldSchema describes one field of an object.
type FieldSchema struct {
	Name     string    `json:"name"`
	Type     FieldType `json:"type"`
	Options  []string  `json:"options,omitempty"` // enum values
	Unique   bool      `json:"unique,omitempty"`
	ReadOnly bool      `json:"read_only,omitempty"`
	Required bool      `json:"required,omitempty"`
	// Restricted reports an enum that rejects values outside Options.
	Restricted bool `json:"restricted,omitempty"`
	// Format names what the CRM checks in a string field's values beyond
	// their type: "email" (an address), "" for nothing. Sync.Plan uses it
	// to foresee refusals.
	Format    string `json:"format,omitempty"`
	RefObject string `json:"ref_object,omitempty"`
}

// Schema describes an object's fields.
type Schema struct {
	Object string        `json:"object"`
	Fields []FieldSchema `json:"fields"`
}

// Limits are a CRM client's batch sizes.
type Limits struct {
	// WriteBatch is the most WriteOps one Write call takes (HubSpot 100, Salesforce 200).
	WriteBatch int
	// LookupBatch is the most values one Lookup call takes.
	LookupBatch int
}

// CRM is one CRM system as the sync engine uses it. hubspot.Client and
// salesforce.Client implement it; users may implement it for other systems.
// Implementations must be safe for concurrent use and pace themselves under
// the API's limits.
//
// Errors: a call refused for rate returns a *RateLimitError (after the client's
// own waiting is exhausted); an error no retry can fix is marked Permanent; an
// exhausted daily allocation wraps ErrDailyLimit; anything else is transient.
type CRM interface {
	// System names the CRM ("hubspot", "salesforce").
	System() string
	// Changes returns one page of records changed in q's window.
	Changes(ctx context.Context, q ChangeQuery) (Page, error)
	// Lookup returns the records whose field holds one of values (up to
	// Limits().LookupBatch values), in any order; values with no match are absent.
	// field "id" looks up by record id.
	Lookup(ctx context.Context, object, field string, values []string, fields []string) ([]Record, error)
	// Write applies ops (up to Limits().WriteBatch) and returns one result per
	// op, in order. A record the API refused, alone or with its whole batch,
	// has the refusal in its own result, and the error is nil: whenever the
	// client knows each op's outcome, it reports it there. A non-nil error
	// says the outcome of every op is unknown (the call failed as a whole,
	// say a dropped connection); then the results are nil and the caller
	// may send the ops again, which must be safe (updates, upserts).
	Write(ctx context.Context, object string, ops []WriteOp) ([]WriteResult, error)
	// Schema describes an object's fields.
	Schema(ctx context.Context, object string) (Schema, error)
	// Limits reports the client's batch sizes.
	Limits() Limits
}

// ChangeLagger is an optional interface of a CRM whose change reads show a
// write only after a delay (HubSpot search is eventually consistent). The
// sync never moves a cursor past the window end less ChangeLag, and reads
// older windows again on a slower cadence so that a late change is found.
// A CRM without it is taken to show writes at once.
type ChangeLagger interface {
	ChangeLag() time.Duration
}

// APIBudget is a CRM account's daily API use as its client last learnt it
// (HubSpot's X-HubSpot-RateLimit-Daily headers, Salesforce's
// Sforce-Limit-Info): Used calls of Limit, at At.
type APIBudget struct {
	Used  int64     `json:"used"`
	Limit int64     `json:"limit"`
	At    time.Time `json:"at"`
}

// BudgetReporter is an optional interface of a CRM client that knows its
// account's daily API use. A sync pass stores it in its report
// (SyncReport.Budget), so that operators see the budget over time. ok is
// false before the client has learnt anything.
type BudgetReporter interface {
	APIBudget() (b APIBudget, ok bool)
}
