package main

import (
	"context"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/salesforce"
	"github.com/crmsync/crmsync/salesforce/pubsub"
)

// memPositions is a PositionStore in memory.
type memPositions struct {
	mu sync.Mutex
	m  map[string][]byte
}

func (p *memPositions) GetPosition(_ context.Context, stream string) ([]byte, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if v, ok := p.m[stream]; ok {
		return v, nil
	}
	return nil, crmsync.ErrNotFound
}

func (p *memPositions) SetPosition(_ context.Context, stream string, pos []byte) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.m[stream] = pos
	return nil
}

// TestFakePubSub: "crmsync fake" serves the Pub/Sub API, and a write
// through the REST API reaches a subscriber that authenticates with the
// printed credentials through the REST client's session.
func TestFakePubSub(t *testing.T) {
	vars := startFake(t, "-seed", "1")
	require.NotEmpty(t, vars["SALESFORCE_PUBSUB_ADDR"])
	client, err := salesforce.New(salesforce.Config{HTTPClient: http.DefaultClient, LoginURL: vars["SALESFORCE_LOGIN_URL"],
		ClientCredentials: &salesforce.ClientCredentialsAuth{ClientID: vars["SALESFORCE_CLIENT_ID"], ClientSecret: vars["SALESFORCE_CLIENT_SECRET"]}})
	require.NoError(t, err)
	conn, err := grpc.NewClient(vars["SALESFORCE_PUBSUB_ADDR"], grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	defer conn.Close()
	pos := &memPositions{m: map[string][]byte{}}
	triggers := make(chan []string, 10)
	sub, err := pubsub.New(pubsub.Config{Conn: conn, Credentials: pubsub.ClientCredentials(client, vars["SALESFORCE_ORG_ID"]),
		Objects: []string{"Contact"}, Positions: pos,
		Trigger: func(_ context.Context, objects []string, _ bool) { triggers <- objects }})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sub.Run(ctx) }()
	defer func() { cancel(); <-done }()

	// Keep writing until the subscription, started at the newest events,
	// sees one: it cannot tell when it is in place otherwise.
	deadline := time.After(10 * time.Second)
	for i := 0; ; i++ {
		status, v := send(t, http.MethodPost, vars["SALESFORCE_INSTANCE_URL"]+"/services/data/v60.0/sobjects/Contact",
			vars["SALESFORCE_ACCESS_TOKEN"], `{"LastName":"Hopper"}`)
		require.Equal(t, http.StatusCreated, status, "%v", v)
		select {
		case objects := <-triggers:
			assert.Equal(t, []string{"Contact"}, objects)
			return
		case <-deadline:
			t.Fatal("no change event reached the subscriber")
		case <-time.After(50 * time.Millisecond):
		}
	}
}
