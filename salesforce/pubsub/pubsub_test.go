package pubsub_test

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/hamba/avro/v2"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/salesforce"
	pb "github.com/crmsync/crmsync/salesforce/internal/eventbusv1"
	"github.com/crmsync/crmsync/salesforce/pubsub"
	"github.com/crmsync/crmsync/salesforce/salesforcetest"
)

// positions is a PositionStore in memory that logs every position set.
type positions struct {
	mu   sync.Mutex
	m    map[string][]byte
	sets [][]byte
}

func newPositions() *positions { return &positions{m: map[string][]byte{}} }

func (p *positions) GetPosition(_ context.Context, stream string) ([]byte, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	v, ok := p.m[stream]
	if !ok {
		return nil, crmsync.ErrNotFound
	}
	return bytes.Clone(v), nil
}

func (p *positions) SetPosition(_ context.Context, stream string, pos []byte) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.m[stream] = bytes.Clone(pos)
	p.sets = append(p.sets, bytes.Clone(pos))
	return nil
}

// log returns the positions set from index from on, without repeats in a row.
func (p *positions) log(from int) [][]byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out [][]byte
	for _, s := range p.sets[from:] {
		if len(out) == 0 || !bytes.Equal(out[len(out)-1], s) {
			out = append(out, s)
		}
	}
	return out
}

func (p *positions) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.sets)
}

type trigger struct {
	objects []string
	full    bool
}

type bundle struct {
	srv   *salesforcetest.Server
	conn  *grpc.ClientConn
	pos   *positions
	calls chan trigger
	token string // the token Credentials hands out
}

func setup(t *testing.T) *bundle {
	t.Helper()
	srv := salesforcetest.NewServer(t)
	require.NoError(t, srv.StartPubSub(salesforcetest.PubSubConfig{Keepalive: 50 * time.Millisecond}))
	conn, err := grpc.NewClient(srv.PubSubAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	return &bundle{srv: srv, conn: conn, pos: newPositions(), calls: make(chan trigger, 1000), token: srv.AccessToken()}
}

func (b *bundle) config() pubsub.Config {
	return pubsub.Config{
		Conn: b.conn,
		Credentials: func(context.Context, string) (pubsub.Credentials, error) {
			return pubsub.Credentials{AccessToken: b.token, InstanceURL: b.srv.BaseURL(), TenantID: b.srv.OrgID()}, nil
		},
		Topic:     "/data/ContactChangeEvent",
		Objects:   []string{"Contact"},
		Positions: b.pos,
		Trigger: func(_ context.Context, objects []string, full bool) {
			b.calls <- trigger{objects: objects, full: full}
		},
		RetryWait: 10 * time.Millisecond,
		Logger:    slog.New(slog.DiscardHandler),
	}
}

// run starts a Subscriber; the returned func stops it and returns Run's error.
func (b *bundle) run(t *testing.T, cfg pubsub.Config) func() error {
	t.Helper()
	sub, err := pubsub.New(cfg)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sub.Run(ctx) }()
	var once sync.Once
	var runErr error
	stop := func() error {
		once.Do(func() { cancel(); runErr = <-done })
		return runErr
	}
	t.Cleanup(func() { _ = stop() })
	return stop
}

// live waits until the subscription stored a position (a keepalive's or an
// event's), so that it surely sees the writes that follow.
func (b *bundle) live(t *testing.T, from int) {
	t.Helper()
	require.Eventually(t, func() bool { return b.pos.count() > from }, 10*time.Second, 5*time.Millisecond,
		"the subscription never stored a replay id")
}

func (b *bundle) next(t *testing.T) trigger {
	t.Helper()
	select {
	case c := <-b.calls:
		return c
	case <-time.After(10 * time.Second):
		t.Fatal("no trigger")
		return trigger{}
	}
}

// replayIDs reads every retained event from the start and returns the
// replay id of each, keyed by the first record id.
func (b *bundle) replayIDs(t *testing.T, n int) map[string][]byte {
	t.Helper()
	client := pb.NewPubSubClient(b.conn)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ctx = metadata.AppendToOutgoingContext(ctx, "accesstoken", b.srv.AccessToken(), "instanceurl", b.srv.BaseURL(), "tenantid", b.srv.OrgID())
	st, err := client.Subscribe(ctx)
	require.NoError(t, err)
	require.NoError(t, st.Send(&pb.FetchRequest{TopicName: "/data/ContactChangeEvent", ReplayPreset: pb.ReplayPreset_EARLIEST, NumRequested: 100}))
	out := map[string][]byte{}
	for len(out) < n {
		resp, err := st.Recv()
		require.NoError(t, err)
		for _, ev := range resp.GetEvents() {
			info, err := client.GetSchema(ctx, &pb.SchemaRequest{SchemaId: ev.GetEvent().GetSchemaId()})
			require.NoError(t, err)
			var body struct {
				H pubsub.ChangeEventHeader `avro:"ChangeEventHeader"`
			}
			require.NoError(t, avro.Unmarshal(avro.MustParse(info.GetSchemaJson()), ev.GetEvent().GetPayload(), &body))
			out[body.H.RecordIDs[0]] = ev.GetReplayId()
		}
	}
	return out
}

func TestEventsTriggerForWrites(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.run(t, b.config())
	b.live(t, 0)

	ids := b.srv.SeedContacts(1)
	assert.Equal(t, trigger{objects: []string{"Contact"}}, b.next(t))
	require.NoError(t, b.srv.Edit(ids[0], crmsync.Fields{"Title": "CFO"}))
	assert.Equal(t, trigger{objects: []string{"Contact"}}, b.next(t))
	require.NoError(t, b.srv.Delete(ids[0]))
	assert.Equal(t, trigger{objects: []string{"Contact"}}, b.next(t))
	assert.Equal(t, 1, b.srv.PubSubStats().SchemaCalls, "the schema is fetched once and cached")
}

func TestGapAndOverflowAskForAFullPass(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.run(t, b.config())
	b.live(t, 0)

	ids := b.srv.SeedContacts(1)
	assert.Equal(t, trigger{objects: []string{"Contact"}}, b.next(t))
	require.NoError(t, b.srv.EmitGap("Contact", ids...))
	assert.Equal(t, trigger{objects: []string{"Contact"}, full: true}, b.next(t))
	require.NoError(t, b.srv.EmitOverflow("Contact"))
	assert.Equal(t, trigger{objects: []string{"Contact"}, full: true}, b.next(t))
}

func TestRestartResumesFromTheStoredReplayID(t *testing.T) {
	t.Parallel()
	b := setup(t)
	cfg := b.config()
	cfg.BatchSize = 1
	stop := b.run(t, cfg)
	b.live(t, 0)
	a := b.srv.SeedContacts(1)
	b.next(t)
	require.ErrorIs(t, stop(), context.Canceled)

	// Written while the process was down.
	later := b.srv.SeedContacts(2)
	ids := b.replayIDs(t, 3)
	from := b.pos.count()
	b.run(t, cfg)
	assert.Equal(t, trigger{objects: []string{"Contact"}}, b.next(t))
	assert.Equal(t, trigger{objects: []string{"Contact"}}, b.next(t))
	require.Eventually(t, func() bool {
		got := b.pos.log(from)
		return len(got) >= 2
	}, 10*time.Second, 5*time.Millisecond)
	got := b.pos.log(from)
	assert.Equal(t, [][]byte{ids[later[0]], ids[later[1]]}, got[:2], "the events after the stored one, once each, in order")
	assert.NotContains(t, got, ids[a[0]], "the event handled before the restart is not repeated")
}

func TestRefusedReplayIDAsksForAFullPass(t *testing.T) {
	t.Parallel()
	b := setup(t)
	stop := b.run(t, b.config())
	b.live(t, 0)
	b.srv.SeedContacts(1)
	b.next(t)
	require.ErrorIs(t, stop(), context.Canceled)

	b.srv.SeedContacts(2) // missed, then gone after 72 hours
	b.srv.PurgeEvents()
	from := b.pos.count()
	b.run(t, b.config())
	assert.Equal(t, trigger{objects: []string{"Contact"}, full: true}, b.next(t))
	b.live(t, from)
	b.srv.SeedContacts(1)
	assert.Equal(t, trigger{objects: []string{"Contact"}}, b.next(t), "then it goes on from the newest events")
}

func TestBadTokenRefused(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.token = "not-a-session"
	sub, err := pubsub.New(b.config())
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = sub.Run(ctx)
	require.Error(t, err)
	assert.NotErrorIs(t, err, context.DeadlineExceeded, "Run gives up on refused credentials")
	assert.ErrorContains(t, err, "credentials refused")
	assert.NotContains(t, err.Error(), "not-a-session", "the token stays out of errors")
	assert.Equal(t, 2, b.srv.PubSubStats().Refused, "one renewal, then it stops")
}

func TestRefusedTokenIsRenewed(t *testing.T) {
	t.Parallel()
	b := setup(t)
	cfg := b.config()
	var refused []string
	cfg.Credentials = func(_ context.Context, r string) (pubsub.Credentials, error) {
		refused = append(refused, r)
		tok := "expired-session"
		if r != "" {
			tok = b.srv.AccessToken()
		}
		return pubsub.Credentials{AccessToken: tok, InstanceURL: b.srv.BaseURL(), TenantID: b.srv.OrgID()}, nil
	}
	b.run(t, cfg)
	b.live(t, 0)
	b.srv.SeedContacts(1)
	assert.Equal(t, trigger{objects: []string{"Contact"}}, b.next(t))
	assert.Equal(t, []string{"", "expired-session"}, refused[:2])
}

func TestFlowControl(t *testing.T) {
	t.Parallel()
	b := setup(t)
	cfg := b.config()
	cfg.BatchSize = 5
	b.run(t, cfg)
	b.live(t, 0)
	ids := b.srv.SeedContacts(40)
	require.Eventually(t, func() bool { return b.srv.PubSubStats().Delivered == 40 }, 10*time.Second, 5*time.Millisecond)
	assert.Equal(t, 5, b.srv.PubSubStats().MaxPending, "never more than BatchSize requested")
	replay := b.replayIDs(t, 40)
	require.Eventually(t, func() bool {
		got := b.pos.log(0)
		return bytes.Equal(got[len(got)-1], replay[ids[39]])
	}, 10*time.Second, 5*time.Millisecond, "every event was read and its replay id stored")
}

func TestUnknownTopicStopsRun(t *testing.T) {
	t.Parallel()
	b := setup(t)
	cfg := b.config()
	cfg.Topic = "/data/NopeChangeEvent"
	sub, err := pubsub.New(cfg)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = sub.Run(ctx)
	assert.ErrorContains(t, err, "/data/NopeChangeEvent")
	assert.NotErrorIs(t, err, context.DeadlineExceeded)
}

func TestNewValidates(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for name, mod := range map[string]func(*pubsub.Config){
		"no conn":        func(c *pubsub.Config) { c.Conn = nil },
		"no credentials": func(c *pubsub.Config) { c.Credentials = nil },
		"no positions":   func(c *pubsub.Config) { c.Positions = nil },
		"no trigger":     func(c *pubsub.Config) { c.Trigger = nil },
		"batch too big":  func(c *pubsub.Config) { c.BatchSize = 101 },
	} {
		t.Run(name, func(t *testing.T) {
			cfg := b.config()
			mod(&cfg)
			_, err := pubsub.New(cfg)
			assert.Error(t, err)
		})
	}
}

func TestReplayIDStoredAfterTheTriggerReturns(t *testing.T) {
	t.Parallel()
	b := setup(t)
	cfg := b.config()
	seen := make(chan []byte, 10)
	cfg.Trigger = func(ctx context.Context, objects []string, full bool) {
		pos, _ := b.pos.GetPosition(ctx, "salesforce-cdc:/data/ContactChangeEvent")
		seen <- pos
	}
	b.run(t, cfg)
	b.live(t, 0)
	ids := b.srv.SeedContacts(1)
	var during []byte
	select {
	case during = <-seen:
	case <-time.After(10 * time.Second):
		t.Fatal("no trigger")
	}
	replay := b.replayIDs(t, 1)[ids[0]]
	assert.NotEqual(t, replay, during, "a process killed during the trigger reads the event again")
	require.Eventually(t, func() bool {
		pos, _ := b.pos.GetPosition(context.Background(), "salesforce-cdc:/data/ContactChangeEvent")
		return bytes.Equal(pos, replay)
	}, 10*time.Second, 5*time.Millisecond)
}

func TestReconnectsAndResumes(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.run(t, b.config())
	b.live(t, 0)
	b.srv.SeedContacts(1)
	assert.Equal(t, trigger{objects: []string{"Contact"}}, b.next(t))

	for range 3 {
		b.srv.BreakSubscriptions()
		ids := b.srv.SeedContacts(1) // may be written while no subscription is open
		assert.Equal(t, trigger{objects: []string{"Contact"}}, b.next(t), "record %s", ids[0])
	}
	assert.GreaterOrEqual(t, b.srv.PubSubStats().Subscribes, 4, "it subscribed again after each break")
	assert.Empty(t, b.calls, "no event triggered twice")
}

func TestAllChangeEventsChannel(t *testing.T) {
	t.Parallel()
	b := setup(t)
	cfg := b.config()
	cfg.Topic, cfg.Objects = "", []string{"Account", "Contact"}
	b.run(t, cfg)
	b.live(t, 0)

	b.srv.SeedLeads(1) // not synced: no trigger
	b.srv.SeedAccounts(1)
	assert.Equal(t, trigger{objects: []string{"Account"}}, b.next(t))
	b.srv.SeedStorm(1, 3) // one account and its contacts in one call
	got := map[string]bool{}
	for len(got) < 2 {
		for _, o := range b.next(t).objects {
			got[o] = true
		}
	}
	assert.Equal(t, map[string]bool{"Account": true, "Contact": true}, got)
}

func TestStaticTokenRefusedStopsRun(t *testing.T) {
	t.Parallel()
	b := setup(t)
	client, err := salesforce.New(salesforce.Config{HTTPClient: http.DefaultClient, InstanceURL: b.srv.BaseURL(), AccessToken: "stale-static-token"})
	require.NoError(t, err)
	cfg := b.config()
	cfg.Credentials = pubsub.ClientCredentials(client, b.srv.OrgID())
	sub, err := pubsub.New(cfg)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = sub.Run(ctx)
	assert.ErrorIs(t, err, salesforce.ErrSessionRefused, "a static token cannot be renewed: Run stops")
	assert.NotContains(t, err.Error(), "stale-static-token")
}

func TestUnreadableEventAsksForAFullPass(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.run(t, b.config())
	b.live(t, 0)
	require.NoError(t, b.srv.EmitUnreadable("Contact"))
	assert.Equal(t, trigger{objects: []string{"Contact"}, full: true}, b.next(t))
	b.srv.SeedContacts(1)
	assert.Equal(t, trigger{objects: []string{"Contact"}}, b.next(t), "and it goes on")
}
