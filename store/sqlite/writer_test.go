package sqlite

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The writer, which commits every step, keeps the durability configured
// (SQLite's synchronous: 1 NORMAL, 2 FULL) in WAL mode, and waits for
// another process's lock in Go (busy timeout 0), not inside SQLite.
func TestWriterSettings(t *testing.T) {
	ctx := context.Background()
	for sync, want := range map[string]int{"": 1, "NORMAL": 1, "FULL": 2} {
		s, err := Open(ctx, Config{Path: filepath.Join(t.TempDir(), "w.db"), Synchronous: sync})
		require.NoError(t, err)
		var level, busy int
		var mode string
		require.NoError(t, s.write(ctx, func(q querier) error {
			if err := q.QueryRowContext(ctx, `PRAGMA synchronous`).Scan(&level); err != nil {
				return err
			}
			if err := q.QueryRowContext(ctx, `PRAGMA journal_mode`).Scan(&mode); err != nil {
				return err
			}
			return q.QueryRowContext(ctx, `PRAGMA busy_timeout`).Scan(&busy)
		}))
		assert.Equal(t, want, level, "synchronous for %q", sync)
		assert.Equal(t, "wal", mode)
		assert.Equal(t, 0, busy)
		require.NoError(t, s.Close())
	}
}
