// Package postgres is the [crmsync.Store] for many workers on many machines:
// PostgreSQL through pgx/v5 (pgxpool). Leases with fencing generations decide
// which worker runs which key; a worker whose lease was taken over can no
// longer commit.
//
// Every table lives in one schema (Config.Schema, "crmsync" by default),
// created and migrated by Open. Migrations are embedded and versioned in the
// schema's crmsync_meta table, and applied in one transaction under an
// advisory lock, so several workers may start at once and a failed migration
// leaves nothing behind.
//
// A run costs two round trips beyond its steps. StartRun is one: four
// plain statements in one pipeline, which the server runs as one implicit
// transaction: the lease row locked; the lease taken, the run resumed or
// opened and the replays claimed in one statement, only if the lease is
// free; the reads of the run's steps and letters. (The schema's start_run
// function, which did the second's work in PL/pgSQL, is no longer called;
// it stays for processes of the previous version during an upgrade.)
// EndRun is the other: audit rows, then one statement that releases the
// lease and records the fenced outcome, and the pruning, in one pipeline.
// The pruning goes only when a closed run can be due: at a Store's first
// EndRun, when the cutoff passes the earliest finish time the Store knows
// of a closed run still kept (from its last prune and the runs it closed
// since), and when the cutoff has moved a minute past the last prune's
// (which finds runs other Stores closed). PruneRuns always prunes.
//
// Since schema version 5 no index of the runs table holds a run's status
// or finish time, so closing a run is a HOT update that writes no index
// entry: a key's open run is found through its lease row (leases.open, set
// under the lease lock, which also keeps a key to one open run), and closed
// runs wait for pruning in a queue table (closed) that the close writes and
// the prune empties. Upgrading from an earlier version: stop the processes
// of the earlier version first. One still running after the migration
// keeps working (its start_run is rewritten by the migration), but the runs
// it closes are not queued, so no later prune removes their steps, and
// its own prunes read the whole runs table.
//
// A checkpoint of a step alone is one INSERT statement that also checks the
// lease; a checkpoint with cursors, ledger rows, audit rows and new dead
// letters is one statement too (one array parameter per column, the rows
// written only if the step was new); one that also updates a claimed dead
// letter, or writes links or conflicts, is one transaction. One-statement
// checkpoints that arrive while a group, or two checkpoints, are in flight
// on the same Store wait and go together (group commit, see group.go): one
// pipeline, one transaction, one round trip and one WAL flush for all of
// them, each statement still fenced by its own lease and each caller told
// its own outcome; with one or two runs in flight nothing waits. Times are stored as bigint nanoseconds since
// the Unix epoch exactly as the caller gave them; the server's clock is never
// read. Durability is the server's: with synchronous_commit on (PostgreSQL's
// default) a step acknowledged by Commit survives a crash of the server.
// StartRun and EndRun do not wait for the WAL flush (the run's next step, or
// any later commit that waits, makes them durable): a server crash may undo
// a start, whose process is then fenced by its lease token, or an end, whose
// run is then resumed by the next start after its lease expires, its steps
// answered from the store.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"net"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/crmsync/crmsync"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// SchemaVersion is the schema version this code writes.
var SchemaVersion = len(migrations)

// ErrForeign is returned by Open for a schema that holds another program's
// tables or a crmsync_meta table not written by crmsync.
var ErrForeign = errors.New("postgres: not a crmsync schema")

// ErrSchemaTooNew is returned by Open when the schema was migrated by newer code.
var ErrSchemaTooNew = errors.New("postgres: store schema is newer than this code")

// Config configures Open.
type Config struct {
	// DSN is the connection string, as a URL
	// (postgres://user:password@host:5432/db?sslmode=disable) or key=value
	// pairs; pgxpool's pool_* parameters are honoured. Required.
	DSN string
	// Schema is the schema that holds every table; it is created if absent.
	// It must be a plain lower-case identifier ([a-z_][a-z0-9_]*, at most 63
	// characters). "" means "crmsync".
	Schema string
	// MaxConns caps the pool's connections; zero means the DSN's
	// pool_max_conns, or else 10.
	MaxConns int32
	// ConnectTimeout bounds each connection attempt; zero means the DSN's
	// connect_timeout, or else 10s.
	ConnectTimeout time.Duration
	// PoolConfig, if set, is called with the parsed pool configuration
	// before Open connects, to set pgx options the DSN cannot carry (a
	// tracer, a dialer that counts round trips).
	PoolConfig func(*pgxpool.Config)
}

// Store is a crmsync.Store in a PostgreSQL schema. Close it when done.
type Store struct {
	pool   *pgxpool.Pool
	schema string
	quoted string // the schema as a quoted identifier

	group *committer // groups concurrent one-statement checkpoints

	sqlStep string // the one-statement step checkpoint
	// StartRun, EndRun and PruneRuns statements.
	sqlStartQuick, sqlStartLock, sqlStartTake, sqlStartSteps, sqlStartLetters, sqlEndRun, sqlPrune, sqlEndPrune string
	prune                                                                                                       pruneGate // whether an EndRun prunes
	// Bulk statements: a checkpoint's rows, audit rows.
	sqlCheckpoint, sqlAudit string
}

var _ crmsync.Store = (*Store)(nil)

var schemaName = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

// Open connects to the server, then creates and migrates c.Schema if needed.
// It fails with a one-line error naming what failed, and never a password
// (RedactDSN), for a malformed DSN, an unreachable server, a refused login
// or an unknown database. It refuses, without changing anything, a schema holding another
// program's tables (ErrForeign) and a schema migrated by newer code
// (ErrSchemaTooNew).
func Open(ctx context.Context, c Config) (*Store, error) {
	s, err := open(ctx, c)
	if err != nil {
		return nil, redactError{err}
	}
	return s, nil
}

// redactError is an error whose text is redacted (RedactDSN) and kept on
// one line; errors.Is and errors.As still see the error it wraps.
type redactError struct{ err error }

func (e redactError) Error() string {
	return strings.Join(strings.Fields(RedactDSN(e.err.Error())), " ")
}

func (e redactError) Unwrap() error { return e.err }

func open(ctx context.Context, c Config) (*Store, error) {
	if c.DSN == "" {
		return nil, errors.New("postgres: Config.DSN is empty")
	}
	if c.Schema == "" {
		c.Schema = "crmsync"
	}
	if !schemaName.MatchString(c.Schema) {
		return nil, fmt.Errorf("postgres: Config.Schema %q: want a lower-case identifier ([a-z_][a-z0-9_]*, at most 63 characters)", c.Schema)
	}
	if c.MaxConns < 0 {
		return nil, fmt.Errorf("postgres: Config.MaxConns is negative (%d)", c.MaxConns)
	}
	if c.ConnectTimeout < 0 {
		return nil, fmt.Errorf("postgres: Config.ConnectTimeout is negative (%s)", c.ConnectTimeout)
	}
	pc, err := pgxpool.ParseConfig(c.DSN)
	if err != nil {
		// pgx masks the password in the connection string it quotes, but
		// not all of an unterminated quoted one: keep its reason only.
		reason := err.Error()
		if i := strings.LastIndex(reason, "`: "); i >= 0 {
			reason = reason[i+3:]
		}
		return nil, fmt.Errorf("postgres: Config.DSN is not a valid connection string: %s", reason)
	}
	if c.MaxConns > 0 {
		pc.MaxConns = c.MaxConns
	} else if !strings.Contains(c.DSN, "pool_max_conns") {
		pc.MaxConns = 10
	}
	if c.ConnectTimeout > 0 {
		pc.ConnConfig.ConnectTimeout = c.ConnectTimeout
	} else if pc.ConnConfig.ConnectTimeout == 0 {
		pc.ConnConfig.ConnectTimeout = 10 * time.Second
	}
	if _, ok := pc.ConnConfig.RuntimeParams["application_name"]; !ok {
		pc.ConnConfig.RuntimeParams["application_name"] = "crmsync"
	}
	if c.PoolConfig != nil {
		c.PoolConfig(pc)
	}
	where := fmt.Sprintf("server %s, database %q, user %q", net.JoinHostPort(pc.ConnConfig.Host, strconv.Itoa(int(pc.ConnConfig.Port))), pc.ConnConfig.Database, pc.ConnConfig.User)
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("postgres: open (%s): %w", where, err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("postgres: cannot connect (%s): %w", where, err)
	}
	s := &Store{pool: pool, schema: c.Schema, quoted: pgx.Identifier{c.Schema}.Sanitize(), group: &committer{pool: pool}}
	if err := s.migrate(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	s.sqlStep = s.q(`
INSERT INTO {s}.steps (run, step, result, error, attempts, done)
SELECT $1, $2, $3, $4, $5, $6
WHERE EXISTS (SELECT 1 FROM {s}.leases WHERE key = $7 AND generation = $8 AND run = $9 AND token = $10 FOR KEY SHARE)
ON CONFLICT (run, step) DO NOTHING`)
	s.prepareRunSQL()
	s.sqlCheckpoint = s.q(checkpointSQL())
	s.sqlAudit = s.q(auditInsert + ` FROM ` + auditArrays + ` ORDER BY n`)
	return s, nil
}

// Close closes the pool.
func (s *Store) Close() error {
	s.pool.Close()
	return nil
}

// Pool returns the underlying pool, for inspection and operators' queries.
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// Schema returns the schema that holds the store's tables.
func (s *Store) Schema() string { return s.schema }

// q puts the quoted schema name in place of {s}.
func (s *Store) q(sql string) string { return strings.ReplaceAll(sql, "{s}", s.quoted) }

// lockKey is the advisory lock that serializes migrations of one schema.
func lockKey(schema string) int64 {
	h := fnv.New64a()
	h.Write([]byte("crmsync migrate " + schema))
	return int64(h.Sum64())
}

// migrate brings the schema to SchemaVersion in one transaction under an
// advisory lock, or refuses a foreign or newer schema without a change.
func (s *Store) migrate(ctx context.Context) error {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("postgres: migrate schema %s: %w", s.schema, err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, lockKey(s.schema)); err != nil {
		return fmt.Errorf("postgres: migrate schema %s: advisory lock: %w", s.schema, err)
	}
	rows, err := tx.Query(ctx, `SELECT c.relname FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = $1 AND c.relkind IN ('r', 'p', 'v', 'm', 'f') ORDER BY c.relname`, s.schema)
	if err != nil {
		return fmt.Errorf("postgres: migrate schema %s: list tables: %w", s.schema, err)
	}
	tables, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return fmt.Errorf("postgres: migrate schema %s: list tables: %w", s.schema, err)
	}
	hasMeta := false
	for _, t := range tables {
		if t == "crmsync_meta" {
			hasMeta = true
		}
	}
	version := 0
	switch {
	case !hasMeta && len(tables) > 0:
		return fmt.Errorf("%w: schema %s holds %d tables of another program (%s…); refusing to touch it", ErrForeign, s.schema, len(tables), tables[0])
	case hasMeta:
		var app, v string
		err := tx.QueryRow(ctx, s.q(`SELECT
			COALESCE((SELECT value FROM {s}.crmsync_meta WHERE key = 'app'), ''),
			COALESCE((SELECT value FROM {s}.crmsync_meta WHERE key = 'schema_version'), '')`)).Scan(&app, &v)
		if err != nil {
			return fmt.Errorf("%w: schema %s: unreadable crmsync_meta: %v", ErrForeign, s.schema, err)
		}
		if app != "crmsync" {
			return fmt.Errorf("%w: schema %s has a crmsync_meta table not written by crmsync", ErrForeign, s.schema)
		}
		version, err = strconv.Atoi(v)
		if err != nil || version < 0 {
			return fmt.Errorf("%w: schema %s has an unreadable schema version %q", ErrForeign, s.schema, v)
		}
	}
	if version > len(migrations) {
		return fmt.Errorf("%w: schema %s is at schema version %d, this code knows up to %d; upgrade crmsync", ErrSchemaTooNew, s.schema, version, len(migrations))
	}
	if version == len(migrations) {
		return tx.Commit(ctx)
	}
	if version == 0 {
		if _, err := tx.Exec(ctx, s.q(`CREATE SCHEMA IF NOT EXISTS {s};
			CREATE TABLE {s}.crmsync_meta (key text PRIMARY KEY, value text NOT NULL)`)); err != nil {
			return fmt.Errorf("postgres: migrate schema %s: create: %w", s.schema, err)
		}
	}
	for v := version; v < len(migrations); v++ {
		if _, err := tx.Exec(ctx, s.q(migrations[v])); err != nil {
			return fmt.Errorf("postgres: migrate schema %s to version %d: %w", s.schema, v+1, err)
		}
	}
	if _, err := tx.Exec(ctx, s.q(`INSERT INTO {s}.crmsync_meta (key, value) VALUES ('app', 'crmsync'), ('schema_version', $1)
		ON CONFLICT (key) DO UPDATE SET value = excluded.value`), strconv.Itoa(len(migrations))); err != nil {
		return fmt.Errorf("postgres: migrate schema %s: %w", s.schema, err)
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("postgres: migrate schema %s: commit: %w", s.schema, err)
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
