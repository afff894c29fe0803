package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/store/postgres"
	"github.com/crmsync/crmsync/store/sqlite"
)

// openStore opens the store that spec names and returns it with what closes
// it. spec is sqlite:PATH, a bare path ending .db, or a postgres:// DSN (its
// schema is "crmsync"). An unknown scheme is a usage error
// naming it. The CLI works on an existing store: a missing SQLite file is an
// error, not a new empty store.
func openStore(ctx context.Context, spec string) (crmsync.Store, io.Closer, error) {
	scheme, rest := splitScheme(spec)
	switch scheme {
	case "sqlite":
		path := rest
		if path == "" {
			return nil, nil, usagef("store %q: no path after sqlite:", spec)
		}
		fi, err := os.Stat(path)
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil, fmt.Errorf("store sqlite:%s: no such file", path)
		}
		if err != nil {
			return nil, nil, fmt.Errorf("store sqlite:%s: %w", path, err)
		}
		if fi.IsDir() {
			return nil, nil, fmt.Errorf("store sqlite:%s: is a folder, not a file", path)
		}
		st, err := sqlite.Open(ctx, sqlite.Config{Path: path})
		if err != nil {
			return nil, nil, fmt.Errorf("store sqlite:%s: %w", path, err)
		}
		return st, st, nil
	case "postgres", "postgresql":
		st, err := postgres.Open(ctx, postgres.Config{DSN: spec})
		if err != nil {
			return nil, nil, fmt.Errorf("store %s: %w", scheme, err)
		}
		return st, st, nil
	case "":
		return nil, nil, usagef("store %q: want sqlite:PATH, a path ending .db, or a postgres:// DSN", spec)
	}
	return nil, nil, usagef("store: unknown scheme %q (want sqlite:PATH, a path ending .db, or a postgres:// DSN)", scheme)
}

// splitScheme splits "scheme://rest" and "scheme:rest"; a bare path ending
// .db is sqlite. It reports scheme "" for anything else.
func splitScheme(spec string) (scheme, rest string) {
	if i := strings.Index(spec, "://"); i > 0 {
		return strings.ToLower(spec[:i]), spec[i+3:]
	}
	if s, r, ok := strings.Cut(spec, ":"); ok && s != "" && !strings.ContainsAny(s, `/\.`) {
		return strings.ToLower(s), r
	}
	if strings.HasSuffix(spec, ".db") {
		return "sqlite", spec
	}
	return "", spec
}
