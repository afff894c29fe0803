package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/crmsync/crmsync"
)

var (
	_ crmsync.TriggerStore  = (*Store)(nil)
	_ crmsync.PositionStore = (*Store)(nil)
)

// AddTrigger implements crmsync.TriggerStore.
func (s *Store) AddTrigger(ctx context.Context, t crmsync.PendingTrigger) error {
	if t.Key == "" {
		return errors.New("sqlite: add trigger: key is empty")
	}
	n := t.Count
	if n <= 0 {
		n = 1
	}
	return s.tx(ctx, "add trigger "+t.Key, func(tx querier) error {
		var seq int64
		if err := tx.QueryRowContext(ctx, `UPDATE trigger_seq SET n = n + 1 RETURNING n`).Scan(&seq); err != nil {
			return fmt.Errorf("sqlite: add trigger %s: %w", t.Key, err)
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO triggers (key, system, full, reason, count, first, last, seq)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (key, system) DO UPDATE SET full = full OR excluded.full, reason = excluded.reason,
				count = count + excluded.count, last = excluded.last, seq = excluded.seq`,
			t.Key, t.System, t.Full, t.Reason, n, ns(t.First), ns(t.Last), seq)
		if err != nil {
			return fmt.Errorf("sqlite: add trigger %s: %w", t.Key, err)
		}
		return nil
	})
}

// PendingTriggers implements crmsync.TriggerStore.
func (s *Store) PendingTriggers(ctx context.Context, key string, limit int) ([]crmsync.PendingTrigger, error) {
	if limit <= 0 {
		limit = 100
	}
	rows, err := prepared{s: s}.QueryContext(ctx, `SELECT key, system, full, reason, count, first, last, seq FROM triggers
		WHERE ? = '' OR key = ? ORDER BY seq LIMIT ?`, key, key, limit)
	if err != nil {
		return nil, fmt.Errorf("sqlite: pending triggers of %q: %w", key, err)
	}
	defer rows.Close()
	var out []crmsync.PendingTrigger
	for rows.Next() {
		var p crmsync.PendingTrigger
		var first, last int64
		if err := rows.Scan(&p.Key, &p.System, &p.Full, &p.Reason, &p.Count, &first, &last, &p.Seq); err != nil {
			return nil, fmt.Errorf("sqlite: pending triggers of %q: %w", key, err)
		}
		p.First, p.Last = tm(first), tm(last)
		out = append(out, p)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: pending triggers of %q: %w", key, err)
	}
	return out, nil
}

// ClearTriggers implements crmsync.TriggerStore.
func (s *Store) ClearTriggers(ctx context.Context, key string, through int64) (int, error) {
	var n int64
	err := s.tx(ctx, "clear triggers of "+key, func(tx querier) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM triggers WHERE key = ? AND seq <= ?`, key, through)
		if err != nil {
			return fmt.Errorf("sqlite: clear triggers of %s: %w", key, err)
		}
		n, err = res.RowsAffected()
		return err
	})
	return int(n), err
}

// GetPosition implements crmsync.PositionStore.
func (s *Store) GetPosition(ctx context.Context, stream string) ([]byte, error) {
	var pos []byte
	err := prepared{s: s}.QueryRowContext(ctx, `SELECT pos FROM positions WHERE stream = ?`, stream).Scan(&pos)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("sqlite: position of %s: %w", stream, crmsync.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("sqlite: position of %s: %w", stream, err)
	}
	return pos, nil
}

// SetPosition implements crmsync.PositionStore.
func (s *Store) SetPosition(ctx context.Context, stream string, pos []byte) error {
	if pos == nil {
		pos = []byte{}
	}
	return s.tx(ctx, "set position of "+stream, func(tx querier) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO positions (stream, pos) VALUES (?, ?)
			ON CONFLICT (stream) DO UPDATE SET pos = excluded.pos`, stream, pos)
		if err != nil {
			return fmt.Errorf("sqlite: set position of %s: %w", stream, err)
		}
		return nil
	})
}
