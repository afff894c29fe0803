package crmsync_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"maps"
	"slices"
	"time"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/store/memory"
)

// A durable workflow on a memory store: it pushes the contacts after its
// cursor, one step each, then moves the cursor. The first push meets a rate
// limit and waits as asked; the second is refused for good and parked as a
// dead letter while the run goes on. The key's next run is a new run that
// starts from the cursor.
func ExampleEngine_Run() {
	st := memory.New()
	eng, err := crmsync.NewEngine(crmsync.Config{
		Store:  st,
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		log.Fatal(err)
	}

	contacts := []string{"101", "102", "103"}
	tries := map[string]int{}
	push := func(id string) error { // a CRM write
		tries[id]++
		switch {
		case id == "101" && tries[id] == 1:
			return crmsync.RetryAfter(time.Millisecond, errors.New("429 too many requests"))
		case id == "102":
			return crmsync.Permanent(errors.New("400 invalid email"))
		}
		return nil
	}

	wf := crmsync.WorkflowFunc(func(ctx context.Context, run *crmsync.Run) error {
		after, _, err := run.Cursor(ctx, "pushed")
		if err != nil {
			return err
		}
		pushed := 0
		for _, id := range contacts {
			if id <= after {
				continue
			}
			_, err := crmsync.Step(ctx, run, "push:"+id, func(ctx context.Context, _ *crmsync.Attempt) (bool, error) {
				return true, push(id)
			}, &crmsync.StepOpts{DeadLetter: &crmsync.DeadLetterSpec{System: "hubspot", RecordID: id}})
			switch {
			case errors.Is(err, crmsync.ErrDeadLettered):
				continue // parked; a person can mark it for replay
			case err != nil:
				return err
			}
			pushed++
		}
		last := contacts[len(contacts)-1]
		if _, err := crmsync.Step(ctx, run, "checkpoint", func(ctx context.Context, a *crmsync.Attempt) (string, error) {
			a.SetCursor("pushed", last) // committed with the step, atomically
			return last, nil
		}, nil); err != nil {
			return err
		}
		c := run.Counters()
		fmt.Printf("pushed %d after %q: %d retried, %d parked\n", pushed, after, c.Retries, c.DeadLetters)
		run.SetResult(map[string]int{"pushed": pushed}) // kept in the run's Report
		return nil
	})

	ctx := context.Background()
	for range 2 {
		info, err := eng.Run(ctx, "team-1", wf)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println("run", info.Status)
	}
	for _, id := range slices.Sorted(maps.Keys(tries)) {
		fmt.Println("contact", id, "tried", tries[id], "times")
	}
	letters, err := st.ListDeadLetters(ctx, crmsync.DeadLetterQuery{Key: "team-1"})
	if err != nil {
		log.Fatal(err)
	}
	for _, l := range letters {
		fmt.Println("dead letter:", l.System, l.RecordID, l.Status, l.Error)
	}
	// Output:
	// pushed 2 after "": 1 retried, 1 parked
	// run finished
	// pushed 0 after "103": 0 retried, 0 parked
	// run finished
	// contact 101 tried 2 times
	// contact 102 tried 1 times
	// contact 103 tried 1 times
	// dead letter: hubspot 102 parked 400 invalid email
}
