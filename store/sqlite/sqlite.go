// Package sqlite is the embedded [crmsync.Store]: one SQLite file (pure Go,
// modernc.org/sqlite) in WAL mode, safe for many goroutines and for several
// processes on one machine.
//
// [Open] creates and migrates the file; the caller closes the Store.
// store/storespec opens it from a string ("sqlite:PATH" or a path) too.
//
// A run costs two transactions beyond its steps (StartRun and EndRun): a new
// run starts in two statements and ends in two, and writes seven pages
// besides its steps'. A step alone is one statement, and a checkpoint's
// cursors, ledger rows, audit rows and new dead letters are one statement
// per table. Statements are prepared once. Writes of one process
// queue in Go for SQLite's one writer and go through one connection; a write
// waiting for another process's write lock waits in Go too, so that its
// context can end the wait.
//
// Durability: with the default Synchronous "NORMAL", a step acknowledged by
// Commit survives the process being killed; a power loss may lose the last
// few commits. Synchronous "FULL" survives power loss at a cost in speed.
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/crmsync/crmsync"
	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

// SchemaVersion is the schema version this code writes.
var SchemaVersion = len(migrations)

// ErrForeign is returned by Open for a file that is not a crmsync store.
var ErrForeign = errors.New("sqlite: not a crmsync store")

// ErrSchemaTooNew is returned by Open when the file was migrated by newer code.
var ErrSchemaTooNew = errors.New("sqlite: store schema is newer than this code")

// Config configures Open.
type Config struct {
	// Path is the database file; it is created if absent. Required.
	Path string
	// BusyTimeout is how long a write waits for another process's write
	// (or less, if its context ends first); zero means 10s.
	BusyTimeout time.Duration
	// Synchronous is SQLite's synchronous setting: "NORMAL" (the default:
	// survives a process kill) or "FULL" (survives power loss).
	Synchronous string
	// Driver is the database/sql driver that opens the file; "" means
	// modernc.org/sqlite's "sqlite". A registered wrapper of that driver
	// may be named here, to count or trace statements.
	Driver string
}

// Store is a crmsync.Store in one SQLite file. Close it when done.
type Store struct {
	db   *sql.DB
	path string

	busyTimeout time.Duration
	stmts       sync.Map // query -> *sql.Stmt, see prepared
	// wgate lets one write of this process at a time at SQLite, through w:
	// the others queue here instead of sleeping in SQLite's busy handler.
	wgate chan struct{}
	w     writer // guarded by wgate
}

// lockWrite waits for this process's turn to write.
func (s *Store) lockWrite(ctx context.Context) error {
	select {
	case s.wgate <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *Store) unlockWrite() { <-s.wgate }

var _ crmsync.Store = (*Store)(nil)

// Open opens (creating and migrating if needed) the store at c.Path. It
// refuses, without changing anything, a file that is not an SQLite database,
// an SQLite database of another program (ErrForeign) and a schema written by
// newer code (ErrSchemaTooNew).
func Open(ctx context.Context, c Config) (*Store, error) {
	if c.Path == "" {
		return nil, errors.New("sqlite: Config.Path is empty")
	}
	if c.BusyTimeout < 0 {
		return nil, fmt.Errorf("sqlite: Config.BusyTimeout is negative (%s)", c.BusyTimeout)
	}
	if c.BusyTimeout == 0 {
		c.BusyTimeout = 10 * time.Second
	}
	switch strings.ToUpper(c.Synchronous) {
	case "":
		c.Synchronous = "NORMAL"
	case "NORMAL", "FULL":
		c.Synchronous = strings.ToUpper(c.Synchronous)
	default:
		return nil, fmt.Errorf("sqlite: Config.Synchronous %q: want NORMAL or FULL", c.Synchronous)
	}
	if dir := filepath.Dir(c.Path); dir != "" {
		if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
			return nil, fmt.Errorf("sqlite: open %s: folder %s does not exist", c.Path, dir)
		}
	}
	// Look at an existing file read-only first, so that a foreign or newer
	// file is refused before anything (even the journal mode) changes it.
	if fi, err := os.Stat(c.Path); err == nil && fi.Size() > 0 {
		ro, err := sql.Open("sqlite", "file:"+(&url.URL{Path: c.Path}).EscapedPath()+"?mode=ro&_pragma=busy_timeout(5000)")
		if err != nil {
			return nil, fmt.Errorf("sqlite: open %s: %w", c.Path, err)
		}
		err = check(ctx, ro, c.Path)
		ro.Close()
		if err != nil {
			return nil, err
		}
	}
	q := url.Values{}
	q.Add("_pragma", "busy_timeout("+strconv.FormatInt(c.BusyTimeout.Milliseconds(), 10)+")")
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "synchronous("+c.Synchronous+")")
	q.Add("_pragma", "foreign_keys(1)")
	q.Set("_txlock", "immediate")
	dsn := "file:" + (&url.URL{Path: c.Path}).EscapedPath() + "?" + q.Encode()
	if c.Driver == "" {
		c.Driver = "sqlite"
	}
	db, err := sql.Open(c.Driver, dsn)
	if err != nil {
		return nil, fmt.Errorf("sqlite: open %s: %w", c.Path, err)
	}
	s := &Store{db: db, path: c.Path, busyTimeout: c.BusyTimeout, wgate: make(chan struct{}, 1)}
	if err := s.migrate(ctx); err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

// Close closes the database, after the write under way if any.
func (s *Store) Close() error {
	s.wgate <- struct{}{}
	s.dropWriter()
	<-s.wgate
	s.closeStmts()
	return s.db.Close()
}

// DB returns the underlying database, for backups and inspection.
func (s *Store) DB() *sql.DB { return s.db }

// check refuses a file that is not an SQLite database, another program's
// database, or a crmsync schema newer than this code.
func check(ctx context.Context, db *sql.DB, path string) error {
	// Any query fails on a file that is not an SQLite database.
	var tables []string
	rows, err := db.QueryContext(ctx, `SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'`)
	if err != nil {
		return fmt.Errorf("sqlite: %s is not a usable SQLite database (damaged, or another kind of file): %w", path, err)
	}
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			rows.Close()
			return fmt.Errorf("sqlite: read %s: %w", path, err)
		}
		tables = append(tables, n)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("sqlite: %s is not a usable SQLite database (damaged, or another kind of file): %w", path, err)
	}
	hasMeta := false
	for _, n := range tables {
		if n == "crmsync_meta" {
			hasMeta = true
		}
	}
	if !hasMeta && len(tables) > 0 {
		return fmt.Errorf("%w: %s holds %d tables of another program (%s…); refusing to touch it", ErrForeign, path, len(tables), tables[0])
	}
	if !hasMeta {
		return nil
	}
	var app, version string
	if err := db.QueryRowContext(ctx, `SELECT
		COALESCE((SELECT value FROM crmsync_meta WHERE key = 'app'), ''),
		COALESCE((SELECT value FROM crmsync_meta WHERE key = 'schema_version'), '')`).Scan(&app, &version); err != nil {
		return fmt.Errorf("%w: %s: unreadable crmsync_meta: %v", ErrForeign, path, err)
	}
	if app != "crmsync" {
		return fmt.Errorf("%w: %s has a crmsync_meta table not written by crmsync", ErrForeign, path)
	}
	v, err := strconv.Atoi(version)
	if err != nil {
		return fmt.Errorf("%w: %s has an unreadable schema version %q", ErrForeign, path, version)
	}
	if v > len(migrations) {
		return fmt.Errorf("%w: %s is at schema version %s, this code knows up to %d; upgrade crmsync", ErrSchemaTooNew, path, version, len(migrations))
	}
	return nil
}

func (s *Store) migrate(ctx context.Context) error {
	if err := check(ctx, s.db, s.path); err != nil {
		return err
	}

	tx, err := s.db.BeginTx(ctx, nil) // BEGIN IMMEDIATE: one migrator at a time
	if err != nil {
		return fmt.Errorf("sqlite: migrate %s: %w", s.path, err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS crmsync_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)`); err != nil {
		return fmt.Errorf("sqlite: migrate %s: %w", s.path, err)
	}
	meta := map[string]string{}
	mrows, err := tx.QueryContext(ctx, `SELECT key, value FROM crmsync_meta`)
	if err != nil {
		return fmt.Errorf("sqlite: migrate %s: %w", s.path, err)
	}
	for mrows.Next() {
		var k, v string
		if err := mrows.Scan(&k, &v); err != nil {
			mrows.Close()
			return fmt.Errorf("sqlite: migrate %s: %w", s.path, err)
		}
		meta[k] = v
	}
	mrows.Close()
	version := 0
	if len(meta) > 0 {
		if meta["app"] != "crmsync" {
			return fmt.Errorf("%w: %s has a crmsync_meta table not written by crmsync", ErrForeign, s.path)
		}
		version, err = strconv.Atoi(meta["schema_version"])
		if err != nil || version < 0 {
			return fmt.Errorf("%w: %s has an unreadable schema version %q", ErrForeign, s.path, meta["schema_version"])
		}
	}
	if version > len(migrations) {
		return fmt.Errorf("%w: %s is at schema version %d, this code knows up to %d; upgrade crmsync", ErrSchemaTooNew, s.path, version, len(migrations))
	}
	if version == len(migrations) {
		return tx.Commit()
	}
	for v := version; v < len(migrations); v++ {
		if _, err := tx.ExecContext(ctx, migrations[v]); err != nil {
			return fmt.Errorf("sqlite: migrate %s to version %d: %w", s.path, v+1, err)
		}
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO crmsync_meta (key, value) VALUES ('app', 'crmsync'), ('schema_version', ?)
		ON CONFLICT (key) DO UPDATE SET value = excluded.value`, strconv.Itoa(len(migrations))); err != nil {
		return fmt.Errorf("sqlite: migrate %s: %w", s.path, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("sqlite: migrate %s: %w", s.path, err)
	}
	return nil
}

func ns(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func tm(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}
