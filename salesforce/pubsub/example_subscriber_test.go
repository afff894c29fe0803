package pubsub_test

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/salesforce/pubsub"
	"github.com/crmsync/crmsync/salesforce/salesforcetest"
)

// readyPositions is a PositionStore in memory that tells when the first
// position was stored, that is when the subscription is in place.
type readyPositions struct {
	mu    sync.Mutex
	m     map[string][]byte
	ready chan struct{}
	once  sync.Once
}

func (p *readyPositions) GetPosition(_ context.Context, stream string) ([]byte, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if v, ok := p.m[stream]; ok {
		return v, nil
	}
	return nil, crmsync.ErrNotFound
}

func (p *readyPositions) SetPosition(_ context.Context, stream string, pos []byte) error {
	p.mu.Lock()
	p.m[stream] = pos
	p.mu.Unlock()
	p.once.Do(func() { close(p.ready) })
	return nil
}

// A Subscriber turns Change Data Capture events into triggers: here from
// the fake org's Pub/Sub API, for a contact created and a gap event.
func ExampleSubscriber() {
	org, _ := salesforcetest.New(salesforcetest.Config{})
	_ = org.Start()
	defer org.Close()
	_ = org.StartPubSub(salesforcetest.PubSubConfig{Keepalive: 20 * time.Millisecond})

	// A real org: pubsub.Dial("") and pubsub.ClientCredentials(client, orgID).
	conn, _ := grpc.NewClient(org.PubSubAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	defer conn.Close()
	positions := &readyPositions{m: map[string][]byte{}, ready: make(chan struct{})}
	triggered := make(chan string, 10)
	sub, err := pubsub.New(pubsub.Config{
		Conn: conn,
		Credentials: func(context.Context, string) (pubsub.Credentials, error) {
			return pubsub.Credentials{AccessToken: org.AccessToken(), InstanceURL: org.BaseURL(), TenantID: org.OrgID()}, nil
		},
		Topic:     "/data/ChangeEvents",
		Objects:   []string{"Contact"},
		Positions: positions,
		Trigger: func(_ context.Context, objects []string, full bool) {
			triggered <- fmt.Sprintf("%v full=%v", objects, full)
		},
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- sub.Run(ctx) }()
	<-positions.ready

	ids := org.SeedContacts(1)
	fmt.Println(<-triggered)
	_ = org.EmitGap("Contact", ids...)
	fmt.Println(<-triggered)
	cancel()
	fmt.Println(<-done)
	// Output:
	// [Contact] full=false
	// [Contact] full=true
	// context canceled
}
