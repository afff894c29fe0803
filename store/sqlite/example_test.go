package sqlite_test

import (
	"context"
	"fmt"
	"log"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/store/sqlite"
)

// ExampleOpen keeps a run in an SQLite file: one run of a one-step
// workflow, then the file opened again, as by the next start of the
// program, holds the run, its step's result and the cursor the step moved.
func ExampleOpen() {
	dir, err := os.MkdirTemp("", "crmsync-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "crmsync.db")
	ctx := context.Background()

	st, err := sqlite.Open(ctx, sqlite.Config{Path: path}) // created and migrated
	if err != nil {
		log.Fatal(err)
	}
	eng, err := crmsync.NewEngine(crmsync.Config{Store: st, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		log.Fatal(err)
	}
	wf := crmsync.WorkflowFunc(func(ctx context.Context, run *crmsync.Run) error {
		n, err := crmsync.Step(ctx, run, "count", func(ctx context.Context, a *crmsync.Attempt) (int, error) {
			a.SetCursor("contacts", "2026-03-02T09:00:00Z") // committed with the result
			return 3, nil
		}, nil)
		run.SetResult(map[string]int{"contacts": n})
		return err
	})
	if _, err := eng.Run(ctx, "team-1", wf); err != nil {
		log.Fatal(err)
	}
	if err := st.Close(); err != nil { // the caller that opens a Store closes it
		log.Fatal(err)
	}

	st, err = sqlite.Open(ctx, sqlite.Config{Path: path})
	if err != nil {
		log.Fatal(err)
	}
	defer st.Close()
	runs, err := st.ListRuns(ctx, "team-1", 10)
	if err != nil {
		log.Fatal(err)
	}
	cursor, err := st.GetCursor(ctx, "team-1", "contacts")
	if err != nil {
		log.Fatal(err)
	}
	for _, r := range runs {
		steps, err := st.LoadSteps(ctx, r.ID)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(r.Key, r.Status, "after", r.Attempts, "attempt; step count holds", string(steps["count"].Result))
	}
	fmt.Println("cursor:", cursor)
	// Output:
	// team-1 finished after 1 attempt; step count holds 3
	// cursor: 2026-03-02T09:00:00Z
}
