package crmsync_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/store/memory"
)

// A workflow whose second step fails on its first run: the second run
// resumes it, replays the first step from the Store and runs only the rest.
func ExampleStep() {
	eng, err := crmsync.NewEngine(crmsync.Config{
		Store:  memory.New(),
		Logger: slog.New(slog.DiscardHandler),
		Retry:  &crmsync.RetryPolicy{MaxAttempts: 1},
	})
	if err != nil {
		panic(err)
	}
	down := true
	wf := crmsync.WorkflowFunc(func(ctx context.Context, run *crmsync.Run) error {
		ids, err := crmsync.Step(ctx, run, "fetch", func(ctx context.Context, _ *crmsync.Attempt) ([]string, error) {
			fmt.Println("fetching")
			return []string{"101", "102"}, nil
		}, nil)
		if err != nil {
			return err
		}
		n, err := crmsync.Step(ctx, run, "write", func(ctx context.Context, _ *crmsync.Attempt) (int, error) {
			if down {
				return 0, errors.New("connection refused")
			}
			fmt.Println("writing", ids)
			return len(ids), nil
		}, nil)
		run.SetResult(map[string]int{"written": n})
		return err
	})
	ctx := context.Background()
	if _, err := eng.Run(ctx, "team-1", wf); err != nil {
		fmt.Println("first run stopped; it will resume")
	}
	down = false
	info, err := eng.Run(ctx, "team-1", wf)
	if err != nil {
		panic(err)
	}
	fmt.Println(info.Status, info.Attempts, "attempts")
	// Output:
	// fetching
	// first run stopped; it will resume
	// writing [101 102]
	// finished 2 attempts
}
