// Package pubsub turns Salesforce Change Data Capture events, read from the
// Pub/Sub API (gRPC, Avro payloads), into sync triggers, and probes orgs
// without Change Data Capture with one SOQL call on a short interval.
//
// Events are triggers, not data: a [Subscriber] reads each event's
// ChangeEventHeader only and calls a [TriggerFunc] with the objects that
// changed, so that the caller runs its usual sync pass for them. A gap or
// overflow event, an event it cannot read, or a replay id Salesforce no
// longer knows calls the trigger with full set: the pass should read its
// whole window. The replay id is stored through a [PositionStore] after
// the trigger returns, so that a restart resumes where it stopped: an event
// may trigger twice, never zero times.
//
// A [Probe] does the same job where the org has no Change Data Capture:
// one query per object and interval for anything newer than the last
// stamp it saw.
package pubsub

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/hamba/avro/v2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/internal/retry"
	pb "github.com/crmsync/crmsync/salesforce/internal/eventbusv1"
)

// DefaultAddr is the Pub/Sub API endpoint.
const DefaultAddr = "api.pubsub.salesforce.com:7443"

// MaxBatch is the most events a subscription may have requested at once.
const MaxBatch = 100

// Dial connects to the Pub/Sub API at addr ("" means DefaultAddr) over
// TLS with the system's roots. The caller closes the connection.
func Dial(addr string) (*grpc.ClientConn, error) {
	if addr == "" {
		addr = DefaultAddr
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{MinVersion: tls.VersionTLS12})))
	if err != nil {
		return nil, fmt.Errorf("pubsub: dial %s: %w", addr, err)
	}
	return conn, nil
}

// Credentials are what every Pub/Sub API call carries.
type Credentials struct {
	// AccessToken is an OAuth session token of the org.
	AccessToken string
	// InstanceURL is the org's instance URL (https://…my.salesforce.com).
	InstanceURL string
	// TenantID is the org id (00D…).
	TenantID string
}

// CredentialsFunc returns the credentials for the next call. refused is
// the access token the API just refused, or "": a func that can renew the
// session does so when refused is its current token.
type CredentialsFunc func(ctx context.Context, refused string) (Credentials, error)

// SessionSource is the part of *salesforce.Client that ClientCredentials
// uses.
type SessionSource interface {
	Session(ctx context.Context, refused string) (token, instanceURL string, err error)
}

// ClientCredentials returns a CredentialsFunc that takes the session of a
// REST client (a *salesforce.Client), renewed when refused, and the org id
// tenantID.
func ClientCredentials(c SessionSource, tenantID string) CredentialsFunc {
	return func(ctx context.Context, refused string) (Credentials, error) {
		tok, inst, err := c.Session(ctx, refused)
		if err != nil {
			return Credentials{}, err
		}
		return Credentials{AccessToken: tok, InstanceURL: inst, TenantID: tenantID}, nil
	}
}

// PositionStore keeps where a stream of changes was read up to: the
// store's crmsync.PositionStore (store/sqlite, store/postgres and
// store/memory implement it). GetPosition reports crmsync.ErrNotFound for a
// stream never set.
type PositionStore = crmsync.PositionStore

// TriggerFunc is told that objects (Salesforce names, such as "Contact")
// have changes; full asks for a pass over the whole window, after a gap.
// It should return quickly (mark the key for a pass, not run it): the next
// events wait for it. A nil or empty objects means every synced object.
type TriggerFunc func(ctx context.Context, objects []string, full bool)

// Config configures a Subscriber.
type Config struct {
	// Conn is the connection to the Pub/Sub API (Dial); required. The
	// caller owns it.
	Conn grpc.ClientConnInterface
	// Credentials returns the session for every call; required.
	Credentials CredentialsFunc
	// Topic is the channel: "/data/ChangeEvents" (every selected object)
	// or one object's, such as "/data/ContactChangeEvent"; "" means
	// "/data/ChangeEvents".
	Topic string
	// Objects are the objects whose events trigger ("Contact", "Account");
	// events of others are passed over. Nil means every object.
	Objects []string
	// Positions stores the replay id; required.
	Positions PositionStore
	// Stream names the replay id in Positions; "" means
	// "salesforce-cdc:" + Topic.
	Stream string
	// Trigger is called for the events; required.
	Trigger TriggerFunc
	// BatchSize is how many events the subscriber asks for at a time, from 1
	// to MaxBatch; zero means MaxBatch. It asks for more as events arrive,
	// so that as many are always requested.
	BatchSize int
	// RetryWait is the first wait before reconnecting after a failure; it
	// doubles up to a minute while failures go on. Zero means a second.
	RetryWait time.Duration
	// Logger receives reconnects (Warn) and unreadable events (Warn); nil
	// means slog.Default(). Record ids are logged at Debug, values never.
	Logger *slog.Logger
}

// Subscriber reads change events from one topic. Run it once at a time.
type Subscriber struct {
	cfg    Config
	client pb.PubSubClient
	log    *slog.Logger

	mu      sync.Mutex
	schemas map[string]avro.Schema // by schema id
}

// New returns a Subscriber for cfg; it reports an error naming an invalid
// field.
func New(cfg Config) (*Subscriber, error) {
	switch {
	case cfg.Conn == nil:
		return nil, errors.New("pubsub: Config.Conn is required")
	case cfg.Credentials == nil:
		return nil, errors.New("pubsub: Config.Credentials is required")
	case cfg.Positions == nil:
		return nil, errors.New("pubsub: Config.Positions is required")
	case cfg.Trigger == nil:
		return nil, errors.New("pubsub: Config.Trigger is required")
	case cfg.BatchSize < 0 || cfg.BatchSize > MaxBatch:
		return nil, fmt.Errorf("pubsub: Config.BatchSize: %d is not in [1, %d]", cfg.BatchSize, MaxBatch)
	case cfg.RetryWait < 0:
		return nil, errors.New("pubsub: Config.RetryWait must not be negative")
	}
	if cfg.Topic == "" {
		cfg.Topic = "/data/ChangeEvents"
	}
	if cfg.Stream == "" {
		cfg.Stream = "salesforce-cdc:" + cfg.Topic
	}
	if cfg.BatchSize == 0 {
		cfg.BatchSize = MaxBatch
	}
	if cfg.RetryWait == 0 {
		cfg.RetryWait = time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Subscriber{cfg: cfg, client: pb.NewPubSubClient(cfg.Conn), log: cfg.Logger,
		schemas: map[string]avro.Schema{}}, nil
}

// session is the state carried from one subscription attempt to the next.
type session struct {
	refused   string // the access token last refused
	authFails int    // refusals in a row
	reset     bool   // the stored replay id was refused: start from LATEST with a full pass
	progress  bool   // the last attempt received a response
}

// Run subscribes and calls the trigger for the events until ctx ends or
// the API refuses the subscription for good (credentials refused after a
// renewal, an unknown topic, no permission); it reconnects after other
// failures with a growing wait. It resumes after the stored replay id, or
// from the newest events when none is stored. When ctx ends it returns
// ctx's error.
func (s *Subscriber) Run(ctx context.Context) error {
	var st session
	policy := retry.Policy{InitialInterval: s.cfg.RetryWait, MaxInterval: time.Minute, Jitter: 0.2}
	err := retry.Do(ctx, policy, func(int) error { return s.subscribe(ctx, &st) },
		func(err error) retry.Verdict { return s.classify(&st, err) },
		func(attempt int, err error, wait time.Duration) {
			s.log.Warn("salesforce change events: reconnecting", "topic", s.cfg.Topic, "attempt", attempt, "wait", wait, "err", err)
		})
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return fmt.Errorf("pubsub: %w", err)
}

// classify decides what follows a failed subscription.
func (s *Subscriber) classify(st *session, err error) retry.Verdict {
	progressed := st.progress
	st.progress = false
	var rerr *replayError
	var cerr *credentialsError
	switch code := status.Code(err); {
	case errors.As(err, &cerr) && (st.authFails > 0 || crmsync.IsPermanent(err)):
		// The session was refused and cannot be renewed, or the OAuth
		// server refused the app's credentials.
		return retry.Stop(nil)
	case errors.As(err, &rerr):
		st.reset = true
		return retry.Wait(0)
	case code == codes.Unauthenticated:
		if st.authFails > 1 {
			return retry.Stop(fmt.Errorf("credentials refused after a renewal: %w", err))
		}
		return retry.Wait(0)
	case code == codes.NotFound || code == codes.PermissionDenied:
		return retry.Stop(nil)
	}
	if progressed {
		return retry.Wait(s.cfg.RetryWait) // it worked for a while: reconnect after the first wait
	}
	return retry.Retry(0)
}

// credentialsError reports that the Credentials func failed.
type credentialsError struct{ err error }

func (e *credentialsError) Error() string { return "credentials: " + e.err.Error() }
func (e *credentialsError) Unwrap() error { return e.err }

// replayError reports that the API refused the stored replay id.
type replayError struct{ err error }

func (e *replayError) Error() string { return "stored replay id refused: " + e.err.Error() }
func (e *replayError) Unwrap() error { return e.err }

// subscribe runs one subscription until it fails or ctx ends.
func (s *Subscriber) subscribe(ctx context.Context, st *session) error {
	creds, err := s.cfg.Credentials(ctx, st.refused)
	if err != nil {
		return &credentialsError{err: err}
	}
	cctx, cancel := context.WithCancel(metadata.AppendToOutgoingContext(ctx,
		"accesstoken", creds.AccessToken, "instanceurl", creds.InstanceURL, "tenantid", creds.TenantID))
	defer cancel()

	first := &pb.FetchRequest{TopicName: s.cfg.Topic, ReplayPreset: pb.ReplayPreset_LATEST, NumRequested: int32(s.cfg.BatchSize)}
	full := st.reset
	if !full {
		pos, err := s.cfg.Positions.GetPosition(ctx, s.cfg.Stream)
		switch {
		case errors.Is(err, crmsync.ErrNotFound):
		case err != nil:
			return fmt.Errorf("load replay id of %s: %w", s.cfg.Stream, err)
		case len(pos) > 0:
			first.ReplayPreset, first.ReplayId = pb.ReplayPreset_CUSTOM, pos
		}
	}
	// GetTopic checks the topic and the user's right to it, and warms the
	// schema cache with the topic's current schema.
	topic, err := s.client.GetTopic(cctx, &pb.TopicRequest{TopicName: s.cfg.Topic})
	if err != nil {
		return s.refusal(st, creds, fmt.Errorf("get topic %s: %w", s.cfg.Topic, err))
	}
	if !topic.GetCanSubscribe() {
		return status.Errorf(codes.PermissionDenied, "topic %s: the user may not subscribe", s.cfg.Topic)
	}
	if _, err := s.schema(cctx, topic.GetSchemaId()); err != nil {
		if _, rpc := status.FromError(err); rpc {
			return s.refusal(st, creds, err)
		}
		// A schema that does not parse: its events will ask for full passes.
	}
	stream, err := s.client.Subscribe(cctx)
	if err == nil {
		err = stream.Send(first)
	}
	if err != nil {
		return s.refusal(st, creds, fmt.Errorf("subscribe to %s: %w", s.cfg.Topic, err))
	}
	if full {
		// The stream now starts at the newest events; a full pass covers
		// what the lost replay id would have.
		s.log.Warn("salesforce change events: stored replay id refused, asking for a full pass", "topic", s.cfg.Topic)
		s.cfg.Trigger(ctx, slices.Clone(s.cfg.Objects), true)
		st.reset = false
	}
	for {
		resp, err := stream.Recv()
		if err != nil {
			if first.ReplayPreset == pb.ReplayPreset_CUSTOM && status.Code(err) == codes.InvalidArgument {
				return &replayError{err: err}
			}
			return s.refusal(st, creds, fmt.Errorf("receive from %s: %w", s.cfg.Topic, err))
		}
		st.progress, st.authFails, st.refused = true, 0, ""
		first.ReplayPreset = pb.ReplayPreset_LATEST // a later error is not about the stored id
		if err := s.handle(cctx, resp); err != nil {
			return err
		}
		if n := len(resp.GetEvents()); n > 0 {
			if err := stream.Send(&pb.FetchRequest{NumRequested: int32(n)}); err != nil {
				return fmt.Errorf("request more from %s: %w", s.cfg.Topic, err)
			}
		}
	}
}

// refusal notes a refused session in st before err goes to classify.
func (s *Subscriber) refusal(st *session, creds Credentials, err error) error {
	if status.Code(err) == codes.Unauthenticated {
		st.refused = creds.AccessToken
		st.authFails++
	}
	return err
}

// handle triggers for one response's events, then stores the replay id.
func (s *Subscriber) handle(ctx context.Context, resp *pb.FetchResponse) error {
	var changed, gaps []string
	everything := false // an unreadable event may have been about any object
	for _, ev := range resp.GetEvents() {
		sc, err := s.schema(ctx, ev.GetEvent().GetSchemaId())
		if _, rpc := status.FromError(err); err != nil && rpc {
			return err // the stored replay id stays: the next subscription reads the event again
		}
		var h ChangeEventHeader
		if err == nil {
			h, err = decodeHeader(sc, ev.GetEvent())
		}
		switch {
		case err != nil:
			s.log.Warn("salesforce change events: unreadable event, asking for a full pass",
				"topic", s.cfg.Topic, "event_id", ev.GetEvent().GetId(), "err", err)
			everything = true
		case s.cfg.Objects != nil && !slices.Contains(s.cfg.Objects, h.EntityName):
		case h.Full():
			s.log.Debug("salesforce change event", "object", h.EntityName, "change", h.ChangeType, "record_id", h.RecordIDs)
			gaps = append(gaps, h.EntityName)
		default:
			s.log.Debug("salesforce change event", "object", h.EntityName, "change", h.ChangeType, "record_id", h.RecordIDs)
			changed = append(changed, h.EntityName)
		}
	}
	if len(changed) > 0 {
		s.cfg.Trigger(ctx, dedupe(changed), false)
	}
	switch {
	case everything:
		s.cfg.Trigger(ctx, slices.Clone(s.cfg.Objects), true)
	case len(gaps) > 0:
		s.cfg.Trigger(ctx, dedupe(gaps), true)
	}
	pos := resp.GetLatestReplayId()
	if evs := resp.GetEvents(); len(evs) > 0 {
		pos = evs[len(evs)-1].GetReplayId()
	}
	if len(pos) == 0 {
		return nil
	}
	if err := s.cfg.Positions.SetPosition(ctx, s.cfg.Stream, pos); err != nil {
		return fmt.Errorf("store replay id of %s: %w", s.cfg.Stream, err)
	}
	return nil
}

func dedupe(xs []string) []string {
	slices.Sort(xs)
	return slices.Compact(xs)
}

// ChangeEventHeader is the header of a Change Data Capture event.
type ChangeEventHeader struct {
	// EntityName is the object: "Contact", "MyObject__c".
	EntityName string `avro:"entityName"`
	// RecordIDs are the records changed; several for one change to several
	// records in one transaction; none for GAP_OVERFLOW.
	RecordIDs []string `avro:"recordIds"`
	// ChangeType is CREATE, UPDATE, DELETE, UNDELETE, GAP_CREATE,
	// GAP_UPDATE, GAP_DELETE, GAP_UNDELETE or GAP_OVERFLOW.
	ChangeType string `avro:"changeType"`
	// ChangeOrigin names the API and client that made the change, when one did.
	ChangeOrigin string `avro:"changeOrigin"`
	// TransactionKey is shared by the events of one transaction, in the
	// order of SequenceNumber.
	TransactionKey string `avro:"transactionKey"`
	SequenceNumber int32  `avro:"sequenceNumber"`
	// CommitTimestamp is the commit time in epoch milliseconds.
	CommitTimestamp int64 `avro:"commitTimestamp"`
	// ChangedFields lists, as bitmaps over the schema's field positions, the
	// fields an UPDATE changed.
	ChangedFields []string `avro:"changedFields"`
}

// Full reports whether the event asks for a full pass: a gap (GAP_*) or
// overflow (GAP_OVERFLOW) event, which tells that records changed without
// saying how.
func (h ChangeEventHeader) Full() bool {
	return len(h.ChangeType) > 4 && h.ChangeType[:4] == "GAP_"
}

// decodeHeader decodes an event's ChangeEventHeader.
func decodeHeader(sc avro.Schema, ev *pb.ProducerEvent) (ChangeEventHeader, error) {
	var body struct {
		Header ChangeEventHeader `avro:"ChangeEventHeader"`
	}
	if err := avro.Unmarshal(sc, ev.GetPayload(), &body); err != nil {
		return ChangeEventHeader{}, fmt.Errorf("decode event %s: %w", ev.GetId(), err)
	}
	if body.Header.EntityName == "" || body.Header.ChangeType == "" {
		return ChangeEventHeader{}, fmt.Errorf("event %s has no change event header", ev.GetId())
	}
	return body.Header, nil
}

// schema returns a schema by id, from the cache or GetSchema.
func (s *Subscriber) schema(ctx context.Context, id string) (avro.Schema, error) {
	s.mu.Lock()
	sc := s.schemas[id]
	s.mu.Unlock()
	if sc != nil {
		return sc, nil
	}
	info, err := s.client.GetSchema(ctx, &pb.SchemaRequest{SchemaId: id})
	if err != nil {
		return nil, fmt.Errorf("get schema %s: %w", id, err)
	}
	sc, err = avro.Parse(info.GetSchemaJson())
	if err != nil {
		return nil, fmt.Errorf("parse schema %s: %w", id, err)
	}
	s.mu.Lock()
	s.schemas[id] = sc
	s.mu.Unlock()
	return sc, nil
}
