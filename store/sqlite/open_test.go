package sqlite_test

import (
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/crmsync/crmsync/store/sqlite"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestOpenRefusesBadFiles(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, data, 0o600))
		return p
	}
	foreign := filepath.Join(dir, "foreign.db")
	{
		db, err := sql.Open("sqlite", foreign)
		require.NoError(t, err)
		_, err = db.Exec(`CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL)`)
		require.NoError(t, err)
		db.Close()
	}
	newer := filepath.Join(dir, "newer.db")
	{
		s := open(t, newer)
		_, err := s.DB().Exec(`UPDATE crmsync_meta SET value = '999' WHERE key = 'schema_version'`)
		require.NoError(t, err)
		s.Close()
	}
	damaged := filepath.Join(dir, "damaged.db")
	{
		s := open(t, damaged)
		s.Close()
		b, _ := os.ReadFile(damaged)
		copy(b[:16], "garbage garbage!")
		os.WriteFile(damaged, b, 0o600)
		os.Remove(damaged + "-wal")
		os.Remove(damaged + "-shm")
	}
	tests := []struct {
		name string
		cfg  sqlite.Config
		is   error
		want string
	}{
		{"empty path", sqlite.Config{}, nil, "Config.Path"},
		{"bad synchronous", sqlite.Config{Path: filepath.Join(dir, "x.db"), Synchronous: "OFF"}, nil, "Synchronous"},
		{"missing folder", sqlite.Config{Path: filepath.Join(dir, "no", "such", "x.db")}, nil, "does not exist"},
		{"text file", sqlite.Config{Path: write("notes.txt", []byte(strings.Repeat("hello world\n", 200)))}, nil, "not a usable SQLite database"},
		{"damaged header", sqlite.Config{Path: damaged}, nil, "not a usable SQLite database"},
		{"another program's database", sqlite.Config{Path: foreign}, sqlite.ErrForeign, "invoices"},
		{"newer schema", sqlite.Config{Path: newer}, sqlite.ErrSchemaTooNew, "version 999"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before, _ := os.ReadFile(tc.cfg.Path)
			s, err := sqlite.Open(ctx, tc.cfg)
			if err == nil {
				s.Close()
				t.Fatalf("Open(%s) = nil error", tc.name)
			}
			if tc.is != nil {
				assert.ErrorIs(t, err, tc.is, "Open(%s)", tc.name)
			}
			assert.ErrorContains(t, err, tc.want, "Open(%s)", tc.name)
			if after, _ := os.ReadFile(tc.cfg.Path); string(before) != string(after) {
				t.Errorf("Open(%s) changed the file", tc.name)
			}
		})
	}
	// The foreign database still has its table and no crmsync tables.
	db, _ := sql.Open("sqlite", foreign)
	defer db.Close()
	var n int
	db.QueryRow(`SELECT count(*) FROM sqlite_master WHERE type='table'`).Scan(&n)
	assert.Equal(t, 1, n, "tables in the foreign database after Open")
}

func TestReopenKeepsData(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.db")
	s := open(t, path)
	_, err := s.DB().Exec(`INSERT INTO cursors (key, name, value) VALUES ('k', 'c', 'v')`)
	require.NoError(t, err)
	s.Close()
	s2 := open(t, path)
	v, err := s2.GetCursor(context.Background(), "k", "c")
	require.NoError(t, err, "after reopen GetCursor")
	require.Equal(t, "v", v, "after reopen GetCursor")
}

func TestConcurrentOpenMigratesOnce(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.db")
	errs := make(chan error, 4)
	for range 4 {
		go func() {
			s, err := sqlite.Open(context.Background(), sqlite.Config{Path: path})
			if err == nil {
				s.Close()
			}
			errs <- err
		}()
	}
	for range 4 {
		assert.NoError(t, <-errs, "concurrent Open")
	}
}
