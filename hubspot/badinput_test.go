package hubspot_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/hubspot"
	"github.com/crmsync/crmsync/hubspot/hubspottest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestBadResponsesAreTypedErrors(t *testing.T) {
	huge := `{"total":1,"results":[],"pad":"` + strings.Repeat("x", 4096) + `"}`
	tests := []struct {
		name   string
		fault  hubspottest.Fault
		reason string
	}{
		{"html with 200", hubspottest.Fault{Kind: hubspottest.Raw, ContentType: "text/html", Body: []byte("<html>login</html>")}, "html body"},
		{"truncated json", hubspottest.Fault{Kind: hubspottest.Raw, Body: []byte(`{"total":1,"results":[{"id":"1","prop`)}, "malformed json"},
		{"wrong types", hubspottest.Fault{Kind: hubspottest.Raw, Body: []byte(`{"total":"x","results":{}}`)}, "malformed json"},
		{"error body with 200", hubspottest.Fault{Kind: hubspottest.Raw, Body: []byte(`{"status":"error","message":"boom","category":"INTERNAL_ERROR"}`)}, "error body"},
		{"huge body", hubspottest.Fault{Kind: hubspottest.Raw, Body: []byte(huge)}, "body exceeds"},
		{"empty body", hubspottest.Fault{Kind: hubspottest.Raw}, "empty body"},
		{"json array", hubspottest.Fault{Kind: hubspottest.Raw, Body: []byte(`[]`)}, "not a json object"},
		{"next page promised after an empty page", hubspottest.Fault{Kind: hubspottest.Raw, Body: []byte(`{"total":1,"results":[],"paging":{"next":{"after":"zz"}}}`)}, "empty page with a next page"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := fastFake(t)
			c := newClient(t, srv, func(cfg *hubspot.Config) { cfg.MaxResponseBytes = 1024 })
			srv.Fail(tt.fault)
			_, err := c.Changes(context.Background(), crmsync.ChangeQuery{Object: "contacts"})
			var de *hubspot.DecodeError
			require.ErrorAs(t, err, &de, "Changes() = %v, want a DecodeError for search contacts: %s", err, tt.reason)
			require.Contains(t, de.Reason, tt.reason, "Changes() = %v, want a DecodeError for search contacts: %s", err, tt.reason)
			require.Equal(t, "search contacts", de.Call, "Changes() = %v, want a DecodeError for search contacts: %s", err, tt.reason)
			require.False(t, crmsync.IsPermanent(err), "DecodeError marked permanent: %v", err)
		})
	}
}

func TestBadResponsesOnOtherCalls(t *testing.T) {
	srv := fastFake(t)
	c := newClient(t, srv)
	ctx := context.Background()
	junk := hubspottest.Fault{Kind: hubspottest.Raw, Body: []byte(`{"results":[{"id":`)}

	srv.Fail(junk)
	if _, err := c.Lookup(ctx, "contacts", "id", []string{"1"}, nil); !isDecodeErr(err, "batch/read contacts") {
		t.Errorf("Lookup = %v", err)
	}
	// Records with unparseable stamps are a DecodeError: the cursor needs them.
	srv.Fail(hubspottest.Fault{Kind: hubspottest.Raw, Body: []byte(`{"status":"COMPLETE","results":[{"id":"1","properties":{},"createdAt":"today","updatedAt":"now","archived":false}]}`)})
	if _, err := c.Lookup(ctx, "contacts", "id", []string{"1"}, nil); !isDecodeErr(err, "batch/read contacts") || !strings.Contains(err.Error(), "bad createdAt") {
		t.Errorf("Lookup with a bad stamp = %v", err)
	}
	srv.Fail(junk)
	res, err := c.Write(ctx, "contacts", []crmsync.WriteOp{{Kind: crmsync.Create, Fields: crmsync.Fields{"email": "a@example.com"}}})
	if !isDecodeErr(err, "batch/create contacts") || res != nil {
		t.Errorf("Write = %v, %v", res, err)
	}
	srv.Fail(junk)
	if _, err := c.Schema(ctx, "contacts"); !isDecodeErr(err, "properties contacts") {
		t.Errorf("Schema = %v", err)
	}
	srv.Fail(hubspottest.Fault{Kind: hubspottest.Raw, Body: []byte(`{"results":[{"type":"string"}]}`)})
	if _, err := c.Schema(ctx, "contacts"); !isDecodeErr(err, "properties contacts") {
		t.Errorf("Schema with a nameless property = %v", err)
	}
	// An HTML error page with a 4xx is a permanent APIError without a category.
	srv.Fail(hubspottest.Fault{Kind: hubspottest.Raw, Status: 403, ContentType: "text/html", Body: []byte("<html>forbidden</html>")})
	_, err = c.Changes(ctx, crmsync.ChangeQuery{Object: "contacts"})
	var ae *hubspot.APIError
	if assert.ErrorAs(t, err, &ae, "403 HTML = %v", err) {
		assert.Equal(t, 403, ae.Status, "403 HTML = %v", err)
		assert.Empty(t, ae.Category, "403 HTML = %v", err)
		assert.True(t, crmsync.IsPermanent(err), "403 HTML = %v", err)
	}
	// Unknown fields in a good response are ignored.
	id := srv.SeedContacts(1)[0]
	srv.Fail(hubspottest.Fault{Kind: hubspottest.Raw, Endpoint: "batch/read", Body: []byte(`{"total":1,"results":[{"id":"` + id + `","properties":{"email":"a@b.c"},"createdAt":"2024-01-17T19:55:04.281Z","updatedAt":"2024-01-17T19:55:04.281Z","archived":false,"novel":{"x":1}}],"novelTop":[1]}`)})
	p, err := c.Changes(ctx, crmsync.ChangeQuery{Object: "contacts"})
	if assert.NoError(t, err, "response with unknown fields = %+v", p) {
		if assert.Len(t, p.Records, 1, "response with unknown fields = %+v, %v", p, err) {
			assert.Equal(t, id, p.Records[0].ID, "response with unknown fields = %+v, %v", p, err)
		}
	}
}

func isDecodeErr(err error, call string) bool {
	var de *hubspot.DecodeError
	return errors.As(err, &de) && de.Call == call
}
