package salesforcetest

import (
	"context"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/hamba/avro/v2"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/crmsync/crmsync"
	pb "github.com/crmsync/crmsync/salesforce/internal/eventbusv1"
)

type pubsubBundle struct {
	srv    *Server
	client pb.PubSubClient
	ctx    context.Context // carries valid credentials
}

func setupPubSub(t *testing.T, cfg PubSubConfig) *pubsubBundle {
	t.Helper()
	srv := NewServer(t)
	require.NoError(t, srv.StartPubSub(cfg))
	conn, err := grpc.NewClient(srv.PubSubAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	ctx = metadata.AppendToOutgoingContext(ctx, "accesstoken", srv.AccessToken(), "instanceurl", srv.BaseURL(), "tenantid", srv.OrgID())
	return &pubsubBundle{srv: srv, client: pb.NewPubSubClient(conn), ctx: ctx}
}

// header is the part of ChangeEventHeader the tests read.
type header struct {
	EntityName      string   `avro:"entityName"`
	RecordIDs       []string `avro:"recordIds"`
	ChangeType      string   `avro:"changeType"`
	TransactionKey  string   `avro:"transactionKey"`
	SequenceNumber  int32    `avro:"sequenceNumber"`
	CommitTimestamp int64    `avro:"commitTimestamp"`
	ChangedFields   []string `avro:"changedFields"`
}

func (b *pubsubBundle) decode(t *testing.T, ev *pb.ConsumerEvent) (header, map[string]any) {
	t.Helper()
	info, err := b.client.GetSchema(b.ctx, &pb.SchemaRequest{SchemaId: ev.GetEvent().GetSchemaId()})
	require.NoError(t, err)
	sc, err := avro.Parse(info.GetSchemaJson())
	require.NoError(t, err)
	var m map[string]any
	require.NoError(t, avro.Unmarshal(sc, ev.GetEvent().GetPayload(), &m))
	var h struct {
		H header `avro:"ChangeEventHeader"`
	}
	require.NoError(t, avro.Unmarshal(sc, ev.GetEvent().GetPayload(), &h))
	return h.H, m
}

func (b *pubsubBundle) subscribe(t *testing.T, first *pb.FetchRequest) grpc.BidiStreamingClient[pb.FetchRequest, pb.FetchResponse] {
	t.Helper()
	st, err := b.client.Subscribe(b.ctx)
	require.NoError(t, err)
	require.NoError(t, st.Send(first))
	return st
}

// recvEvents receives responses until n events came, skipping keepalives.
func recvEvents(t *testing.T, st grpc.BidiStreamingClient[pb.FetchRequest, pb.FetchResponse], n int) []*pb.ConsumerEvent {
	t.Helper()
	var out []*pb.ConsumerEvent
	for len(out) < n {
		resp, err := st.Recv()
		require.NoError(t, err)
		out = append(out, resp.GetEvents()...)
	}
	return out
}

func TestPubSubChangeEventsForWrites(t *testing.T) {
	t.Parallel()
	b := setupPubSub(t, PubSubConfig{})
	topic, err := b.client.GetTopic(b.ctx, &pb.TopicRequest{TopicName: "/data/ContactChangeEvent"})
	require.NoError(t, err)
	assert.True(t, topic.GetCanSubscribe())
	assert.Equal(t, DefaultOrgID, topic.GetTenantGuid())

	st := b.subscribe(t, &pb.FetchRequest{TopicName: "/data/ContactChangeEvent", ReplayPreset: pb.ReplayPreset_EARLIEST, NumRequested: 10})
	ids := b.srv.Seed(crmsync.Fields{"FirstName": "Ada", "LastName": "Lovelace", "Email": "ada@example.com"})
	require.NoError(t, b.srv.Edit(ids[0], crmsync.Fields{"Email": "ada@example.org", "FirstName": "Augusta"}))
	require.NoError(t, b.srv.Delete(ids[0]))
	require.NoError(t, b.srv.EmitGap("Contact", ids[0]))
	require.NoError(t, b.srv.EmitOverflow("Contact"))

	evs := recvEvents(t, st, 5)
	var types []string
	for _, ev := range evs {
		h, _ := b.decode(t, ev)
		types = append(types, h.ChangeType)
		assert.Equal(t, "Contact", h.EntityName)
		assert.NotZero(t, h.CommitTimestamp)
		assert.NotEmpty(t, h.TransactionKey)
	}
	assert.Equal(t, []string{"CREATE", "UPDATE", "DELETE", "GAP_UPDATE", "GAP_OVERFLOW"}, types)

	created, body := b.decode(t, evs[0])
	assert.Equal(t, ids, created.RecordIDs)
	assert.Equal(t, "ada@example.com", body["Email"])
	assert.Equal(t, map[string]any{"com.sforce.eventbus.Name": map[string]any{"FirstName": "Ada", "LastName": "Lovelace"}},
		body["Name"], "the compound Name, in its union")

	updated, body := b.decode(t, evs[1])
	assert.Equal(t, "ada@example.org", body["Email"])
	assert.Nil(t, body["Title"], "an unchanged field is null in an update")
	require.Len(t, updated.ChangedFields, 2, "top-level bitmap and Name's nested one")
	assert.Regexp(t, `^0x[0-9A-F]+$`, updated.ChangedFields[0])
	assert.Regexp(t, `^[0-9]+-0x[0-9A-F]+$`, updated.ChangedFields[1])

	overflow, _ := b.decode(t, evs[4])
	assert.Empty(t, overflow.RecordIDs)
}

func TestPubSubBulkEditIsOneMergedEvent(t *testing.T) {
	t.Parallel()
	b := setupPubSub(t, PubSubConfig{})
	ids := b.srv.SeedContacts(3)
	st := b.subscribe(t, &pb.FetchRequest{TopicName: "/data/ChangeEvents", ReplayPreset: pb.ReplayPreset_EARLIEST, NumRequested: 100})
	require.NoError(t, b.srv.EditMany(ids, crmsync.Fields{"Title": "CEO"}))
	evs := recvEvents(t, st, 4)
	h, _ := b.decode(t, evs[3])
	assert.Equal(t, "UPDATE", h.ChangeType)
	assert.Equal(t, ids, h.RecordIDs)
}

func TestPubSubAPIWritesPublish(t *testing.T) {
	t.Parallel()
	b := setupPubSub(t, PubSubConfig{})
	st := b.subscribe(t, &pb.FetchRequest{TopicName: "/data/ContactChangeEvent", ReplayPreset: pb.ReplayPreset_EARLIEST, NumRequested: 100})
	v := "/services/data/v60.0"
	code, _, body := call(t, b.srv, http.MethodPost, v+"/composite/sobjects", `{"allOrNone":false,"records":[
		{"attributes":{"type":"Contact"},"LastName":"One"},
		{"attributes":{"type":"Contact"},"LastName":"Two"},
		{"attributes":{"type":"Contact"}}]}`, nil)
	require.Equal(t, http.StatusOK, code, "%v", body)
	var ids []string
	for _, r := range body.([]any) {
		if id, ok := r.(map[string]any)["id"].(string); ok && r.(map[string]any)["success"] == true {
			ids = append(ids, id)
		}
	}
	require.Len(t, ids, 2, "the record without LastName fails alone")
	code, _, body = call(t, b.srv, http.MethodPatch, v+"/sobjects/Contact/"+ids[0], `{"Email":"one@example.com"}`, nil)
	require.Equal(t, http.StatusNoContent, code, "%v", body)
	code, _, body = call(t, b.srv, http.MethodDelete, v+"/composite/sobjects?ids="+ids[1], "", nil)
	require.Equal(t, http.StatusOK, code, "%v", body)
	// An all-or-none call that fails writes nothing and publishes nothing.
	code, _, body = call(t, b.srv, http.MethodPost, v+"/composite/sobjects", `{"allOrNone":true,"records":[
		{"attributes":{"type":"Contact"},"LastName":"Three"},
		{"attributes":{"type":"Contact"}}]}`, nil)
	require.Equal(t, http.StatusOK, code, "%v", body)
	marker := b.srv.SeedContacts(1)

	var got []string
	for _, ev := range recvEvents(t, st, 5) {
		h, _ := b.decode(t, ev)
		got = append(got, h.ChangeType+" "+h.RecordIDs[0])
	}
	assert.Equal(t, []string{"CREATE " + ids[0], "CREATE " + ids[1], "UPDATE " + ids[0], "DELETE " + ids[1],
		"CREATE " + marker[0]}, got, "the rolled-back create published nothing")
}

func TestPubSubFlowControl(t *testing.T) {
	t.Parallel()
	b := setupPubSub(t, PubSubConfig{Keepalive: 100 * time.Millisecond})
	b.srv.SeedContacts(7)
	st := b.subscribe(t, &pb.FetchRequest{TopicName: "/data/ContactChangeEvent", ReplayPreset: pb.ReplayPreset_EARLIEST, NumRequested: 2})

	got := 0
	for range 5 { // 2 events, then keepalives only: nothing past what was asked
		resp, err := st.Recv()
		require.NoError(t, err)
		got += len(resp.GetEvents())
		assert.NotEmpty(t, resp.GetLatestReplayId())
	}
	assert.Equal(t, 2, got)

	require.NoError(t, st.Send(&pb.FetchRequest{NumRequested: 500}))
	assert.Len(t, recvEvents(t, st, 5), 5)
	assert.Equal(t, MaxRequested, b.srv.PubSubStats().MaxPending, "requests are capped")
}

func TestPubSubReplay(t *testing.T) {
	t.Parallel()
	b := setupPubSub(t, PubSubConfig{})
	b.srv.SeedContacts(3)
	st := b.subscribe(t, &pb.FetchRequest{TopicName: "/data/ContactChangeEvent", ReplayPreset: pb.ReplayPreset_EARLIEST, NumRequested: 100})
	evs := recvEvents(t, st, 3)

	t.Run("custom resumes after the replay id", func(t *testing.T) {
		st := b.subscribe(t, &pb.FetchRequest{TopicName: "/data/ContactChangeEvent", ReplayPreset: pb.ReplayPreset_CUSTOM,
			ReplayId: evs[0].GetReplayId(), NumRequested: 100})
		again := recvEvents(t, st, 2)
		assert.Equal(t, evs[1].GetReplayId(), again[0].GetReplayId())
		assert.Equal(t, evs[2].GetReplayId(), again[1].GetReplayId())
	})
	t.Run("purged replay id is corrupted", func(t *testing.T) {
		b.srv.SeedContacts(1)
		b.srv.PurgeEvents()
		st := b.subscribe(t, &pb.FetchRequest{TopicName: "/data/ContactChangeEvent", ReplayPreset: pb.ReplayPreset_CUSTOM,
			ReplayId: evs[2].GetReplayId(), NumRequested: 100})
		_, err := st.Recv()
		assert.Equal(t, codes.InvalidArgument, status.Code(err))
		assert.Equal(t, []string{ErrCodeReplayIDCorrupted}, st.Trailer().Get("error-code"))
	})
	t.Run("garbage replay id is corrupted", func(t *testing.T) {
		st := b.subscribe(t, &pb.FetchRequest{TopicName: "/data/ContactChangeEvent", ReplayPreset: pb.ReplayPreset_CUSTOM,
			ReplayId: []byte("nope"), NumRequested: 1})
		_, err := st.Recv()
		assert.Equal(t, codes.InvalidArgument, status.Code(err))
	})
}

func TestPubSubAuth(t *testing.T) {
	t.Parallel()
	b := setupPubSub(t, PubSubConfig{})
	cases := map[string][]string{
		"bad token":      {"accesstoken", "wrong", "instanceurl", b.srv.BaseURL(), "tenantid", b.srv.OrgID()},
		"no token":       {"instanceurl", b.srv.BaseURL(), "tenantid", b.srv.OrgID()},
		"other org":      {"accesstoken", b.srv.AccessToken(), "instanceurl", b.srv.BaseURL(), "tenantid", "00D000000000002AAA"},
		"no instanceurl": {"accesstoken", b.srv.AccessToken(), "tenantid", b.srv.OrgID()},
	}
	for name, md := range cases {
		t.Run(name, func(t *testing.T) {
			ctx := metadata.AppendToOutgoingContext(context.Background(), md...)
			_, err := b.client.GetTopic(ctx, &pb.TopicRequest{TopicName: "/data/ContactChangeEvent"})
			assert.Equal(t, codes.Unauthenticated, status.Code(err))
			st, err := b.client.Subscribe(ctx)
			require.NoError(t, err)
			if err := st.Send(&pb.FetchRequest{TopicName: "/data/ContactChangeEvent", NumRequested: 1}); err != nil {
				require.ErrorIs(t, err, io.EOF, "the server may end the stream first")
			}
			_, err = st.Recv()
			assert.Equal(t, codes.Unauthenticated, status.Code(err))
		})
	}
	b.srv.ExpireSessions()
	_, err := b.client.GetTopic(b.ctx, &pb.TopicRequest{TopicName: "/data/ContactChangeEvent"})
	assert.Equal(t, codes.Unauthenticated, status.Code(err), "an expired session is refused")
}

func TestPubSubUnknownTopic(t *testing.T) {
	t.Parallel()
	b := setupPubSub(t, PubSubConfig{})
	_, err := b.client.GetTopic(b.ctx, &pb.TopicRequest{TopicName: "/data/NopeChangeEvent"})
	assert.Equal(t, codes.NotFound, status.Code(err))
}

func TestPubSubOtherObjects(t *testing.T) {
	t.Parallel()
	b := setupPubSub(t, PubSubConfig{})
	for _, topic := range []string{"/data/AccountChangeEvent", "/data/LeadChangeEvent", "/data/OpportunityChangeEvent", "/data/OpportunityContactRoleChangeEvent"} {
		_, err := b.client.GetTopic(b.ctx, &pb.TopicRequest{TopicName: topic})
		assert.NoError(t, err, topic)
	}
	st := b.subscribe(t, &pb.FetchRequest{TopicName: "/data/ChangeEvents", ReplayPreset: pb.ReplayPreset_EARLIEST, NumRequested: 100})
	leads := b.srv.SeedLeads(1)
	res, err := b.srv.ConvertLead(leads[0], ConvertOptions{})
	require.NoError(t, err)

	evs := recvEvents(t, st, 6)
	type seen struct{ entity, typ, id string }
	var got []seen
	var txn string
	for i, ev := range evs {
		h, _ := b.decode(t, ev)
		require.Len(t, h.RecordIDs, 1)
		got = append(got, seen{h.EntityName, h.ChangeType, h.RecordIDs[0]})
		if i == 1 {
			txn = h.TransactionKey
		}
		if i > 0 {
			assert.Equal(t, txn, h.TransactionKey, "a conversion is one transaction")
			assert.Equal(t, int32(i), h.SequenceNumber)
		}
	}
	assert.Equal(t, seen{"Lead", "CREATE", leads[0]}, got[0])
	assert.Equal(t, seen{"Account", "CREATE", res.AccountID}, got[1])
	assert.Equal(t, seen{"Contact", "CREATE", res.ContactID}, got[2])
	assert.Equal(t, seen{"Opportunity", "CREATE", res.OpportunityID}, got[3])
	assert.Equal(t, "OpportunityContactRole", got[4].entity)
	assert.Equal(t, seen{"Lead", "UPDATE", leads[0]}, got[5])

	// Deleting the account deletes its contact and opportunity, and their
	// contact role, too: an event each.
	require.NoError(t, b.srv.Delete(res.AccountID))
	var deleted []string
	for _, ev := range recvEvents(t, st, 4) {
		h, _ := b.decode(t, ev)
		assert.Equal(t, "DELETE", h.ChangeType)
		deleted = append(deleted, h.EntityName)
	}
	assert.ElementsMatch(t, []string{"Account", "Contact", "Opportunity", "OpportunityContactRole"}, deleted)
}
