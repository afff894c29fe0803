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

func (s *Store) links(ctx context.Context, col, key string, ids []string) (map[string]crmsync.Link, error) {
	out := map[string]crmsync.Link{}
	for len(ids) > 0 {
		chunk := ids[:min(len(ids), 500)]
		ids = ids[len(chunk):]
		args := []any{key}
		for _, id := range chunk {
			args = append(args, id)
		}
		rows, err := s.db.QueryContext(ctx, `SELECT a_id, b_id, base, updated_at FROM links WHERE key = ? AND `+col+` IN (`+placeholders(len(chunk))+`)`, args...)
		if err != nil {
			return nil, fmt.Errorf("sqlite: links of %s: %w", key, err)
		}
		for rows.Next() {
			l := crmsync.Link{Key: key}
			var base []byte
			var at int64
			if err := rows.Scan(&l.AID, &l.BID, &base, &at); err != nil {
				rows.Close()
				return nil, fmt.Errorf("sqlite: links of %s: %w", key, err)
			}
			if len(base) > 0 {
				if err := json.Unmarshal(base, &l.Base); err != nil {
					rows.Close()
					return nil, fmt.Errorf("sqlite: link %s/%s: base snapshot: %w", l.AID, l.BID, err)
				}
			}
			l.UpdatedAt = tm(at)
			if col == "a_id" {
				out[l.AID] = l
			} else {
				out[l.BID] = l
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("sqlite: links of %s: %w", key, err)
		}
	}
	return out, nil
}

// LinksByA implements crmsync.LinkStore.
func (s *Store) LinksByA(ctx context.Context, key string, ids []string) (map[string]crmsync.Link, error) {
	return s.links(ctx, "a_id", key, ids)
}

// LinksByB implements crmsync.LinkStore.
func (s *Store) LinksByB(ctx context.Context, key string, ids []string) (map[string]crmsync.Link, error) {
	return s.links(ctx, "b_id", key, ids)
}

// PutLinks implements crmsync.LinkStore.
func (s *Store) PutLinks(ctx context.Context, links []crmsync.Link) error {
	if len(links) == 0 {
		return nil
	}
	return s.tx(ctx, "put links", func(tx querier) error { return putLinks(ctx, tx, links) })
}

func putLinks(ctx context.Context, q querier, links []crmsync.Link) error {
	for _, l := range links {
		if l.Key == "" || l.AID == "" || l.BID == "" {
			return fmt.Errorf("sqlite: put link %s/%s: key and both ids are required", l.AID, l.BID)
		}
		base, err := json.Marshal(l.Base)
		if err != nil {
			return fmt.Errorf("sqlite: put link %s/%s: base snapshot: %w", l.AID, l.BID, err)
		}
		// A record is linked to one counterpart: drop a link that holds either id.
		// Two statements, so that each uses its index (an OR scans the table).
		if _, err := q.ExecContext(ctx, `DELETE FROM links WHERE key = ? AND a_id = ?`, l.Key, l.AID); err != nil {
			return fmt.Errorf("sqlite: put link %s/%s: %w", l.AID, l.BID, err)
		}
		if _, err := q.ExecContext(ctx, `DELETE FROM links WHERE key = ? AND b_id = ?`, l.Key, l.BID); err != nil {
			return fmt.Errorf("sqlite: put link %s/%s: %w", l.AID, l.BID, err)
		}
		if _, err := q.ExecContext(ctx, `INSERT INTO links (key, a_id, b_id, base, updated_at) VALUES (?, ?, ?, ?, ?)`,
			l.Key, l.AID, l.BID, base, ns(l.UpdatedAt)); err != nil {
			return fmt.Errorf("sqlite: put link %s/%s: %w", l.AID, l.BID, err)
		}
	}
	return nil
}

// SaveConflicts implements crmsync.ConflictStore.
func (s *Store) SaveConflicts(ctx context.Context, cs []crmsync.Conflict) error {
	if len(cs) == 0 {
		return nil
	}
	return s.tx(ctx, "save conflicts", func(tx querier) error { return saveConflicts(ctx, tx, cs) })
}

func saveConflicts(ctx context.Context, q querier, cs []crmsync.Conflict) error {
	for _, c := range cs {
		if c.ID == "" {
			return errors.New("sqlite: save conflict: empty id")
		}
		body, err := json.Marshal(c)
		if err != nil {
			return fmt.Errorf("sqlite: save conflict %s: %w", c.ID, err)
		}
		keepChoice := ""
		if c.State == crmsync.ConflictHeld || c.State == crmsync.ConflictResolved {
			keepChoice = `WHERE conflicts.state NOT IN ('chosen', 'applied')`
		}
		if _, err := q.ExecContext(ctx, `INSERT INTO conflicts (id, key, state, field, body) VALUES (?, ?, ?, ?, ?)
			ON CONFLICT (id) DO UPDATE SET key = excluded.key, state = excluded.state, field = excluded.field, body = excluded.body `+keepChoice,
			c.ID, c.Key, string(c.State), c.Field, body); err != nil {
			return fmt.Errorf("sqlite: save conflict %s: %w", c.ID, err)
		}
	}
	return nil
}

func scanConflicts(rows *sql.Rows) ([]crmsync.Conflict, error) {
	defer rows.Close()
	var out []crmsync.Conflict
	for rows.Next() {
		var body []byte
		if err := rows.Scan(&body); err != nil {
			return nil, err
		}
		var c crmsync.Conflict
		if err := json.Unmarshal(body, &c); err != nil {
			return nil, fmt.Errorf("conflict body: %w", err)
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

// ListConflicts implements crmsync.ConflictStore.
func (s *Store) ListConflicts(ctx context.Context, f crmsync.ConflictFilter) ([]crmsync.Conflict, error) {
	where, args := []string{"1 = 1"}, []any{}
	if f.Key != "" {
		where, args = append(where, "key = ?"), append(args, f.Key)
	}
	if f.State != "" {
		where, args = append(where, "state = ?"), append(args, string(f.State))
	}
	if f.Field != "" {
		where, args = append(where, "field = ?"), append(args, f.Field)
	}
	limit := -1
	if f.Limit > 0 {
		limit = f.Limit
	}
	args = append(args, limit)
	rows, err := s.db.QueryContext(ctx, `SELECT body FROM conflicts WHERE `+strings.Join(where, " AND ")+` ORDER BY seq LIMIT ?`, args...)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list conflicts: %w", err)
	}
	out, err := scanConflicts(rows)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list conflicts: %w", err)
	}
	return out, nil
}

// GetConflict implements crmsync.ConflictStore.
func (s *Store) GetConflict(ctx context.Context, id string) (crmsync.Conflict, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT body FROM conflicts WHERE id = ?`, id)
	if err != nil {
		return crmsync.Conflict{}, fmt.Errorf("sqlite: conflict %s: %w", id, err)
	}
	out, err := scanConflicts(rows)
	if err != nil {
		return crmsync.Conflict{}, fmt.Errorf("sqlite: conflict %s: %w", id, err)
	}
	if len(out) == 0 {
		return crmsync.Conflict{}, fmt.Errorf("sqlite: conflict %s: %w", id, crmsync.ErrNotFound)
	}
	return out[0], nil
}

// ResolveConflict implements crmsync.ConflictStore.
func (s *Store) ResolveConflict(ctx context.Context, id string, r crmsync.Resolution, now time.Time) error {
	return s.tx(ctx, "resolve conflict "+id, func(tx querier) error {
		var body []byte
		err := tx.QueryRowContext(ctx, `SELECT body FROM conflicts WHERE id = ?`, id).Scan(&body)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("sqlite: conflict %s: %w", id, crmsync.ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("sqlite: conflict %s: %w", id, err)
		}
		var c crmsync.Conflict
		if err := json.Unmarshal(body, &c); err != nil {
			return fmt.Errorf("sqlite: conflict %s: %w", id, err)
		}
		if c.State != crmsync.ConflictHeld && c.State != crmsync.ConflictChosen {
			return fmt.Errorf("sqlite: conflict %s is %s; only a held conflict can be resolved", id, c.State)
		}
		c.Resolution, c.ResolvedAt, c.State = &r, now, crmsync.ConflictChosen
		body, err = json.Marshal(c)
		if err != nil {
			return fmt.Errorf("sqlite: conflict %s: %w", id, err)
		}
		if _, err := tx.ExecContext(ctx, `UPDATE conflicts SET state = ?, body = ? WHERE id = ?`, string(c.State), body, id); err != nil {
			return fmt.Errorf("sqlite: conflict %s: %w", id, err)
		}
		return nil
	})
}

// PendingResolutions implements crmsync.ConflictStore.
func (s *Store) PendingResolutions(ctx context.Context, key string) ([]crmsync.Conflict, error) {
	return s.ListConflicts(ctx, crmsync.ConflictFilter{Key: key, State: crmsync.ConflictChosen})
}
