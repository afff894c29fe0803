package worker_test

import (
	"context"
	"log"
	"os/signal"
	"syscall"
	"time"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/store/memory"
	"github.com/crmsync/crmsync/worker"
)

// Every process of a deployment runs the same Worker on a shared Store
// (store/postgres across machines): each key syncs every five minutes, in
// one process at a time, and a dead process's keys move to the others once
// its lease expires.
func Example() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	eng, err := crmsync.NewEngine(crmsync.Config{Store: memory.New(), LeaseTTL: 30 * time.Second})
	if err != nil {
		log.Fatal(err)
	}
	syncFor := func(team string) crmsync.Workflow {
		// In a real service: crmsync.NewSync with the team's CRM clients.
		return crmsync.WorkflowFunc(func(ctx context.Context, run *crmsync.Run) error { return nil })
	}
	w, err := worker.New(worker.Config{
		Engine:      eng,
		Keys:        []string{"team-1", "team-2", "team-3"},
		Workflow:    syncFor,
		Interval:    5 * time.Minute,
		Concurrency: 8,
		GracePeriod: 20 * time.Second, // let runs finish on SIGTERM
	})
	if err != nil {
		log.Fatal(err)
	}
	if err := w.Run(ctx); err != nil {
		log.Fatal(err)
	}
}
