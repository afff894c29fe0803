package sqlcount_test

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	msqlite "modernc.org/sqlite"

	"github.com/crmsync/crmsync/internal/sqlcount"
)

// connector opens name with d, so a test needs no driver registered by name.
type connector struct {
	d    driver.Driver
	name string
}

func (c connector) Connect(context.Context) (driver.Conn, error) { return c.d.Open(c.name) }
func (c connector) Driver() driver.Driver                        { return c.d }

// open returns a one-connection database whose work is counted, and the
// counts.
func open(t *testing.T) (*sql.DB, *sqlcount.Counts) {
	t.Helper()
	name := filepath.Join(t.TempDir(), "count.db")
	var cs sqlcount.Counts
	var asked []string
	d := sqlcount.Driver{Driver: &msqlite.Driver{}, Counts: func(n string) *sqlcount.Counts {
		asked = append(asked, n)
		return &cs
	}}
	db := sql.OpenDB(connector{d, name})
	db.SetMaxOpenConns(1)
	t.Cleanup(func() { db.Close() })
	_, err := db.Exec(`CREATE TABLE t (v INTEGER)`)
	require.NoError(t, err)
	assert.Equal(t, []string{name}, asked, "Counts is asked with the name each connection is opened with")
	cs.Txs.Store(0)
	cs.Stmts.Store(0)
	return db, &cs
}

func TestCounts(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name             string
		run              func(t *testing.T, db *sql.DB)
		wantTxs, wantStm int64
	}{
		{"statement outside a transaction", func(t *testing.T, db *sql.DB) {
			_, err := db.Exec(`INSERT INTO t VALUES (1)`)
			require.NoError(t, err)
		}, 1, 1},
		{"query outside a transaction", func(t *testing.T, db *sql.DB) {
			var n int
			require.NoError(t, db.QueryRow(`SELECT count(*) FROM t`).Scan(&n))
		}, 1, 1},
		{"BeginTx, two statements, Commit", func(t *testing.T, db *sql.DB) {
			tx, err := db.BeginTx(ctx, nil)
			require.NoError(t, err)
			_, err = tx.Exec(`INSERT INTO t VALUES (1)`)
			require.NoError(t, err)
			_, err = tx.Exec(`INSERT INTO t VALUES (2)`)
			require.NoError(t, err)
			require.NoError(t, tx.Commit())
		}, 1, 2},
		{"BeginTx, Rollback, then a statement of its own", func(t *testing.T, db *sql.DB) {
			tx, err := db.BeginTx(ctx, nil)
			require.NoError(t, err)
			_, err = tx.Exec(`INSERT INTO t VALUES (1)`)
			require.NoError(t, err)
			require.NoError(t, tx.Rollback())
			_, err = db.Exec(`INSERT INTO t VALUES (2)`)
			require.NoError(t, err)
		}, 2, 2},
		{"BEGIN..COMMIT as text, then a statement of its own", func(t *testing.T, db *sql.DB) {
			conn, err := db.Conn(ctx)
			require.NoError(t, err)
			defer conn.Close()
			for _, q := range []string{"BEGIN IMMEDIATE", "INSERT INTO t VALUES (1)", "  insert into t values (2)", "COMMIT", "BEGIN\n", "DELETE FROM t", "ROLLBACK", "INSERT INTO t VALUES (3)"} {
				_, err := conn.ExecContext(ctx, q)
				require.NoError(t, err, q)
			}
		}, 3, 4},
		{"prepared statement counted at each use", func(t *testing.T, db *sql.DB) {
			st, err := db.Prepare(`INSERT INTO t VALUES (?)`)
			require.NoError(t, err)
			defer st.Close()
			tx, err := db.BeginTx(ctx, nil)
			require.NoError(t, err)
			for i := range 3 {
				_, err := tx.Stmt(st).Exec(i)
				require.NoError(t, err)
			}
			require.NoError(t, tx.Commit())
			var n int
			q, err := db.Prepare(`SELECT count(*) FROM t`)
			require.NoError(t, err)
			defer q.Close()
			require.NoError(t, q.QueryRow().Scan(&n))
			assert.Equal(t, 3, n)
		}, 2, 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			db, cs := open(t)
			tc.run(t, db)
			assert.Equal(t, tc.wantTxs, cs.Txs.Load(), "transactions")
			assert.Equal(t, tc.wantStm, cs.Stmts.Load(), "statements")
		})
	}
}
