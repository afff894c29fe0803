// Command steps measures short durable workflows the way DBOS Transact's
// peer benchmark does: N runs of K steps, each step returning a PAYLOAD-byte
// result, a new run each time, CONCURRENCY runs in flight (each in-flight
// slot runs its runs one after another on its own key). It prints one line
// per concurrency with steps/s and round trips per step:
//
//	crmsync backend=postgres n=2000 k=4 concurrency=1 steps_per_s=… roundtrips_per_step=…
//
// On PostgreSQL a round trip is one client write followed by the server's
// answer, counted on the connections' sockets. On SQLite, which has no
// network, "round trips" counts transactions (each BEGIN…COMMIT, or a
// statement outside one) and statements are reported beside them.
//
//	go run ./bench/steps -store postgres -dsn postgres://postgres@127.0.0.1:5432/test?sslmode=disable
//	go run ./bench/steps -store sqlite -path /tmp/steps.db
package main

import (
	"context"
	"database/sql"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/internal/sqlcount"
	"github.com/crmsync/crmsync/store/postgres"
	"github.com/crmsync/crmsync/store/sqlite"
	"github.com/jackc/pgx/v5/pgxpool"
	msqlite "modernc.org/sqlite"
)

// pgTrips counts PostgreSQL's round trips; sqlCounts SQLite's transactions
// (its "round trips") and statements.
var (
	pgTrips   atomic.Int64
	sqlCounts sqlcount.Counts
)

// stepOut is what each step returns, as in the DBOS peer.
type stepOut struct {
	Contact int    `json:"contact"`
	Step    string `json:"step"`
	Data    string `json:"data"`
}

var stepNames = []string{"find", "merge", "write", "audit"}

func stepName(i int) string {
	if i < len(stepNames) {
		return stepNames[i]
	}
	return stepNames[i%len(stepNames)] + "-" + strconv.Itoa(i/len(stepNames))
}

func main() {
	var (
		backend = flag.String("store", "postgres", "postgres or sqlite")
		dsn     = flag.String("dsn", os.Getenv("CRMSYNC_TEST_POSTGRES_DSN"), "PostgreSQL DSN")
		schema  = flag.String("schema", "crmsync_bench_steps", "PostgreSQL schema (dropped first)")
		path    = flag.String("path", filepath.Join(os.TempDir(), "crmsync-bench-steps.db"), "SQLite file (removed first)")
		n       = flag.Int("n", 2000, "runs per concurrency")
		k       = flag.Int("k", 4, "steps per run")
		conc    = flag.String("c", "1,8", "runs in flight: a comma-separated list")
		payload = flag.Int("payload", 128, "bytes of each step's result data")
		warmup  = flag.Int("warmup", 50, "runs before the timed phase")
		cpuprof = flag.String("cpuprofile", "", "write a CPU profile of the timed phases to this file")
	)
	flag.Parse()
	ctx := context.Background()
	var st crmsync.Store
	var closeStore func()
	switch *backend {
	case "postgres":
		if *dsn == "" {
			fail("set -dsn or CRMSYNC_TEST_POSTGRES_DSN")
		}
		dropSchema(ctx, *dsn, *schema)
		s, err := postgres.Open(ctx, postgres.Config{DSN: *dsn, Schema: *schema, MaxConns: 16, PoolConfig: func(pc *pgxpool.Config) {
			d := &net.Dialer{KeepAlive: 5 * time.Minute}
			pc.ConnConfig.DialFunc = func(ctx context.Context, network, addr string) (net.Conn, error) {
				c, err := d.DialContext(ctx, network, addr)
				if err != nil {
					return nil, err
				}
				return &countConn{Conn: c}, nil
			}
		}})
		if err != nil {
			fail("%v", err)
		}
		st, closeStore = s, func() { s.Close() }
	case "sqlite":
		for _, suf := range []string{"", "-wal", "-shm"} {
			os.Remove(*path + suf)
		}
		sql.Register("sqlite-counting", sqlcount.Driver{Driver: &msqlite.Driver{}, Counts: func(string) *sqlcount.Counts { return &sqlCounts }})
		s, err := sqlite.Open(ctx, sqlite.Config{Path: *path, Synchronous: "NORMAL", Driver: "sqlite-counting"})
		if err != nil {
			fail("%v", err)
		}
		st, closeStore = s, func() { s.Close() }
	default:
		fail("-store %q: want postgres or sqlite", *backend)
	}
	defer closeStore()
	eng, err := crmsync.NewEngine(crmsync.Config{Store: st, Logger: slog.New(slog.DiscardHandler), LeaseTTL: time.Minute})
	if err != nil {
		fail("%v", err)
	}
	data := strings.Repeat("x", *payload)
	workflow := func(contact int) crmsync.WorkflowFunc {
		return func(ctx context.Context, run *crmsync.Run) error {
			for i := range *k {
				name := stepName(i)
				out, err := crmsync.Step(ctx, run, name, func(context.Context, *crmsync.Attempt) (stepOut, error) {
					return stepOut{Contact: contact, Step: name, Data: data}, nil
				}, nil)
				if err != nil {
					return err
				}
				if out.Step != name {
					return fmt.Errorf("step %s returned %q", name, out.Step)
				}
			}
			return nil
		}
	}
	// runAll runs total runs, c in flight, and returns the time taken.
	runAll := func(tag string, total, c int) time.Duration {
		var next atomic.Int64
		var wg sync.WaitGroup
		errs := make(chan error, c)
		start := time.Now()
		for w := range c {
			wg.Add(1)
			go func() {
				defer wg.Done()
				key := fmt.Sprintf("%s-%d", tag, w)
				for {
					i := int(next.Add(1)) - 1
					if i >= total {
						return
					}
					if _, err := eng.Run(ctx, key, workflow(i)); err != nil {
						errs <- err
						return
					}
				}
			}()
		}
		wg.Wait()
		el := time.Since(start)
		close(errs)
		for err := range errs {
			fail("%v", err)
		}
		return el
	}
	for _, cs := range strings.Split(*conc, ",") {
		c, err := strconv.Atoi(strings.TrimSpace(cs))
		if err != nil || c < 1 {
			fail("-c %q: want positive numbers", *conc)
		}
		runAll("warm-"+strconv.Itoa(c), *warmup, c)
		if *cpuprof != "" {
			f, err := os.Create(fmt.Sprintf("%s.%s.c%d", *cpuprof, *backend, c))
			if err != nil {
				fail("%v", err)
			}
			pprof.StartCPUProfile(f)
		}
		pgTrips.Store(0)
		sqlCounts.Txs.Store(0)
		sqlCounts.Stmts.Store(0)
		el := runAll("run-"+strconv.Itoa(c), *n, c)
		trips, stmts := pgTrips.Load()+sqlCounts.Txs.Load(), sqlCounts.Stmts.Load()
		if *cpuprof != "" {
			pprof.StopCPUProfile()
		}
		steps := float64(*n * *k)
		line := fmt.Sprintf("crmsync backend=%s n=%d k=%d concurrency=%d payload=%d steps_per_s=%.0f workflows_per_s=%.1f roundtrips_per_step=%.2f roundtrips_per_run=%.2f",
			*backend, *n, *k, c, *payload, steps/el.Seconds(), float64(*n)/el.Seconds(), float64(trips)/steps, float64(trips)/float64(*n))
		if *backend == "sqlite" {
			line += fmt.Sprintf(" statements_per_step=%.2f", float64(stmts)/steps)
		}
		fmt.Println(line)
	}
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "steps: "+format+"\n", args...)
	os.Exit(1)
}

// dropSchema starts from an empty schema.
func dropSchema(ctx context.Context, dsn, schema string) {
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		fail("%v", err)
	}
	defer pool.Close()
	if _, err := pool.Exec(ctx, `DROP SCHEMA IF EXISTS "`+schema+`" CASCADE`); err != nil {
		fail("drop schema %s: %v", schema, err)
	}
}

// countConn counts round trips: each write that follows a read (or comes
// first) starts one.
type countConn struct {
	net.Conn
	writing bool
}

func (c *countConn) Write(b []byte) (int, error) {
	if !c.writing {
		c.writing = true
		pgTrips.Add(1)
	}
	return c.Conn.Write(b)
}

func (c *countConn) Read(b []byte) (int, error) {
	c.writing = false
	return c.Conn.Read(b)
}
