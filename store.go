package crmsync

import (
	"context"
	"encoding/json"
	"time"
)

// RunID identifies one run of a workflow.
type RunID string

// Lease is a run's claim on its concurrency key. Generation grows by one each
// time the lease changes hands; a Store refuses commits whose generation is no
// longer the key's current one (fencing).
type Lease struct {
	Key        string    `json:"key"`
	Holder     string    `json:"holder"`
	Generation int64     `json:"generation"`
	Run        RunID     `json:"run"`
	Expires    time.Time `json:"expires"`
	// Token, if not zero, is a random number a Store draws at each
	// acquisition and fences with as well: a Store whose acquisitions may
	// be undone by a crash (a generation handed out again) tells its
	// holders apart by it.
	Token int64 `json:"token,omitempty"`
}

// RunStatus is the state of a run.
type RunStatus string

// Run states. An open run is resumed by the next start for its key; a
// finished run is closed for good; a failed run stopped on a permanent error
// and is closed too (resuming would only replay the failure): the key's
// next start begins a new run.
const (
	RunOpen     RunStatus = "open"
	RunFinished RunStatus = "finished"
	RunFailed   RunStatus = "failed"
)

// Closed reports whether a run in state s is over (finished or failed).
func (s RunStatus) Closed() bool { return s == RunFinished || s == RunFailed }

// RunInfo is a run as the Store keeps it.
type RunInfo struct {
	ID         RunID           `json:"id"`
	Key        string          `json:"key"`
	Workflow   string          `json:"workflow"`
	Status     RunStatus       `json:"status"`
	StartedAt  time.Time       `json:"started_at"`
	FinishedAt time.Time       `json:"finished_at,omitzero"`
	Attempts   int             `json:"attempts"` // how many times the run was started or resumed
	Error      string          `json:"error,omitempty"`
	Report     json.RawMessage `json:"report,omitempty"`
}

// StepRecord is a completed step: its JSON result, or its failure.
type StepRecord struct {
	Step   string          `json:"step"`
	Result json.RawMessage `json:"result,omitempty"`
	// Error is the failure message of a step that failed permanently; empty on success.
	Error    string    `json:"error,omitempty"`
	Attempts int       `json:"attempts"`
	Done     time.Time `json:"done"`
}

// Checkpoint is what one step commits: its record and the bookkeeping that
// belongs with it. A Store writes a checkpoint atomically and only while the
// lease's generation is current.
type Checkpoint struct {
	Run  RunID
	Step StepRecord
	// Cursors to set, by name.
	Cursors map[string]string
	// Ledger rows for writes the step applied.
	Ledger []LedgerEntry
	// Audit rows to append.
	Audit []AuditEntry
	// DeadLetters to park. A letter with an ID is one the run claimed for
	// replay and tried again in vain: the Store updates that letter (status,
	// error, payload, updated) if it is still claimed by the run, and parks
	// it as a new letter otherwise (a person marked it again meanwhile).
	DeadLetters []DeadLetter
	// Links to create or replace, with their base snapshots: a link changes
	// only together with the write that made it true.
	Links []Link
	// Conflicts to save (see ConflictStore.SaveConflicts).
	Conflicts []Conflict
}

// LeaseRequest asks for a key's lease.
type LeaseRequest struct {
	Key      string
	Holder   string
	Workflow string
	// NewRun is the id to give a new run if the key has no open run.
	NewRun RunID
	TTL    time.Duration
	Now    time.Time
}

// RunStore keeps runs and the leases on their keys.
type RunStore interface {
	// AcquireLease takes the lease on req.Key if it is free or expired, bumping
	// its generation. It resumes the key's open run if there is one, else
	// opens req.NewRun. It reports ErrBusy while another holder's lease is live.
	AcquireLease(ctx context.Context, req LeaseRequest) (Lease, RunInfo, error)
	// RenewLease extends a live lease to now+ttl; ErrLeaseLost if it changed hands.
	RenewLease(ctx context.Context, l Lease, ttl time.Duration, now time.Time) (Lease, error)
	// ReleaseLease gives the lease up; ErrLeaseLost if it already changed hands.
	ReleaseLease(ctx context.Context, l Lease) error
	// FinishRun records the run's outcome. With status RunFinished or
	// RunFailed the run is closed; with RunOpen it stays resumable.
	// ErrLeaseLost if fenced.
	FinishRun(ctx context.Context, l Lease, status RunStatus, report json.RawMessage, errMsg string, now time.Time) error
	// GetRun reports ErrNotFound for an unknown run.
	GetRun(ctx context.Context, id RunID) (RunInfo, error)
	// ListRuns lists runs newest first; key "" means all keys; limit <= 0 means 100.
	ListRuns(ctx context.Context, key string, limit int) ([]RunInfo, error)
	// GetLease reports the key's lease, or ErrNotFound if it never had one.
	GetLease(ctx context.Context, key string) (Lease, error)
	// PruneRuns deletes the step results of runs closed (finished or failed)
	// before t and returns
	// how many runs it pruned. Runs and their reports are kept.
	PruneRuns(ctx context.Context, before time.Time) (int, error)
}

// StepStore keeps step results.
type StepStore interface {
	// LoadSteps returns every completed step of a run, in one query; none for
	// a run without steps or an unknown run.
	LoadSteps(ctx context.Context, run RunID) (map[string]StepRecord, error)
	// Commit writes a checkpoint atomically if l is still the key's current
	// lease; ErrLeaseLost otherwise. Committing a step that is already
	// stored is a no-op for the step and returns nil.
	Commit(ctx context.Context, l Lease, cp Checkpoint) error
}

// CursorStore keeps named cursors per key. Cursors are set through Commit.
type CursorStore interface {
	// GetCursor reports ErrNotFound for a cursor never set.
	GetCursor(ctx context.Context, key, name string) (string, error)
	// ListCursors returns every cursor of a key.
	ListCursors(ctx context.Context, key string) (map[string]string, error)
}

// LedgerEntry records a write that was applied, under its idempotency key.
type LedgerEntry struct {
	IdemKey  string          `json:"idem_key"`
	Run      RunID           `json:"run"`
	Step     string          `json:"step"`
	System   string          `json:"system"`
	RecordID string          `json:"record_id"`
	Result   json.RawMessage `json:"result,omitempty"`
	At       time.Time       `json:"at"`
}

// LedgerStore answers "was the write with this key already applied, and with
// what result". Rows are added through Commit, after the API call returned.
// A process that dies between the call and its Commit leaves no row: the step
// runs again, and creates are sent as upserts on an external id, so the
// repeated write finds the record the first one made instead of making another.
type LedgerStore interface {
	// LookupWrites returns the entries for the keys that have one.
	LookupWrites(ctx context.Context, keys []string) (map[string]LedgerEntry, error)
}

// Audit kinds.
const (
	AuditWrite      = "write"
	AuditReplay     = "replay"
	AuditRetry      = "retry"
	AuditDeadLetter = "dead-letter"
	AuditConflict   = "conflict"
	AuditSkip       = "skip"
	// AuditOperator rows record what a person did through an operator tool
	// (the web console): resolve a conflict, replay or discard a dead
	// letter, with who did it in the detail.
	AuditOperator = "operator"
)

// AuditEntry is one append-only audit row.
type AuditEntry struct {
	ID        int64           `json:"id"` // set by the Store
	Time      time.Time       `json:"time"`
	Key       string          `json:"key,omitempty"`
	Run       RunID           `json:"run,omitempty"`
	Step      string          `json:"step,omitempty"`
	Kind      string          `json:"kind"`
	System    string          `json:"system,omitempty"`
	RecordIDs []string        `json:"record_ids,omitempty"`
	IdemKey   string          `json:"idem_key,omitempty"`
	Detail    json.RawMessage `json:"detail,omitempty"`
}

// AuditQuery filters the audit log. Zero fields do not filter.
type AuditQuery struct {
	Key      string
	Run      RunID
	RecordID string
	Kind     string
	Since    time.Time // inclusive
	Until    time.Time // exclusive
	// After continues from a previous page: rows with ID > After.
	After int64
	// Limit is the page size; <= 0 means 100.
	Limit int
}

// AuditStore keeps the audit log.
type AuditStore interface {
	// AppendAudit appends rows outside a step checkpoint.
	AppendAudit(ctx context.Context, rows []AuditEntry) error
	// QueryAudit returns matching rows in ID order.
	QueryAudit(ctx context.Context, q AuditQuery) ([]AuditEntry, error)
}

// DeadLetterStatus is the state of a dead letter.
type DeadLetterStatus string

// Dead-letter states: parked until a person acts; replay asks the next run
// of the key to try it again (it becomes replayed once a run claims it, and
// failed-again if that run's try is refused again: the same letter, with the
// new error, not a second letter for the record); discarded is closed. A
// person may replay or discard a parked, replayed or failed-again letter.
const (
	DeadParked      DeadLetterStatus = "parked"
	DeadReplay      DeadLetterStatus = "replay"
	DeadReplayed    DeadLetterStatus = "replayed"
	DeadFailedAgain DeadLetterStatus = "failed-again"
	DeadDiscarded   DeadLetterStatus = "discarded"
)

// DeadLetter is a payload a step could not handle, with its error.
type DeadLetter struct {
	ID       int64            `json:"id"` // set by the Store
	Key      string           `json:"key"`
	Run      RunID            `json:"run"`
	Step     string           `json:"step"`
	System   string           `json:"system,omitempty"`
	RecordID string           `json:"record_id,omitempty"`
	Payload  json.RawMessage  `json:"payload,omitempty"`
	Error    string           `json:"error"`
	Status   DeadLetterStatus `json:"status"`
	// ClaimedBy is the run that claimed a replay.
	ClaimedBy RunID     `json:"claimed_by,omitempty"`
	Created   time.Time `json:"created"`
	Updated   time.Time `json:"updated"`
}

// DeadLetterQuery filters dead letters. Zero fields do not filter.
type DeadLetterQuery struct {
	Key    string
	Status DeadLetterStatus
	After  int64
	Limit  int // <= 0 means 100
}

// DeadLetterStore keeps the dead-letter queue. Letters are parked through Commit.
type DeadLetterStore interface {
	// ListDeadLetters returns matching letters in ID order.
	ListDeadLetters(ctx context.Context, q DeadLetterQuery) ([]DeadLetter, error)
	// GetDeadLetter reports ErrNotFound for an unknown id.
	GetDeadLetter(ctx context.Context, id int64) (DeadLetter, error)
	// SetDeadLetterStatus marks a parked, replayed or failed-again letter
	// for replay or discards it; ErrNotFound for an unknown id.
	SetDeadLetterStatus(ctx context.Context, id int64, status DeadLetterStatus, now time.Time) error
	// ClaimReplays hands the letters marked for replay on l.Key to l.Run,
	// marking them replayed, when the run starts for the first time (its
	// Attempts is 1). A resumed run claims no new letters, since its replay
	// steps are memoized from its first start; it gets back the letters it
	// claimed then, in whatever state they are now, and letters marked since
	// wait for the key's next run. ErrLeaseLost if fenced.
	ClaimReplays(ctx context.Context, l Lease, now time.Time) ([]DeadLetter, error)
}

// Store is everything the engine keeps. Checkpoints write several parts
// at once; the parts' own write methods are for operators and tests.
// store/memory, store/sqlite and
// store/postgres implement it; store/storetest checks an implementation.
// Implementations must be safe for concurrent use. A Store may also
// implement RunStarter and RunEnder, so that a run costs one call to start
// and one to end beyond its steps; the Engine falls back to the calls they
// stand for otherwise.
type Store interface {
	RunStore
	StepStore
	CursorStore
	LedgerStore
	AuditStore
	DeadLetterStore
	LinkStore
	ConflictStore
}

// RunStart is a run as StartRun hands it over: the lease, the run, its
// completed steps and the dead letters it holds for replay.
type RunStart struct {
	Lease Lease
	Run   RunInfo
	// Steps are the run's completed steps, as LoadSteps returns them.
	Steps map[string]StepRecord
	// Replays are the letters the run holds for replay, as ClaimReplays
	// returns them (claimed now if this is the run's first start).
	Replays []DeadLetter
}

// RunStarter is an optional interface of a Store that starts a run in one
// round trip (one statement or one transaction). The Engine uses it when
// the Store has it, and else calls AcquireLease, LoadSteps and ClaimReplays.
type RunStarter interface {
	// StartRun does what AcquireLease, LoadSteps and ClaimReplays do one
	// after the other, atomically: it takes the lease (ErrBusy while another
	// holder's is live), resumes the key's open run or opens req.NewRun,
	// claims the letters marked for replay on the key if this is the run's
	// first start (Attempts 1), and returns the run's completed steps and
	// the letters it holds. On error nothing changed.
	StartRun(ctx context.Context, req LeaseRequest) (RunStart, error)
}

// RunEnd is how a run ends: what EndRun records.
type RunEnd struct {
	// Status, Report and Error are FinishRun's.
	Status RunStatus
	Report json.RawMessage
	Error  string
	Now    time.Time
	// Audit rows to append with the outcome (they are kept even if the
	// lease was lost, as AppendAudit would keep them).
	Audit []AuditEntry
	// PruneBefore, if not zero, prunes the step results of runs closed
	// before it, as PruneRuns does.
	PruneBefore time.Time
}

// RunEnder is an optional interface of a Store that ends a run in one round
// trip (one statement or one transaction). The Engine uses it when the
// Store has it, and else calls AppendAudit, FinishRun, ReleaseLease,
// GetRun and PruneRuns.
type RunEnder interface {
	// EndRun appends end.Audit, records the run's outcome as FinishRun does,
	// releases l as ReleaseLease does, prunes as PruneRuns does if
	// end.PruneBefore is set, and returns the run as stored and how many
	// runs it pruned. ErrLeaseLost if l is no longer the key's lease: then
	// neither the outcome nor the lease changed. A Store may leave out the
	// prune when it knows no closed run is due yet (the PostgreSQL store
	// does, and sweeps at least once per minute of cutoff); PruneRuns
	// always prunes.
	EndRun(ctx context.Context, l Lease, end RunEnd) (RunInfo, int, error)
}
