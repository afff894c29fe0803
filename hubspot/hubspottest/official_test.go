package hubspottest_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/crmsync/crmsync/hubspot/hubspottest"
)

// official sends one request as HubSpot's official clients (the Node
// @hubspot/api-client basicApi, generated from the CRM v3 OpenAPI files)
// send it: bearer token, JSON body, Accept header, and answers status and
// decoded body.
func official(t *testing.T, srv *hubspottest.Server, method, path string, body any) (int, map[string]any) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		require.NoError(t, err)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, srv.URL+path, rd)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+srv.Token)
	req.Header.Set("Accept", "application/json, */*;q=0.8")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	var out map[string]any
	if len(raw) > 0 {
		require.NoError(t, json.Unmarshal(raw, &out), "%s %s: body %s", method, path, raw)
	}
	return resp.StatusCode, out
}

func props(t *testing.T, body map[string]any) map[string]any {
	t.Helper()
	p, ok := body["properties"].(map[string]any)
	require.True(t, ok, "no properties in %v", body)
	return p
}

// TestOfficialClientSingleRecordCalls drives basicApi.create, getById (by
// id and by idProperty, archived or not), update and archive as the
// official client sends them.
func TestOfficialClientSingleRecordCalls(t *testing.T) {
	srv := hubspottest.NewServer(t, hubspottest.WithoutRateLimits())

	// basicApi.create: POST /crm/v3/objects/contacts {"properties", "associations"} → 201.
	status, created := official(t, srv, http.MethodPost, "/crm/v3/objects/contacts", map[string]any{
		"properties":   map[string]string{"email": "ada@example.com", "firstname": "Ada", "jobtitle": "Engineer", "city": "London"},
		"associations": []any{},
	})
	require.Equal(t, http.StatusCreated, status, "create: %v", created)
	id, _ := created["id"].(string)
	require.NotEmpty(t, id)
	assert.Equal(t, "Engineer", props(t, created)["jobtitle"])
	assert.Equal(t, id, props(t, created)["hs_object_id"])
	assert.Equal(t, false, created["archived"])

	// A second create with the same email is a 409 naming the existing id.
	status, dup := official(t, srv, http.MethodPost, "/crm/v3/objects/contacts", map[string]any{
		"properties": map[string]string{"email": "ADA@example.com"}, "associations": []any{}})
	assert.Equal(t, http.StatusConflict, status)
	assert.Equal(t, "CONFLICT", dup["category"])
	assert.Contains(t, dup["message"], "Existing ID: "+id)

	// basicApi.getById: properties as one comma-joined value; a property
	// that does not exist ("name" on a contact) is left out, not null.
	status, got := official(t, srv, http.MethodGet, "/crm/v3/objects/contacts/"+id+"?properties=email,jobtitle,city,name", nil)
	require.Equal(t, http.StatusOK, status, "get: %v", got)
	p := props(t, got)
	assert.Equal(t, "ada@example.com", p["email"])
	assert.Equal(t, "Engineer", p["jobtitle"])
	assert.Equal(t, "London", p["city"])
	assert.NotContains(t, p, "name")

	// The same with properties repeated (form, explode) and by idProperty.
	status, got = official(t, srv, http.MethodGet, "/crm/v3/objects/contacts/ada@example.com?properties=jobtitle&properties=city&idProperty=email", nil)
	require.Equal(t, http.StatusOK, status, "get by email: %v", got)
	assert.Equal(t, id, got["id"])
	assert.Equal(t, "London", props(t, got)["city"])
	assert.Equal(t, "Engineer", props(t, got)["jobtitle"])

	// The client escapes the id in the path: an email's "@", or a unique
	// value's "/".
	srv.DefineProperty("contacts", hubspottest.Property{Name: "ext_key", Unique: true})
	status, _ = official(t, srv, http.MethodPatch, "/crm/v3/objects/contacts/"+id, map[string]any{
		"properties": map[string]string{"ext_key": "a/b"}})
	require.Equal(t, http.StatusOK, status)
	status, got = official(t, srv, http.MethodGet, "/crm/v3/objects/contacts/a%2Fb?idProperty=ext_key", nil)
	require.Equal(t, http.StatusOK, status, "get by a value with a slash: %v", got)
	assert.Equal(t, id, got["id"])
	status, got = official(t, srv, http.MethodGet, "/crm/v3/objects/contacts/ada%40example.com?idProperty=email", nil)
	require.Equal(t, http.StatusOK, status, "get by escaped email: %v", got)

	// basicApi.update: PATCH {"properties"} → 200 with the new values.
	status, upd := official(t, srv, http.MethodPatch, "/crm/v3/objects/contacts/"+id, map[string]any{
		"properties": map[string]string{"jobtitle": "CTO", "website": "https://example.com"}})
	require.Equal(t, http.StatusOK, status, "update: %v", upd)
	assert.Equal(t, "CTO", props(t, upd)["jobtitle"])
	assert.Equal(t, "https://example.com", props(t, upd)["website"])
	rec, ok := srv.Get("contacts", id)
	require.True(t, ok)
	assert.Equal(t, "CTO", rec.Properties["jobtitle"])

	// update by idProperty, and errors: unknown property 400, unknown id 404.
	status, upd = official(t, srv, http.MethodPatch, "/crm/v3/objects/contacts/ada@example.com?idProperty=email", map[string]any{
		"properties": map[string]string{"mobilephone": "+44 20 7946 0000"}})
	require.Equal(t, http.StatusOK, status, "update by email: %v", upd)
	assert.Equal(t, id, upd["id"])
	status, bad := official(t, srv, http.MethodPatch, "/crm/v3/objects/contacts/"+id, map[string]any{
		"properties": map[string]string{"no_such_property": "x"}})
	assert.Equal(t, http.StatusBadRequest, status)
	assert.Equal(t, "VALIDATION_ERROR", bad["category"])
	assert.Contains(t, bad["message"], "no_such_property")
	status, _ = official(t, srv, http.MethodPatch, "/crm/v3/objects/contacts/999999", map[string]any{
		"properties": map[string]string{"jobtitle": "x"}})
	assert.Equal(t, http.StatusNotFound, status)

	// basicApi.archive: DELETE → 204; the record is archived, found only
	// with archived=true.
	status, _ = official(t, srv, http.MethodDelete, "/crm/v3/objects/contacts/"+id, nil)
	assert.Equal(t, http.StatusNoContent, status)
	rec, _ = srv.Get("contacts", id)
	assert.True(t, rec.Archived)
	status, _ = official(t, srv, http.MethodGet, "/crm/v3/objects/contacts/"+id, nil)
	assert.Equal(t, http.StatusNotFound, status)
	status, got = official(t, srv, http.MethodGet, "/crm/v3/objects/contacts/"+id+"?archived=true&properties=email", nil)
	require.Equal(t, http.StatusOK, status)
	assert.Equal(t, true, got["archived"])
	assert.NotEmpty(t, got["archivedAt"])

	assert.Equal(t, 1, srv.CallCounts()["archive"])
	assert.Equal(t, 2, srv.CallCounts()["create"])
	assert.Equal(t, 5, srv.CallCounts()["update"])
}

// TestStandardContactProperties checks that HubSpot's standard contact
// properties exist from the start: writable and listed by the properties
// endpoint.
func TestStandardContactProperties(t *testing.T) {
	srv := hubspottest.NewServer(t, hubspottest.WithoutRateLimits())
	standard := []string{"email", "firstname", "lastname", "phone", "mobilephone", "fax", "company", "jobtitle",
		"website", "address", "city", "state", "zip", "country", "industry", "salutation", "hs_lead_status", "lifecyclestage"}
	status, body := official(t, srv, http.MethodGet, "/crm/v3/properties/contacts", nil)
	require.Equal(t, http.StatusOK, status)
	listed := map[string]bool{}
	for _, r := range body["results"].([]any) {
		listed[r.(map[string]any)["name"].(string)] = true
	}
	for _, name := range standard {
		assert.True(t, listed[name], "property %s is not defined", name)
	}
	values := map[string]string{"email": "grace@example.com"}
	for _, name := range []string{"mobilephone", "fax", "company", "jobtitle", "website", "address", "city", "state", "zip", "country", "salutation"} {
		values[name] = "v-" + name
	}
	values["hs_lead_status"] = "NEW"
	status, created := official(t, srv, http.MethodPost, "/crm/v3/objects/contacts", map[string]any{"properties": values})
	require.Equal(t, http.StatusCreated, status, "create: %v", created)
	for k, v := range values {
		assert.Equal(t, v, props(t, created)[k], k)
	}
}

// TestUnknownRequestedPropertiesAreLeftOut checks every read: a requested
// property the object does not have is absent from the response (HubSpot
// ignores it), while an existing one without a value is null where
// HubSpot answers null (batch read, search).
func TestUnknownRequestedPropertiesAreLeftOut(t *testing.T) {
	srv := hubspottest.NewServer(t, hubspottest.WithoutRateLimits())
	id := srv.SeedContacts(1)[0]
	check := func(what string, p map[string]any, nullPhone bool) {
		t.Helper()
		assert.NotContains(t, p, "name", what)
		assert.NotContains(t, p, "no_such_thing", what)
		if nullPhone {
			v, ok := p["phone"]
			assert.True(t, ok, what)
			assert.Nil(t, v, what)
		}
	}
	_, got := official(t, srv, http.MethodGet, "/crm/v3/objects/contacts/"+id+"?properties=email,name,no_such_thing,phone", nil)
	check("get", props(t, got), false)
	_, list := official(t, srv, http.MethodGet, "/crm/v3/objects/contacts?limit=10&properties=email,name,no_such_thing,phone", nil)
	check("list", props(t, list["results"].([]any)[0].(map[string]any)), false)
	_, br := official(t, srv, http.MethodPost, "/crm/v3/objects/contacts/batch/read", map[string]any{
		"properties": []string{"email", "name", "no_such_thing", "phone"}, "propertiesWithHistory": []string{}, "inputs": []any{map[string]string{"id": id}}})
	check("batch read", props(t, br["results"].([]any)[0].(map[string]any)), true)
	_, se := official(t, srv, http.MethodPost, "/crm/v3/objects/contacts/search", map[string]any{
		"properties": []string{"email", "name", "no_such_thing", "phone"}, "limit": 10, "filterGroups": []any{}, "sorts": []any{}})
	check("search", props(t, se["results"].([]any)[0].(map[string]any)), true)
}

// TestOfficialClientPropertyCalls drives the properties coreApi: create a
// custom property (then write it), get one, archive it.
func TestOfficialClientPropertyCalls(t *testing.T) {
	srv := hubspottest.NewServer(t, hubspottest.WithoutRateLimits())
	create := map[string]any{"name": "favourite_colour", "label": "Favourite colour", "type": "enumeration", "fieldType": "select",
		"groupName": "contactinformation", "options": []any{map[string]any{"label": "Red", "value": "red"}, map[string]any{"label": "Blue", "value": "blue"}}}
	status, body := official(t, srv, http.MethodPost, "/crm/v3/properties/contacts", create)
	require.Equal(t, http.StatusCreated, status, "create: %v", body)
	assert.Equal(t, "favourite_colour", body["name"])
	assert.Len(t, body["options"], 2)
	status, body = official(t, srv, http.MethodPost, "/crm/v3/properties/contacts", create)
	assert.Equal(t, http.StatusConflict, status, "%v", body)
	status, body = official(t, srv, http.MethodPost, "/crm/v3/properties/contacts", map[string]any{"name": "x", "label": "x", "type": "string"})
	assert.Equal(t, http.StatusBadRequest, status)
	assert.Contains(t, body["message"], "fieldType")

	status, body = official(t, srv, http.MethodGet, "/crm/v3/properties/contacts/favourite_colour", nil)
	require.Equal(t, http.StatusOK, status, "get: %v", body)
	assert.Equal(t, "enumeration", body["type"])
	status, _ = official(t, srv, http.MethodGet, "/crm/v3/properties/contacts/nope", nil)
	assert.Equal(t, http.StatusNotFound, status)

	status, body = official(t, srv, http.MethodPost, "/crm/v3/objects/contacts", map[string]any{
		"properties": map[string]string{"email": "c@example.com", "favourite_colour": "blue"}})
	require.Equal(t, http.StatusCreated, status, "%v", body)
	status, body = official(t, srv, http.MethodPost, "/crm/v3/objects/contacts", map[string]any{
		"properties": map[string]string{"email": "d@example.com", "favourite_colour": "green"}})
	assert.Equal(t, http.StatusBadRequest, status, "an option the property does not have: %v", body)

	status, _ = official(t, srv, http.MethodDelete, "/crm/v3/properties/contacts/favourite_colour", nil)
	assert.Equal(t, http.StatusNoContent, status)
	status, _ = official(t, srv, http.MethodGet, "/crm/v3/properties/contacts/favourite_colour", nil)
	assert.Equal(t, http.StatusNotFound, status)
	status, _ = official(t, srv, http.MethodDelete, "/crm/v3/properties/contacts/email", nil)
	assert.Equal(t, http.StatusBadRequest, status, "HubSpot's own property")
}
