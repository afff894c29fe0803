package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/crmsync/crmsync"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// querier is what both the pool and a transaction offer.
type querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// tx runs fn in a transaction and commits it if fn returns nil.
func (s *Store) tx(ctx context.Context, what string, fn func(tx pgx.Tx) error) error {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("postgres: %s: %w", what, err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	if err := fn(tx); err != nil {
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("postgres: %s: commit: %w", what, err)
	}
	return nil
}

// bytes turns a JSON value into a bytea argument: nil stays NULL.
func bytes(m json.RawMessage) []byte {
	if m == nil {
		return nil
	}
	return []byte(m)
}

// raw turns a scanned bytea into a JSON value: NULL and empty become nil.
func raw(b []byte) json.RawMessage {
	if len(b) == 0 {
		return nil
	}
	return json.RawMessage(b)
}

// AcquireLease implements crmsync.RunStore.
func (s *Store) AcquireLease(ctx context.Context, req crmsync.LeaseRequest) (crmsync.Lease, crmsync.RunInfo, error) {
	if req.Key == "" || req.Holder == "" || req.NewRun == "" || req.TTL <= 0 {
		return crmsync.Lease{}, crmsync.RunInfo{}, errors.New("postgres: acquire lease: key, holder, new run id and a positive TTL are required")
	}
	var l crmsync.Lease
	var ri crmsync.RunInfo
	err := s.tx(ctx, "acquire lease "+req.Key, func(tx pgx.Tx) error {
		// Make sure the row exists, then lock it: concurrent acquirers of
		// one key queue here, and commits under the old generation (which
		// hold FOR KEY SHARE) finish first.
		if _, err := tx.Exec(ctx, s.q(`INSERT INTO {s}.leases (key, holder, generation, run, expires) VALUES ($1, '', 0, '', 0)
			ON CONFLICT (key) DO NOTHING`), req.Key); err != nil {
			return fmt.Errorf("postgres: acquire lease %s: %w", req.Key, err)
		}
		var holder, run, open string
		var gen, expires int64
		if err := tx.QueryRow(ctx, s.q(`SELECT holder, generation, run, expires, open FROM {s}.leases WHERE key = $1 FOR UPDATE`), req.Key).
			Scan(&holder, &gen, &run, &expires, &open); err != nil {
			return fmt.Errorf("postgres: acquire lease %s: %w", req.Key, err)
		}
		if run != "" && expires > ns(req.Now) {
			return fmt.Errorf("postgres: key %s held by %s until %s: %w", req.Key, holder, tm(expires).Format(time.RFC3339), crmsync.ErrBusy)
		}
		var id string
		// The key's open run, if any, is the lease's (schema 5).
		err := tx.QueryRow(ctx, s.q(`SELECT id FROM {s}.runs WHERE id = $1 AND status = 'open'`), open).Scan(&id)
		if errors.Is(err, pgx.ErrNoRows) {
			id = string(req.NewRun)
			_, err = tx.Exec(ctx, s.q(`INSERT INTO {s}.runs (id, key, workflow, status, started_at) VALUES ($1, $2, $3, 'open', $4)`),
				id, req.Key, req.Workflow, ns(req.Now))
		}
		if err != nil {
			return fmt.Errorf("postgres: acquire lease %s: open run: %w", req.Key, err)
		}
		ri, err = scanRun(tx.QueryRow(ctx, s.q(`UPDATE {s}.runs SET attempts = attempts + 1 WHERE id = $1 RETURNING `+runCols), id))
		if err != nil {
			return fmt.Errorf("postgres: acquire lease %s: run %s: %w", req.Key, id, err)
		}
		l = crmsync.Lease{Key: req.Key, Holder: req.Holder, Generation: gen + 1, Run: crmsync.RunID(id), Expires: tm(ns(req.Now.Add(req.TTL)))}
		l.Token = newToken()
		if _, err := tx.Exec(ctx, s.q(`UPDATE {s}.leases SET holder = $2, generation = $3, run = $4, expires = $5, token = $6, open = $4 WHERE key = $1`),
			l.Key, l.Holder, l.Generation, id, ns(l.Expires), l.Token); err != nil {
			return fmt.Errorf("postgres: acquire lease %s: %w", req.Key, err)
		}
		return nil
	})
	if err != nil {
		return crmsync.Lease{}, crmsync.RunInfo{}, err
	}
	return l, ri, nil
}

// lost reports whether l is no longer the key's current lease. In a
// transaction it also locks the lease row against a takeover.
func (s *Store) lost(ctx context.Context, q querier, l crmsync.Lease) error {
	var gen, token int64
	var run string
	err := q.QueryRow(ctx, s.q(`SELECT generation, run, token FROM {s}.leases WHERE key = $1 FOR KEY SHARE`), l.Key).Scan(&gen, &run, &token)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("postgres: check lease %s: %w", l.Key, err)
	}
	if err != nil || gen != l.Generation || run == "" || run != string(l.Run) || token != l.Token {
		return fmt.Errorf("postgres: key %s generation %d: %w", l.Key, l.Generation, crmsync.ErrLeaseLost)
	}
	return nil
}

// fenced runs a statement that must touch a row only while l is current.
func (s *Store) fenced(ctx context.Context, l crmsync.Lease, what, stmt string, args ...any) error {
	tag, err := s.pool.Exec(ctx, s.q(stmt), args...)
	if err != nil {
		return fmt.Errorf("postgres: %s: %w", what, err)
	}
	if tag.RowsAffected() == 0 {
		if err := s.lost(ctx, s.pool, l); err != nil {
			return err
		}
		return fmt.Errorf("postgres: %s: %w", what, crmsync.ErrNotFound)
	}
	return nil
}

// RenewLease implements crmsync.RunStore.
func (s *Store) RenewLease(ctx context.Context, l crmsync.Lease, ttl time.Duration, now time.Time) (crmsync.Lease, error) {
	l.Expires = tm(ns(now.Add(ttl)))
	err := s.fenced(ctx, l, "renew lease "+l.Key,
		`UPDATE {s}.leases SET expires = $1 WHERE key = $2 AND generation = $3 AND run = $4 AND token = $5`, ns(l.Expires), l.Key, l.Generation, string(l.Run), l.Token)
	if err != nil {
		return crmsync.Lease{}, err
	}
	return l, nil
}

// ReleaseLease implements crmsync.RunStore. The generation is kept, so
// fencing survives the release.
func (s *Store) ReleaseLease(ctx context.Context, l crmsync.Lease) error {
	return s.fenced(ctx, l, "release lease "+l.Key,
		`UPDATE {s}.leases SET holder = '', run = '', expires = 0 WHERE key = $1 AND generation = $2 AND run = $3 AND token = $4`, l.Key, l.Generation, string(l.Run), l.Token)
}

// GetLease implements crmsync.RunStore.
func (s *Store) GetLease(ctx context.Context, key string) (crmsync.Lease, error) {
	var l crmsync.Lease
	var run string
	var exp int64
	err := s.pool.QueryRow(ctx, s.q(`SELECT key, holder, generation, run, expires, token FROM {s}.leases WHERE key = $1 AND generation > 0`), key).
		Scan(&l.Key, &l.Holder, &l.Generation, &run, &exp, &l.Token)
	if errors.Is(err, pgx.ErrNoRows) {
		return l, fmt.Errorf("postgres: lease %s: %w", key, crmsync.ErrNotFound)
	}
	if err != nil {
		return l, fmt.Errorf("postgres: lease %s: %w", key, err)
	}
	l.Run, l.Expires = crmsync.RunID(run), tm(exp)
	return l, nil
}

// FinishRun implements crmsync.RunStore.
func (s *Store) FinishRun(ctx context.Context, l crmsync.Lease, status crmsync.RunStatus, report json.RawMessage, errMsg string, now time.Time) error {
	if status != crmsync.RunOpen && !status.Closed() {
		return fmt.Errorf("postgres: finish run %s: unknown status %q", l.Run, status)
	}
	finished := int64(0)
	if status.Closed() {
		finished = ns(now)
	}
	// A closed run joins the queue of runs to prune (schema 5).
	err := s.fenced(ctx, l, "finish run "+string(l.Run), `
WITH finished AS (
	UPDATE {s}.runs SET status = $1, report = $2, error = $3, finished_at = $4
	WHERE id = $5 AND EXISTS (SELECT 1 FROM {s}.leases WHERE key = $6 AND generation = $7 AND run = $8 AND token = $9 FOR KEY SHARE)
	RETURNING id
), queued AS (
	INSERT INTO {s}.closed (finished_at, run) SELECT $4, id FROM finished WHERE $1 IN ('finished', 'failed')
	ON CONFLICT DO NOTHING
)
SELECT 1 FROM finished`,
		string(status), bytes(report), errMsg, finished, string(l.Run), l.Key, l.Generation, string(l.Run), l.Token)
	if err == nil && finished != 0 {
		s.prune.closed(finished)
	}
	return err
}

const runCols = `id, key, workflow, status, started_at, finished_at, attempts, error, report`

// scanRun scans runCols, then into more (nil to skip a column).
func scanRun(row pgx.Row, more ...any) (crmsync.RunInfo, error) {
	var ri crmsync.RunInfo
	var id, status string
	var started, finished int64
	var report []byte
	if err := row.Scan(append([]any{&id, &ri.Key, &ri.Workflow, &status, &started, &finished, &ri.Attempts, &ri.Error, &report}, more...)...); err != nil {
		return ri, err
	}
	ri.ID, ri.Status, ri.StartedAt, ri.FinishedAt = crmsync.RunID(id), crmsync.RunStatus(status), tm(started), tm(finished)
	ri.Report = raw(report)
	return ri, nil
}

// GetRun implements crmsync.RunStore.
func (s *Store) GetRun(ctx context.Context, id crmsync.RunID) (crmsync.RunInfo, error) {
	ri, err := scanRun(s.pool.QueryRow(ctx, s.q(`SELECT `+runCols+` FROM {s}.runs WHERE id = $1`), string(id)))
	if errors.Is(err, pgx.ErrNoRows) {
		return ri, fmt.Errorf("postgres: run %s: %w", id, crmsync.ErrNotFound)
	}
	if err != nil {
		return ri, fmt.Errorf("postgres: run %s: %w", id, err)
	}
	return ri, nil
}

// ListRuns implements crmsync.RunStore.
func (s *Store) ListRuns(ctx context.Context, key string, limit int) ([]crmsync.RunInfo, error) {
	if limit <= 0 {
		limit = 100
	}
	q, args := `SELECT `+runCols+` FROM {s}.runs ORDER BY seq DESC LIMIT $1`, []any{limit}
	if key != "" {
		q, args = `SELECT `+runCols+` FROM {s}.runs WHERE key = $2 ORDER BY seq DESC LIMIT $1`, []any{limit, key}
	}
	rows, err := s.pool.Query(ctx, s.q(q), args...)
	if err != nil {
		return nil, fmt.Errorf("postgres: list runs: %w", err)
	}
	defer rows.Close()
	var out []crmsync.RunInfo
	for rows.Next() {
		ri, err := scanRun(rows)
		if err != nil {
			return nil, fmt.Errorf("postgres: list runs: %w", err)
		}
		out = append(out, ri)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("postgres: list runs: %w", err)
	}
	return out, nil
}

// PruneRuns implements crmsync.RunStore. It is one statement.
func (s *Store) PruneRuns(ctx context.Context, before time.Time) (int, error) {
	var n int
	err := s.pool.QueryRow(ctx, s.sqlPrune, ns(before)).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("postgres: prune runs: %w", err)
	}
	return n, nil
}

// LoadSteps implements crmsync.StepStore.
func (s *Store) LoadSteps(ctx context.Context, run crmsync.RunID) (map[string]crmsync.StepRecord, error) {
	rows, err := s.pool.Query(ctx, s.q(`SELECT step, result, error, attempts, done FROM {s}.steps WHERE run = $1`), string(run))
	if err != nil {
		return nil, fmt.Errorf("postgres: load steps of run %s: %w", run, err)
	}
	out, err := scanSteps(rows)
	if err != nil {
		return nil, fmt.Errorf("postgres: load steps of run %s: %w", run, err)
	}
	return out, nil
}

// Commit implements crmsync.StepStore. A checkpoint of a step alone is one
// INSERT … SELECT … WHERE EXISTS (the lease, locked FOR KEY SHARE so that a
// takeover waits for it) ON CONFLICT DO NOTHING. A checkpoint with cursors,
// ledger rows, audit rows, dead letters, links or conflicts is one
// transaction: that insert first, then the rest in one batch, written only
// if the step was new.
func (s *Store) Commit(ctx context.Context, l crmsync.Lease, cp crmsync.Checkpoint) error {
	if cp.Step.Step == "" {
		return fmt.Errorf("postgres: commit run %s: empty step id", cp.Run)
	}
	if l.Run != cp.Run {
		return fmt.Errorf("postgres: commit run %s under lease of run %s: %w", cp.Run, l.Run, crmsync.ErrLeaseLost)
	}
	st := cp.Step
	args := []any{string(cp.Run), st.Step, bytes(st.Result), st.Error, st.Attempts, ns(st.Done), l.Key, l.Generation, string(l.Run), l.Token}
	if len(cp.Cursors) == 0 && len(cp.Ledger) == 0 && len(cp.Audit) == 0 && len(cp.DeadLetters) == 0 && len(cp.Links) == 0 && len(cp.Conflicts) == 0 {
		n, err := s.group.do(&pending{ctx: ctx, sql: s.sqlStep, args: args})
		if err != nil {
			return fmt.Errorf("postgres: commit run %s step %q: %w", cp.Run, st.Step, err)
		}
		if n == 0 {
			return s.lost(ctx, s.pool, l) // nil: already stored
		}
		return nil
	}
	what := fmt.Sprintf("commit run %s step %q", cp.Run, st.Step)
	b := &pgx.Batch{}
	for _, d := range cp.DeadLetters {
		if d.ID == 0 {
			continue // in the checkpoint statement
		}
		// A claimed letter tried again in vain: update it while the run
		// still holds its claim, else park a new letter.
		b.Queue(s.q(`WITH upd AS (UPDATE {s}.dead_letters SET status = $1, error = $2, payload = $3, updated = $4
			WHERE id = $5 AND claimed_by = $6 AND status IN ('replayed', 'failed-again') RETURNING id)
			INSERT INTO {s}.dead_letters (key, run, step, system, record_id, payload, error, status, created, updated)
			SELECT $7, $8, $9, $10, $11, $3, $2, 'parked', $12, $4 WHERE NOT EXISTS (SELECT 1 FROM upd)`),
			string(d.Status), d.Error, bytes(d.Payload), ns(d.Updated), d.ID, string(cp.Run),
			d.Key, string(d.Run), d.Step, d.System, d.RecordID, ns(d.Created))
	}
	if err := s.queueLinks(b, cp.Links); err != nil {
		return fmt.Errorf("postgres: %s: %w", what, err)
	}
	if err := s.queueConflicts(b, cp.Conflicts); err != nil {
		return fmt.Errorf("postgres: %s: %w", what, err)
	}
	cargs := checkpointArgs(l, cp)
	if b.Len() == 0 {
		// Cursors, ledger, audit rows and new letters only: one statement.
		n, err := s.group.do(&pending{ctx: ctx, sql: s.sqlCheckpoint, args: cargs, scan: true})
		if err != nil {
			return fmt.Errorf("postgres: %s: %w", what, err)
		}
		if n == 0 {
			return s.lost(ctx, s.pool, l) // nil: already stored, nothing else written
		}
		return nil
	}
	return s.tx(ctx, what, func(tx pgx.Tx) error {
		var n int
		if err := tx.QueryRow(ctx, s.sqlCheckpoint, cargs...).Scan(&n); err != nil {
			return fmt.Errorf("postgres: %s: %w", what, err)
		}
		if n == 0 {
			return s.lost(ctx, tx, l) // nil: already stored, nothing else to write
		}
		if err := tx.SendBatch(ctx, b).Close(); err != nil {
			return fmt.Errorf("postgres: %s: %w", what, err)
		}
		return nil
	})
}

// GetCursor implements crmsync.CursorStore.
func (s *Store) GetCursor(ctx context.Context, key, name string) (string, error) {
	var v string
	err := s.pool.QueryRow(ctx, s.q(`SELECT value FROM {s}.cursors WHERE key = $1 AND name = $2`), key, name).Scan(&v)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", fmt.Errorf("postgres: cursor %s/%s: %w", key, name, crmsync.ErrNotFound)
	}
	if err != nil {
		return "", fmt.Errorf("postgres: cursor %s/%s: %w", key, name, err)
	}
	return v, nil
}

// ListCursors implements crmsync.CursorStore.
func (s *Store) ListCursors(ctx context.Context, key string) (map[string]string, error) {
	rows, err := s.pool.Query(ctx, s.q(`SELECT name, value FROM {s}.cursors WHERE key = $1`), key)
	if err != nil {
		return nil, fmt.Errorf("postgres: cursors of %s: %w", key, err)
	}
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var n, v string
		if err := rows.Scan(&n, &v); err != nil {
			return nil, fmt.Errorf("postgres: cursors of %s: %w", key, err)
		}
		out[n] = v
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("postgres: cursors of %s: %w", key, err)
	}
	return out, nil
}

// LookupWrites implements crmsync.LedgerStore.
func (s *Store) LookupWrites(ctx context.Context, keys []string) (map[string]crmsync.LedgerEntry, error) {
	out := map[string]crmsync.LedgerEntry{}
	if len(keys) == 0 {
		return out, nil
	}
	rows, err := s.pool.Query(ctx, s.q(`SELECT idem_key, run, step, system, record_id, result, at FROM {s}.ledger WHERE idem_key = ANY($1)`), keys)
	if err != nil {
		return nil, fmt.Errorf("postgres: lookup writes: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var e crmsync.LedgerEntry
		var run string
		var result []byte
		var at int64
		if err := rows.Scan(&e.IdemKey, &run, &e.Step, &e.System, &e.RecordID, &result, &at); err != nil {
			return nil, fmt.Errorf("postgres: lookup writes: %w", err)
		}
		e.Run, e.Result, e.At = crmsync.RunID(run), raw(result), tm(at)
		out[e.IdemKey] = e
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("postgres: lookup writes: %w", err)
	}
	return out, nil
}

// queueAudit queues rows as one statement.
func (s *Store) queueAudit(b *pgx.Batch, rows []crmsync.AuditEntry) {
	if len(rows) > 0 {
		b.Queue(s.sqlAudit, auditArgs(rows)...)
	}
}

// AppendAudit implements crmsync.AuditStore. The rows are one statement.
func (s *Store) AppendAudit(ctx context.Context, rows []crmsync.AuditEntry) error {
	if len(rows) == 0 {
		return nil
	}
	if _, err := s.pool.Exec(ctx, s.sqlAudit, auditArgs(rows)...); err != nil {
		return fmt.Errorf("postgres: append audit: %w", err)
	}
	return nil
}

// QueryAudit implements crmsync.AuditStore. IDs grow in insertion order;
// rows of transactions still in flight become visible when they commit, so
// a reader paging with After while writers are busy may see a row with a
// smaller ID than one it already read.
func (s *Store) QueryAudit(ctx context.Context, q crmsync.AuditQuery) ([]crmsync.AuditEntry, error) {
	limit := q.Limit
	if limit <= 0 {
		limit = 100
	}
	where, args := []string{"id > $1"}, []any{q.After}
	add := func(cond string, v any) {
		args = append(args, v)
		where = append(where, strings.ReplaceAll(cond, "$?", "$"+strconv.Itoa(len(args))))
	}
	if q.Key != "" {
		add("key = $?", q.Key)
	}
	if q.Run != "" {
		add("run = $?", string(q.Run))
	}
	if q.Kind != "" {
		add("kind = $?", q.Kind)
	}
	if q.RecordID != "" {
		add("record_ids @> ARRAY[$?::text]", q.RecordID)
	}
	if !q.Since.IsZero() {
		add("time >= $?", ns(q.Since))
	}
	if !q.Until.IsZero() {
		add("time < $?", ns(q.Until))
	}
	args = append(args, limit)
	rows, err := s.pool.Query(ctx, s.q(`SELECT id, time, key, run, step, kind, system, record_ids, idem_key, detail FROM {s}.audit WHERE `+
		strings.Join(where, " AND ")+` ORDER BY id LIMIT $`+strconv.Itoa(len(args))), args...)
	if err != nil {
		return nil, fmt.Errorf("postgres: query audit: %w", err)
	}
	defer rows.Close()
	var out []crmsync.AuditEntry
	for rows.Next() {
		var r crmsync.AuditEntry
		var at int64
		var run string
		var detail []byte
		if err := rows.Scan(&r.ID, &at, &r.Key, &run, &r.Step, &r.Kind, &r.System, &r.RecordIDs, &r.IdemKey, &detail); err != nil {
			return nil, fmt.Errorf("postgres: query audit: %w", err)
		}
		r.Time, r.Run, r.Detail = tm(at), crmsync.RunID(run), raw(detail)
		if len(r.RecordIDs) == 0 {
			r.RecordIDs = nil
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("postgres: query audit: %w", err)
	}
	return out, nil
}

const deadCols = `id, key, run, step, system, record_id, payload, error, status, claimed_by, created, updated`

func scanDead(row pgx.Row) (crmsync.DeadLetter, error) {
	var d crmsync.DeadLetter
	var run, status, claimed string
	var payload []byte
	var created, updated int64
	if err := row.Scan(&d.ID, &d.Key, &run, &d.Step, &d.System, &d.RecordID, &payload, &d.Error, &status, &claimed, &created, &updated); err != nil {
		return d, err
	}
	d.Run, d.Status, d.ClaimedBy = crmsync.RunID(run), crmsync.DeadLetterStatus(status), crmsync.RunID(claimed)
	d.Created, d.Updated, d.Payload = tm(created), tm(updated), raw(payload)
	return d, nil
}

func (s *Store) listDead(ctx context.Context, q querier, what, query string, args ...any) ([]crmsync.DeadLetter, error) {
	rows, err := q.Query(ctx, s.q(query), args...)
	if err != nil {
		return nil, fmt.Errorf("postgres: %s: %w", what, err)
	}
	defer rows.Close()
	var out []crmsync.DeadLetter
	for rows.Next() {
		d, err := scanDead(rows)
		if err != nil {
			return nil, fmt.Errorf("postgres: %s: %w", what, err)
		}
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("postgres: %s: %w", what, err)
	}
	return out, nil
}

// ListDeadLetters implements crmsync.DeadLetterStore.
func (s *Store) ListDeadLetters(ctx context.Context, q crmsync.DeadLetterQuery) ([]crmsync.DeadLetter, error) {
	limit := q.Limit
	if limit <= 0 {
		limit = 100
	}
	where, args := []string{"id > $1"}, []any{q.After}
	if q.Key != "" {
		args = append(args, q.Key)
		where = append(where, "key = $"+strconv.Itoa(len(args)))
	}
	if q.Status != "" {
		args = append(args, string(q.Status))
		where = append(where, "status = $"+strconv.Itoa(len(args)))
	}
	args = append(args, limit)
	return s.listDead(ctx, s.pool, "list dead letters", `SELECT `+deadCols+` FROM {s}.dead_letters WHERE `+strings.Join(where, " AND ")+
		` ORDER BY id LIMIT $`+strconv.Itoa(len(args)), args...)
}

// GetDeadLetter implements crmsync.DeadLetterStore.
func (s *Store) GetDeadLetter(ctx context.Context, id int64) (crmsync.DeadLetter, error) {
	d, err := scanDead(s.pool.QueryRow(ctx, s.q(`SELECT `+deadCols+` FROM {s}.dead_letters WHERE id = $1`), id))
	if errors.Is(err, pgx.ErrNoRows) {
		return d, fmt.Errorf("postgres: dead letter %d: %w", id, crmsync.ErrNotFound)
	}
	if err != nil {
		return d, fmt.Errorf("postgres: dead letter %d: %w", id, err)
	}
	return d, nil
}

// SetDeadLetterStatus implements crmsync.DeadLetterStore.
func (s *Store) SetDeadLetterStatus(ctx context.Context, id int64, status crmsync.DeadLetterStatus, now time.Time) error {
	if status != crmsync.DeadReplay && status != crmsync.DeadDiscarded {
		return fmt.Errorf("postgres: dead letter %d: status %q: only %q or %q may be set", id, status, crmsync.DeadReplay, crmsync.DeadDiscarded)
	}
	return s.tx(ctx, fmt.Sprintf("dead letter %d", id), func(tx pgx.Tx) error {
		var cur string
		err := tx.QueryRow(ctx, s.q(`SELECT status FROM {s}.dead_letters WHERE id = $1 FOR UPDATE`), id).Scan(&cur)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("postgres: dead letter %d: %w", id, crmsync.ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("postgres: dead letter %d: %w", id, err)
		}
		if cur != string(crmsync.DeadParked) && cur != string(crmsync.DeadReplayed) && cur != string(crmsync.DeadFailedAgain) {
			return fmt.Errorf("postgres: dead letter %d is %s, not parked", id, cur)
		}
		if _, err := tx.Exec(ctx, s.q(`UPDATE {s}.dead_letters SET status = $1, claimed_by = '', updated = $2 WHERE id = $3`), string(status), ns(now), id); err != nil {
			return fmt.Errorf("postgres: dead letter %d: %w", id, err)
		}
		return nil
	})
}

// ClaimReplays implements crmsync.DeadLetterStore.
func (s *Store) ClaimReplays(ctx context.Context, l crmsync.Lease, now time.Time) ([]crmsync.DeadLetter, error) {
	var out []crmsync.DeadLetter
	err := s.tx(ctx, "claim replays for "+l.Key, func(tx pgx.Tx) error {
		if err := s.lost(ctx, tx, l); err != nil {
			return err
		}
		// Only a run's first start claims; a resumed run gets its letters back.
		if _, err := tx.Exec(ctx, s.q(`UPDATE {s}.dead_letters SET status = 'replayed', claimed_by = $1, updated = $2
			WHERE key = $3 AND status = 'replay' AND EXISTS (SELECT 1 FROM {s}.runs WHERE id = $1 AND attempts = 1)`),
			string(l.Run), ns(now), l.Key); err != nil {
			return fmt.Errorf("postgres: claim replays for %s: %w", l.Key, err)
		}
		var err error
		out, err = s.listDead(ctx, tx, "claim replays", `SELECT `+deadCols+` FROM {s}.dead_letters WHERE key = $1 AND status IN ('replayed', 'failed-again') AND claimed_by = $2 ORDER BY id`,
			l.Key, string(l.Run))
		return err
	})
	return out, err
}
