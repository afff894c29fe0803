package salesforcetest

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/hamba/avro/v2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	pb "github.com/crmsync/crmsync/salesforce/internal/eventbusv1"
)

// DefaultOrgID is the fake org's id, the tenantid a Pub/Sub API client
// sends.
const DefaultOrgID = "00D000000000001AAA"

// The error codes the fake Pub/Sub API puts in the "error-code" trailer,
// as Salesforce does.
const (
	ErrCodeReplayIDCorrupted = "sfdc.platform.eventbus.grpc.subscription.fetch.replayid.corrupted"
	ErrCodeAuth              = "sfdc.platform.eventbus.grpc.service.auth.error"
	ErrCodeTopicNotFound     = "sfdc.platform.eventbus.grpc.service.topic.not.found"
)

// MaxRequested is the most events a Pub/Sub subscription may have
// requested and not yet received; more is capped to it.
const MaxRequested = 100

// PubSubConfig configures the fake Pub/Sub API (StartPubSub).
type PubSubConfig struct {
	// Addr is the address to listen on; "" means 127.0.0.1 and a free port.
	Addr string
	// Keepalive is how long a subscription waits with nothing to send
	// before it sends an empty FetchResponse carrying the latest replay
	// id; zero means 270 s, as Salesforce.
	Keepalive time.Duration
	// OrgID is the tenant id clients must send; "" means DefaultOrgID.
	OrgID string
}

// PubSubStats counts what the fake Pub/Sub API did.
type PubSubStats struct {
	// Subscribes counts Subscribe streams opened, refused ones included.
	Subscribes int
	// Refused counts calls refused for their credentials.
	Refused int
	// Delivered counts events sent.
	Delivered int
	// Requested sums the num_requested of every FetchRequest received.
	Requested int
	// SchemaCalls counts GetSchema calls.
	SchemaCalls int
	// MaxPending is the most events one stream ever had requested and not
	// yet received (after the cap of MaxRequested).
	MaxPending int
	// Published counts change events in the event log since the start.
	Published int
}

// busEvent is one retained change event.
type busEvent struct {
	seq      uint64
	entity   string
	schemaID string
	payload  []byte
	id       string
}

// change is one change event to publish: a change type, the fields it
// changed (for UPDATE) and the records (one, or several with the same
// change).
type change struct {
	typ    string
	fields []string
	recs   []*record
}

// eventBus is the fake's Pub/Sub API state. Its zero value is stopped;
// StartPubSub starts it. Lock order: Server.mu, then eventBus.mu.
type eventBus struct {
	mu      sync.Mutex
	on      bool
	cfg     PubSubConfig
	gs      *grpc.Server
	addr    string
	schemas map[string]*entitySchema // entity → schema
	// entities are the objects with change events, in the fake's order.
	entities []string
	byID     map[string]*entitySchema
	log      []busEvent
	next     uint64 // the sequence number of the next event
	first    uint64 // the sequence number of log[0] (next when empty)
	txn      int
	wake     chan struct{} // closed when an event is appended
	broken   chan struct{} // closed by BreakSubscriptions
	stats    PubSubStats
}

// entitySchema is the Avro schema of one entity's change events.
type entitySchema struct {
	entity string
	id     string
	json   string
	schema avro.Schema
	// fields are the top-level body fields in schema order (after the
	// header at position 0); a field named in nested sits in a compound.
	fields []bodyField
}

type bodyField struct {
	name   string      // Avro field name
	def    fieldDef    // for a plain field
	nested []fieldDef  // for a compound field (Name)
	avro   avroFieldTy // the value type
}

type avroFieldTy string

// StartPubSub serves the fake Pub/Sub API (gRPC, package eventbus.v1,
// service PubSub: GetTopic, GetSchema, Subscribe) on a local listener,
// without TLS. From then on every write, by the REST API or by the test
// helpers (Seed, Edit, EditMany, Delete, Undelete, Merge), publishes change
// events with Salesforce's ChangeEventHeader on /data/ChangeEvents and
// /data/<Entity>ChangeEvent; EmitGap and EmitOverflow publish gap and
// overflow events. Calls must carry the metadata accesstoken (a token the
// REST API accepts), instanceurl and tenantid (PubSubConfig.OrgID); others
// are refused with Unauthenticated. Close stops it.
func (s *Server) StartPubSub(cfg PubSubConfig) error {
	if cfg.Keepalive < 0 {
		return errors.New("salesforcetest: PubSubConfig.Keepalive must not be negative")
	}
	if cfg.Keepalive == 0 {
		cfg.Keepalive = 270 * time.Second
	}
	if cfg.OrgID == "" {
		cfg.OrgID = DefaultOrgID
	}
	addr := cfg.Addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	b := &s.bus
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.on {
		return errors.New("salesforcetest: StartPubSub: already started")
	}
	b.schemas, b.byID = map[string]*entitySchema{}, map[string]*entitySchema{}
	for _, o := range s.objectList {
		es, err := buildSchema(o.name, o.fields)
		if err != nil {
			return err
		}
		b.schemas[o.name], b.byID[es.id] = es, es
		b.entities = append(b.entities, o.name)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("salesforcetest: pub/sub listen on %s: %w", addr, err)
	}
	b.cfg, b.on, b.addr = cfg, true, ln.Addr().String()
	b.next, b.first = 1, 1
	b.wake, b.broken = make(chan struct{}), make(chan struct{})
	b.gs = grpc.NewServer()
	pb.RegisterPubSubServer(b.gs, &pubsubService{s: s})
	go func(gs *grpc.Server) { _ = gs.Serve(ln) }(b.gs)
	return nil
}

// PubSubAddr returns the host:port the fake Pub/Sub API listens on; ""
// before StartPubSub.
func (s *Server) PubSubAddr() string {
	s.bus.mu.Lock()
	defer s.bus.mu.Unlock()
	return s.bus.addr
}

// OrgID returns the tenant id the fake Pub/Sub API expects.
func (s *Server) OrgID() string {
	s.bus.mu.Lock()
	defer s.bus.mu.Unlock()
	if s.bus.cfg.OrgID == "" {
		return DefaultOrgID
	}
	return s.bus.cfg.OrgID
}

// PubSubStats returns the fake Pub/Sub API's counters.
func (s *Server) PubSubStats() PubSubStats {
	s.bus.mu.Lock()
	defer s.bus.mu.Unlock()
	return s.bus.stats
}

// stopPubSub stops the Pub/Sub server, if started.
func (s *Server) stopPubSub() {
	s.bus.mu.Lock()
	gs := s.bus.gs
	s.bus.gs = nil
	s.bus.mu.Unlock()
	if gs != nil {
		gs.Stop()
	}
}

// EmitGap publishes a gap event (GAP_UPDATE) for records of object, as
// Salesforce does when it cannot tell what changed (an event over 1 MB, a
// change made directly in the database): a header with the record ids and
// no field values.
func (s *Server) EmitGap(object string, ids ...string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.publishHeader(object, "GAP_UPDATE", ids)
}

// EmitOverflow publishes an overflow event (GAP_OVERFLOW) for object, as
// Salesforce does past 100,000 changes in one transaction: a header with
// the entity name and no record ids.
func (s *Server) EmitOverflow(object string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.publishHeader(object, "GAP_OVERFLOW", nil)
}

// BreakSubscriptions ends every open subscription with Unavailable, as a
// restarting Salesforce server or a dropped connection does; clients
// subscribe again.
func (s *Server) BreakSubscriptions() {
	s.bus.mu.Lock()
	defer s.bus.mu.Unlock()
	if s.bus.broken != nil {
		close(s.bus.broken)
		s.bus.broken = make(chan struct{})
	}
}

// EmitUnreadable publishes an event of object whose payload does not
// decode with its schema, for tests of a subscriber's handling of events
// it cannot read.
func (s *Server) EmitUnreadable(object string) error {
	b := &s.bus
	b.mu.Lock()
	defer b.mu.Unlock()
	es := b.schemas[object]
	if !b.on || es == nil {
		return fmt.Errorf("salesforcetest: no change events for object %q (StartPubSub)", object)
	}
	b.appendRawLocked(es, []byte{0xff, 0xff, 0xff})
	return nil
}

// PurgeEvents drops every retained change event, as Salesforce does after
// 72 hours: a replay id from before them is then refused as corrupted.
func (s *Server) PurgeEvents() {
	s.bus.mu.Lock()
	defer s.bus.mu.Unlock()
	s.bus.log = nil
	s.bus.first = s.bus.next
}

// publishHeader publishes an event without a body; s.mu is held.
func (s *Server) publishHeader(object, typ string, ids []string) error {
	b := &s.bus
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.on {
		return errors.New("salesforcetest: pub/sub not started (StartPubSub)")
	}
	es := b.schemas[object]
	if es == nil {
		return fmt.Errorf("salesforcetest: no change events for object %q", object)
	}
	if ids == nil {
		ids = []string{}
	}
	b.txn++
	ev := map[string]any{"ChangeEventHeader": s.header(es, typ, ids, nil, fmt.Sprintf("%08x-gap", b.txn), 1)}
	return b.appendLocked(es, ev)
}

// publish publishes the changes of one transaction, one event each, if
// the Pub/Sub API runs; s.mu is held. Encoding errors are bugs of the fake
// and panic.
func (s *Server) publish(changes ...change) {
	b := &s.bus
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.on || len(changes) == 0 {
		return
	}
	b.txn++
	key := fmt.Sprintf("%08x-%04x-txn", b.txn, len(changes))
	for i, c := range changes {
		if len(c.recs) == 0 {
			continue
		}
		es := b.schemas[s.objOf(c.recs[0]).name]
		if es == nil {
			continue
		}
		ids := make([]string, len(c.recs))
		for j, r := range c.recs {
			ids[j] = r.id
		}
		ev := s.body(es, c)
		ev["ChangeEventHeader"] = s.header(es, c.typ, ids, c.fields, key, i+1)
		if err := b.appendLocked(es, ev); err != nil {
			panic(err)
		}
	}
}

// appendLocked encodes ev and adds it to the log; b.mu is held.
func (b *eventBus) appendLocked(es *entitySchema, ev map[string]any) error {
	payload, err := avro.Marshal(es.schema, ev)
	if err != nil {
		return fmt.Errorf("salesforcetest: encode %s change event: %w", es.entity, err)
	}
	b.appendRawLocked(es, payload)
	return nil
}

// appendRawLocked adds an event with payload to the log and wakes the
// subscriptions; b.mu is held.
func (b *eventBus) appendRawLocked(es *entitySchema, payload []byte) {
	seq := b.next
	b.next++
	b.log = append(b.log, busEvent{seq: seq, entity: es.entity, schemaID: es.id, payload: payload,
		id: fmt.Sprintf("%s-%d", es.entity, seq)})
	b.stats.Published++
	close(b.wake)
	b.wake = make(chan struct{})
}

// header builds a ChangeEventHeader; s.mu is held.
func (s *Server) header(es *entitySchema, typ string, ids, changed []string, txn string, seq int) map[string]any {
	now := s.stamp()
	bitmap := []any{}
	if typ == "UPDATE" {
		for _, f := range changedBitmap(es, changed) {
			bitmap = append(bitmap, f)
		}
	}
	recIDs := make([]any, len(ids))
	for i, id := range ids {
		recIDs[i] = id
	}
	return map[string]any{
		"entityName": es.entity, "recordIds": recIDs, "changeType": typ, "changeOrigin": "",
		"transactionKey": txn, "sequenceNumber": int32(seq), "commitTimestamp": now.UnixMilli(),
		"commitNumber": int64(s.seq)*1000 + int64(seq), "commitUser": "005000000000001AAA",
		"nulledFields": []any{}, "diffFields": []any{}, "changedFields": bitmap,
	}
}

// body builds the event body for c: every field for CREATE and UNDELETE,
// the changed ones for UPDATE, none for DELETE; s.mu is held.
func (s *Server) body(es *entitySchema, c change) map[string]any {
	out := map[string]any{}
	if c.typ == "DELETE" || len(c.recs) != 1 {
		return out // merged events of several records carry the header only here
	}
	r := c.recs[0]
	want := func(name string) bool {
		if c.typ != "UPDATE" {
			return true
		}
		for _, f := range c.fields {
			if strings.EqualFold(f, name) {
				return true
			}
		}
		return false
	}
	for _, bf := range es.fields {
		if bf.nested != nil {
			sub := map[string]any{}
			set := false
			for _, fd := range bf.nested {
				sub[fd.Name] = nil
				if want(fd.Name) {
					if v := avroValue(fd, r.value(fd.Name)); v != nil {
						sub[fd.Name] = v
					}
					set = true
				}
			}
			if set {
				// A record in a union goes in a map keyed by its full name.
				out[bf.name] = map[string]any{"com.sforce.eventbus." + bf.name: sub}
			}
			continue
		}
		if want(bf.name) {
			if v := avroValue(bf.def, r.value(bf.name)); v != nil {
				out[bf.name] = v
			}
		}
	}
	return out
}

// avroValue converts a record value to its Avro form, nil for none.
func avroValue(fd fieldDef, v any) any {
	if v == nil {
		return nil
	}
	switch fd.Type {
	case "boolean":
		b, _ := v.(bool)
		return b
	case "double", "currency", "percent":
		n, ok := numberValue(v)
		if !ok {
			return nil
		}
		f, _ := n.Float64()
		return f
	case "int":
		n, ok := numberValue(v)
		if !ok {
			return nil
		}
		f, _ := n.Float64()
		return int32(f)
	case "date":
		s, _ := v.(string)
		t, err := time.Parse("2006-01-02", s)
		if err != nil {
			return nil
		}
		return int32(t.Unix() / 86400)
	case "datetime":
		t, err := parseAnyTime(v)
		if err != nil {
			return nil
		}
		return t.UnixMilli()
	}
	return fmt.Sprint(v)
}

// changedBitmap encodes changed field names as Salesforce's bitmaps: the
// first element sets bit i for top-level field i (the header is field 0),
// then "<pos>-0x…" for the fields inside the compound field at pos.
func changedBitmap(es *entitySchema, changed []string) []string {
	top := new(big.Int)
	nested := map[int]*big.Int{}
	var order []int
	for _, name := range changed {
		for i, bf := range es.fields {
			pos := i + 1
			if bf.nested == nil {
				if strings.EqualFold(bf.name, name) {
					top.SetBit(top, pos, 1)
				}
				continue
			}
			for j, fd := range bf.nested {
				if strings.EqualFold(fd.Name, name) {
					top.SetBit(top, pos, 1)
					if nested[pos] == nil {
						nested[pos] = new(big.Int)
						order = append(order, pos)
					}
					nested[pos].SetBit(nested[pos], j, 1)
				}
			}
		}
	}
	if top.Sign() == 0 {
		return nil
	}
	out := []string{hexBits(top)}
	for _, pos := range order {
		out = append(out, fmt.Sprintf("%d-%s", pos, hexBits(nested[pos])))
	}
	return out
}

func hexBits(n *big.Int) string {
	h := strings.ToUpper(n.Text(16))
	if len(h)%2 == 1 {
		h = "0" + h
	}
	return "0x" + h
}

// buildSchema builds the Avro schema of entity's change events from its
// fields: the header, then every field but Id, IsDeleted and
// SystemModstamp (which change events leave out), nullable, with
// FirstName and LastName in the compound Name as in Salesforce.
func buildSchema(entity string, fields []fieldDef) (*entitySchema, error) {
	es := &entitySchema{entity: entity}
	header := map[string]any{"type": "record", "name": "ChangeEventHeader", "fields": []any{
		map[string]any{"name": "entityName", "type": "string"},
		map[string]any{"name": "recordIds", "type": map[string]any{"type": "array", "items": "string"}},
		map[string]any{"name": "changeType", "type": map[string]any{"type": "enum", "name": "ChangeType", "symbols": []string{
			"CREATE", "UPDATE", "DELETE", "UNDELETE", "GAP_CREATE", "GAP_UPDATE", "GAP_DELETE", "GAP_UNDELETE", "GAP_OVERFLOW", "SNAPSHOT"}}},
		map[string]any{"name": "changeOrigin", "type": "string"},
		map[string]any{"name": "transactionKey", "type": "string"},
		map[string]any{"name": "sequenceNumber", "type": "int"},
		map[string]any{"name": "commitTimestamp", "type": "long"},
		map[string]any{"name": "commitNumber", "type": "long"},
		map[string]any{"name": "commitUser", "type": "string"},
		map[string]any{"name": "nulledFields", "type": map[string]any{"type": "array", "items": "string"}},
		map[string]any{"name": "diffFields", "type": map[string]any{"type": "array", "items": "string"}},
		map[string]any{"name": "changedFields", "type": map[string]any{"type": "array", "items": "string"}},
	}}
	avroFields := []any{map[string]any{"name": "ChangeEventHeader", "type": header}}
	var name *bodyField
	for _, fd := range fields {
		switch fd.Name {
		case "Id", "IsDeleted", "SystemModstamp":
			continue
		case "FirstName", "LastName":
			if name == nil {
				es.fields = append(es.fields, bodyField{name: "Name"})
				name = &es.fields[len(es.fields)-1]
			}
			name.nested = append(name.nested, fd)
			continue
		}
		es.fields = append(es.fields, bodyField{name: fd.Name, def: fd, avro: avroType(fd.Type)})
	}
	for _, bf := range es.fields {
		if bf.nested == nil {
			avroFields = append(avroFields, map[string]any{"name": bf.name, "type": []any{"null", string(bf.avro)}, "default": nil})
			continue
		}
		var sub []any
		for _, fd := range bf.nested {
			sub = append(sub, map[string]any{"name": fd.Name, "type": []any{"null", string(avroType(fd.Type))}, "default": nil})
		}
		avroFields = append(avroFields, map[string]any{"name": bf.name, "default": nil,
			"type": []any{"null", map[string]any{"type": "record", "name": bf.name, "fields": sub}}})
	}
	js, err := json.Marshal(map[string]any{"type": "record", "name": entity + "ChangeEvent",
		"namespace": "com.sforce.eventbus", "fields": avroFields})
	if err != nil {
		return nil, err
	}
	sc, err := avro.Parse(string(js))
	if err != nil {
		return nil, fmt.Errorf("salesforcetest: %s change event schema: %w", entity, err)
	}
	sum := sha256.Sum256(js)
	es.id, es.json, es.schema = base64.RawURLEncoding.EncodeToString(sum[:16]), string(js), sc
	return es, nil
}

// avroType is the Avro type of a Salesforce field type in change events:
// datetimes as epoch milliseconds, dates as days since the epoch.
func avroType(t string) avroFieldTy {
	switch t {
	case "boolean":
		return "boolean"
	case "double", "currency", "percent":
		return "double"
	case "date", "int":
		return "int"
	case "datetime":
		return "long"
	}
	return "string"
}

// replayID encodes a sequence number as an opaque replay id.
func replayID(seq uint64) []byte {
	b := make([]byte, 8)
	binary.BigEndian.PutUint64(b, seq)
	return b
}

// pubsubService implements the PubSub gRPC service.
type pubsubService struct {
	pb.UnimplementedPubSubServer
	s *Server
}

// topicEntity maps a topic name to the entity it carries; "" is every
// entity (/data/ChangeEvents).
func (b *eventBus) topicEntity(topic string) (string, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if topic == "/data/ChangeEvents" {
		return "", true
	}
	for _, e := range b.entities {
		if topic == "/data/"+e+"ChangeEvent" {
			return e, true
		}
	}
	return "", false
}

// grpcError is a status error with Salesforce's error-code trailer.
func grpcError(ctx context.Context, code codes.Code, errCode, msg string) error {
	_ = grpc.SetTrailer(ctx, metadata.Pairs("error-code", errCode))
	return status.Error(code, msg)
}

// auth checks the call's metadata.
func (p *pubsubService) auth(ctx context.Context) error {
	md, _ := metadata.FromIncomingContext(ctx)
	get := func(k string) string {
		if v := md.Get(k); len(v) == 1 {
			return v[0]
		}
		return ""
	}
	tok, inst, tenant := get("accesstoken"), get("instanceurl"), get("tenantid")
	p.s.mu.Lock()
	valid := tok != "" && p.s.tokens[tok]
	p.s.mu.Unlock()
	if valid && inst != "" && tenant == p.s.OrgID() {
		return nil
	}
	p.s.bus.mu.Lock()
	p.s.bus.stats.Refused++
	p.s.bus.mu.Unlock()
	return grpcError(ctx, codes.Unauthenticated, ErrCodeAuth, "authentication failed: check accesstoken, instanceurl and tenantid")
}

// GetTopic describes a change event topic.
func (p *pubsubService) GetTopic(ctx context.Context, req *pb.TopicRequest) (*pb.TopicInfo, error) {
	if err := p.auth(ctx); err != nil {
		return nil, err
	}
	entity, ok := p.s.bus.topicEntity(req.GetTopicName())
	if !ok {
		return nil, grpcError(ctx, codes.NotFound, ErrCodeTopicNotFound, "topic not found: "+req.GetTopicName())
	}
	b := &p.s.bus
	b.mu.Lock()
	defer b.mu.Unlock()
	if entity == "" {
		entity = b.entities[0]
	}
	return &pb.TopicInfo{TopicName: req.GetTopicName(), TenantGuid: b.cfg.OrgID, CanSubscribe: true,
		SchemaId: b.schemas[entity].id, RpcId: "rpc-topic"}, nil
}

// GetSchema returns a change event schema by id.
func (p *pubsubService) GetSchema(ctx context.Context, req *pb.SchemaRequest) (*pb.SchemaInfo, error) {
	if err := p.auth(ctx); err != nil {
		return nil, err
	}
	b := &p.s.bus
	b.mu.Lock()
	defer b.mu.Unlock()
	b.stats.SchemaCalls++
	es := b.byID[req.GetSchemaId()]
	if es == nil {
		return nil, status.Error(codes.NotFound, "schema not found: "+req.GetSchemaId())
	}
	return &pb.SchemaInfo{SchemaJson: es.json, SchemaId: es.id, RpcId: "rpc-schema"}, nil
}

// Subscribe serves one subscription: the first FetchRequest names the
// topic and start; events go out only as far as requested.
func (p *pubsubService) Subscribe(stream grpc.BidiStreamingServer[pb.FetchRequest, pb.FetchResponse]) error {
	ctx := stream.Context()
	b := &p.s.bus
	b.mu.Lock()
	b.stats.Subscribes++
	b.mu.Unlock()
	if err := p.auth(ctx); err != nil {
		return err
	}
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	entity, ok := b.topicEntity(first.GetTopicName())
	if !ok {
		return grpcError(ctx, codes.NotFound, ErrCodeTopicNotFound, "topic not found: "+first.GetTopicName())
	}
	if first.GetNumRequested() <= 0 {
		return status.Error(codes.InvalidArgument, "num_requested must be positive")
	}
	b.mu.Lock()
	pos := b.next - 1 // the last event passed
	switch first.GetReplayPreset() {
	case pb.ReplayPreset_EARLIEST:
		pos = b.first - 1
	case pb.ReplayPreset_CUSTOM:
		id := first.GetReplayId()
		var seq uint64
		if len(id) == 8 {
			seq = binary.BigEndian.Uint64(id)
		}
		if len(id) != 8 || seq+1 < b.first || seq >= b.next {
			b.mu.Unlock()
			return grpcError(ctx, codes.InvalidArgument, ErrCodeReplayIDCorrupted, "replay id is invalid or no longer retained")
		}
		pos = seq
	}
	keepalive, broken := b.cfg.Keepalive, b.broken
	b.mu.Unlock()

	var (
		mu      sync.Mutex
		pending = int(min(first.GetNumRequested(), MaxRequested))
		more    = make(chan struct{}, 1)
	)
	p.notePending(pending, int(first.GetNumRequested()))
	recvErr := make(chan error, 1)
	go func() {
		for {
			req, err := stream.Recv()
			if err != nil {
				recvErr <- err
				return
			}
			if req.GetNumRequested() <= 0 {
				continue
			}
			mu.Lock()
			pending = min(pending+int(req.GetNumRequested()), MaxRequested)
			p.notePending(pending, int(req.GetNumRequested()))
			mu.Unlock()
			select {
			case more <- struct{}{}:
			default:
			}
		}
	}()
	timer := time.NewTimer(keepalive)
	defer timer.Stop()
	for {
		mu.Lock()
		want := pending
		mu.Unlock()
		b.mu.Lock()
		wake := b.wake
		var out []*pb.ConsumerEvent
		var last uint64
		if pos+1 < b.first {
			pos = b.first - 1 // purged while subscribed
		}
		for i := int(pos + 1 - b.first); i < len(b.log) && len(out) < want; i++ {
			ev := b.log[i]
			pos = ev.seq
			if entity != "" && ev.entity != entity {
				continue
			}
			last = ev.seq
			out = append(out, &pb.ConsumerEvent{ReplayId: replayID(ev.seq),
				Event: &pb.ProducerEvent{Id: ev.id, SchemaId: ev.schemaID, Payload: ev.payload}})
		}
		if want > 0 && len(out) < want {
			pos = b.next - 1 // nothing more for this topic up to the tip
		}
		b.stats.Delivered += len(out)
		b.mu.Unlock()
		if len(out) > 0 {
			mu.Lock()
			pending -= len(out)
			left := pending
			mu.Unlock()
			if err := stream.Send(&pb.FetchResponse{Events: out, LatestReplayId: replayID(last),
				RpcId: "rpc-subscribe", PendingNumRequested: int32(left)}); err != nil {
				return err
			}
			timer.Reset(keepalive)
			continue
		}
		select {
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		case <-broken:
			return status.Error(codes.Unavailable, "subscription ended by the server")
		case err := <-recvErr:
			if errors.Is(err, context.Canceled) {
				return status.Error(codes.Canceled, "subscription cancelled")
			}
			return err
		case <-wake:
		case <-more:
		case <-timer.C:
			mu.Lock()
			left := pending
			mu.Unlock()
			if err := stream.Send(&pb.FetchResponse{LatestReplayId: replayID(pos), RpcId: "rpc-keepalive",
				PendingNumRequested: int32(left)}); err != nil {
				return err
			}
			timer.Reset(keepalive)
		}
	}
}

// notePending records a request for more and the most events a stream
// had requested.
func (p *pubsubService) notePending(n, requested int) {
	p.s.bus.mu.Lock()
	p.s.bus.stats.MaxPending = max(p.s.bus.stats.MaxPending, n)
	p.s.bus.stats.Requested += requested
	p.s.bus.mu.Unlock()
}

// changedNames returns the names of fields, canonical where the field is
// known.
func changedNames[M ~map[string]V, V any](fields M) []string {
	out := make([]string, 0, len(fields))
	for k := range fields {
		out = append(out, k)
	}
	return out
}

// recordsOf returns the records with ids; s.mu is held.
func (s *Server) recordsOf(ids []string) []*record {
	out := make([]*record, 0, len(ids))
	for _, id := range ids {
		if r := s.records[id]; r != nil {
			out = append(out, r)
		}
	}
	return out
}

// savedChanges returns a change per record a collections call saved:
// CREATE for a new record, UPDATE with the fields sent otherwise; s.mu is
// held.
func savedChanges(s *Server, kind string, recs []map[string]any, results []saveResult) []change {
	var out []change
	for i, res := range results {
		if !res.Success || res.ID == nil || s.records[*res.ID] == nil {
			continue
		}
		typ := "UPDATE"
		if kind == "create" || (res.Created != nil && *res.Created) {
			typ = "CREATE"
		}
		out = append(out, change{typ: typ, fields: changedNames(recs[i]), recs: []*record{s.records[*res.ID]}})
	}
	return out
}
