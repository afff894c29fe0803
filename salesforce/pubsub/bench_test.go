package pubsub_test

import (
	"context"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/crmsync/crmsync/salesforce/pubsub"
	"github.com/crmsync/crmsync/salesforce/salesforcetest"
)

// BenchmarkBulkImport10k: a bulk import of 10,000 contacts (10,000 change
// events) read by a Subscriber over gRPC from the fake, until every replay
// id is stored. It reports the trigger calls the import made (triggers/op)
// and the events read per second.
func BenchmarkBulkImport10k(b *testing.B) {
	const n = 10000
	var triggers atomic.Int64
	var elapsed time.Duration
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		srv, err := salesforcetest.New(salesforcetest.Config{})
		if err != nil {
			b.Fatal(err)
		}
		if err := srv.Start(); err != nil {
			b.Fatal(err)
		}
		if err := srv.StartPubSub(salesforcetest.PubSubConfig{Keepalive: 10 * time.Millisecond}); err != nil {
			b.Fatal(err)
		}
		conn, err := grpc.NewClient(srv.PubSubAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			b.Fatal(err)
		}
		pos := newPositions()
		sub, err := pubsub.New(pubsub.Config{Conn: conn, Topic: "/data/ContactChangeEvent", Positions: pos,
			Credentials: func(context.Context, string) (pubsub.Credentials, error) {
				return pubsub.Credentials{AccessToken: srv.AccessToken(), InstanceURL: srv.BaseURL(), TenantID: srv.OrgID()}, nil
			},
			Trigger: func(context.Context, []string, bool) { triggers.Add(1) },
			Logger:  slog.New(slog.DiscardHandler)})
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- sub.Run(ctx) }()
		for pos.count() == 0 {
			time.Sleep(time.Millisecond)
		}
		b.StartTimer()
		start := time.Now()
		srv.SeedContacts(n)
		// The subscriber asks for more only after storing the replay id of
		// what it read.
		for srv.PubSubStats().Requested < pubsub.MaxBatch+n {
			time.Sleep(100 * time.Microsecond)
		}
		elapsed += time.Since(start)
		b.StopTimer()
		cancel()
		<-done
		_ = conn.Close()
		srv.Close()
	}
	b.ReportMetric(float64(triggers.Load())/float64(b.N), "triggers/op")
	b.ReportMetric(float64(n*b.N)/elapsed.Seconds(), "events/s")
}
