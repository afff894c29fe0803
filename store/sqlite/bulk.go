package sqlite

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/crmsync/crmsync"
)

// A checkpoint's rows go in as one statement per table: the rows travel as
// one JSON array (one array per row) that json_each unrolls in order, so
// the statement is the same for any number of rows and is prepared once.
// JSON values that are stored as blobs (results, details, payloads) travel
// as JSON strings holding their exact bytes.

// col returns the i-th element of a row of json_each.
func col(i int) string { return fmt.Sprintf("j.value ->> '$[%d]'", i) }

func blobCol(i int) string { return "CAST(" + col(i) + " AS BLOB)" }

var (
	sqlCursors = `INSERT INTO cursors (key, name, value) SELECT ?1, j.key, j.value FROM json_each(?2) j WHERE true
	ON CONFLICT (key, name) DO UPDATE SET value = excluded.value`
	sqlLedger = `INSERT INTO ledger (idem_key, run, step, system, record_id, result, at)
	SELECT ` + col(0) + `, ` + col(1) + `, ` + col(2) + `, ` + col(3) + `, ` + col(4) + `, ` + blobCol(5) + `, ` + col(6) + `
	FROM json_each(?) j ORDER BY j.key ON CONFLICT (idem_key) DO NOTHING`
	sqlAudit = `INSERT INTO audit (time, key, run, step, kind, system, record_ids, idem_key, detail)
	SELECT ` + col(0) + `, ` + col(1) + `, ` + col(2) + `, ` + col(3) + `, ` + col(4) + `, ` + col(5) + `, ` + col(6) + `, ` + col(7) + `, ` + blobCol(8) + `
	FROM json_each(?) j ORDER BY j.key`
	// The audit rows just inserted have consecutive ids (AUTOINCREMENT,
	// inside the write transaction): their record ids are indexed by range.
	sqlAuditRecords = `INSERT OR IGNORE INTO audit_records (record_id, audit_id)
	SELECT r.value, a.id FROM audit a, json_each(a.record_ids) r WHERE a.id BETWEEN ? AND ?`
	sqlLetters = `INSERT INTO dead_letters (key, run, step, system, record_id, payload, error, status, created, updated)
	SELECT ` + col(0) + `, ` + col(1) + `, ` + col(2) + `, ` + col(3) + `, ` + col(4) + `, ` + blobCol(5) + `, ` + col(6) + `, ` + col(7) + `, ` + col(8) + `, ` + col(9) + `
	FROM json_each(?) j ORDER BY j.key`
)

// blob is a stored JSON value as a JSON string, or null.
func blob(b json.RawMessage) any {
	if b == nil {
		return nil
	}
	return string(b)
}

func putCursors(ctx context.Context, q querier, key string, cursors map[string]string) error {
	if len(cursors) == 0 {
		return nil
	}
	b, err := json.Marshal(cursors)
	if err != nil {
		return fmt.Errorf("cursors: %w", err)
	}
	if _, err := q.ExecContext(ctx, sqlCursors, key, string(b)); err != nil {
		return fmt.Errorf("cursors: %w", err)
	}
	return nil
}

func putLedger(ctx context.Context, q querier, rows []crmsync.LedgerEntry) error {
	if len(rows) == 0 {
		return nil
	}
	arr := make([][]any, len(rows))
	for i, e := range rows {
		arr[i] = []any{e.IdemKey, string(e.Run), e.Step, e.System, e.RecordID, blob(e.Result), ns(e.At)}
	}
	b, err := json.Marshal(arr)
	if err != nil {
		return fmt.Errorf("ledger: %w", err)
	}
	if _, err := q.ExecContext(ctx, sqlLedger, string(b)); err != nil {
		return fmt.Errorf("ledger: %w", err)
	}
	return nil
}

func appendAudit(ctx context.Context, q querier, rows []crmsync.AuditEntry) error {
	if len(rows) == 0 {
		return nil
	}
	arr := make([][]any, len(rows))
	withIDs := false
	for i, r := range rows {
		ids := "[]"
		if len(r.RecordIDs) > 0 {
			b, _ := json.Marshal(r.RecordIDs)
			ids, withIDs = string(b), true
		}
		arr[i] = []any{ns(r.Time), r.Key, string(r.Run), r.Step, r.Kind, r.System, ids, r.IdemKey, blob(r.Detail)}
	}
	b, err := json.Marshal(arr)
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	res, err := q.ExecContext(ctx, sqlAudit, string(b))
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	if !withIDs {
		return nil
	}
	last, err := res.LastInsertId()
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	if _, err := q.ExecContext(ctx, sqlAuditRecords, last-int64(len(rows))+1, last); err != nil {
		return fmt.Errorf("audit: record ids: %w", err)
	}
	return nil
}

// parkLetters inserts the letters given, as new parked letters or as they
// say.
func parkLetters(ctx context.Context, q querier, rows []crmsync.DeadLetter) error {
	if len(rows) == 0 {
		return nil
	}
	arr := make([][]any, len(rows))
	for i, d := range rows {
		arr[i] = []any{d.Key, string(d.Run), d.Step, d.System, d.RecordID, blob(d.Payload), d.Error, string(d.Status), ns(d.Created), ns(d.Updated)}
	}
	b, err := json.Marshal(arr)
	if err != nil {
		return fmt.Errorf("dead letters: %w", err)
	}
	if _, err := q.ExecContext(ctx, sqlLetters, string(b)); err != nil {
		return fmt.Errorf("dead letters: %w", err)
	}
	return nil
}
