package storetest

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/crmsync/crmsync"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// exerciseCheckpointRows checks a checkpoint with many rows of each kind,
// which SQL stores write as one statement per table: every row lands, in
// order, with its own record ids and detail; a ledger key given twice is
// kept once (the first); and a repeated checkpoint of the same step writes
// none of them again.
func exerciseCheckpointRows(t *testing.T, s crmsync.Store) {
	ctx := context.Background()
	l, _ := acquire(t, s, "k", "h1", "r1", t0)
	var audit []crmsync.AuditEntry
	var ledger []crmsync.LedgerEntry
	var letters []crmsync.DeadLetter
	for i := range 30 {
		a := crmsync.AuditEntry{Time: t0, Key: "k", Run: "r1", Step: "big", Kind: crmsync.AuditWrite, System: "hubspot",
			IdemKey: fmt.Sprintf("idem-%d", i)}
		switch i % 3 {
		case 0:
			a.RecordIDs = []string{fmt.Sprintf("rec-%d", i), "shared"}
			a.Detail = json.RawMessage(fmt.Sprintf(`{"i":%d}`, i))
		case 1:
			a.RecordIDs = []string{fmt.Sprintf("rec-%d", i)}
		}
		audit = append(audit, a)
		ledger = append(ledger, crmsync.LedgerEntry{IdemKey: fmt.Sprintf("idem-%d", i), Run: "r1", Step: "big", System: "salesforce",
			RecordID: fmt.Sprintf("003%d", i), Result: json.RawMessage(fmt.Sprintf(`{"n":%d}`, i)), At: t0})
		if i < 3 {
			letters = append(letters, crmsync.DeadLetter{Key: "k", Run: "r1", Step: "big", System: "salesforce", RecordID: fmt.Sprintf("003%d", i),
				Payload: json.RawMessage(`{"p":1}`), Error: "refused", Status: crmsync.DeadParked, Created: t0, Updated: t0})
		}
	}
	// The same idempotency key twice in one checkpoint: the first is kept.
	ledger = append(ledger, crmsync.LedgerEntry{IdemKey: "idem-0", Run: "r1", Step: "big", System: "salesforce", RecordID: "other", At: t0})
	cp := crmsync.Checkpoint{Run: "r1", Step: step("big", `1`), Cursors: map[string]string{"a": "1", "b": "2"},
		Ledger: ledger, Audit: audit, DeadLetters: letters}
	require.NoError(t, s.Commit(ctx, l, cp))
	require.NoError(t, s.Commit(ctx, l, cp), "committing a stored step again is a no-op")

	rows, err := s.QueryAudit(ctx, crmsync.AuditQuery{Run: "r1", Limit: 100})
	require.NoError(t, err)
	require.Len(t, rows, 30, "one row per audit entry, none twice")
	for i, r := range rows {
		assert.Equal(t, fmt.Sprintf("idem-%d", i), r.IdemKey, "audit rows keep their order")
		assert.Equal(t, audit[i].RecordIDs, r.RecordIDs, "row %d record ids", i)
		if audit[i].Detail == nil {
			assert.Nil(t, r.Detail, "row %d detail", i)
		} else {
			assert.JSONEq(t, string(audit[i].Detail), string(r.Detail), "row %d detail", i)
		}
		if i > 0 {
			assert.Greater(t, r.ID, rows[i-1].ID)
		}
	}
	shared, err := s.QueryAudit(ctx, crmsync.AuditQuery{RecordID: "shared", Limit: 100})
	require.NoError(t, err)
	assert.Len(t, shared, 10, "rows found by a record id they share")
	one, err := s.QueryAudit(ctx, crmsync.AuditQuery{RecordID: "rec-4"})
	require.NoError(t, err)
	require.Len(t, one, 1)
	assert.Equal(t, "idem-4", one[0].IdemKey)

	keys := make([]string, 0, 31)
	for i := range 30 {
		keys = append(keys, fmt.Sprintf("idem-%d", i))
	}
	got, err := s.LookupWrites(ctx, keys)
	require.NoError(t, err)
	assert.Len(t, got, 30)
	assert.Equal(t, "0030", got["idem-0"].RecordID, "the first row of a repeated key is kept")
	assert.JSONEq(t, `{"n":7}`, string(got["idem-7"].Result))

	cursors, err := s.ListCursors(ctx, "k")
	require.NoError(t, err)
	assert.Equal(t, map[string]string{"a": "1", "b": "2"}, cursors)
	dead, err := s.ListDeadLetters(ctx, crmsync.DeadLetterQuery{Key: "k"})
	require.NoError(t, err)
	require.Len(t, dead, 3)
	for i, d := range dead {
		assert.Equal(t, fmt.Sprintf("003%d", i), d.RecordID)
		assert.Equal(t, crmsync.DeadParked, d.Status)
	}
}
