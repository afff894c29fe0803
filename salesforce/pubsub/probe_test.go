package pubsub_test

import (
	"context"
	"log/slog"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/salesforce"
	"github.com/crmsync/crmsync/salesforce/pubsub"
	"github.com/crmsync/crmsync/salesforce/salesforcetest"
)

type probeBundle struct {
	srv    *salesforcetest.Server
	client *salesforce.Client
	pos    *positions
	mu     sync.Mutex
	now    time.Time
	calls  chan trigger
}

// tick moves the fake org's clock on, so that each write gets a new stamp.
func (b *probeBundle) tick() {
	b.mu.Lock()
	b.now = b.now.Add(time.Second)
	b.mu.Unlock()
}

func setupProbe(t *testing.T) *probeBundle {
	t.Helper()
	b := &probeBundle{now: time.Date(2026, 5, 1, 9, 0, 0, 0, time.UTC), pos: newPositions(), calls: make(chan trigger, 100)}
	b.srv = salesforcetest.NewServer(t, salesforcetest.WithClock(func() time.Time {
		b.mu.Lock()
		defer b.mu.Unlock()
		return b.now
	}))
	var err error
	b.client, err = salesforce.New(salesforce.Config{HTTPClient: http.DefaultClient, InstanceURL: b.srv.BaseURL(), AccessToken: b.srv.AccessToken()})
	require.NoError(t, err)
	return b
}

func (b *probeBundle) probe(t *testing.T) *pubsub.Probe {
	t.Helper()
	p, err := pubsub.NewProbe(pubsub.ProbeConfig{Client: b.client, Objects: []string{"Contact"}, Positions: b.pos,
		Interval: 5 * time.Millisecond, Logger: slog.New(slog.DiscardHandler),
		Trigger: func(_ context.Context, objects []string, full bool) { b.calls <- trigger{objects, full} }})
	require.NoError(t, err)
	return p
}

func (b *probeBundle) triggers() []trigger {
	var out []trigger
	for {
		select {
		case c := <-b.calls:
			out = append(out, c)
		default:
			return out
		}
	}
}

func TestProbeTriggersForNewerChanges(t *testing.T) {
	t.Parallel()
	b := setupProbe(t)
	ctx := context.Background()
	ids := b.srv.SeedContacts(2)
	p := b.probe(t)

	require.NoError(t, p.Check(ctx))
	assert.Empty(t, b.triggers(), "the first round learns the newest stamp only")

	b.tick()
	require.NoError(t, b.srv.Edit(ids[0], crmsync.Fields{"Title": "VP"}))
	require.NoError(t, p.Check(ctx))
	assert.Equal(t, []trigger{{objects: []string{"Contact"}}}, b.triggers())

	require.NoError(t, p.Check(ctx))
	assert.Empty(t, b.triggers(), "nothing newer")

	b.tick()
	require.NoError(t, b.srv.Delete(ids[1]))
	require.NoError(t, p.Check(ctx))
	assert.Equal(t, []trigger{{objects: []string{"Contact"}}}, b.triggers(), "a deletion is a change")
	assert.Equal(t, 4, b.srv.CallCount("queryAll"), "one call per round and object")

	// A new process with the same store goes on from the stored stamp.
	b.tick()
	b.srv.SeedContacts(1)
	require.NoError(t, b.probe(t).Check(ctx))
	assert.Equal(t, []trigger{{objects: []string{"Contact"}}}, b.triggers())
}

func TestProbeEmptyOrg(t *testing.T) {
	t.Parallel()
	b := setupProbe(t)
	ctx := context.Background()
	p := b.probe(t)
	require.NoError(t, p.Check(ctx))
	assert.Empty(t, b.triggers())
	b.tick()
	b.srv.SeedContacts(1)
	require.NoError(t, p.Check(ctx))
	assert.Equal(t, []trigger{{objects: []string{"Contact"}}}, b.triggers(), "the first record of an empty org is a change")
}

func TestProbeRun(t *testing.T) {
	t.Parallel()
	b := setupProbe(t)
	ids := b.srv.SeedContacts(1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.probe(t).Run(ctx) }()
	require.Eventually(t, func() bool { return b.pos.count() > 0 }, 10*time.Second, time.Millisecond)
	b.tick()
	require.NoError(t, b.srv.Edit(ids[0], crmsync.Fields{"Title": "VP"}))
	select {
	case c := <-b.calls:
		assert.Equal(t, trigger{objects: []string{"Contact"}}, c)
	case <-time.After(10 * time.Second):
		t.Fatal("no trigger")
	}
	cancel()
	assert.ErrorIs(t, <-done, context.Canceled)
}

func TestProbeFailureIsReported(t *testing.T) {
	t.Parallel()
	b := setupProbe(t)
	b.srv.Inject(salesforcetest.Fault{Endpoint: "queryAll", Status: 400, Times: 1})
	err := b.probe(t).Check(context.Background())
	require.Error(t, err)
	assert.Equal(t, 0, b.pos.count(), "no stamp stored")
}
