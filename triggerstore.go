package crmsync

import (
	"context"
	"time"
)

// PendingTrigger is what a TriggerStore keeps for one key and system: the
// triggers added since they were last cleared, merged into one row.
type PendingTrigger struct {
	Key    string `json:"key"`
	System string `json:"system,omitempty"`
	// Full is set if any merged trigger asked for a full window pass (a gap
	// or overflow in a change stream).
	Full bool `json:"full,omitempty"`
	// Reason is the latest trigger's reason (an event type, "gap"); never a
	// record value.
	Reason string `json:"reason,omitempty"`
	// Count is how many events the merged triggers stood for.
	Count int64 `json:"count"`
	// First and Last are the times of the first and the latest trigger, as
	// their callers gave them.
	First time.Time `json:"first"`
	Last  time.Time `json:"last"`
	// Seq is set by the Store and grows with every AddTrigger across all
	// keys: ClearTriggers(key, seq) clears what was pending when seq was
	// read, and keeps what was added since.
	Seq int64 `json:"seq"`
}

// TriggerStore is an optional interface of a Store that keeps pending
// triggers (webhooks, change events) per key, so that a trigger received by
// one process reaches the process that runs the key, and survives a crash.
// Implementations must be safe for concurrent use.
type TriggerStore interface {
	// AddTrigger merges t into the pending trigger of (t.Key, t.System):
	// Full is or-ed, Count grows by t.Count (1 if t.Count <= 0), Reason and
	// Last become t's, First is kept, and Seq is drawn anew. t.Key is
	// required.
	AddTrigger(ctx context.Context, t PendingTrigger) error
	// PendingTriggers returns the pending triggers of key ("" means every
	// key) in Seq order; limit <= 0 means 100.
	PendingTriggers(ctx context.Context, key string, limit int) ([]PendingTrigger, error)
	// ClearTriggers deletes key's pending triggers whose Seq is at most
	// through and reports how many it deleted. A trigger added after
	// through was read has a larger Seq and stays pending.
	ClearTriggers(ctx context.Context, key string, through int64) (int, error)
}

// PositionStore is an optional interface of a Store that keeps the position
// of a change stream (a Pub/Sub replay id), so that a subscriber resumes
// where it stopped. Implementations must be safe for concurrent use.
type PositionStore interface {
	// GetPosition reports ErrNotFound for a stream whose position was never set.
	GetPosition(ctx context.Context, stream string) ([]byte, error)
	// SetPosition stores pos (opaque bytes) as the stream's position.
	SetPosition(ctx context.Context, stream string, pos []byte) error
}
