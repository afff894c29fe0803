package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/crmsync/crmsync"
	"github.com/jackc/pgx/v5"
)

var (
	_ crmsync.TriggerStore  = (*Store)(nil)
	_ crmsync.PositionStore = (*Store)(nil)
)

// AddTrigger implements crmsync.TriggerStore. It is one statement; the
// schema's trigger_seq sequence draws Seq.
func (s *Store) AddTrigger(ctx context.Context, t crmsync.PendingTrigger) error {
	if t.Key == "" {
		return errors.New("postgres: add trigger: key is empty")
	}
	n := t.Count
	if n <= 0 {
		n = 1
	}
	_, err := s.pool.Exec(ctx, s.q(`INSERT INTO {s}.triggers AS x (key, system, "full", reason, count, first, last, seq)
		VALUES ($1, $2, $3, $4, $5, $6, $7, nextval('{s}.trigger_seq'))
		ON CONFLICT (key, system) DO UPDATE SET "full" = x."full" OR excluded."full", reason = excluded.reason,
			count = x.count + excluded.count, last = excluded.last, seq = excluded.seq`),
		t.Key, t.System, t.Full, t.Reason, n, ns(t.First), ns(t.Last))
	if err != nil {
		return fmt.Errorf("postgres: add trigger %s: %w", t.Key, err)
	}
	return nil
}

// PendingTriggers implements crmsync.TriggerStore.
func (s *Store) PendingTriggers(ctx context.Context, key string, limit int) ([]crmsync.PendingTrigger, error) {
	if limit <= 0 {
		limit = 100
	}
	rows, err := s.pool.Query(ctx, s.q(`SELECT key, system, "full", reason, count, first, last, seq FROM {s}.triggers
		WHERE $1 = '' OR key = $1 ORDER BY seq LIMIT $2`), key, limit)
	if err != nil {
		return nil, fmt.Errorf("postgres: pending triggers of %q: %w", key, err)
	}
	defer rows.Close()
	var out []crmsync.PendingTrigger
	for rows.Next() {
		var p crmsync.PendingTrigger
		var first, last int64
		if err := rows.Scan(&p.Key, &p.System, &p.Full, &p.Reason, &p.Count, &first, &last, &p.Seq); err != nil {
			return nil, fmt.Errorf("postgres: pending triggers of %q: %w", key, err)
		}
		p.First, p.Last = tm(first), tm(last)
		out = append(out, p)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("postgres: pending triggers of %q: %w", key, err)
	}
	return out, nil
}

// ClearTriggers implements crmsync.TriggerStore.
func (s *Store) ClearTriggers(ctx context.Context, key string, through int64) (int, error) {
	tag, err := s.pool.Exec(ctx, s.q(`DELETE FROM {s}.triggers WHERE key = $1 AND seq <= $2`), key, through)
	if err != nil {
		return 0, fmt.Errorf("postgres: clear triggers of %s: %w", key, err)
	}
	return int(tag.RowsAffected()), nil
}

// GetPosition implements crmsync.PositionStore.
func (s *Store) GetPosition(ctx context.Context, stream string) ([]byte, error) {
	var pos []byte
	err := s.pool.QueryRow(ctx, s.q(`SELECT pos FROM {s}.positions WHERE stream = $1`), stream).Scan(&pos)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("postgres: position of %s: %w", stream, crmsync.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("postgres: position of %s: %w", stream, err)
	}
	return pos, nil
}

// SetPosition implements crmsync.PositionStore.
func (s *Store) SetPosition(ctx context.Context, stream string, pos []byte) error {
	if pos == nil {
		pos = []byte{}
	}
	_, err := s.pool.Exec(ctx, s.q(`INSERT INTO {s}.positions (stream, pos) VALUES ($1, $2)
		ON CONFLICT (stream) DO UPDATE SET pos = excluded.pos`), stream, pos)
	if err != nil {
		return fmt.Errorf("postgres: set position of %s: %w", stream, err)
	}
	return nil
}
