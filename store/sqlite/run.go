package sqlite

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/crmsync/crmsync"
)

var (
	_ crmsync.RunStarter = (*Store)(nil)
	_ crmsync.RunEnder   = (*Store)(nil)
)

// sqlTakeLease takes the key's lease unless a live run holds it: for the
// key's open run if it has one, else for the new run. It returns the new
// generation, the run and whether that run was open already, and whether
// the key has dead letters to replay; no row if the lease is held. Like
// every frequent statement it takes plain ? parameters, repeated where
// needed: the driver binds a numbered one (?NNN) by looking its name up.
const sqlTakeLease = `INSERT INTO leases (key, holder, generation, run, expires, open_run)
VALUES (?, ?, 1, ?, ?, ?)
ON CONFLICT (key) DO UPDATE SET holder = excluded.holder, generation = leases.generation + 1,
	run = CASE leases.open_run WHEN '' THEN excluded.run ELSE leases.open_run END,
	open_run = CASE leases.open_run WHEN '' THEN excluded.run ELSE leases.open_run END,
	expires = excluded.expires
WHERE leases.run = '' OR leases.expires <= ?
RETURNING generation, run, EXISTS (SELECT 1 FROM runs WHERE runs.id = leases.run AND runs.status = 'open'),
	EXISTS (SELECT 1 FROM dead_letters WHERE dead_letters.key = leases.key AND status = 'replay')`

// StartRun implements crmsync.RunStarter in one transaction: the lease, the
// run, its replay claims, its steps and its letters. A new run with no
// letters to replay costs two statements.
func (s *Store) StartRun(ctx context.Context, req crmsync.LeaseRequest) (crmsync.RunStart, error) {
	if req.Key == "" || req.Holder == "" || req.NewRun == "" || req.TTL <= 0 {
		return crmsync.RunStart{}, errors.New("sqlite: start run: key, holder, new run id and a positive TTL are required")
	}
	var rs crmsync.RunStart
	err := s.tx(ctx, "start run for key "+req.Key, func(tx querier) error {
		now, expires := ns(req.Now), ns(req.Now.Add(req.TTL))
		var gen int64
		var id string
		var resumed, replays bool
		err := tx.QueryRowContext(ctx, sqlTakeLease, req.Key, req.Holder, string(req.NewRun), expires, string(req.NewRun), now).Scan(&gen, &id, &resumed, &replays)
		if errors.Is(err, sql.ErrNoRows) {
			var holder string
			var until int64
			if err := tx.QueryRowContext(ctx, `SELECT holder, expires FROM leases WHERE key = ?`, req.Key).Scan(&holder, &until); err != nil {
				return fmt.Errorf("sqlite: start run for key %s: %w", req.Key, err)
			}
			return fmt.Errorf("sqlite: key %s held by %s until %s: %w", req.Key, holder, tm(until).Format(time.RFC3339), crmsync.ErrBusy)
		}
		if err != nil {
			return fmt.Errorf("sqlite: start run for key %s: %w", req.Key, err)
		}
		if !resumed && id != string(req.NewRun) {
			// The lease named a run that is not open: start the new run.
			id = string(req.NewRun)
			if _, err := tx.ExecContext(ctx, `UPDATE leases SET run = ?, open_run = ? WHERE key = ?`, id, id, req.Key); err != nil {
				return fmt.Errorf("sqlite: start run for key %s: %w", req.Key, err)
			}
		}
		if resumed {
			rs.Run, err = scanRun(tx.QueryRowContext(ctx, `UPDATE runs SET attempts = attempts + 1 WHERE id = ? RETURNING `+runCols, id))
		} else {
			rs.Run = crmsync.RunInfo{ID: req.NewRun, Key: req.Key, Workflow: req.Workflow, Status: crmsync.RunOpen, StartedAt: tm(now), Attempts: 1}
			_, err = tx.ExecContext(ctx, `INSERT INTO runs (id, key, workflow, status, started_at, attempts, seq)
				VALUES (?, ?, ?, 'open', ?, 1, (SELECT COALESCE(MAX(seq), 0) + 1 FROM runs))`,
				id, req.Key, req.Workflow, now)
		}
		if err != nil {
			return fmt.Errorf("sqlite: start run for key %s: %w", req.Key, err)
		}
		rs.Lease = crmsync.Lease{Key: req.Key, Holder: req.Holder, Generation: gen, Run: rs.Run.ID, Expires: tm(expires)}
		if !resumed {
			// A new run: nothing to load, and only a first start claims letters.
			rs.Steps = map[string]crmsync.StepRecord{}
			if !replays {
				return nil
			}
			if _, err := tx.ExecContext(ctx, `UPDATE dead_letters SET status = 'replayed', claimed_by = ?, updated = ? WHERE key = ? AND status = 'replay'`,
				id, now, req.Key); err != nil {
				return fmt.Errorf("sqlite: claim replays for %s: %w", req.Key, err)
			}
		} else if rs.Steps, err = loadSteps(ctx, tx, rs.Run.ID); err != nil {
			return err
		}
		rs.Replays, err = listDead(ctx, tx, "claim replays", `SELECT `+deadCols+` FROM dead_letters
			WHERE key = ? AND status IN ('replayed', 'failed-again') AND claimed_by = ? ORDER BY id`, req.Key, id)
		return err
	})
	if err != nil {
		return crmsync.RunStart{}, err
	}
	return rs, nil
}

// EndRun implements crmsync.RunEnder in one transaction. Its audit rows are
// committed even when the lease was lost; nothing else is then.
func (s *Store) EndRun(ctx context.Context, l crmsync.Lease, end crmsync.RunEnd) (crmsync.RunInfo, int, error) {
	if end.Status != crmsync.RunOpen && !end.Status.Closed() {
		return crmsync.RunInfo{}, 0, fmt.Errorf("sqlite: finish run %s: unknown status %q", l.Run, end.Status)
	}
	finished := int64(0)
	if end.Status.Closed() {
		finished = ns(end.Now)
	}
	var ri crmsync.RunInfo
	n, lost := 0, false
	what := "end run " + string(l.Run)
	err := s.tx(ctx, what, func(tx querier) error {
		if err := appendAudit(ctx, tx, end.Audit); err != nil {
			return fmt.Errorf("sqlite: %s: %w", what, err)
		}
		// The run as stored is the outcome given and what its start stored.
		ri = crmsync.RunInfo{ID: l.Run, Key: l.Key, Status: end.Status, FinishedAt: tm(finished), Error: end.Error}
		if len(end.Report) > 0 {
			ri.Report = bytes.Clone(end.Report)
		}
		// The update says too whether any closed run is due for pruning.
		var started int64
		var due bool
		err := tx.QueryRowContext(ctx, `UPDATE runs SET status = ?, report = ?, error = ?, finished_at = ?
			WHERE id = ? AND EXISTS (SELECT 1 FROM leases WHERE key = ? AND generation = ? AND run = ?)
			RETURNING workflow, started_at, attempts,
				EXISTS (SELECT 1 FROM runs r WHERE r.status IN ('finished', 'failed') AND r.kept = 1 AND r.finished_at < ?)`,
			string(end.Status), []byte(end.Report), end.Error, finished, string(l.Run), l.Key, l.Generation, string(l.Run),
			ns(end.PruneBefore)).Scan(&ri.Workflow, &started, &ri.Attempts, &due)
		ri.StartedAt = tm(started)
		if errors.Is(err, sql.ErrNoRows) {
			lost = true
			return nil // keep the audit rows
		}
		if err != nil {
			return fmt.Errorf("sqlite: %s: %w", what, err)
		}
		// Releasing the lease; a closed run is no longer the key's open run.
		if _, err := tx.ExecContext(ctx, `UPDATE leases SET holder = '', run = '', expires = 0, open_run = CASE WHEN ? THEN '' ELSE open_run END
			WHERE key = ? AND generation = ? AND run = ?`,
			end.Status.Closed(), l.Key, l.Generation, string(l.Run)); err != nil {
			return fmt.Errorf("sqlite: %s: release lease: %w", what, err)
		}
		if due || (finished != 0 && finished < ns(end.PruneBefore)) {
			if n, err = pruneRuns(ctx, tx, end.PruneBefore); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return crmsync.RunInfo{}, 0, err
	}
	if lost {
		return crmsync.RunInfo{}, 0, fmt.Errorf("sqlite: key %s generation %d: %w", l.Key, l.Generation, crmsync.ErrLeaseLost)
	}
	return ri, n, nil
}

// pruneRuns deletes the steps of runs closed before t and takes those runs
// out of the index of closed runs, so that it reads each run once: one
// indexed read when there is nothing to prune. It counts the runs that had
// steps.
func pruneRuns(ctx context.Context, q querier, before time.Time) (int, error) {
	rows, err := q.QueryContext(ctx, `UPDATE runs SET kept = 0
		WHERE status IN ('finished', 'failed') AND kept = 1 AND finished_at < ? RETURNING id`, ns(before))
	if err != nil {
		return 0, fmt.Errorf("sqlite: prune runs: %w", err)
	}
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return 0, fmt.Errorf("sqlite: prune runs: %w", err)
		}
		ids = append(ids, id)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, fmt.Errorf("sqlite: prune runs: %w", err)
	}
	n := 0
	for _, id := range ids {
		res, err := q.ExecContext(ctx, `DELETE FROM steps WHERE run = ?`, id)
		if err != nil {
			return 0, fmt.Errorf("sqlite: prune run %s: %w", id, err)
		}
		if k, _ := res.RowsAffected(); k > 0 {
			n++
		}
	}
	return n, nil
}

func loadSteps(ctx context.Context, q querier, run crmsync.RunID) (map[string]crmsync.StepRecord, error) {
	rows, err := q.QueryContext(ctx, `SELECT step, result, error, attempts, done FROM steps WHERE run = ?`, string(run))
	if err != nil {
		return nil, fmt.Errorf("sqlite: load steps of run %s: %w", run, err)
	}
	defer rows.Close()
	out := map[string]crmsync.StepRecord{}
	for rows.Next() {
		var r crmsync.StepRecord
		var result []byte
		var done int64
		if err := rows.Scan(&r.Step, &result, &r.Error, &r.Attempts, &done); err != nil {
			return nil, fmt.Errorf("sqlite: load steps of run %s: %w", run, err)
		}
		r.Result, r.Done = result, tm(done)
		out[r.Step] = r
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: load steps of run %s: %w", run, err)
	}
	return out, nil
}
