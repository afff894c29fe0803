package postgres

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/store/storetest"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// testDSN returns CRMSYNC_TEST_POSTGRES_DSN. Outside CI the tests skip
// without it; in CI (CI=true) they must run.
func testDSN(t testing.TB) string {
	t.Helper()
	dsn := os.Getenv("CRMSYNC_TEST_POSTGRES_DSN")
	if dsn == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("CRMSYNC_TEST_POSTGRES_DSN is unset and CI=true: the PostgreSQL store tests must run in CI")
		}
		t.Skip("CRMSYNC_TEST_POSTGRES_DSN is unset; set it to a PostgreSQL DSN " +
			"(e.g. postgres://postgres@127.0.0.1:5432/test?sslmode=disable) to run the PostgreSQL store tests")
	}
	return dsn
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// admin runs statements on the test database outside any Store.
func admin(t testing.TB, sql string, args ...any) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, testDSN(t))
	require.NoError(t, err, "admin connect")
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, sql, args...); err != nil {
		t.Fatalf("admin %q: %v", sql, err)
	}
}

// adminQuery returns one value.
func adminQuery[T any](t testing.TB, sql string, args ...any) T {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, testDSN(t))
	require.NoError(t, err, "admin connect")
	defer conn.Close(ctx)
	var v T
	require.NoError(t, conn.QueryRow(ctx, sql, args...).Scan(&v), "admin %q", sql)
	return v
}

// freshSchema names a new schema that is dropped when the test ends.
func freshSchema(t testing.TB) string {
	t.Helper()
	testDSN(t)
	name := "crmsync_t_" + randomHex(6)
	t.Cleanup(func() { admin(t, `DROP SCHEMA IF EXISTS `+name+` CASCADE`) })
	return name
}

func openSchema(t testing.TB, schema string) *Store {
	t.Helper()
	s, err := Open(context.Background(), Config{DSN: testDSN(t), Schema: schema, MaxConns: 16})
	require.NoError(t, err, "Open(schema %s)", schema)
	t.Cleanup(func() { s.Close() })
	return s
}

func tableCount(t testing.TB, schema string) int {
	return adminQuery[int](t, `SELECT count(*)::int FROM pg_tables WHERE schemaname = $1`, schema)
}

func TestConformance(t *testing.T) {
	testDSN(t)
	storetest.Run(t, func(t *testing.T) crmsync.Store { return openSchema(t, freshSchema(t)) })
}

func TestOpenBadInput(t *testing.T) {
	dsn := testDSN(t)
	u, err := url.Parse(dsn)
	if err != nil || u.Scheme == "" {
		t.Skipf("CRMSYNC_TEST_POSTGRES_DSN is not a URL; these cases build DSNs from it")
	}
	const secret = "s3cret-pw-xyz"
	withUser := func(user, db string) string {
		v := *u
		v.User = url.UserPassword(user, secret)
		if db != "" {
			v.Path = "/" + db
		}
		return v.String()
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	closed := ln.Addr().String()
	ln.Close()
	tests := []struct {
		name string
		cfg  Config
		want []string
	}{
		{"empty DSN", Config{}, []string{"Config.DSN"}},
		{"bad schema", Config{DSN: dsn, Schema: "Robert'); DROP TABLE x;--"}, []string{"Config.Schema"}},
		{"malformed DSN", Config{DSN: "postgres://bob:" + secret + "@127.0.0.1:notaport/db"}, []string{"Config.DSN"}},
		{"closed port", Config{DSN: "postgres://bob:" + secret + "@" + closed + "/db?sslmode=disable", ConnectTimeout: 5 * time.Second},
			[]string{"cannot connect", closed, `database "db"`, `user "bob"`}},
		{"unknown role", Config{DSN: withUser("crmsync_no_such_role", "")}, []string{"cannot connect", "crmsync_no_such_role"}},
		{"unknown database", Config{DSN: withUser(u.User.Username(), "crmsync_no_such_db")}, []string{"cannot connect", "crmsync_no_such_db"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Open(context.Background(), tc.cfg)
			if err == nil {
				s.Close()
				t.Fatalf("Open = nil error")
			}
			for _, w := range tc.want {
				assert.ErrorContains(t, err, w, "Open")
			}
			assert.NotContains(t, err.Error(), secret, "Open: the error shows the password")
		})
	}
}

// A role that may log in but not create a schema gets a clear error and
// leaves no schema behind.
func TestOpenWithoutCreatePermission(t *testing.T) {
	u, err := url.Parse(testDSN(t))
	if err != nil || u.Scheme == "" {
		t.Skipf("CRMSYNC_TEST_POSTGRES_DSN is not a URL")
	}
	role := "crmsync_t_role_" + randomHex(4)
	admin(t, `CREATE ROLE `+role+` LOGIN PASSWORD 'pw'`)
	t.Cleanup(func() { admin(t, `DROP ROLE IF EXISTS `+role) })
	schema := freshSchema(t)
	u.User = url.UserPassword(role, "pw")
	s, err := Open(context.Background(), Config{DSN: u.String(), Schema: schema})
	if err == nil {
		s.Close()
		t.Fatal("Open as a role without CREATE = nil error")
	}
	if !strings.Contains(err.Error(), "migrate schema "+schema) || !strings.Contains(err.Error(), "permission denied") {
		t.Errorf("Open = %q, want a migrate error naming the schema and the denied permission", err)
	}
	assert.Zero(t, adminQuery[int](t, `SELECT count(*)::int FROM pg_namespace WHERE nspname = $1`, schema), "schema %s exists after a failed Open", schema)
}

func TestOpenRefusesNewerSchema(t *testing.T) {
	schema := freshSchema(t)
	s := openSchema(t, schema)
	s.Close()
	admin(t, `UPDATE `+schema+`.crmsync_meta SET value = '999' WHERE key = 'schema_version'`)
	before := tableCount(t, schema)
	s2, err := Open(context.Background(), Config{DSN: testDSN(t), Schema: schema})
	if err == nil {
		s2.Close()
		t.Fatal("Open of a newer schema = nil error")
	}
	if !errors.Is(err, ErrSchemaTooNew) || !strings.Contains(err.Error(), "version 999") {
		t.Errorf("Open = %v, want ErrSchemaTooNew naming version 999", err)
	}
	assert.Equal(t, "999", adminQuery[string](t, `SELECT value FROM `+schema+`.crmsync_meta WHERE key = 'schema_version'`), "schema_version after a refused Open (want it untouched)")
	assert.Equal(t, before, tableCount(t, schema), "tables after a refused Open")
}

func TestOpenRefusesForeign(t *testing.T) {
	t.Run("other program's tables", func(t *testing.T) {
		schema := freshSchema(t)
		admin(t, `CREATE SCHEMA `+schema+`; CREATE TABLE `+schema+`.invoices (id int PRIMARY KEY, total numeric)`)
		_, err := Open(context.Background(), Config{DSN: testDSN(t), Schema: schema})
		if !errors.Is(err, ErrForeign) || !strings.Contains(err.Error(), "invoices") {
			t.Errorf("Open = %v, want ErrForeign naming invoices", err)
		}
		assert.Equal(t, 1, tableCount(t, schema), "tables in the foreign schema after Open")
	})
	t.Run("foreign meta", func(t *testing.T) {
		schema := freshSchema(t)
		admin(t, `CREATE SCHEMA `+schema+`; CREATE TABLE `+schema+`.crmsync_meta (key text PRIMARY KEY, value text NOT NULL);
			INSERT INTO `+schema+`.crmsync_meta VALUES ('app', 'someone-else'), ('schema_version', '1')`)
		_, err := Open(context.Background(), Config{DSN: testDSN(t), Schema: schema})
		if !errors.Is(err, ErrForeign) || !strings.Contains(err.Error(), "not written by crmsync") {
			t.Errorf("Open = %v, want ErrForeign", err)
		}
		assert.Equal(t, 1, tableCount(t, schema), "tables in the schema after Open")
	})
}

// A migration that fails rolls back whole: no schema, or the previous
// version untouched.
func TestFailedMigrationLeavesNothing(t *testing.T) {
	saved := migrations
	t.Cleanup(func() { migrations = saved })
	broken := `CREATE TABLE {s}.half_done (id int); SELECT 1/0;`

	fresh := freshSchema(t)
	migrations = append(saved[:len(saved):len(saved)], broken)
	_, err := Open(context.Background(), Config{DSN: testDSN(t), Schema: fresh})
	if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("to version %d", len(saved)+1)) {
		t.Fatalf("Open with a broken migration = %v, want an error naming version %d", err, len(saved)+1)
	}
	assert.Zero(t, adminQuery[int](t, `SELECT count(*)::int FROM pg_namespace WHERE nspname = $1`, fresh), "schema %s exists after a failed first migration", fresh)

	existing := freshSchema(t)
	migrations = saved
	s := openSchema(t, existing)
	s.Close()
	before := tableCount(t, existing)
	migrations = append(saved[:len(saved):len(saved)], broken)
	if _, err := Open(context.Background(), Config{DSN: testDSN(t), Schema: existing}); err == nil {
		t.Fatal("Open with a broken migration = nil error")
	}
	assert.Equal(t, before, tableCount(t, existing), "tables after a failed migration")
	assert.Equal(t, fmt.Sprint(len(saved)), adminQuery[string](t, `SELECT value FROM `+existing+`.crmsync_meta WHERE key = 'schema_version'`), "schema_version after a failed migration")
}

func TestConcurrentOpenMigratesOnce(t *testing.T) {
	schema := freshSchema(t)
	const n = 4
	stores := make([]*Store, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			stores[i], errs[i] = Open(context.Background(), Config{DSN: testDSN(t), Schema: schema, MaxConns: 2})
		}()
	}
	wg.Wait()
	for i, err := range errs {
		require.NoError(t, err, "concurrent Open %d", i)
		defer stores[i].Close()
	}
	assert.Equal(t, fmt.Sprint(SchemaVersion), adminQuery[string](t, `SELECT value FROM `+schema+`.crmsync_meta WHERE key = 'schema_version'`), "schema_version")
	// Every pool works on the one schema: one lease, the others are busy.
	ctx := context.Background()
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	busy := 0
	for i, s := range stores {
		_, _, err := s.AcquireLease(ctx, crmsync.LeaseRequest{Key: "k", Holder: fmt.Sprint("h", i), NewRun: crmsync.RunID(fmt.Sprint("r", i)), TTL: time.Minute, Now: t0})
		if errors.Is(err, crmsync.ErrBusy) {
			busy++
		} else if err != nil {
			t.Fatal(err)
		}
	}
	if busy != n-1 {
		t.Errorf("%d of %d pools got ErrBusy, want %d", busy, n, n-1)
	}
}

func TestReopenKeepsData(t *testing.T) {
	schema := freshSchema(t)
	s := openSchema(t, schema)
	ctx := context.Background()
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	l, _, err := s.AcquireLease(ctx, crmsync.LeaseRequest{Key: "k", Holder: "h", NewRun: "r1", TTL: time.Minute, Now: t0})
	require.NoError(t, err)
	if err := s.Commit(ctx, l, crmsync.Checkpoint{Run: "r1", Step: crmsync.StepRecord{Step: "s", Result: []byte(`1`), Done: t0.Add(123456789)},
		Cursors: map[string]string{"c": "v"}}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s2 := openSchema(t, schema)
	if v, err := s2.GetCursor(ctx, "k", "c"); err != nil || v != "v" {
		t.Errorf("after reopen GetCursor = %q, %v", v, err)
	}
	steps, err := s2.LoadSteps(ctx, "r1")
	if err != nil || !steps["s"].Done.Equal(t0.Add(123456789)) {
		t.Errorf("after reopen LoadSteps = %+v, %v; want the step done at %v to the nanosecond", steps, err, t0.Add(123456789))
	}
}

// Commits racing a takeover: each commit that returned nil landed, each
// that returned ErrLeaseLost did not, and after the first refusal none land.
func TestCommitRacesTakeover(t *testing.T) {
	s := openSchema(t, freshSchema(t))
	ctx := context.Background()
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	old, _, err := s.AcquireLease(ctx, crmsync.LeaseRequest{Key: "k", Holder: "h1", NewRun: "r1", TTL: time.Second, Now: t0})
	require.NoError(t, err)
	const n = 300
	results := make([]error, n)
	started := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range n {
			if i == 20 {
				close(started)
			}
			cp := crmsync.Checkpoint{Run: "r1", Step: crmsync.StepRecord{Step: fmt.Sprint("s", i), Result: []byte(`0`), Done: t0}}
			if i%2 == 1 {
				cp.Cursors = map[string]string{"c": fmt.Sprint(i)}
			}
			results[i] = s.Commit(ctx, old, cp)
		}
	}()
	<-started
	if _, _, err := s.AcquireLease(ctx, crmsync.LeaseRequest{Key: "k", Holder: "h2", NewRun: "r2", TTL: time.Minute, Now: t0.Add(2 * time.Second)}); err != nil {
		t.Fatal(err)
	}
	<-done
	steps, err := s.LoadSteps(ctx, "r1")
	require.NoError(t, err)
	refused := false
	for i, err := range results {
		_, landed := steps[fmt.Sprint("s", i)]
		switch {
		case err == nil && !landed:
			t.Errorf("commit %d returned nil but did not land", i)
		case errors.Is(err, crmsync.ErrLeaseLost) && landed:
			t.Errorf("commit %d returned ErrLeaseLost but landed", i)
		case err != nil && !errors.Is(err, crmsync.ErrLeaseLost):
			t.Errorf("commit %d = %v", i, err)
		case err == nil && refused:
			t.Errorf("commit %d landed after an earlier commit was fenced", i)
		}
		if err != nil {
			refused = true
		}
	}
	if !refused {
		t.Errorf("no commit was fenced after the takeover")
	}
}

func BenchmarkStep(b *testing.B) {
	storetest.Bench(b, func(b *testing.B) crmsync.Store { return openSchema(b, freshSchema(b)) })
}

// BenchmarkStepParallel runs 8 runs on 8 keys at once.
func BenchmarkStepParallel(b *testing.B) {
	storetest.BenchParallel(b, func(b *testing.B) crmsync.Store { return openSchema(b, freshSchema(b)) }, 8)
}

// A commit under the old generation that meets a takeover in flight waits
// for it, then is fenced: it never lands on the strength of a snapshot
// taken before the takeover committed.
func TestCommitWaitsForTakeover(t *testing.T) {
	for _, withExtras := range []bool{false, true} {
		t.Run(fmt.Sprint("extras=", withExtras), func(t *testing.T) {
			schema := freshSchema(t)
			s := openSchema(t, schema)
			ctx := context.Background()
			t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
			old, _, err := s.AcquireLease(ctx, crmsync.LeaseRequest{Key: "k", Holder: "h1", NewRun: "r1", TTL: time.Second, Now: t0})
			require.NoError(t, err)
			// A takeover as AcquireLease makes it, held open.
			conn, err := pgx.Connect(ctx, testDSN(t))
			require.NoError(t, err)
			defer conn.Close(ctx)
			tx, err := conn.Begin(ctx)
			require.NoError(t, err)
			defer tx.Rollback(ctx)
			if _, err := tx.Exec(ctx, `SELECT 1 FROM `+schema+`.leases WHERE key = 'k' FOR UPDATE`); err != nil {
				t.Fatal(err)
			}
			if _, err := tx.Exec(ctx, `UPDATE `+schema+`.leases SET generation = 2, holder = 'h2' WHERE key = 'k'`); err != nil {
				t.Fatal(err)
			}
			cp := crmsync.Checkpoint{Run: "r1", Step: crmsync.StepRecord{Step: "late", Result: []byte(`0`), Done: t0}}
			if withExtras {
				cp.Cursors = map[string]string{"c": "v"}
			}
			done := make(chan error, 1)
			go func() { done <- s.Commit(ctx, old, cp) }()
			deadline := time.Now().Add(10 * time.Second)
			for {
				select {
				case err := <-done:
					t.Fatalf("Commit returned %v while a takeover was in flight; want it to wait for it", err)
				default:
				}
				waiting := adminQuery[int](t, `SELECT count(*)::int FROM pg_stat_activity WHERE application_name = 'crmsync' AND wait_event_type = 'Lock' AND strpos(query, $1) > 0`, schema)
				if waiting > 0 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatal("Commit neither returned nor waited on the lease row")
				}
				time.Sleep(5 * time.Millisecond)
			}
			require.NoError(t, tx.Commit(ctx))
			if err := <-done; !errors.Is(err, crmsync.ErrLeaseLost) {
				t.Errorf("Commit after the takeover = %v, want ErrLeaseLost", err)
			}
			if steps, _ := s.LoadSteps(ctx, "r1"); len(steps) != 0 {
				t.Errorf("fenced step landed: %v", steps)
			}
		})
	}
}

// BenchmarkRuns runs short workflows (4 steps each, a new run each time),
// one at a time and 8 in flight.
func BenchmarkRuns(b *testing.B) {
	for _, n := range []int{1, 8} {
		b.Run(fmt.Sprintf("inflight=%d", n), func(b *testing.B) {
			storetest.BenchRuns(b, func(b *testing.B) crmsync.Store { return openSchema(b, freshSchema(b)) }, n)
		})
	}
}
