// Command durable-steps runs a small workflow on the SQLite store: it pages
// through a list, "writes" each page, and advances a cursor. Stop it with
// Ctrl-C (or kill it) halfway and run it again: the same run resumes and
// the pages already written are not written again.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"time"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/store/sqlite"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, nil); err != nil {
		fmt.Fprintln(os.Stderr, "durable-steps:", err)
		os.Exit(1)
	}
}

// run runs the example; afterWrite, if set, is called after each page is written.
func run(ctx context.Context, args []string, stdout io.Writer, afterWrite func(page int)) error {
	fs := flag.NewFlagSet("durable-steps", flag.ContinueOnError)
	storePath := fs.String("store", "", "SQLite file (default: a new file in a temporary folder)")
	pages := fs.Int("pages", 5, "pages to process")
	delay := fs.Duration("delay", 0, "pause in each step, to give you time to kill the process")
	failAt := fs.Int("fail-at", 3, "page whose first attempt fails with a transient error (0: none)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *storePath == "" {
		dir, err := os.MkdirTemp("", "crmsync-example-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		*storePath = filepath.Join(dir, "crmsync.db")
	}
	st, err := sqlite.Open(ctx, sqlite.Config{Path: *storePath})
	if err != nil {
		return err
	}
	defer st.Close()
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	eng, err := crmsync.NewEngine(crmsync.Config{Store: st, Logger: logger, LeaseTTL: 5 * time.Second,
		Retry: &crmsync.RetryPolicy{MaxAttempts: 3, InitialInterval: 50 * time.Millisecond, MaxInterval: time.Second, Multiplier: 2}})
	if err != nil {
		return err
	}

	info, err := eng.Run(ctx, "example", crmsync.WorkflowFunc(func(ctx context.Context, run *crmsync.Run) error {
		if run.Resumed {
			fmt.Fprintf(stdout, "resuming run %s\n", run.ID)
		} else {
			fmt.Fprintf(stdout, "run %s\n", run.ID)
		}
		written := 0
		for p := 1; p <= *pages; p++ {
			ids, err := crmsync.Step(ctx, run, fmt.Sprintf("read:%d", p), func(ctx context.Context, _ *crmsync.Attempt) ([]string, error) {
				fmt.Fprintf(stdout, "  read page %d\n", p)
				return []string{fmt.Sprintf("%d01", p), fmt.Sprintf("%d02", p)}, nil
			}, nil)
			if err != nil {
				return err
			}
			n, err := crmsync.Step(ctx, run, fmt.Sprintf("write:%d", p), func(ctx context.Context, a *crmsync.Attempt) (int, error) {
				if p == *failAt && a.N == 1 {
					return 0, errors.New("connection reset by peer")
				}
				if err := sleep(ctx, *delay); err != nil {
					return 0, err
				}
				fmt.Fprintf(stdout, "  wrote page %d (%d records, attempt %d)\n", p, len(ids), a.N)
				a.SetCursor("page", fmt.Sprint(p))
				a.Audit(crmsync.AuditEntry{Kind: crmsync.AuditWrite, RecordIDs: ids})
				return len(ids), nil
			}, nil)
			if err != nil {
				return err
			}
			if afterWrite != nil {
				afterWrite(p)
			}
			written += n
		}
		run.SetResult(map[string]int{"written": written})
		return nil
	}))
	if err != nil {
		return err
	}
	cursor, _ := st.GetCursor(ctx, "example", "page")
	fmt.Fprintf(stdout, "run %s %s after %d attempt(s); cursor page=%s; report %s\n", info.ID, info.Status, info.Attempts, cursor, info.Report)
	return nil
}

func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}
