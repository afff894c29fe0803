package crmsync

import (
	"context"
	"time"
)

// Link is one linked pair of records and the values last synced between them.
type Link struct {
	// Key is the concurrency key (team, portal) the link belongs to.
	Key string `json:"key"`
	// AID and BID are the record ids on the policy's systems A and B.
	AID string `json:"a_id"`
	BID string `json:"b_id"`
	// Base is MergeResult.NewBase of the last merge whose writes landed.
	Base Fields `json:"base,omitempty"`
	// UpdatedAt is when the link was last written.
	UpdatedAt time.Time `json:"updated_at,omitzero"`
}

// LinkStore keeps the links between records and their base snapshots, for
// use by [Merge]. A link and its base change only together with the write
// that made them true (in the same transaction where the backend has them).
// Implementations must be safe for concurrent use.
type LinkStore interface {
	// LinksByA returns the links of key whose AID is one of ids, keyed by AID.
	// Ids with no link are absent from the map; that is not an error.
	LinksByA(ctx context.Context, key string, ids []string) (map[string]Link, error)
	// LinksByB is LinksByA for the B side, keyed by BID.
	LinksByB(ctx context.Context, key string, ids []string) (map[string]Link, error)
	// PutLinks creates or replaces links by (Key, AID) and (Key, BID): a
	// record is linked to at most one counterpart.
	PutLinks(ctx context.Context, links []Link) error
}

// ConflictFilter selects conflicts in ConflictStore.ListConflicts. Zero
// fields match everything.
type ConflictFilter struct {
	Key   string
	State ConflictState
	Field string
	// Limit caps the number returned; zero means no cap.
	Limit int
}

// ConflictStore keeps conflicts, held or not, and people's choices for the
// held ones. Implementations must be safe for concurrent use.
type ConflictStore interface {
	// SaveConflicts creates or replaces conflicts by ID. Saving a conflict
	// again with state held or resolved keeps a choice already made for it
	// (state chosen) or applied.
	SaveConflicts(ctx context.Context, conflicts []Conflict) error
	// ListConflicts returns the conflicts f selects, oldest first.
	ListConflicts(ctx context.Context, f ConflictFilter) ([]Conflict, error)
	// GetConflict returns one conflict, or ErrNotFound.
	GetConflict(ctx context.Context, id string) (Conflict, error)
	// ResolveConflict records a person's choice for a held conflict: it sets
	// Resolution, ResolvedAt and state chosen. It returns ErrNotFound for an
	// unknown id.
	ResolveConflict(ctx context.Context, id string, r Resolution, now time.Time) error
	// PendingResolutions returns the conflicts of key in state chosen, for
	// the next run to apply with Policy.ApplyResolution and then save with
	// state applied.
	PendingResolutions(ctx context.Context, key string) ([]Conflict, error)
}
