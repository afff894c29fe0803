package sqlite

import (
	"context"
	"database/sql"
)

// prepared is a querier that runs each query as a statement prepared once
// per Store (and once per connection by database/sql), in tx if set: SQLite
// spends more time parsing a small statement than running it.
type prepared struct {
	s  *Store
	tx *sql.Tx
}

// stmt returns q prepared on the Store's database, preparing it once.
func (s *Store) stmt(ctx context.Context, q string) (*sql.Stmt, error) {
	if st, ok := s.stmts.Load(q); ok {
		return st.(*sql.Stmt), nil
	}
	st, err := s.db.PrepareContext(ctx, q)
	if err != nil {
		return nil, err
	}
	if prev, loaded := s.stmts.LoadOrStore(q, st); loaded {
		st.Close()
		return prev.(*sql.Stmt), nil
	}
	return st, nil
}

// on returns the prepared form of q for p's transaction or database; nil
// if q cannot be prepared (the caller then runs q as is, to get the error).
func (p prepared) on(ctx context.Context, q string) *sql.Stmt {
	st, err := p.s.stmt(ctx, q)
	if err != nil {
		return nil
	}
	if p.tx != nil {
		return p.tx.StmtContext(ctx, st)
	}
	return st
}

func (p prepared) direct() querier {
	if p.tx != nil {
		return p.tx
	}
	return p.s.db
}

func (p prepared) ExecContext(ctx context.Context, q string, args ...any) (sql.Result, error) {
	if st := p.on(ctx, q); st != nil {
		return st.ExecContext(ctx, args...)
	}
	return p.direct().ExecContext(ctx, q, args...)
}

func (p prepared) QueryContext(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	if st := p.on(ctx, q); st != nil {
		return st.QueryContext(ctx, args...)
	}
	return p.direct().QueryContext(ctx, q, args...)
}

func (p prepared) QueryRowContext(ctx context.Context, q string, args ...any) *sql.Row {
	if st := p.on(ctx, q); st != nil {
		return st.QueryRowContext(ctx, args...)
	}
	return p.direct().QueryRowContext(ctx, q, args...)
}

// closeStmts closes every prepared statement.
func (s *Store) closeStmts() {
	s.stmts.Range(func(k, v any) bool {
		v.(*sql.Stmt).Close()
		s.stmts.Delete(k)
		return true
	})
}
