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
)

func (s *Store) links(ctx context.Context, col, key string, ids []string) (map[string]crmsync.Link, error) {
	out := map[string]crmsync.Link{}
	if len(ids) == 0 {
		return out, nil
	}
	rows, err := s.pool.Query(ctx, s.q(`SELECT a_id, b_id, base, updated_at FROM {s}.links WHERE key = $1 AND `+col+` = ANY($2)`), key, ids)
	if err != nil {
		return nil, fmt.Errorf("postgres: links of %s: %w", key, err)
	}
	defer rows.Close()
	for rows.Next() {
		l := crmsync.Link{Key: key}
		var base []byte
		var at int64
		if err := rows.Scan(&l.AID, &l.BID, &base, &at); err != nil {
			return nil, fmt.Errorf("postgres: links of %s: %w", key, err)
		}
		if len(base) > 0 {
			if err := json.Unmarshal(base, &l.Base); err != nil {
				return nil, fmt.Errorf("postgres: link %s/%s: base snapshot: %w", l.AID, l.BID, err)
			}
		}
		l.UpdatedAt = tm(at)
		if col == "a_id" {
			out[l.AID] = l
		} else {
			out[l.BID] = l
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("postgres: links of %s: %w", key, err)
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

// PutLinks implements crmsync.LinkStore. The links are one transaction.
func (s *Store) PutLinks(ctx context.Context, links []crmsync.Link) error {
	if len(links) == 0 {
		return nil
	}
	b := &pgx.Batch{}
	if err := s.queueLinks(b, links); err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	return s.tx(ctx, "put links", func(tx pgx.Tx) error {
		if err := tx.SendBatch(ctx, b).Close(); err != nil {
			return fmt.Errorf("postgres: put links: %w", err)
		}
		return nil
	})
}

// queueLinks queues, for each link, the removal of any link holding either
// of its ids (a record is linked to one counterpart) and its insertion.
func (s *Store) queueLinks(b *pgx.Batch, links []crmsync.Link) error {
	for _, l := range links {
		if l.Key == "" || l.AID == "" || l.BID == "" {
			return fmt.Errorf("put link %s/%s: key and both ids are required", l.AID, l.BID)
		}
		base, err := json.Marshal(l.Base)
		if err != nil {
			return fmt.Errorf("put link %s/%s: base snapshot: %w", l.AID, l.BID, err)
		}
		b.Queue(s.q(`DELETE FROM {s}.links WHERE key = $1 AND (a_id = $2 OR b_id = $3)`), l.Key, l.AID, l.BID)
		b.Queue(s.q(`INSERT INTO {s}.links (key, a_id, b_id, base, updated_at) VALUES ($1, $2, $3, $4, $5)`),
			l.Key, l.AID, l.BID, base, ns(l.UpdatedAt))
	}
	return nil
}

// SaveConflicts implements crmsync.ConflictStore. The conflicts are one transaction.
func (s *Store) SaveConflicts(ctx context.Context, cs []crmsync.Conflict) error {
	if len(cs) == 0 {
		return nil
	}
	b := &pgx.Batch{}
	if err := s.queueConflicts(b, cs); err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	return s.tx(ctx, "save conflicts", func(tx pgx.Tx) error {
		if err := tx.SendBatch(ctx, b).Close(); err != nil {
			return fmt.Errorf("postgres: save conflicts: %w", err)
		}
		return nil
	})
}

// queueConflicts queues an upsert per conflict. Saving one again as held or
// resolved keeps a person's choice (state chosen) or its application.
func (s *Store) queueConflicts(b *pgx.Batch, cs []crmsync.Conflict) error {
	for _, c := range cs {
		if c.ID == "" {
			return errors.New("save conflict: empty id")
		}
		body, err := json.Marshal(c)
		if err != nil {
			return fmt.Errorf("save conflict %s: %w", c.ID, err)
		}
		keepChoice := ""
		if c.State == crmsync.ConflictHeld || c.State == crmsync.ConflictResolved {
			keepChoice = ` WHERE conflicts.state NOT IN ('chosen', 'applied')`
		}
		b.Queue(s.q(`INSERT INTO {s}.conflicts (id, key, state, field, body) VALUES ($1, $2, $3, $4, $5)
			ON CONFLICT (id) DO UPDATE SET key = excluded.key, state = excluded.state, field = excluded.field, body = excluded.body`+keepChoice),
			c.ID, c.Key, string(c.State), c.Field, body)
	}
	return nil
}

func scanConflicts(rows pgx.Rows) ([]crmsync.Conflict, error) {
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
	where, args := []string{"true"}, []any{}
	add := func(col string, v any) {
		args = append(args, v)
		where = append(where, col+" = $"+strconv.Itoa(len(args)))
	}
	if f.Key != "" {
		add("key", f.Key)
	}
	if f.State != "" {
		add("state", string(f.State))
	}
	if f.Field != "" {
		add("field", f.Field)
	}
	q := `SELECT body FROM {s}.conflicts WHERE ` + strings.Join(where, " AND ") + ` ORDER BY seq`
	if f.Limit > 0 {
		args = append(args, f.Limit)
		q += ` LIMIT $` + strconv.Itoa(len(args))
	}
	rows, err := s.pool.Query(ctx, s.q(q), args...)
	if err != nil {
		return nil, fmt.Errorf("postgres: list conflicts: %w", err)
	}
	out, err := scanConflicts(rows)
	if err != nil {
		return nil, fmt.Errorf("postgres: list conflicts: %w", err)
	}
	return out, nil
}

// GetConflict implements crmsync.ConflictStore.
func (s *Store) GetConflict(ctx context.Context, id string) (crmsync.Conflict, error) {
	rows, err := s.pool.Query(ctx, s.q(`SELECT body FROM {s}.conflicts WHERE id = $1`), id)
	if err != nil {
		return crmsync.Conflict{}, fmt.Errorf("postgres: conflict %s: %w", id, err)
	}
	out, err := scanConflicts(rows)
	if err != nil {
		return crmsync.Conflict{}, fmt.Errorf("postgres: conflict %s: %w", id, err)
	}
	if len(out) == 0 {
		return crmsync.Conflict{}, fmt.Errorf("postgres: conflict %s: %w", id, crmsync.ErrNotFound)
	}
	return out[0], nil
}

// ResolveConflict implements crmsync.ConflictStore.
func (s *Store) ResolveConflict(ctx context.Context, id string, r crmsync.Resolution, now time.Time) error {
	return s.tx(ctx, "resolve conflict "+id, func(tx pgx.Tx) error {
		var body []byte
		err := tx.QueryRow(ctx, s.q(`SELECT body FROM {s}.conflicts WHERE id = $1 FOR UPDATE`), id).Scan(&body)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("postgres: conflict %s: %w", id, crmsync.ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("postgres: conflict %s: %w", id, err)
		}
		var c crmsync.Conflict
		if err := json.Unmarshal(body, &c); err != nil {
			return fmt.Errorf("postgres: conflict %s: %w", id, err)
		}
		if c.State != crmsync.ConflictHeld && c.State != crmsync.ConflictChosen {
			return fmt.Errorf("postgres: conflict %s is %s; only a held conflict can be resolved", id, c.State)
		}
		c.Resolution, c.ResolvedAt, c.State = &r, now, crmsync.ConflictChosen
		body, err = json.Marshal(c)
		if err != nil {
			return fmt.Errorf("postgres: conflict %s: %w", id, err)
		}
		if _, err := tx.Exec(ctx, s.q(`UPDATE {s}.conflicts SET state = $1, body = $2 WHERE id = $3`), string(c.State), body, id); err != nil {
			return fmt.Errorf("postgres: conflict %s: %w", id, err)
		}
		return nil
	})
}

// PendingResolutions implements crmsync.ConflictStore.
func (s *Store) PendingResolutions(ctx context.Context, key string) ([]crmsync.Conflict, error) {
	return s.ListConflicts(ctx, crmsync.ConflictFilter{Key: key, State: crmsync.ConflictChosen})
}
