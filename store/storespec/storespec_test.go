package storespec

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Spec
		str  string
	}{
		{"sqlite:demo.db", Spec{Kind: SQLite, Path: "demo.db"}, "sqlite:demo.db"},
		{"sqlite:/var/lib/crmsync/x", Spec{Kind: SQLite, Path: "/var/lib/crmsync/x"}, "sqlite:/var/lib/crmsync/x"},
		{"sqlite:///var/lib/x.db", Spec{Kind: SQLite, Path: "/var/lib/x.db"}, "sqlite:/var/lib/x.db"},
		{"SQLite:pfx.db", Spec{Kind: SQLite, Path: "pfx.db"}, "sqlite:pfx.db"},
		{"demo.db", Spec{Kind: SQLite, Path: "demo.db"}, "sqlite:demo.db"},
		{"/tmp/store", Spec{Kind: SQLite, Path: "/tmp/store"}, "sqlite:/tmp/store"},
		{"./odd:name.db", Spec{Kind: SQLite, Path: "./odd:name.db"}, "sqlite:./odd:name.db"},
		{"C:\\crm\\x.db", Spec{Kind: SQLite, Path: "C:\\crm\\x.db"}, "sqlite:C:\\crm\\x.db"},
		{"a=b.db", Spec{Kind: SQLite, Path: "a=b.db"}, "sqlite:a=b.db"},
		{"postgres://u:S3cret@h/db", Spec{Kind: Postgres, DSN: "postgres://u:S3cret@h/db"}, "postgres://u:xxxxx@h/db"},
		{"postgresql://u@h/db?password=S3cret", Spec{Kind: Postgres, DSN: "postgresql://u@h/db?password=S3cret"}, "postgresql://u@h/db?password=xxxxx"},
		{"host=h user=u password=S3cret dbname=x", Spec{Kind: Postgres, DSN: "host=h user=u password=S3cret dbname=x"}, "host=h user=u password=xxxxx dbname=x"},
		{" dbname=x sslpassword='S3 cret'", Spec{Kind: Postgres, DSN: "dbname=x sslpassword='S3 cret'"}, "dbname=x sslpassword=xxxxx"},
		{"pool_max_conns=4 host=h", Spec{Kind: Postgres, DSN: "pool_max_conns=4 host=h"}, "pool_max_conns=4 host=h"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := Parse(tc.in)
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
			assert.Equal(t, tc.str, got.String())
		})
	}
}

func TestParseRefuses(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", "no store given"},
		{"  ", "no store given"},
		{"sqlite:", "no path after the colon"},
		{"mysql://u:S3cret@db/crm", `unknown scheme "mysql"`},
		{"sqlit:x.db", `unknown scheme "sqlit"`},
		{"postgres:db", "want postgres://host/db"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			_, err := Parse(tc.in)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
			assert.NotContains(t, err.Error(), "S3cret")
			assert.NotContains(t, err.Error(), "\n")
		})
	}
}

func TestResolve(t *testing.T) {
	env := func(k string) string {
		if k == EnvVar {
			return "sqlite:env.db"
		}
		return ""
	}
	assert.Equal(t, "flag.db", Resolve("flag.db", env))
	assert.Equal(t, "sqlite:env.db", Resolve("", env))
	assert.Equal(t, "", Resolve("", nil))
}

// Existing refuses a file that is no store, and leaves it as it was.
func TestOpenExistingLeavesNonStoresAlone(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty.db")
	require.NoError(t, os.WriteFile(empty, nil, 0o644))
	for _, tc := range []struct{ spec, want string }{
		{empty, "the file is empty, not a crmsync store"},
		{"sqlite:" + filepath.Join(dir, "missing.db"), "no such file"},
		{dir, "is a folder"},
	} {
		_, _, err := Open(ctx, tc.spec, Existing)
		require.Error(t, err, tc.spec)
		assert.Contains(t, err.Error(), tc.want)
	}
	fi, err := os.Stat(empty)
	require.NoError(t, err)
	assert.Zero(t, fi.Size(), "the empty file stays empty")
	_, err = os.Stat(filepath.Join(dir, "missing.db"))
	assert.True(t, os.IsNotExist(err), "no file is created")
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	assert.Len(t, entries, 1, "no journal or WAL files left behind")

	// Create makes the store; Existing then opens it.
	path := filepath.Join(dir, "new.db")
	st, sp, err := Open(ctx, path, Create)
	require.NoError(t, err)
	assert.Equal(t, SQLite, sp.Kind)
	require.NoError(t, st.Close())
	st, _, err = Open(ctx, "sqlite:"+path, Existing)
	require.NoError(t, err)
	require.NoError(t, st.Close())
}

// No error of Open carries a password, whatever the spec's shape.
func TestOpenErrorsCarryNoPassword(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, mode := range []Mode{Existing, Create} {
		for _, spec := range []string{
			"postgres://bob:S3cretPW@127.0.0.1:1/db?sslmode=disable",
			"postgresql://bob:S3cretPW@127.0.0.1:notaport/db",
			"postgres://bob@127.0.0.1:1/db?password=S3cretPW&sslmode=bogus",
			"postgres://bob@127.0.0.1:1/db?sslpassword=S3cretPW&sslmode=require&sslkey=/nonexistent",
			"host=127.0.0.1 port=1 user=bob password=S3cretPW dbname=x sslmode=disable",
			"host=127.0.0.1 port=x password=S3cretPW dbname=x",
			"host=127.0.0.1 password='S3cretPW and more' sslmode=bogus",
			"host=127.0.0.1 password='S3cretPW and more dbname=x",
			"host=127.0.0.1 sslpassword=S3cretPW sslmode=require sslkey=/nonexistent",
		} {
			_, _, err := Open(ctx, spec, mode)
			require.Error(t, err, spec)
			assert.NotContains(t, err.Error(), "S3cretPW", spec)
			assert.NotContains(t, err.Error(), "and more", spec)
			assert.NotContains(t, err.Error(), "\n", spec)
			assert.Contains(t, err.Error(), "store ", "the error names the store")
		}
	}
}

// testDSN returns CRMSYNC_TEST_POSTGRES_DSN, or skips.
func testDSN(t *testing.T) string {
	t.Helper()
	dsn := os.Getenv("CRMSYNC_TEST_POSTGRES_DSN")
	if dsn == "" {
		t.Skip("CRMSYNC_TEST_POSTGRES_DSN is unset")
	}
	return dsn
}

// Existing does not make a store of a database without one; Create does.
func TestOpenPostgres(t *testing.T) {
	dsn := testDSN(t)
	ctx := context.Background()
	u, err := url.Parse(dsn)
	if err != nil || u.Scheme == "" {
		t.Skip("CRMSYNC_TEST_POSTGRES_DSN is not a URL")
	}
	admin, err := pgx.Connect(ctx, dsn)
	require.NoError(t, err)
	defer admin.Close(ctx)
	db := fmt.Sprintf("crmsync_spec_%d", time.Now().UnixNano())
	_, err = admin.Exec(ctx, "CREATE DATABASE "+db)
	require.NoError(t, err)
	defer admin.Exec(ctx, "DROP DATABASE "+db+" WITH (FORCE)") //nolint:errcheck
	u.Path = "/" + db
	spec := u.String()

	_, _, err = Open(ctx, spec, Existing)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "no crmsync store here")
	st, sp, err := Open(ctx, spec, Create)
	require.NoError(t, err)
	assert.Equal(t, Postgres, sp.Kind)
	require.NoError(t, st.Close())
	st, _, err = Open(ctx, spec, Existing)
	require.NoError(t, err)
	require.NoError(t, st.Close())

	// The key=value form names the same store.
	kv := fmt.Sprintf("host=%s port=%s user=%s dbname=%s sslmode=disable", u.Hostname(), u.Port(), u.User.Username(), db)
	st, sp, err = Open(ctx, kv, Existing)
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(sp.String(), "host="))
	require.NoError(t, st.Close())
}
