// Package sqlcount wraps a database/sql driver to count the transactions and
// statements its connections run, for tests and benchmarks that measure
// what a store asks of SQLite.
//
// A transaction is each BEGIN…COMMIT (or ROLLBACK), begun by BeginTx or by
// the statement's text, or a statement outside one. Statements are all the
// others run, each use of a prepared statement counted; BEGIN, COMMIT, END
// and ROLLBACK are not statements.
package sqlcount

import (
	"context"
	"database/sql/driver"
	"fmt"
	"strings"
	"sync/atomic"
)

// Counts are the transactions and statements counted.
type Counts struct{ Txs, Stmts atomic.Int64 }

// Driver wraps Driver: each connection it opens counts into Counts(name),
// name being the data source name it was opened with. Driver's connections
// must support BeginTx, PrepareContext, ExecContext and QueryContext, and
// their statements ExecContext and QueryContext (modernc.org/sqlite's do).
type Driver struct {
	Driver driver.Driver
	Counts func(name string) *Counts
}

type fullConn interface {
	driver.Conn
	driver.ConnBeginTx
	driver.ConnPrepareContext
	driver.ExecerContext
	driver.QueryerContext
}

type fullStmt interface {
	driver.Stmt
	driver.StmtExecContext
	driver.StmtQueryContext
}

// Open opens a connection with the wrapped driver.
func (d Driver) Open(name string) (driver.Conn, error) {
	c, err := d.Driver.Open(name)
	if err != nil {
		return nil, err
	}
	fc, ok := c.(fullConn)
	if !ok {
		c.Close()
		return nil, fmt.Errorf("sqlcount: %T lacks a context method", c)
	}
	return &conn{fullConn: fc, n: d.Counts(name)}, nil
}

// conn is used by one goroutine at a time, as database/sql guarantees.
type conn struct {
	fullConn
	n    *Counts
	inTx bool
}

// note counts one statement of text q.
func (c *conn) note(q string) {
	switch strings.ToUpper(strings.Fields(q + " x")[0]) {
	case "BEGIN":
		c.inTx = true
		c.n.Txs.Add(1)
	case "COMMIT", "END", "ROLLBACK":
		c.inTx = false
	default:
		c.n.Stmts.Add(1)
		if !c.inTx {
			c.n.Txs.Add(1)
		}
	}
}

func (c *conn) BeginTx(ctx context.Context, opts driver.TxOptions) (driver.Tx, error) {
	t, err := c.fullConn.BeginTx(ctx, opts)
	if err != nil {
		return nil, err
	}
	c.note("BEGIN")
	return tx{t, c}, nil
}

func (c *conn) ExecContext(ctx context.Context, q string, args []driver.NamedValue) (driver.Result, error) {
	c.note(q)
	return c.fullConn.ExecContext(ctx, q, args)
}

func (c *conn) QueryContext(ctx context.Context, q string, args []driver.NamedValue) (driver.Rows, error) {
	c.note(q)
	return c.fullConn.QueryContext(ctx, q, args)
}

func (c *conn) PrepareContext(ctx context.Context, q string) (driver.Stmt, error) {
	s, err := c.fullConn.PrepareContext(ctx, q)
	if err != nil {
		return nil, err
	}
	fs, ok := s.(fullStmt)
	if !ok {
		s.Close()
		return nil, fmt.Errorf("sqlcount: %T lacks a context method", s)
	}
	return stmt{fs, c, q}, nil
}

type stmt struct {
	fullStmt
	c *conn
	q string
}

func (s stmt) ExecContext(ctx context.Context, args []driver.NamedValue) (driver.Result, error) {
	s.c.note(s.q)
	return s.fullStmt.ExecContext(ctx, args)
}

func (s stmt) QueryContext(ctx context.Context, args []driver.NamedValue) (driver.Rows, error) {
	s.c.note(s.q)
	return s.fullStmt.QueryContext(ctx, args)
}

type tx struct {
	driver.Tx
	c *conn
}

func (t tx) Commit() error   { t.c.inTx = false; return t.Tx.Commit() }
func (t tx) Rollback() error { t.c.inTx = false; return t.Tx.Rollback() }
