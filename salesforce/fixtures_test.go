package salesforce

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/crmsync/crmsync"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// fixtureDir returns the recorded Salesforce responses in ../shared/specs
// beside the repository, or skips the test.
func fixtureDir(t *testing.T) string {
	t.Helper()
	dir := filepath.Join("..", "..", "shared", "specs", "salesforce", "fixtures")
	if _, err := os.Stat(dir); err != nil {
		t.Skipf("recorded Salesforce responses not found at %s (shared/specs is not beside the repository): %v", dir, err)
	}
	return dir
}

func readFixture(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(fixtureDir(t), name))
	require.NoError(t, err)
	return b
}

func TestFixturesQueries(t *testing.T) {
	q, err := decodeQuery("query", 200, readFixture(t, "restforce/query_success_response.json"))
	require.NoError(t, err, "query_success = %+v", q)
	require.Len(t, q.Records, 1, "query_success = %+v, %v", q, err)
	require.True(t, q.Done, "query_success = %+v, %v", q, err)
	r := q.Records[0]
	assert.Equal(t, false, r.Fields["Checkbox_Label"], "query_success fields = %v", map[string]any(r.Fields))
	assert.Equal(t, "Hi there!", r.Fields["Text_Label"], "query_success fields = %v", map[string]any(r.Fields))
	assert.Equal(t, "four;six", r.Fields["Picklist_Multiselect_Label"], "query_success fields = %v", map[string]any(r.Fields))
	_, ok := r.Fields["attributes"]
	assert.False(t, ok, "attributes kept")
	_, ok = r.Fields["ParentWhizbang__r"]
	assert.False(t, ok, "nested relationship kept as a field value")
	first, err := decodeQuery("query", 200, readFixture(t, "restforce/query_paginated_first_page_response.json"))
	require.NoError(t, err, "first page = %+v", first)
	require.False(t, first.Done, "first page = %+v, %v", first, err)
	require.Equal(t, "/services/data/v26.0/query/01gD", first.NextRecordsURL, "first page = %+v, %v", first, err)
	require.Equal(t, 2, first.TotalSize, "first page = %+v, %v", first, err)
	last, err := decodeQuery("query", 200, readFixture(t, "restforce/query_paginated_last_page_response.json"))
	require.NoError(t, err, "last page = %+v", last)
	require.True(t, last.Done, "last page = %+v, %v", last, err)
	require.Equal(t, "Last Page", last.Records[0].Fields["Text_Label"], "last page = %+v, %v", last, err)
	empty, err := decodeQuery("query", 200, readFixture(t, "restforce/query_empty_response.json"))
	require.NoError(t, err, "empty = %+v", empty)
	require.Empty(t, empty.Records, "empty = %+v, %v", empty, err)
	require.True(t, empty.Done, "empty = %+v, %v", empty, err)
	// A retrieved record decodes the same way.
	rec, err := decodeQuery("query", 200, []byte(`{"done":true,"records":[`+string(readFixture(t, "restforce/sobject_find_success_response.json"))+`]}`))
	require.NoError(t, err)
	f := rec.Records[0]
	if f.ID != "23foo" || f.Archived || f.Fields["Currency_Label"] != 23.0 || f.Fields["OtherDateTime_Label"] != nil {
		t.Errorf("sobject_find record = %+v", f)
	}
}

func TestFixturesErrors(t *testing.T) {
	tests := []struct {
		file, code string
		status     int
	}{
		{"restforce/query_error_response.json", "INVALID_FIELD", 400},
		{"restforce/expired_session_response.json", "INVALID_SESSION_ID", 401},
		{"restforce/sobject_describe_error_response.json", "NOT_FOUND", 404},
		{"restforce/sobject_find_error_response.json", "NOT_FOUND", 404},
		{"restforce/upsert_error_response.json", "NOT_FOUND", 404},
		{"restforce/delete_error_response.json", "NOT_FOUND", 404},
		{"restforce/write_error_response.json", "INVALID_FIELD", 400},
		{"restforce/composite_sobjects_destroy_bad_request_response.json", "REQUIRED_FIELD_MISSING", 400},
	}
	for _, tt := range tests {
		t.Run(filepath.Base(tt.file), func(t *testing.T) {
			body := readFixture(t, tt.file)
			e := decodeError("call", tt.status, body)
			assert.Equal(t, tt.code, e.ErrorCode, "decodeError = %+v, want %s", e, tt.code)
			assert.NotEmpty(t, e.Message, "decodeError = %+v, want %s", e, tt.code)
			assert.Equal(t, tt.status, e.Status, "decodeError = %+v, want %s", e, tt.code)
			// The same body under a 200 is recognised as an error.
			_, err := decodeQuery("query", 200, body)
			assert.True(t, errors.As(err, new(*APIError)), "decodeQuery(error body) = %v, want *APIError", err)
			_, err = decodeCollection("update", 200, body, 1)
			assert.True(t, errors.As(err, new(*APIError)), "decodeCollection(error body) = %v, want *APIError", err)
		})
	}
	// 300 Multiple Choices for an ambiguous external id: a list of URLs.
	body := readFixture(t, "restforce/upsert_multiple_error_response.json")
	e := decodeError("upsert", 300, body)
	assert.Equal(t, 300, e.Status, "decodeError(300) = %+v", e)
	assert.Empty(t, e.ErrorCode, "decodeError(300) = %+v", e)
	_, err := decodeCollection("upsert", 300, body, 1)
	assert.True(t, errors.As(err, new(*DecodeError)), "decodeCollection(300 list) = %v, want *DecodeError", err)
}

func TestFixturesAuth(t *testing.T) {
	for _, name := range []string{"auth_success_response.json", "refresh_success_response.json"} {
		tok, err := decodeToken(200, readFixture(t, "restforce/"+name))
		if err != nil || tok.AccessToken == "" || tok.InstanceURL != "https://na1.salesforce.com" || tok.IssuedAt.Year() != 2010 && tok.IssuedAt.Year() != 2011 {
			t.Errorf("%s = %+v, %v", name, tok.InstanceURL, err)
		}
	}
	for _, name := range []string{"auth_error_response.json", "refresh_error_response.json"} {
		_, err := decodeToken(400, readFixture(t, "restforce/"+name))
		var ae *AuthError
		if assert.ErrorAs(t, err, &ae, "%s = %v, want invalid_grant", name, err) {
			assert.Equal(t, "invalid_grant", ae.Code, "%s = %v, want invalid_grant", name, err)
			assert.NotEmpty(t, ae.Description, "%s = %v, want invalid_grant", name, err)
		}
	}
}

func TestFixturesWrites(t *testing.T) {
	for _, name := range []string{"create_success_response.json", "upsert_created_success_response.json"} {
		r, err := decodeSaveResult("create", 201, readFixture(t, "restforce/"+name))
		assert.NoError(t, err, "%s = %+v", name, r)
		assert.True(t, r.Success, "%s = %+v, %v", name, r, err)
		assert.NotEmpty(t, r.ID, "%s = %+v, %v", name, r, err)
	}
	// The collections shape from the REST guide (no recorded file exists).
	rs, err := decodeCollection("create", 200, []byte(`[{"id":"001RM000003oLnnYAE","success":true,"errors":[]},
		{"success":false,"errors":[{"statusCode":"DUPLICATES_DETECTED","message":"Use one of these records?","fields":[]}]}]`), 2)
	require.NoError(t, err, "collection = %+v", rs)
	require.True(t, rs[0].Success, "collection = %+v, %v", rs, err)
	require.False(t, rs[1].Success, "collection = %+v, %v", rs, err)
	require.Equal(t, "DUPLICATES_DETECTED", rs[1].Errors[0].StatusCode, "collection = %+v, %v", rs, err)
	// Camel's /composite bodies are not collection results: typed errors.
	for _, name := range []string{"composite_response_example_failure.json", "composite_response_example_success.json"} {
		if _, err := decodeCollection("create", 200, readFixture(t, "apache-camel/"+name), 2); !errors.As(err, new(*DecodeError)) {
			t.Errorf("%s = %v, want *DecodeError", name, err)
		}
	}
}

func TestFixturesDescribe(t *testing.T) {
	s, err := decodeDescribe("describe", 200, readFixture(t, "restforce/sobject_describe_success_response.json"))
	require.NoError(t, err)
	by := map[string]crmsync.FieldSchema{}
	for _, f := range s.Fields {
		by[f.Name] = f
	}
	require.Equal(t, "Whizbang", s.Object, "describe = %s with %d fields", s.Object, len(s.Fields))
	require.Len(t, s.Fields, 30, "describe = %s with %d fields", s.Object, len(s.Fields))
	checks := map[string]crmsync.FieldSchema{
		"Id":                              {Type: crmsync.TypeString, ReadOnly: true},
		"OwnerId":                         {Type: crmsync.TypeReference},
		"Checkbox_Field":                  {Type: crmsync.TypeBool},
		"Currency_Field":                  {Type: crmsync.TypeNumber},
		"Date_Field":                      {Type: crmsync.TypeDate},
		"SystemModstamp":                  {Type: crmsync.TypeDateTime, ReadOnly: true},
		"Picklist_Multiselect_Field":      {Type: crmsync.TypeMultiEnum},
		"CreateableButNotUpdateableField": {Type: crmsync.TypeDateTime, ReadOnly: true},
	}
	for name, want := range checks {
		got := by[name]
		assert.Equal(t, want.Type, got.Type, "%s = %+v, want %+v", name, got, want)
		assert.Equal(t, want.ReadOnly, got.ReadOnly, "%s = %+v, want %+v", name, got, want)
		assert.False(t, got.Required, "%s = %+v, want %+v", name, got, want)
	}
	p := by["Picklist_Field"]
	assert.Equal(t, crmsync.TypeEnum, p.Type, "Picklist_Field = %+v", p)
	assert.NotEqual(t, 0, len(p.Options), "Picklist_Field = %+v", p)
	for _, name := range []string{"describe_sobjects_success_response.json", "list_sobjects_success_response.json"} {
		if _, err := decodeDescribe("describe", 200, readFixture(t, "restforce/"+name)); !errors.As(err, new(*DecodeError)) {
			t.Errorf("%s = %v, want *DecodeError (global describe is not an sObject describe)", name, err)
		}
	}
}

func TestFixturesDeleted(t *testing.T) {
	d, err := decodeDeleted("getDeleted", 200, readFixture(t, "restforce/get_deleted_success_response.json"))
	require.NoError(t, err, "get_deleted = %+v", d)
	require.Len(t, d.IDs, 1, "get_deleted = %+v, %v", d, err)
	require.True(t, d.EarliestDateAvailable.Equal(time.Date(2013, 5, 3, 15, 57, 0, 0, time.UTC)), "get_deleted = %+v, %v", d, err)
	_, err = decodeDeleted("getDeleted", 200, readFixture(t, "restforce/get_updated_success_response.json"))
	assert.True(t, errors.As(err, new(*DecodeError)), "get_updated as getDeleted = %v, want *DecodeError", err)
}

// TestFixturesNoPanic runs every recorded body through every decoder.
func TestFixturesNoPanic(t *testing.T) {
	dir := fixtureDir(t)
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".json") {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, st := range []int{200, 400} {
			decodeAll(st, b)
		}
		return nil
	})
	require.NoError(t, err)
}

// decodeAll runs every response decoder on b; used by the fixture test and the fuzzers.
func decodeAll(status int, b []byte) {
	_, _ = decodeQuery("query", status, b)
	_, _ = decodeCollection("update", status, b, -1)
	_, _ = decodeSaveResult("create", status, b)
	_, _ = decodeDescribe("describe", status, b)
	_, _ = decodeToken(status, b)
	_, _ = decodeDeleted("getDeleted", status, b)
	_ = decodeError("call", status, b).Error()
}
