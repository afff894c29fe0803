// Package storespec opens a [crmsync.Store] named by one string, the same way
// everywhere: the crmsync command's -store flag, the main job's -store flag
// and the CRMSYNC_STORE environment variable.
//
// A spec is one of:
//
//	sqlite:PATH                    an SQLite file (sqlite:///abs/path also works)
//	PATH                           an SQLite file: any path (demo.db, ./x, /var/lib/crm.sqlite)
//	postgres://user:pw@host/db     a PostgreSQL DSN as a URL (postgresql:// too)
//	host=h user=u dbname=db        a PostgreSQL DSN as key=value pairs
//
// A word before a colon that is not sqlite, postgres or postgresql
// (mysql://h/db, sqlit:x.db) is refused rather than taken as a file name;
// write ./name to mean a file whose name holds a colon. A PostgreSQL store
// keeps its tables in the schema "crmsync".
//
// A spec may hold a password. [Spec.String] and every error of this package
// show it redacted ([postgres.RedactDSN]); print a spec only through them.
package storespec

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/store/postgres"
	"github.com/crmsync/crmsync/store/sqlite"
	"github.com/jackc/pgx/v5"
)

// EnvVar is the environment variable holding the spec when no flag gives one.
const EnvVar = "CRMSYNC_STORE"

// Kind is a store's kind.
type Kind string

// The kinds of store a spec names.
const (
	SQLite   Kind = "sqlite"
	Postgres Kind = "postgres"
)

// pgSchema is the schema a PostgreSQL spec's store lives in.
const pgSchema = "crmsync"

// Spec is a parsed store spec.
type Spec struct {
	// Kind is SQLite or Postgres.
	Kind Kind
	// Path is the SQLite file.
	Path string
	// DSN is the PostgreSQL connection string, password included: never
	// print it (String redacts it).
	DSN string
}

// Store is an open store; Close it when done.
type Store interface {
	crmsync.Store
	Close() error
}

// Help is a one-line reminder of the spec's forms, for error messages.
const Help = "want sqlite:PATH, a file path, a postgres:// DSN or a key=value DSN"

var (
	schemePrefix = regexp.MustCompile(`^([A-Za-z][A-Za-z0-9+.-]+):`)
	keyValue     = regexp.MustCompile(`^\s*([A-Za-z_]+)\s*=`)
)

// libpq's connection keywords (and pgxpool's pool_*): a spec starting with
// one of them followed by = is a key=value DSN.
var pgKeywords = map[string]bool{
	"host": true, "hostaddr": true, "port": true, "dbname": true, "user": true, "password": true,
	"passfile": true, "channel_binding": true, "connect_timeout": true, "client_encoding": true,
	"options": true, "application_name": true, "fallback_application_name": true, "keepalives": true,
	"keepalives_idle": true, "keepalives_interval": true, "keepalives_count": true,
	"tcp_user_timeout": true, "replication": true, "gssencmode": true, "sslmode": true,
	"requiressl": true, "sslcompression": true, "sslcert": true, "sslkey": true, "sslpassword": true,
	"sslcertmode": true, "sslrootcert": true, "sslcrl": true, "sslcrldir": true, "sslsni": true,
	"requirepeer": true, "ssl_min_protocol_version": true, "ssl_max_protocol_version": true,
	"krbsrvname": true, "gsslib": true, "gssdelegation": true, "service": true,
	"target_session_attrs": true, "load_balance_hosts": true, "min_read_buffer_size": true,
}

// Parse parses a spec. It reports, in one line naming the spec (redacted),
// an empty spec, "sqlite:" with no path, and an unknown scheme.
func Parse(spec string) (Spec, error) {
	s := strings.TrimSpace(spec)
	if s == "" {
		return Spec{}, fmt.Errorf("no store given: %s (flag -store or $%s)", Help, EnvVar)
	}
	if m := keyValue.FindStringSubmatch(s); m != nil {
		k := strings.ToLower(m[1])
		if pgKeywords[k] || strings.HasPrefix(k, "pool_") {
			return Spec{Kind: Postgres, DSN: s}, nil
		}
	}
	if m := schemePrefix.FindStringSubmatch(s); m != nil {
		rest := s[len(m[0]):]
		switch strings.ToLower(m[1]) {
		case "sqlite", "sqlite3":
			rest = strings.TrimPrefix(rest, "//")
			if rest == "" {
				return Spec{}, fmt.Errorf("store %q: no path after the colon (want %s:PATH)", redact(spec), m[1])
			}
			return Spec{Kind: SQLite, Path: rest}, nil
		case "postgres", "postgresql":
			if !strings.HasPrefix(rest, "//") {
				return Spec{}, fmt.Errorf("store %q: want %s://host/db", redact(spec), m[1])
			}
			return Spec{Kind: Postgres, DSN: s}, nil
		}
		if strings.HasPrefix(rest, "//") {
			return Spec{}, fmt.Errorf("store %q: unknown scheme %q (%s)", redact(spec), m[1], Help)
		}
		return Spec{}, fmt.Errorf("store %q: unknown scheme %q (%s; write ./%s for a file whose name has a colon)", redact(spec), m[1], Help, redact(s))
	}
	return Spec{Kind: SQLite, Path: s}, nil
}

// Resolve returns flag, or else $CRMSYNC_STORE read with getenv.
func Resolve(flag string, getenv func(string) string) string {
	if flag != "" || getenv == nil {
		return flag
	}
	return getenv(EnvVar)
}

// String is the spec for messages: sqlite:PATH, or the DSN with every
// password redacted.
func (s Spec) String() string {
	if s.Kind == SQLite {
		return "sqlite:" + s.Path
	}
	return redact(s.DSN)
}

func redact(s string) string { return postgres.RedactDSN(s) }

// Mode says whether Open may create a store.
type Mode int

const (
	// Existing opens a store that exists: a missing or empty SQLite file, or
	// a PostgreSQL database without the crmsync schema, is an error and is
	// left as it was. For tools that inspect a store (the crmsync command).
	Existing Mode = iota
	// Create creates the store if it is absent (for the sync itself).
	Create
)

// Open opens the store the spec names and migrates its schema. Its errors
// are one line, name the spec (redacted) and never carry a password.
func (s Spec) Open(ctx context.Context, mode Mode) (Store, error) {
	switch s.Kind {
	case SQLite:
		if mode == Existing {
			fi, err := os.Stat(s.Path)
			switch {
			case errors.Is(err, fs.ErrNotExist):
				return nil, fmt.Errorf("store %s: no such file", s)
			case err != nil:
				return nil, fmt.Errorf("store %s: %w", s, err)
			case fi.IsDir():
				return nil, fmt.Errorf("store %s: is a folder, not a file", s)
			case fi.Size() == 0:
				return nil, fmt.Errorf("store %s: the file is empty, not a crmsync store", s)
			}
		}
		st, err := sqlite.Open(ctx, sqlite.Config{Path: s.Path})
		if err != nil {
			return nil, fmt.Errorf("store %s: %w", s, err)
		}
		return st, nil
	case Postgres:
		if mode == Existing {
			if err := checkSchema(ctx, s.DSN); err != nil {
				return nil, oneLine(fmt.Errorf("store %s: %w", s, err))
			}
		}
		st, err := postgres.Open(ctx, postgres.Config{DSN: s.DSN, Schema: pgSchema})
		if err != nil {
			return nil, oneLine(fmt.Errorf("store %s: %w", s, err))
		}
		return st, nil
	}
	return nil, fmt.Errorf("store: Spec.Kind %q: want sqlite or postgres", s.Kind)
}

// Open parses spec and opens its store.
func Open(ctx context.Context, spec string, mode Mode) (Store, Spec, error) {
	sp, err := Parse(spec)
	if err != nil {
		return nil, sp, err
	}
	st, err := sp.Open(ctx, mode)
	return st, sp, err
}

// checkSchema reports whether the database holds the crmsync schema,
// changing nothing.
func checkSchema(ctx context.Context, dsn string) error {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		// pgx quotes the DSN with its password masked, but not all of an
		// unterminated quoted one: keep its reason only.
		reason := err.Error()
		if i := strings.LastIndex(reason, "`: "); i >= 0 {
			reason = reason[i+3:]
		}
		return fmt.Errorf("not a valid connection string: %s", reason)
	}
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = 10 * time.Second
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return fmt.Errorf("cannot connect: %w", err)
	}
	defer conn.Close(ctx)
	var n int
	err = conn.QueryRow(ctx, `SELECT count(*) FROM pg_namespace WHERE nspname = $1`, pgSchema).Scan(&n)
	if err != nil {
		return fmt.Errorf("look for schema %s: %w", pgSchema, err)
	}
	if n == 0 {
		return fmt.Errorf("no crmsync store here (the database has no schema %s)", pgSchema)
	}
	return nil
}

// oneLine redacts err's text and keeps it on one line; errors.Is and
// errors.As still see what it wraps.
func oneLine(err error) error { return lineError{err} }

type lineError struct{ err error }

func (e lineError) Error() string {
	return strings.Join(strings.Fields(redact(e.err.Error())), " ")
}

func (e lineError) Unwrap() error { return e.err }
