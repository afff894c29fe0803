package sqlite

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"time"

	msqlite "modernc.org/sqlite"
)

// prepared is a querier that runs each query on the Store's pool as a
// statement prepared once per Store (and once per connection by
// database/sql): SQLite spends more time parsing a small statement than
// running it. Writes go through the writer instead.
type prepared struct {
	s *Store
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

func (p prepared) ExecContext(ctx context.Context, q string, args ...any) (sql.Result, error) {
	if st, err := p.s.stmt(ctx, q); err == nil {
		return st.ExecContext(ctx, args...)
	}
	return p.s.db.ExecContext(ctx, q, args...)
}

func (p prepared) QueryContext(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	if st, err := p.s.stmt(ctx, q); err == nil {
		return st.QueryContext(ctx, args...)
	}
	return p.s.db.QueryContext(ctx, q, args...)
}

func (p prepared) QueryRowContext(ctx context.Context, q string, args ...any) *sql.Row {
	if st, err := p.s.stmt(ctx, q); err == nil {
		return st.QueryRowContext(ctx, args...)
	}
	return p.s.db.QueryRowContext(ctx, q, args...)
}

// closeStmts closes every prepared statement of the pool.
func (s *Store) closeStmts() {
	s.stmts.Range(func(k, v any) bool {
		v.(*sql.Stmt).Close()
		s.stmts.Delete(k)
		return true
	})
}

// The writer is the one connection through which this process writes,
// used by one write at a time (Store.wgate). Its statements are prepared on
// it once and run without the caller's context: database/sql and the driver
// would each start a goroutine per transaction and per statement to watch a
// context that can be cancelled, which costs more than a short statement.
// A context is honoured where a write can wait: for this process's turn
// (lockWrite) and for another process's write lock, which the writer does
// not wait for inside SQLite (its busy timeout is zero) but in Go, in
// waitBusy.
type writer struct {
	conn  *sql.Conn
	stmts map[string]*sql.Stmt
}

// maxWriterStmts bounds the statements the writer keeps prepared; a query
// beyond them runs unprepared.
const maxWriterStmts = 256

// writeConn returns the writer's connection, opening it if needed. The
// caller holds the write gate.
func (s *Store) writeConn(ctx context.Context) (*sql.Conn, error) {
	if s.w.conn != nil {
		return s.w.conn, nil
	}
	c, err := s.db.Conn(ctx)
	if err != nil {
		return nil, err
	}
	if _, err := c.ExecContext(context.Background(), `PRAGMA busy_timeout = 0`); err != nil {
		c.Close()
		return nil, err
	}
	s.w = writer{conn: c, stmts: map[string]*sql.Stmt{}}
	return c, nil
}

// dropWriter closes the writer's connection, after an error that may have
// left it unusable; the next write opens another. The caller holds the
// write gate.
func (s *Store) dropWriter() {
	for _, st := range s.w.stmts {
		st.Close()
	}
	if s.w.conn != nil {
		s.w.conn.Close()
	}
	s.w = writer{}
}

// wq is the writer as a querier, for the holder of the write gate.
type wq struct{ s *Store }

// prep returns q prepared on the writer, or nil to run q as is.
func (w wq) prep(q string) *sql.Stmt {
	if st, ok := w.s.w.stmts[q]; ok {
		return st
	}
	if len(w.s.w.stmts) >= maxWriterStmts {
		return nil
	}
	st, err := w.s.w.conn.PrepareContext(context.Background(), q)
	if err != nil {
		return nil // run as is, to get the error
	}
	w.s.w.stmts[q] = st
	return st
}

func (w wq) ExecContext(_ context.Context, q string, args ...any) (sql.Result, error) {
	if st := w.prep(q); st != nil {
		return st.ExecContext(context.Background(), args...)
	}
	return w.s.w.conn.ExecContext(context.Background(), q, args...)
}

func (w wq) QueryContext(_ context.Context, q string, args ...any) (*sql.Rows, error) {
	if st := w.prep(q); st != nil {
		return st.QueryContext(context.Background(), args...)
	}
	return w.s.w.conn.QueryContext(context.Background(), q, args...)
}

func (w wq) QueryRowContext(_ context.Context, q string, args ...any) *sql.Row {
	if st := w.prep(q); st != nil {
		return st.QueryRowContext(context.Background(), args...)
	}
	return w.s.w.conn.QueryRowContext(context.Background(), q, args...)
}

// write runs fn as this process's one write at a time, on the writer. fn
// must not keep the querier.
func (s *Store) write(ctx context.Context, fn func(q querier) error) error {
	if err := s.lockWrite(ctx); err != nil {
		return err
	}
	defer s.unlockWrite()
	if _, err := s.writeConn(ctx); err != nil {
		return err
	}
	err := fn(wq{s})
	if errors.Is(err, driver.ErrBadConn) || errors.Is(err, sql.ErrConnDone) {
		s.dropWriter()
	}
	return err
}

// sqliteBusy is SQLite's primary result code SQLITE_BUSY.
const sqliteBusy = 5

// isBusy reports whether err is SQLite's "database is locked": another
// process holds the write lock (or wrote since this statement's snapshot).
func isBusy(err error) bool {
	var se *msqlite.Error
	return errors.As(err, &se) && se.Code()&0xff == sqliteBusy
}

// busyWaits are the pauses between tries while another process writes,
// as SQLite's own busy handler spaces them.
var busyWaits = []time.Duration{1, 2, 5, 10, 15, 20, 25, 25, 25, 50, 50, 100}

// waitBusy runs op, which must do nothing when it fails with SQLITE_BUSY,
// until it does not fail so, BusyTimeout has passed, or ctx ends.
func (s *Store) waitBusy(ctx context.Context, op func() error) error {
	err := op()
	if err == nil || !isBusy(err) {
		return err
	}
	deadline := time.Now().Add(s.busyTimeout)
	for i := 0; ; i++ {
		wait := busyWaits[min(i, len(busyWaits)-1)] * time.Millisecond
		if time.Now().Add(wait).After(deadline) {
			return err
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("waiting for another process's write: %w", context.Cause(ctx))
		case <-t.C:
		}
		if err = op(); err == nil || !isBusy(err) {
			return err
		}
	}
}
