package hubspot

import (
	"errors"
	"strconv"
	"testing"

	"github.com/crmsync/crmsync"
	"github.com/stretchr/testify/require"
)

// FuzzDecodeResponses feeds arbitrary bodies to every response decoder and
// the mapping that follows it: each must return a *DecodeError or succeed,
// never panic. The seed corpus is in testdata/fuzz/FuzzDecodeResponses.
func FuzzDecodeResponses(f *testing.F) {
	f.Add([]byte(`{"total":1,"results":[{"id":"1","properties":{"email":"a@b.c","phone":null},"createdAt":"2024-01-17T19:55:04.281Z","updatedAt":"2024-09-11T13:27:39.356Z","archived":false}],"paging":{"next":{"after":"200"}}}`))
	f.Add([]byte(`{"status":"COMPLETE","results":[],"numErrors":1,"errors":[{"status":"error","category":"VALIDATION_ERROR","message":"m","context":{"objectWriteTraceId":["k"]}}],"startedAt":"x","completedAt":"y"}`))
	f.Add([]byte(`<html><body>502</body></html>`))
	f.Add([]byte(`{"status":"error","category":"RATE_LIMITS","message":"x"}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		check := func(what string, err error) {
			var de *DecodeError
			if err != nil && !errors.As(err, &de) {
				t.Fatalf("%s: error %v is not a *DecodeError", what, err)
			}
		}
		var sr searchResponse
		if err := decode("search", 200, body, &sr); err == nil {
			_, err = toRecords("search", sr.Results)
			check("search records", err)
			if sr.Paging != nil && sr.Paging.Next != nil {
				_, _ = strconv.Atoi(sr.Paging.Next.After)
			}
		} else {
			check("search", err)
		}
		var lr listResponse
		if err := decode("list", 200, body, &lr); err == nil {
			_, err = toRecords("list", lr.Results)
			check("list records", err)
		} else {
			check("list", err)
		}
		var br batchResponse
		if err := decode("batch", 207, body, &br); err == nil {
			ops := []crmsync.WriteOp{
				{Kind: crmsync.Upsert, MatchField: "email", MatchValue: "a@b.c", Key: "k"},
				{Kind: crmsync.Upsert, MatchField: "email", MatchValue: "d@e.f"},
			}
			res := make([]crmsync.WriteResult, 2)
			mapBatch("contacts", crmsync.Upsert, []int{0, 1}, []string{"k", "crmsync-op-1"}, ops, br, res)
			for i, r := range res {
				if r.Err == nil && r.ID == "" && len(br.Results) == 0 {
					t.Fatalf("op %d has neither an id nor an error", i)
				}
			}
			_, err = toRecords("batch", br.Results)
			check("batch records", err)
		} else {
			check("batch", err)
		}
		var pr propertiesResponse
		if err := decode("properties", 200, body, &pr); err == nil {
			for _, p := range pr.Results {
				_ = fieldSchema("contacts", p)
			}
		} else {
			check("properties", err)
		}
		var c Client
		e := c.apiError(request{call: "call"}, 400, body)
		require.NotNil(t, e, "apiError lost the status")
		require.Equal(t, 400, e.Status, "apiError lost the status")
	})
}
