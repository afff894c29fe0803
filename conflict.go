package crmsync

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"
)

// ConflictState is where a conflict is in its life.
type ConflictState string

// The conflict states.
const (
	// ConflictResolved: the rule picked a winner and the merge applied it.
	ConflictResolved ConflictState = "resolved"
	// ConflictHeld: the merge wrote neither side; a person must choose.
	ConflictHeld ConflictState = "held"
	// ConflictChosen: a person chose (Resolution is set); the next run applies it.
	ConflictChosen ConflictState = "chosen"
	// ConflictApplied: the person's choice was written to both sides.
	ConflictApplied ConflictState = "applied"
)

// Conflict is one field changed on both sides, since the last sync, to
// different values. Values are canonical (see [Normalize]): Base and A are in
// side A's terms, B in side B's (before any transform). Conflicts carry record
// values, so String and LogValue print ids and the field only.
type Conflict struct {
	// ID is deterministic: a hash of the record ids, the field and the three
	// values, so the same conflict seen again on the next pass has the same ID.
	ID string `json:"id"`
	// Key is the run's concurrency key; Merge leaves it empty for the engine to set.
	Key string `json:"key,omitempty"`
	// SystemA and SystemB name the sides; RecordA and RecordB are the record ids.
	SystemA string `json:"system_a"`
	SystemB string `json:"system_b"`
	RecordA string `json:"record_a"`
	RecordB string `json:"record_b"`
	// Field is the rule's name; FieldA and FieldB the field's names on each side.
	Field  string `json:"field"`
	FieldA string `json:"field_a"`
	FieldB string `json:"field_b"`
	// Type is the field's type.
	Type FieldType `json:"type"`
	// Base, A and B are the value last synced and each side's new value.
	Base any `json:"base"`
	A    any `json:"a"`
	B    any `json:"b"`
	// TimeA and TimeB are when each side's value changed, as far as known.
	TimeA time.Time `json:"time_a,omitzero"`
	TimeB time.Time `json:"time_b,omitzero"`
	// Winner is the system whose value the rule picked ("" if the rule picked
	// a value of its own); Rule describes the rule.
	Winner string `json:"winner,omitempty"`
	Rule   string `json:"rule"`
	// Held reports that the merge wrote neither side (Policy.Hold or
	// FieldRule.HoldConflicts).
	Held bool `json:"held,omitempty"`
	// State is the conflict's state; Merge sets resolved or held.
	State ConflictState `json:"state"`
	// Resolution is a person's choice for a held conflict.
	Resolution *Resolution `json:"resolution,omitempty"`
	// DetectedAt and ResolvedAt are set by the engine and the store.
	DetectedAt time.Time `json:"detected_at,omitzero"`
	ResolvedAt time.Time `json:"resolved_at,omitzero"`
}

// String names the conflict without its values.
func (c Conflict) String() string {
	return fmt.Sprintf("conflict %s: %s on %s %s / %s %s", c.ID, c.Field, c.SystemA, c.RecordA, c.SystemB, c.RecordB)
}

// LogValue logs ids and the field, never values.
func (c Conflict) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("id", c.ID),
		slog.String("field", c.Field),
		slog.String("record_a", c.RecordA),
		slog.String("record_b", c.RecordB),
		slog.String("winner", c.Winner),
		slog.Bool("held", c.Held),
	)
}

// conflictID hashes the record ids, the field and the canonical values.
func conflictID(recA, recB, field string, base, a, b any) string {
	h := sha256.New()
	for _, v := range []any{recA, recB, field, base, a, b} {
		j, _ := json.Marshal(v) // canonical values always marshal
		h.Write(j)
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil)[:12])
}

// Resolution is a person's choice for a held conflict.
type Resolution struct {
	// Pick is the conflict's SystemA or SystemB to take that side's value, or
	// [PickValue] to set Value.
	Pick string `json:"pick"`
	// Value is the value to set with PickValue, in side A's terms; nil clears.
	Value any `json:"value,omitempty"`
}

// ConflictHandler is told about the conflicts of a run. The engine calls it
// once per run with all of that run's conflicts, so a storm makes one call.
// An error is logged and reported in the run; it does not fail the sync.
// Implementations must be safe for concurrent use.
type ConflictHandler interface {
	HandleConflicts(ctx context.Context, run RunID, conflicts []Conflict) error
}

// ConflictHandlerFunc adapts a func to a [ConflictHandler].
type ConflictHandlerFunc func(ctx context.Context, run RunID, conflicts []Conflict) error

// HandleConflicts calls f.
func (f ConflictHandlerFunc) HandleConflicts(ctx context.Context, run RunID, conflicts []Conflict) error {
	return f(ctx, run, conflicts)
}

// ApplyResolution returns the patches that carry a person's choice for
// conflict c to both sides, and the base to store once they land. Only the
// conflict's field is written, on both sides. The error names what is wrong
// with the resolution or the policy, never a value.
func (p *Policy) ApplyResolution(c Conflict, r Resolution) (MergeResult, error) {
	p, err := p.use()
	if err != nil {
		return MergeResult{}, err
	}
	idx := -1
	for i, rule := range p.Rules {
		if rule.Key() == c.Field {
			idx = i
			break
		}
	}
	if idx < 0 {
		return MergeResult{}, fmt.Errorf("crmsync: resolve conflict %s: field %q is not in the policy", c.ID, c.Field)
	}
	rule := p.Rules[idx]
	if rule.A == "" || rule.B == "" {
		return MergeResult{}, fmt.Errorf("crmsync: resolve conflict %s: field %q is not mapped on both sides", c.ID, c.Field)
	}
	var t any
	switch r.Pick {
	case p.A:
		t, err = Normalize(rule.Type, c.A)
		if err != nil {
			return MergeResult{}, &ValueError{Field: rule.A, Side: p.A, Type: rule.Type, Reason: err.Error()}
		}
	case p.B:
		bN, err := Normalize(rule.Type, c.B)
		if err != nil {
			return MergeResult{}, &ValueError{Field: rule.B, Side: p.B, Type: rule.Type, Reason: err.Error()}
		}
		if p.toA[idx] == nil && p.toB[idx] != nil {
			return MergeResult{}, fmt.Errorf("crmsync: resolve conflict %s: field %q has no transform to %s", c.ID, c.Field, p.A)
		}
		t, err = transform(p.toA[idx], rule.Type, bN)
		if err != nil {
			return MergeResult{}, fmt.Errorf("crmsync: resolve conflict %s: field %q to %s: %w", c.ID, c.Field, p.A, err)
		}
	case PickValue:
		t, err = Normalize(rule.Type, r.Value)
		if err != nil {
			return MergeResult{}, &ValueError{Field: c.Field, Side: "resolution", Type: rule.Type, Reason: err.Error()}
		}
	default:
		return MergeResult{}, fmt.Errorf("crmsync: resolve conflict %s: pick %q is none of %q, %q, %q", c.ID, r.Pick, p.A, p.B, PickValue)
	}
	if p.toB[idx] == nil && p.toA[idx] != nil {
		return MergeResult{}, fmt.Errorf("crmsync: resolve conflict %s: field %q has no transform to %s", c.ID, c.Field, p.B)
	}
	tB, err := transform(p.toB[idx], rule.Type, t)
	if err != nil {
		return MergeResult{}, fmt.Errorf("crmsync: resolve conflict %s: field %q to %s: %w", c.ID, c.Field, p.B, err)
	}
	res := newResult()
	res.PatchA[rule.A] = p.encoding(p.A).Encode(rule.Type, t)
	res.PatchB[rule.B] = p.encoding(p.B).Encode(rule.Type, tB)
	res.NewBase[c.Field] = t
	return res, nil
}

// transform applies t (nil means identity) to a canonical value and
// normalises the result. Blank values pass through.
func transform(t Transform, typ FieldType, v any) (any, error) {
	if t == nil || v == nil {
		return v, nil
	}
	out, err := t.Transform(v)
	if err != nil {
		return nil, err
	}
	return Normalize(typ, out)
}
