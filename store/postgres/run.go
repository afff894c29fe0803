package postgres

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/crmsync/crmsync"
	"github.com/jackc/pgx/v5"
)

var (
	_ crmsync.RunStarter = (*Store)(nil)
	_ crmsync.RunEnder   = (*Store)(nil)
)

// noFlush, as a column of a statement's one returned row, makes the
// statement's transaction commit without waiting for the WAL flush
// (synchronous_commit off, for that transaction only). StartRun and EndRun
// use it (in their first statement and in the statement that ends the run,
// so it costs no statement of its own): only step commits must be durable
// when they return. An EndRun whose lease was lost returns no row and
// waits for the flush: it changed nothing but its audit rows.
//
// Why that is safe. WAL is one sequence: a commit that waits for its flush
// (a step's checkpoint, a lease renewal) makes every earlier commit durable
// too, so a server crash can only undo a tail of starts and ends that no
// durable write depends on. An undone start leaves the key as it was: the
// process that started fences itself out at its first checkpoint or
// renewal, because the lease row no longer holds its token (a random number
// drawn at each acquisition; the generation alone could be handed out
// again to the next process). An undone end leaves the run open with its
// lease held until the lease expires; the next start resumes it, its steps
// answered from the store, as after a crash of the process just before it
// ended.
const noFlush = `set_config('synchronous_commit', 'off', true)`

// newToken draws a lease token: random, never zero.
func newToken() int64 {
	for {
		if t := rand.Int64(); t != 0 {
			return t
		}
	}
}

// StartRun implements crmsync.RunStarter, in one round trip when the key
// has no run to resume and no letter marked for replay (its first run, or
// one after a closed run: the common start), else in two.
//
// The first is one statement, the quick start. It takes the lease if it is
// free and no run is open on the key (the lease row's open is empty), or
// makes the key's lease row already taken, and opens the new run; a new run
// has no steps and claims no letters, since none is marked for replay.
// Concurrent starters of one key queue on the lease row's lock, and the
// update checks the free lease again on the row as the one before left it,
// so one wins. Its lock is the update's (FOR NO KEY UPDATE), which does not
// wait for checkpoints holding the row FOR KEY SHARE: none can matter here,
// since with no open run no step of the key will be read again. (A zombie
// holder's checkpoint was fenced by the start that took its run over, which
// waited for it, as the full start below does.)
//
// Otherwise the quick start changes nothing and the full start follows:
// plain statements in one pipeline, which PostgreSQL runs as one implicit
// transaction. The first makes sure the key's lease row exists and locks
// it (FOR UPDATE strength): concurrent starters of one key queue there,
// and checkpoints under the old lease (which hold the row FOR KEY SHARE)
// commit first. The second, only if the lease is free, resumes the key's
// open run or opens one, takes the lease and claims the letters marked for
// replay (a run's first start only; a resumed run gets its own back). The
// last two read the run's steps and letters. A live lease makes the second
// do nothing: the first's row says who holds it.
func (s *Store) StartRun(ctx context.Context, req crmsync.LeaseRequest) (crmsync.RunStart, error) {
	if req.Key == "" || req.Holder == "" || req.NewRun == "" || req.TTL <= 0 {
		return crmsync.RunStart{}, errors.New("postgres: start run: key, holder, new run id and a positive TTL are required")
	}
	expires := ns(req.Now.Add(req.TTL))
	token := newToken()
	var gen int64
	ri, err := scanRun(s.pool.QueryRow(ctx, s.sqlStartQuick, req.Key, req.Holder, req.Workflow, string(req.NewRun), ns(req.Now), expires, token), &gen, nil)
	if err == nil {
		return crmsync.RunStart{
			Lease: crmsync.Lease{Key: req.Key, Holder: req.Holder, Generation: gen, Run: ri.ID, Expires: tm(expires), Token: token},
			Run:   ri,
			Steps: map[string]crmsync.StepRecord{},
		}, nil
	}
	if !errors.Is(err, pgx.ErrNoRows) {
		return crmsync.RunStart{}, fmt.Errorf("postgres: start run for key %s: %w", req.Key, err)
	}
	ri, gen = crmsync.RunInfo{}, 0
	b := &pgx.Batch{}
	b.Queue(s.sqlStartLock, req.Key)
	b.Queue(s.sqlStartTake, req.Key, req.Holder, req.Workflow, string(req.NewRun), ns(req.Now), expires, token)
	b.Queue(s.sqlStartSteps, req.Key)
	b.Queue(s.sqlStartLetters, req.Key)
	br := s.pool.SendBatch(ctx, b)
	defer br.Close()
	var rs crmsync.RunStart
	var holder, run string
	var until int64
	if err := br.QueryRow().Scan(&holder, &run, &until, nil); err != nil {
		return rs, fmt.Errorf("postgres: start run for key %s: lease: %w", req.Key, err)
	}
	var id, status string
	var started, finished int64
	var report []byte
	err = br.QueryRow().Scan(&gen, &id, &ri.Key, &ri.Workflow, &status, &started, &finished, &ri.Attempts, &ri.Error, &report)
	if errors.Is(err, pgx.ErrNoRows) && run != "" && until > ns(req.Now) {
		return rs, fmt.Errorf("postgres: key %s held by %s until %s: %w", req.Key, holder, tm(until).Format(time.RFC3339), crmsync.ErrBusy)
	}
	if err != nil {
		return rs, fmt.Errorf("postgres: start run for key %s: %w", req.Key, err)
	}
	ri.ID, ri.Status, ri.StartedAt, ri.FinishedAt, ri.Report = crmsync.RunID(id), crmsync.RunStatus(status), tm(started), tm(finished), raw(report)
	rs.Run = ri
	rs.Lease = crmsync.Lease{Key: req.Key, Holder: req.Holder, Generation: gen, Run: ri.ID, Expires: tm(expires), Token: token}
	rows, err := br.Query()
	if err != nil {
		return crmsync.RunStart{}, fmt.Errorf("postgres: start run %s: load steps: %w", id, err)
	}
	if rs.Steps, err = scanSteps(rows); err != nil {
		return crmsync.RunStart{}, fmt.Errorf("postgres: start run %s: load steps: %w", id, err)
	}
	rows, err = br.Query()
	if err != nil {
		return crmsync.RunStart{}, fmt.Errorf("postgres: start run %s: replays: %w", id, err)
	}
	if rs.Replays, err = scanDeads(rows); err != nil {
		return crmsync.RunStart{}, fmt.Errorf("postgres: start run %s: replays: %w", id, err)
	}
	if err := br.Close(); err != nil {
		return crmsync.RunStart{}, fmt.Errorf("postgres: start run %s: %w", id, err)
	}
	return rs, nil
}

// EndRun implements crmsync.RunEnder in one round trip: the audit rows,
// the fenced outcome and release (one statement) and, when a closed run
// can be due, the pruning go in one pipeline, which PostgreSQL runs as one
// implicit transaction.
func (s *Store) EndRun(ctx context.Context, l crmsync.Lease, end crmsync.RunEnd) (crmsync.RunInfo, int, error) {
	if end.Status != crmsync.RunOpen && !end.Status.Closed() {
		return crmsync.RunInfo{}, 0, fmt.Errorf("postgres: finish run %s: unknown status %q", l.Run, end.Status)
	}
	finished := int64(0)
	if end.Status.Closed() {
		finished = ns(end.Now)
	}
	b := &pgx.Batch{}
	s.queueAudit(b, end.Audit)
	b.Queue(s.sqlEndRun, string(end.Status), bytes(end.Report), end.Error, finished, string(l.Run), l.Key, l.Generation, l.Token)
	// The prune goes only when a closed run can be due (pruneGate).
	prune := !end.PruneBefore.IsZero() && s.prune.take(ns(end.PruneBefore))
	if prune {
		b.Queue(s.sqlEndPrune, ns(end.PruneBefore))
	}
	ok := false
	defer func() {
		if prune && !ok {
			s.prune.failed()
		}
	}()
	br := s.pool.SendBatch(ctx, b)
	defer br.Close()
	what := "end run " + string(l.Run)
	if len(end.Audit) > 0 {
		if _, err := br.Exec(); err != nil {
			return crmsync.RunInfo{}, 0, fmt.Errorf("postgres: %s: audit: %w", what, err)
		}
	}
	ri, err := scanRun(br.QueryRow(), nil)
	lost := errors.Is(err, pgx.ErrNoRows)
	if err != nil && !lost {
		return crmsync.RunInfo{}, 0, fmt.Errorf("postgres: %s: %w", what, err)
	}
	n := 0
	var due int64
	if prune {
		if err := br.QueryRow().Scan(&n, &due); err != nil {
			return crmsync.RunInfo{}, 0, fmt.Errorf("postgres: %s: prune: %w", what, err)
		}
	}
	if err := br.Close(); err != nil {
		return crmsync.RunInfo{}, 0, fmt.Errorf("postgres: %s: %w", what, err)
	}
	ok = true
	if prune {
		s.prune.done(due)
	}
	if !lost && finished != 0 {
		s.prune.closed(finished)
	}
	if lost {
		return crmsync.RunInfo{}, 0, fmt.Errorf("postgres: key %s generation %d: %w", l.Key, l.Generation, crmsync.ErrLeaseLost)
	}
	return ri, n, nil
}

// prepareRunSQL sets the statements of StartRun, EndRun and PruneRuns.
func (s *Store) prepareRunSQL() {
	// The quick start (see StartRun). At most one of made and taken writes:
	// taken reads the statement's snapshot, which holds no row made makes,
	// and made does nothing when the row exists (or waits for a concurrent
	// maker, and then does nothing, and taken sees no row: the full start
	// follows and finds the lease held).
	s.sqlStartQuick = s.q(`
WITH pending AS (
	SELECT 1 FROM {s}.dead_letters WHERE key = $1 AND status = 'replay' LIMIT 1
), made AS (
	INSERT INTO {s}.leases (key, holder, generation, run, expires, token, open)
	SELECT $1, $2, 1, $4, $6, $7, $4 WHERE NOT EXISTS (SELECT 1 FROM pending)
	ON CONFLICT (key) DO NOTHING
	RETURNING generation
), taken AS (
	UPDATE {s}.leases SET holder = $2, generation = generation + 1, run = $4, expires = $6, token = $7, open = $4
	WHERE key = $1 AND (run = '' OR expires <= $5) AND open = '' AND NOT EXISTS (SELECT 1 FROM pending)
	RETURNING generation
), lease AS (
	SELECT generation FROM made UNION ALL SELECT generation FROM taken
), opened AS (
	INSERT INTO {s}.runs (id, key, workflow, status, started_at, attempts)
	SELECT $4, $1, $3, 'open', $5, 1 FROM lease
	RETURNING ` + runCols + `
)
SELECT opened.*, lease.generation, ` + noFlush + ` FROM opened, lease`)
	// The lease row, created if absent and locked. Setting the key (to
	// itself) takes the row lock of FOR UPDATE, not the weaker one of an
	// update that leaves keys alone: it waits for checkpoints holding FOR
	// KEY SHARE. It returns the row as it was.
	s.sqlStartLock = s.q(`INSERT INTO {s}.leases AS x (key, holder, generation, run, expires) VALUES ($1, '', 0, '', 0)
ON CONFLICT (key) DO UPDATE SET key = x.key
RETURNING holder, run, expires, ` + noFlush)
	// The start proper, if the lease (locked above) is free. Its
	// sub-statements see one snapshot: each reads what the one before
	// returned, never what it wrote.
	s.sqlStartTake = s.q(`
WITH free AS (
	SELECT 1 FROM {s}.leases WHERE key = $1 AND (run = '' OR expires <= $5)
), resumed AS (
	UPDATE {s}.runs SET attempts = attempts + 1
	WHERE id = (SELECT open FROM {s}.leases WHERE key = $1) AND status = 'open' AND EXISTS (SELECT 1 FROM free)
	RETURNING ` + runCols + `
), opened AS (
	INSERT INTO {s}.runs (id, key, workflow, status, started_at, attempts)
	SELECT $4, $1, $3, 'open', $5, 1 WHERE EXISTS (SELECT 1 FROM free) AND NOT EXISTS (SELECT 1 FROM resumed)
	RETURNING ` + runCols + `
), r AS (
	SELECT * FROM resumed UNION ALL SELECT * FROM opened
), taken AS (
	UPDATE {s}.leases SET holder = $2, generation = generation + 1, run = (SELECT id FROM r), expires = $6, token = $7,
		open = (SELECT id FROM r)
	WHERE key = $1 AND EXISTS (SELECT 1 FROM r)
	RETURNING generation
), claimed AS (
	UPDATE {s}.dead_letters SET status = 'replayed', claimed_by = (SELECT id FROM r), updated = $5
	WHERE key = $1 AND status = 'replay' AND (SELECT attempts FROM r) = 1
)
SELECT taken.generation, r.* FROM taken, r`)
	s.sqlStartSteps = s.q(`SELECT step, result, error, attempts, done FROM {s}.steps
		WHERE run = (SELECT run FROM {s}.leases WHERE key = $1)`)
	s.sqlStartLetters = s.q(`SELECT ` + deadCols + ` FROM {s}.dead_letters
		WHERE key = $1 AND status IN ('replayed', 'failed-again') AND claimed_by = (SELECT run FROM {s}.leases WHERE key = $1) ORDER BY id`)
	// One statement releases the lease and, exactly when the release
	// matched (the lease is still l), records the outcome: a closed run
	// leaves the lease's open run and joins the queue of runs to prune. The
	// lease row is locked first, as a start locks it before the run. The
	// update of the run is HOT: no index of runs holds what it changes.
	s.sqlEndRun = s.q(`WITH released AS (
	UPDATE {s}.leases SET holder = '', run = '', expires = 0, open = CASE WHEN $1 IN ('finished', 'failed') THEN '' ELSE open END
	WHERE key = $6 AND generation = $7 AND run = $5 AND token = $8 RETURNING key
), queued AS (
	INSERT INTO {s}.closed (finished_at, run) SELECT $4, $5 WHERE $1 IN ('finished', 'failed') AND EXISTS (SELECT 1 FROM released)
	ON CONFLICT DO NOTHING
)
UPDATE {s}.runs SET status = $1, report = $2, error = $3, finished_at = $4
WHERE id = $5 AND EXISTS (SELECT 1 FROM released)
RETURNING ` + runCols + `, ` + noFlush)
	// A run is pruned once: it leaves the queue of closed runs (closed)
	// with its steps, in one statement, and its mark (kept) goes false. Runs
	// another transaction is pruning right now are skipped, not waited for:
	// that one prunes them (or, if it rolls back, the next prune does). The
	// count is of runs that had steps; every sub-statement sees the steps as
	// they were before the delete. The queue rows due are collected first
	// (an array of row addresses), the runs then marked by id: as a join the
	// planner may scan all runs to mark a few.
	s.sqlPrune = s.q(sqlPruneWith + `SELECT count(DISTINCT run) FROM gone`)
	// EndRun's prune also returns the earliest finish time of a closed run
	// it leaves in the queue (MaxInt64 if none), for the pruneGate: the
	// queue's first entry from the cutoff on.
	s.sqlEndPrune = s.q(sqlPruneWith + `SELECT (SELECT count(DISTINCT run) FROM gone),
	coalesce((SELECT min(finished_at) FROM {s}.closed WHERE finished_at >= $1), 9223372036854775807)`)
}

const sqlPruneWith = `
WITH due AS (
	DELETE FROM {s}.closed WHERE ctid = ANY (ARRAY(
		SELECT ctid FROM {s}.closed WHERE finished_at < $1 FOR UPDATE SKIP LOCKED))
	RETURNING run
), pruned AS (
	UPDATE {s}.runs SET kept = false WHERE id = ANY (ARRAY(SELECT run FROM due))
	RETURNING id
), gone AS (
	DELETE FROM {s}.steps WHERE run IN (SELECT id FROM pruned) RETURNING run
)
`

func scanSteps(rows pgx.Rows) (map[string]crmsync.StepRecord, error) {
	defer rows.Close()
	out := map[string]crmsync.StepRecord{}
	for rows.Next() {
		var r crmsync.StepRecord
		var result []byte
		var done int64
		if err := rows.Scan(&r.Step, &result, &r.Error, &r.Attempts, &done); err != nil {
			return nil, err
		}
		r.Result, r.Done = raw(result), tm(done)
		out[r.Step] = r
	}
	return out, rows.Err()
}

func scanDeads(rows pgx.Rows) ([]crmsync.DeadLetter, error) {
	defer rows.Close()
	var out []crmsync.DeadLetter
	for rows.Next() {
		d, err := scanDead(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, rows.Err()
}
