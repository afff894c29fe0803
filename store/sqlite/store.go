package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/crmsync/crmsync"
)

// querier is what both *sql.DB and *sql.Tx offer.
type querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// tx runs fn in one write transaction on the writer (BEGIN IMMEDIATE, so
// that it holds SQLite's write lock from the start) and commits it, or
// rolls it back if fn or the commit fails. fn must not keep the querier.
func (s *Store) tx(ctx context.Context, what string, fn func(q querier) error) error {
	var ferr error // fn's own error, returned as it is
	err := s.write(ctx, func(q querier) error {
		if err := s.waitBusy(ctx, func() error {
			_, err := q.ExecContext(ctx, `BEGIN IMMEDIATE`)
			return err
		}); err != nil {
			return err
		}
		if ferr = fn(q); ferr != nil {
			s.rollback()
			return nil
		}
		if _, err := q.ExecContext(ctx, `COMMIT`); err != nil {
			s.rollback()
			return fmt.Errorf("commit: %w", err)
		}
		return nil
	})
	if ferr != nil {
		return ferr
	}
	if err != nil {
		return fmt.Errorf("sqlite: %s: %w", what, err)
	}
	return nil
}

// rollback ends the writer's transaction, if one is open; a writer that
// cannot is dropped. The caller holds the write gate.
func (s *Store) rollback() {
	if _, err := (wq{s}).ExecContext(context.Background(), `ROLLBACK`); err != nil && !strings.Contains(err.Error(), "no transaction is active") {
		s.dropWriter()
	}
}

// AcquireLease implements crmsync.RunStore.
func (s *Store) AcquireLease(ctx context.Context, req crmsync.LeaseRequest) (crmsync.Lease, crmsync.RunInfo, error) {
	if req.Key == "" || req.Holder == "" || req.NewRun == "" || req.TTL <= 0 {
		return crmsync.Lease{}, crmsync.RunInfo{}, errors.New("sqlite: acquire lease: key, holder, new run id and a positive TTL are required")
	}
	var l crmsync.Lease
	var ri crmsync.RunInfo
	err := s.tx(ctx, "acquire lease "+req.Key, func(tx querier) error {
		var holder, run, id string
		var gen, expires int64
		err := tx.QueryRowContext(ctx, `SELECT holder, generation, run, expires, open_run FROM leases WHERE key = ?`, req.Key).Scan(&holder, &gen, &run, &expires, &id)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("sqlite: acquire lease %s: %w", req.Key, err)
		}
		if err == nil && run != "" && expires > ns(req.Now) {
			return fmt.Errorf("sqlite: key %s held by %s until %s: %w", req.Key, holder, tm(expires).Format(time.RFC3339), crmsync.ErrBusy)
		}
		if id == "" {
			id = string(req.NewRun)
			if _, err := tx.ExecContext(ctx, `INSERT INTO runs (id, key, workflow, status, started_at, seq)
				VALUES (?, ?, ?, 'open', ?, (SELECT COALESCE(MAX(seq), 0) + 1 FROM runs))`, id, req.Key, req.Workflow, ns(req.Now)); err != nil {
				return fmt.Errorf("sqlite: acquire lease %s: open run: %w", req.Key, err)
			}
		}
		if _, err := tx.ExecContext(ctx, `UPDATE runs SET attempts = attempts + 1 WHERE id = ?`, id); err != nil {
			return fmt.Errorf("sqlite: acquire lease %s: %w", req.Key, err)
		}
		l = crmsync.Lease{Key: req.Key, Holder: req.Holder, Generation: gen + 1, Run: crmsync.RunID(id), Expires: req.Now.Add(req.TTL)}
		if _, err := tx.ExecContext(ctx, `INSERT INTO leases (key, holder, generation, run, expires, open_run) VALUES (?, ?, ?, ?, ?, ?)
			ON CONFLICT (key) DO UPDATE SET holder = excluded.holder, generation = excluded.generation, run = excluded.run, expires = excluded.expires,
			open_run = excluded.open_run`,
			l.Key, l.Holder, l.Generation, id, ns(l.Expires), id); err != nil {
			return fmt.Errorf("sqlite: acquire lease %s: %w", req.Key, err)
		}
		ri, err = getRun(ctx, tx, crmsync.RunID(id))
		return err
	})
	if err != nil {
		return crmsync.Lease{}, crmsync.RunInfo{}, err
	}
	l.Expires = tm(ns(l.Expires))
	return l, ri, nil
}

// lost reports whether l is no longer the key's current lease.
func lost(ctx context.Context, q querier, l crmsync.Lease) error {
	var gen int64
	var run string
	err := q.QueryRowContext(ctx, `SELECT generation, run FROM leases WHERE key = ?`, l.Key).Scan(&gen, &run)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("sqlite: check lease %s: %w", l.Key, err)
	}
	if err != nil || gen != l.Generation || run == "" || run != string(l.Run) {
		return fmt.Errorf("sqlite: key %s generation %d: %w", l.Key, l.Generation, crmsync.ErrLeaseLost)
	}
	return nil
}

// fenced runs a statement that must touch a row only while l is current.
func (s *Store) fenced(ctx context.Context, l crmsync.Lease, what, stmt string, args ...any) error {
	var n int64
	err := s.write(ctx, func(q querier) error {
		return s.waitBusy(ctx, func() error {
			res, err := q.ExecContext(ctx, stmt, args...)
			if err == nil {
				n, _ = res.RowsAffected()
			}
			return err
		})
	})
	if err != nil {
		return fmt.Errorf("sqlite: %s: %w", what, err)
	}
	if n == 0 {
		if err := lost(ctx, s.db, l); err != nil {
			return err
		}
		return fmt.Errorf("sqlite: %s: %w", what, crmsync.ErrNotFound)
	}
	return nil
}

// RenewLease implements crmsync.RunStore.
func (s *Store) RenewLease(ctx context.Context, l crmsync.Lease, ttl time.Duration, now time.Time) (crmsync.Lease, error) {
	l.Expires = tm(ns(now.Add(ttl)))
	err := s.fenced(ctx, l, "renew lease "+l.Key,
		`UPDATE leases SET expires = ? WHERE key = ? AND generation = ? AND run = ?`, ns(l.Expires), l.Key, l.Generation, string(l.Run))
	if err != nil {
		return crmsync.Lease{}, err
	}
	return l, nil
}

// ReleaseLease implements crmsync.RunStore. The generation is kept, so
// fencing survives the release.
func (s *Store) ReleaseLease(ctx context.Context, l crmsync.Lease) error {
	return s.fenced(ctx, l, "release lease "+l.Key,
		`UPDATE leases SET holder = '', run = '', expires = 0 WHERE key = ? AND generation = ? AND run = ?`, l.Key, l.Generation, string(l.Run))
}

// GetLease implements crmsync.RunStore.
func (s *Store) GetLease(ctx context.Context, key string) (crmsync.Lease, error) {
	var l crmsync.Lease
	var run string
	var exp int64
	err := s.db.QueryRowContext(ctx, `SELECT key, holder, generation, run, expires FROM leases WHERE key = ?`, key).Scan(&l.Key, &l.Holder, &l.Generation, &run, &exp)
	if errors.Is(err, sql.ErrNoRows) {
		return l, fmt.Errorf("sqlite: lease %s: %w", key, crmsync.ErrNotFound)
	}
	if err != nil {
		return l, fmt.Errorf("sqlite: lease %s: %w", key, err)
	}
	l.Run, l.Expires = crmsync.RunID(run), tm(exp)
	return l, nil
}

// FinishRun implements crmsync.RunStore.
func (s *Store) FinishRun(ctx context.Context, l crmsync.Lease, status crmsync.RunStatus, report json.RawMessage, errMsg string, now time.Time) error {
	if status != crmsync.RunOpen && !status.Closed() {
		return fmt.Errorf("sqlite: finish run %s: unknown status %q", l.Run, status)
	}
	finished := int64(0)
	if status.Closed() {
		finished = ns(now)
	}
	what := "finish run " + string(l.Run)
	var n int64
	err := s.tx(ctx, what, func(tx querier) error {
		res, err := tx.ExecContext(ctx, `UPDATE runs SET status = ?, report = ?, error = ?, finished_at = ?
			WHERE id = ? AND EXISTS (SELECT 1 FROM leases WHERE key = ? AND generation = ? AND run = ?)`,
			string(status), []byte(report), errMsg, finished, string(l.Run), l.Key, l.Generation, string(l.Run))
		if err != nil {
			return fmt.Errorf("sqlite: %s: %w", what, err)
		}
		if n, _ = res.RowsAffected(); n == 0 || !status.Closed() {
			return nil
		}
		// A closed run is no longer the key's open run.
		if _, err := tx.ExecContext(ctx, `UPDATE leases SET open_run = '' WHERE key = ? AND open_run = ?`, l.Key, string(l.Run)); err != nil {
			return fmt.Errorf("sqlite: %s: %w", what, err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if n == 0 {
		if err := lost(ctx, s.db, l); err != nil {
			return err
		}
		return fmt.Errorf("sqlite: %s: %w", what, crmsync.ErrNotFound)
	}
	return nil
}

const runCols = `id, key, workflow, status, started_at, finished_at, attempts, error, report`

func scanRun(sc interface{ Scan(...any) error }) (crmsync.RunInfo, error) {
	var ri crmsync.RunInfo
	var id, status string
	var started, finished int64
	var report []byte
	if err := sc.Scan(&id, &ri.Key, &ri.Workflow, &status, &started, &finished, &ri.Attempts, &ri.Error, &report); err != nil {
		return ri, err
	}
	ri.ID, ri.Status, ri.StartedAt, ri.FinishedAt = crmsync.RunID(id), crmsync.RunStatus(status), tm(started), tm(finished)
	if len(report) > 0 {
		ri.Report = json.RawMessage(report)
	}
	return ri, nil
}

func getRun(ctx context.Context, q querier, id crmsync.RunID) (crmsync.RunInfo, error) {
	ri, err := scanRun(q.QueryRowContext(ctx, `SELECT `+runCols+` FROM runs WHERE id = ?`, string(id)))
	if errors.Is(err, sql.ErrNoRows) {
		return ri, fmt.Errorf("sqlite: run %s: %w", id, crmsync.ErrNotFound)
	}
	if err != nil {
		return ri, fmt.Errorf("sqlite: run %s: %w", id, err)
	}
	return ri, nil
}

// GetRun implements crmsync.RunStore.
func (s *Store) GetRun(ctx context.Context, id crmsync.RunID) (crmsync.RunInfo, error) {
	return getRun(ctx, s.db, id)
}

// ListRuns implements crmsync.RunStore.
func (s *Store) ListRuns(ctx context.Context, key string, limit int) ([]crmsync.RunInfo, error) {
	if limit <= 0 {
		limit = 100
	}
	q, args := `SELECT `+runCols+` FROM runs ORDER BY seq DESC LIMIT ?`, []any{limit}
	if key != "" {
		q, args = `SELECT `+runCols+` FROM runs WHERE key = ? ORDER BY seq DESC LIMIT ?`, []any{key, limit}
	}
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list runs: %w", err)
	}
	defer rows.Close()
	var out []crmsync.RunInfo
	for rows.Next() {
		ri, err := scanRun(rows)
		if err != nil {
			return nil, fmt.Errorf("sqlite: list runs: %w", err)
		}
		out = append(out, ri)
	}
	return out, rows.Err()
}

// PruneRuns implements crmsync.RunStore.
func (s *Store) PruneRuns(ctx context.Context, before time.Time) (int, error) {
	n := 0
	err := s.tx(ctx, "prune runs", func(tx querier) error {
		var err error
		n, err = pruneRuns(ctx, tx, before)
		return err
	})
	return n, err
}

// LoadSteps implements crmsync.StepStore.
func (s *Store) LoadSteps(ctx context.Context, run crmsync.RunID) (map[string]crmsync.StepRecord, error) {
	return loadSteps(ctx, s.db, run)
}

// sqlStep stores a step's result only while the run's lease is current.
const sqlStep = `INSERT INTO steps (run, step, result, error, attempts, done)
SELECT ?, ?, ?, ?, ?, ?
WHERE EXISTS (SELECT 1 FROM leases WHERE key = ? AND generation = ? AND run = ?)
ON CONFLICT (run, step) DO NOTHING`

// Commit implements crmsync.StepStore. A checkpoint of a step alone is one
// statement that also checks the lease; one with cursors, ledger rows, audit
// rows, dead letters, links or conflicts is one transaction, with one
// statement per table for cursors, ledger rows, audit rows and new letters,
// and every statement prepared once.
func (s *Store) Commit(ctx context.Context, l crmsync.Lease, cp crmsync.Checkpoint) error {
	if cp.Step.Step == "" {
		return fmt.Errorf("sqlite: commit run %s: empty step id", cp.Run)
	}
	if l.Run != cp.Run {
		return fmt.Errorf("sqlite: commit run %s under lease of run %s: %w", cp.Run, l.Run, crmsync.ErrLeaseLost)
	}
	st := cp.Step
	args := []any{string(cp.Run), st.Step, []byte(st.Result), st.Error, st.Attempts, ns(st.Done), l.Key, l.Generation, string(l.Run)}
	if len(cp.Cursors) == 0 && len(cp.Ledger) == 0 && len(cp.Audit) == 0 && len(cp.DeadLetters) == 0 && len(cp.Links) == 0 && len(cp.Conflicts) == 0 {
		var n int64
		err := s.write(ctx, func(q querier) error {
			return s.waitBusy(ctx, func() error {
				res, err := q.ExecContext(ctx, sqlStep, args...)
				if err == nil {
					n, _ = res.RowsAffected()
				}
				return err
			})
		})
		if err != nil {
			return fmt.Errorf("sqlite: commit run %s step %q: %w", cp.Run, st.Step, err)
		}
		if n == 0 {
			return lost(ctx, s.db, l) // nil: already stored
		}
		return nil
	}
	what := fmt.Sprintf("commit run %s step %q", cp.Run, st.Step)
	return s.tx(ctx, what, func(tx querier) error {
		res, err := tx.ExecContext(ctx, sqlStep, args...)
		if err != nil {
			return fmt.Errorf("sqlite: %s: %w", what, err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return lost(ctx, tx, l) // nil: already stored, nothing else to do
		}
		if err := putCursors(ctx, tx, l.Key, cp.Cursors); err != nil {
			return fmt.Errorf("sqlite: %s: %w", what, err)
		}
		if err := putLedger(ctx, tx, cp.Ledger); err != nil {
			return fmt.Errorf("sqlite: %s: %w", what, err)
		}
		if err := appendAudit(ctx, tx, cp.Audit); err != nil {
			return fmt.Errorf("sqlite: %s: %w", what, err)
		}
		var park []crmsync.DeadLetter
		for _, d := range cp.DeadLetters {
			if d.ID != 0 {
				// A claimed letter tried again in vain: update it while the
				// run still holds its claim, else park a new letter.
				res, err := tx.ExecContext(ctx, `UPDATE dead_letters SET status = ?, error = ?, payload = ?, updated = ?
					WHERE id = ? AND claimed_by = ? AND status IN ('replayed', 'failed-again')`,
					string(d.Status), d.Error, []byte(d.Payload), ns(d.Updated), d.ID, string(cp.Run))
				if err != nil {
					return fmt.Errorf("sqlite: %s: dead letter %d: %w", what, d.ID, err)
				}
				if n, _ := res.RowsAffected(); n == 1 {
					continue
				}
				d.Status = crmsync.DeadParked
			}
			park = append(park, d)
		}
		if err := parkLetters(ctx, tx, park); err != nil {
			return fmt.Errorf("sqlite: %s: %w", what, err)
		}
		if err := putLinks(ctx, tx, cp.Links); err != nil {
			return fmt.Errorf("sqlite: %s: %w", what, err)
		}
		if err := saveConflicts(ctx, tx, cp.Conflicts); err != nil {
			return fmt.Errorf("sqlite: %s: %w", what, err)
		}
		return nil
	})
}

// GetCursor implements crmsync.CursorStore.
func (s *Store) GetCursor(ctx context.Context, key, name string) (string, error) {
	var v string
	err := s.db.QueryRowContext(ctx, `SELECT value FROM cursors WHERE key = ? AND name = ?`, key, name).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return "", fmt.Errorf("sqlite: cursor %s/%s: %w", key, name, crmsync.ErrNotFound)
	}
	if err != nil {
		return "", fmt.Errorf("sqlite: cursor %s/%s: %w", key, name, err)
	}
	return v, nil
}

// ListCursors implements crmsync.CursorStore.
func (s *Store) ListCursors(ctx context.Context, key string) (map[string]string, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT name, value FROM cursors WHERE key = ?`, key)
	if err != nil {
		return nil, fmt.Errorf("sqlite: cursors of %s: %w", key, err)
	}
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var n, v string
		if err := rows.Scan(&n, &v); err != nil {
			return nil, fmt.Errorf("sqlite: cursors of %s: %w", key, err)
		}
		out[n] = v
	}
	return out, rows.Err()
}

// LookupWrites implements crmsync.LedgerStore.
func (s *Store) LookupWrites(ctx context.Context, keys []string) (map[string]crmsync.LedgerEntry, error) {
	out := map[string]crmsync.LedgerEntry{}
	for len(keys) > 0 {
		chunk := keys[:min(len(keys), 500)]
		keys = keys[len(chunk):]
		args := make([]any, len(chunk))
		for i, k := range chunk {
			args[i] = k
		}
		rows, err := s.db.QueryContext(ctx, `SELECT idem_key, run, step, system, record_id, result, at FROM ledger WHERE idem_key IN (`+placeholders(len(chunk))+`)`, args...)
		if err != nil {
			return nil, fmt.Errorf("sqlite: lookup writes: %w", err)
		}
		for rows.Next() {
			var e crmsync.LedgerEntry
			var run string
			var result []byte
			var at int64
			if err := rows.Scan(&e.IdemKey, &run, &e.Step, &e.System, &e.RecordID, &result, &at); err != nil {
				rows.Close()
				return nil, fmt.Errorf("sqlite: lookup writes: %w", err)
			}
			e.Run, e.Result, e.At = crmsync.RunID(run), result, tm(at)
			out[e.IdemKey] = e
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("sqlite: lookup writes: %w", err)
		}
	}
	return out, nil
}

func placeholders(n int) string {
	return strings.TrimSuffix(strings.Repeat("?,", n), ",")
}

// AppendAudit implements crmsync.AuditStore.
func (s *Store) AppendAudit(ctx context.Context, rows []crmsync.AuditEntry) error {
	if len(rows) == 0 {
		return nil
	}
	return s.tx(ctx, "append audit", func(tx querier) error {
		if err := appendAudit(ctx, tx, rows); err != nil {
			return fmt.Errorf("sqlite: append %w", err)
		}
		return nil
	})
}

// QueryAudit implements crmsync.AuditStore.
func (s *Store) QueryAudit(ctx context.Context, q crmsync.AuditQuery) ([]crmsync.AuditEntry, error) {
	limit := q.Limit
	if limit <= 0 {
		limit = 100
	}
	where, args := []string{"id > ?"}, []any{q.After}
	add := func(cond string, v any) { where = append(where, cond); args = append(args, v) }
	if q.Key != "" {
		add("key = ?", q.Key)
	}
	if q.Run != "" {
		add("run = ?", string(q.Run))
	}
	if q.Kind != "" {
		add("kind = ?", q.Kind)
	}
	if q.RecordID != "" {
		add("id IN (SELECT audit_id FROM audit_records WHERE record_id = ?)", q.RecordID)
	}
	if !q.Since.IsZero() {
		add("time >= ?", ns(q.Since))
	}
	if !q.Until.IsZero() {
		add("time < ?", ns(q.Until))
	}
	args = append(args, limit)
	rows, err := s.db.QueryContext(ctx, `SELECT id, time, key, run, step, kind, system, record_ids, idem_key, detail FROM audit WHERE `+
		strings.Join(where, " AND ")+` ORDER BY id LIMIT ?`, args...)
	if err != nil {
		return nil, fmt.Errorf("sqlite: query audit: %w", err)
	}
	defer rows.Close()
	var out []crmsync.AuditEntry
	for rows.Next() {
		var r crmsync.AuditEntry
		var at int64
		var run, ids string
		var detail []byte
		if err := rows.Scan(&r.ID, &at, &r.Key, &run, &r.Step, &r.Kind, &r.System, &ids, &r.IdemKey, &detail); err != nil {
			return nil, fmt.Errorf("sqlite: query audit: %w", err)
		}
		r.Time, r.Run = tm(at), crmsync.RunID(run)
		if len(detail) > 0 {
			r.Detail = detail
		}
		if err := json.Unmarshal([]byte(ids), &r.RecordIDs); err != nil {
			return nil, fmt.Errorf("sqlite: query audit: row %d record ids: %w", r.ID, err)
		}
		if len(r.RecordIDs) == 0 {
			r.RecordIDs = nil
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

const deadCols = `id, key, run, step, system, record_id, payload, error, status, claimed_by, created, updated`

func scanDead(sc interface{ Scan(...any) error }) (crmsync.DeadLetter, error) {
	var d crmsync.DeadLetter
	var run, status, claimed string
	var payload []byte
	var created, updated int64
	if err := sc.Scan(&d.ID, &d.Key, &run, &d.Step, &d.System, &d.RecordID, &payload, &d.Error, &status, &claimed, &created, &updated); err != nil {
		return d, err
	}
	d.Run, d.Status, d.ClaimedBy = crmsync.RunID(run), crmsync.DeadLetterStatus(status), crmsync.RunID(claimed)
	d.Created, d.Updated = tm(created), tm(updated)
	if len(payload) > 0 {
		d.Payload = payload
	}
	return d, nil
}

func listDead(ctx context.Context, q querier, what, query string, args ...any) ([]crmsync.DeadLetter, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("sqlite: %s: %w", what, err)
	}
	defer rows.Close()
	var out []crmsync.DeadLetter
	for rows.Next() {
		d, err := scanDead(rows)
		if err != nil {
			return nil, fmt.Errorf("sqlite: %s: %w", what, err)
		}
		out = append(out, d)
	}
	return out, rows.Err()
}

// ListDeadLetters implements crmsync.DeadLetterStore.
func (s *Store) ListDeadLetters(ctx context.Context, q crmsync.DeadLetterQuery) ([]crmsync.DeadLetter, error) {
	limit := q.Limit
	if limit <= 0 {
		limit = 100
	}
	where, args := []string{"id > ?"}, []any{q.After}
	if q.Key != "" {
		where, args = append(where, "key = ?"), append(args, q.Key)
	}
	if q.Status != "" {
		where, args = append(where, "status = ?"), append(args, string(q.Status))
	}
	args = append(args, limit)
	return listDead(ctx, s.db, "list dead letters", `SELECT `+deadCols+` FROM dead_letters WHERE `+strings.Join(where, " AND ")+` ORDER BY id LIMIT ?`, args...)
}

// GetDeadLetter implements crmsync.DeadLetterStore.
func (s *Store) GetDeadLetter(ctx context.Context, id int64) (crmsync.DeadLetter, error) {
	d, err := scanDead(s.db.QueryRowContext(ctx, `SELECT `+deadCols+` FROM dead_letters WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return d, fmt.Errorf("sqlite: dead letter %d: %w", id, crmsync.ErrNotFound)
	}
	if err != nil {
		return d, fmt.Errorf("sqlite: dead letter %d: %w", id, err)
	}
	return d, nil
}

// SetDeadLetterStatus implements crmsync.DeadLetterStore.
func (s *Store) SetDeadLetterStatus(ctx context.Context, id int64, status crmsync.DeadLetterStatus, now time.Time) error {
	if status != crmsync.DeadReplay && status != crmsync.DeadDiscarded {
		return fmt.Errorf("sqlite: dead letter %d: status %q: only %q or %q may be set", id, status, crmsync.DeadReplay, crmsync.DeadDiscarded)
	}
	return s.tx(ctx, fmt.Sprintf("dead letter %d", id), func(tx querier) error {
		var cur string
		err := tx.QueryRowContext(ctx, `SELECT status FROM dead_letters WHERE id = ?`, id).Scan(&cur)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("sqlite: dead letter %d: %w", id, crmsync.ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("sqlite: dead letter %d: %w", id, err)
		}
		if cur != string(crmsync.DeadParked) && cur != string(crmsync.DeadReplayed) && cur != string(crmsync.DeadFailedAgain) {
			return fmt.Errorf("sqlite: dead letter %d is %s, not parked", id, cur)
		}
		if _, err := tx.ExecContext(ctx, `UPDATE dead_letters SET status = ?, claimed_by = '', updated = ? WHERE id = ?`, string(status), ns(now), id); err != nil {
			return fmt.Errorf("sqlite: dead letter %d: %w", id, err)
		}
		return nil
	})
}

// ClaimReplays implements crmsync.DeadLetterStore.
func (s *Store) ClaimReplays(ctx context.Context, l crmsync.Lease, now time.Time) ([]crmsync.DeadLetter, error) {
	var out []crmsync.DeadLetter
	err := s.tx(ctx, "claim replays for "+l.Key, func(tx querier) error {
		if err := lost(ctx, tx, l); err != nil {
			return err
		}
		// Only a run's first start claims; a resumed run gets its letters back.
		if _, err := tx.ExecContext(ctx, `UPDATE dead_letters SET status = 'replayed', claimed_by = ?, updated = ?
			WHERE key = ? AND status = 'replay' AND EXISTS (SELECT 1 FROM runs WHERE id = ? AND attempts = 1)`,
			string(l.Run), ns(now), l.Key, string(l.Run)); err != nil {
			return fmt.Errorf("sqlite: claim replays for %s: %w", l.Key, err)
		}
		var err error
		out, err = listDead(ctx, tx, "claim replays", `SELECT `+deadCols+` FROM dead_letters
			WHERE key = ? AND status IN ('replayed', 'failed-again') AND claimed_by = ? ORDER BY id`, l.Key, string(l.Run))
		return err
	})
	return out, err
}
