package hubspot_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/hubspot/hubspottest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// specDir is ../shared/specs/hubspot relative to the repository root.
var specDir = filepath.Join("..", "..", "shared", "specs", "hubspot")

// openAPI is a loaded OpenAPI document with a small schema checker: types,
// required fields, enums, date-times, items and additionalProperties. It
// allows the quirks listed in specs/README.md.
type openAPI struct {
	doc map[string]any
}

func loadSpec(t *testing.T, name string) *openAPI {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(specDir, name))
	if os.IsNotExist(err) {
		t.Skipf("HubSpot specs not found at %s: clone the repository beside shared/ to check against them", specDir)
	}
	require.NoError(t, err)
	var doc map[string]any
	require.NoError(t, json.Unmarshal(b, &doc), "parse %s", name)
	return &openAPI{doc: doc}
}

// quirks: required fields the spec lists that real clients omit.
var optionalRequired = map[string]map[string]bool{
	"PublicObjectSearchRequest":          {"after": true, "filterGroups": true, "limit": true, "properties": true, "sorts": true},
	"BatchReadInputSimplePublicObjectId": {"propertiesWithHistory": true},
}

func (o *openAPI) resolve(s map[string]any) (map[string]any, string) {
	name := ""
	for {
		ref, ok := s["$ref"].(string)
		if !ok {
			return s, name
		}
		name = strings.TrimPrefix(ref, "#/components/schemas/")
		s = o.doc["components"].(map[string]any)["schemas"].(map[string]any)[name].(map[string]any)
	}
}

// check validates v against schema and returns the violations.
func (o *openAPI) check(schema map[string]any, v any, path string, nullableStrings bool) []string {
	s, name := o.resolve(schema)
	if all, ok := s["allOf"].([]any); ok {
		var errs []string
		for _, sub := range all {
			errs = append(errs, o.check(sub.(map[string]any), v, path, nullableStrings)...)
		}
		return errs
	}
	for _, key := range []string{"oneOf", "anyOf"} {
		if alts, ok := s[key].([]any); ok {
			for _, sub := range alts {
				if len(o.check(sub.(map[string]any), v, path, nullableStrings)) == 0 {
					return nil
				}
			}
			return []string{path + ": matches no alternative of " + key}
		}
	}
	if v == nil {
		if s["nullable"] == true || (nullableStrings && s["type"] == "string") || (strings.Contains(path, ".associationTypes[") && strings.HasSuffix(path, ".label") && s["type"] == "string") {
			// Quirk: an association type's label is a string in the
			// spec; the guide's examples show null for unlabeled types.
			return nil
		}
		return []string{path + ": null"}
	}
	var errs []string
	bad := func(f string, a ...any) { errs = append(errs, path+": "+fmt.Sprintf(f, a...)) }
	switch s["type"] {
	case "object":
		m, ok := v.(map[string]any)
		if !ok {
			bad("want object, got %T", v)
			return errs
		}
		for _, r := range asList(s["required"]) {
			if _, ok := m[r]; !ok && !optionalRequired[name][r] {
				bad("missing required %q (%s)", r, name)
			}
		}
		props, _ := s["properties"].(map[string]any)
		for k, val := range m {
			sub, ok := props[k].(map[string]any)
			if !ok {
				if ap, ok := s["additionalProperties"].(map[string]any); ok {
					// Quirk: record property values may be null.
					errs = append(errs, o.check(ap, val, path+"."+k, nullableStrings || strings.HasSuffix(path, ".properties"))...)
				}
				continue
			}
			if k == "subCategory" && strings.HasPrefix(name, "StandardError") {
				// Quirk: the spec types subCategory as an object; HubSpot
				// sends a string ("crm.associations.NO_ASSOCIATIONS_FOUND").
				if _, ok := val.(string); ok {
					continue
				}
			}
			if name == "PublicObjectSearchRequest" && k == "sorts" {
				// Quirk: the spec types sorts as strings; clients send objects.
				continue
			}
			errs = append(errs, o.check(sub, val, path+"."+k, nullableStrings)...)
		}
	case "array":
		a, ok := v.([]any)
		if !ok {
			bad("want array, got %T", v)
			return errs
		}
		if items, ok := s["items"].(map[string]any); ok {
			for i, it := range a {
				errs = append(errs, o.check(items, it, fmt.Sprintf("%s[%d]", path, i), nullableStrings)...)
			}
		}
	case "string":
		str, ok := v.(string)
		if !ok {
			bad("want string, got %T", v)
			return errs
		}
		if enum := asList(s["enum"]); len(enum) > 0 && !contains(enum, str) {
			bad("%q not in enum %v", str, enum)
		}
		if s["format"] == "date-time" {
			if _, err := time.Parse(time.RFC3339Nano, str); err != nil {
				bad("%q is not a date-time", str)
			}
		}
	case "integer":
		f, ok := v.(float64)
		if !ok || f != float64(int64(f)) {
			bad("want integer, got %v", v)
		}
	case "number":
		if _, ok := v.(float64); !ok {
			bad("want number, got %T", v)
		}
	case "boolean":
		if _, ok := v.(bool); !ok {
			bad("want boolean, got %T", v)
		}
	}
	return errs
}

func asList(v any) []string {
	var out []string
	for _, x := range asAny(v) {
		if s, ok := x.(string); ok {
			out = append(out, s)
		}
	}
	return out
}

func asAny(v any) []any { a, _ := v.([]any); return a }

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// operation finds the spec operation for a concrete path.
func (o *openAPI) operation(method, path string) (map[string]any, string) {
	for tmpl, item := range o.doc["paths"].(map[string]any) {
		if matchTemplate(tmpl, path) {
			if op, ok := item.(map[string]any)[strings.ToLower(method)].(map[string]any); ok {
				return op, tmpl
			}
		}
	}
	return nil, ""
}

func matchTemplate(tmpl, path string) bool {
	a, b := strings.Split(tmpl, "/"), strings.Split(path, "/")
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !strings.HasPrefix(a[i], "{") && a[i] != b[i] {
			return false
		}
	}
	return true
}

func jsonSchemaOf(content any) map[string]any {
	c, _ := content.(map[string]any)
	j, _ := c["application/json"].(map[string]any)
	s, _ := j["schema"].(map[string]any)
	return s
}

// validateExchange checks one recorded exchange; it returns a label for
// coverage and the violations.
func (o *openAPI) validateExchange(t *testing.T, e exchange) (string, []string) {
	path := strings.TrimPrefix(e.Path, "/hs")
	op, tmpl := o.operation(e.Method, path)
	if op == nil {
		return "", nil
	}
	label := fmt.Sprintf("%s %s %d", e.Method, tmpl, e.Status)
	var errs []string
	if rb, ok := op["requestBody"].(map[string]any); ok && len(e.ReqBody) > 0 {
		var v any
		if err := json.Unmarshal(e.ReqBody, &v); err != nil {
			return label, []string{"request: " + err.Error()}
		}
		for _, m := range o.check(jsonSchemaOf(rb["content"]), v, "", false) {
			errs = append(errs, "request"+m)
		}
	}
	if len(e.RespBody) == 0 {
		return label, errs
	}
	var v any
	if err := json.Unmarshal(e.RespBody, &v); err != nil {
		return label, append(errs, "response: "+err.Error())
	}
	resp, _ := op["responses"].(map[string]any)[fmt.Sprint(e.Status)].(map[string]any)
	schema := jsonSchemaOf(resp["content"])
	if schema == nil && e.Status >= 400 {
		schema = map[string]any{"$ref": "#/components/schemas/Error"}
	}
	if schema == nil {
		return label, append(errs, "response: status not in the spec")
	}
	for _, m := range o.check(schema, v, "", false) {
		errs = append(errs, "response"+m)
	}
	return label, errs
}

func TestRequestsAndResponsesMatchSpecs(t *testing.T) {
	contacts := loadSpec(t, "crm-contacts-v3.openapi.json")
	properties := loadSpec(t, "crm-properties-v3.openapi.json")
	clk := newClock()
	srv, rec := recordedFake(t, hubspottest.Config{RateLimit: -1, SearchRateLimit: -1, Now: clk.Now})
	srv.DefineProperty("contacts", hubspottest.Property{Name: "sf_id", Unique: true})
	ids := srv.SeedContacts(5)
	c := newClient(t, srv)
	ctx := context.Background()

	_, err := c.Changes(ctx, crmsync.ChangeQuery{Object: "contacts", Since: clk.Now(), Until: clk.Now().Add(time.Hour), Fields: []string{"email", "phone"}, PageSize: 2})
	require.NoError(t, err)
	_, err = c.Lookup(ctx, "contacts", "id", []string{ids[0], "999"}, []string{"email"})
	require.NoError(t, err)
	_, err = c.Lookup(ctx, "contacts", "email", []string{"contact" + ids[1] + "@example.com"}, nil)
	require.NoError(t, err)
	_, err = c.Lookup(ctx, "contacts", "firstname", []string{"x"}, nil) // search IN
	require.NoError(t, err)
	if _, err := c.Write(ctx, "contacts", []crmsync.WriteOp{
		{Kind: crmsync.Create, Fields: crmsync.Fields{"email": "n@example.com"}, Key: "a"},
		{Kind: crmsync.Create, Fields: crmsync.Fields{"email": "bad", "firstname": "B"}, Key: "b"}, // 207
		{Kind: crmsync.Update, ID: ids[2], Fields: crmsync.Fields{"firstname": "U"}},
		{Kind: crmsync.Update, ID: "999", Fields: crmsync.Fields{"firstname": "U"}}, // 207
		{Kind: crmsync.Upsert, MatchField: "sf_id", MatchValue: "003X", Fields: crmsync.Fields{"firstname": "S"}},
		{Kind: crmsync.Upsert, MatchField: "sf_id", MatchValue: "003Y", Fields: crmsync.Fields{"lifecyclestage": "nope"}}, // 207
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write(ctx, "contacts", []crmsync.WriteOp{
		{Kind: crmsync.Create, Fields: crmsync.Fields{"email": "m@example.com"}},
		{Kind: crmsync.Update, ID: ids[3], Fields: crmsync.Fields{"firstname": "V"}},
		{Kind: crmsync.Upsert, MatchField: "sf_id", MatchValue: "003X", Fields: crmsync.Fields{"firstname": "T"}},
	}); err != nil {
		t.Fatal(err)
	}
	_, err = c.Schema(ctx, "contacts")
	require.NoError(t, err)
	require.NoError(t, c.Archive(ctx, "contacts", ids[4:]))
	_, err = c.Changes(ctx, crmsync.ChangeQuery{Object: "contacts", Archived: true})
	require.NoError(t, err)

	seen := map[string]bool{}
	for _, e := range rec.exchanges("") {
		spec := contacts
		if strings.Contains(e.Path, "/crm/v3/properties/") {
			spec = properties
		}
		label, errs := spec.validateExchange(t, e)
		if label == "" {
			t.Errorf("%s %s is not in the spec", e.Method, e.Path)
			continue
		}
		seen[label] = true
		for _, m := range errs {
			t.Errorf("%s: %s", label, m)
		}
	}
	want := []string{
		"POST /crm/v3/objects/contacts/search 200",
		"POST /crm/v3/objects/contacts/batch/read 200",
		"POST /crm/v3/objects/contacts/batch/read 207",
		"POST /crm/v3/objects/contacts/batch/create 201",
		"POST /crm/v3/objects/contacts/batch/create 207",
		"POST /crm/v3/objects/contacts/batch/update 200",
		"POST /crm/v3/objects/contacts/batch/update 207",
		"POST /crm/v3/objects/contacts/batch/upsert 200",
		"POST /crm/v3/objects/contacts/batch/upsert 207",
		"POST /crm/v3/objects/contacts/batch/archive 204",
		"GET /crm/v3/objects/contacts 200",
		"GET /crm/v3/properties/{objectType} 200",
	}
	for _, w := range want {
		assert.True(t, seen[w], "no exchange checked for %s", w)
	}
	if t.Failed() {
		labels := make([]string, 0, len(seen))
		for l := range seen {
			labels = append(labels, l)
		}
		sort.Strings(labels)
		t.Logf("checked: %v", labels)
	}
}

// TestSpecCheckerCatchesViolations keeps the checker honest.
func TestSpecCheckerCatchesViolations(t *testing.T) {
	contacts := loadSpec(t, "crm-contacts-v3.openapi.json")
	ref := func(n string) map[string]any { return map[string]any{"$ref": "#/components/schemas/" + n} }
	bad := []struct {
		schema string
		body   string
	}{
		{"SimplePublicObject", `{"id":"1","properties":{},"createdAt":"2024-01-01T00:00:00Z","archived":false}`},
		{"SimplePublicObject", `{"id":1,"properties":{},"createdAt":"2024-01-01T00:00:00Z","updatedAt":"2024-01-01T00:00:00Z","archived":false}`},
		{"SimplePublicObject", `{"id":"1","properties":{"a":1},"createdAt":"2024-01-01T00:00:00Z","updatedAt":"2024-01-01T00:00:00Z","archived":false}`},
		{"SimplePublicObject", `{"id":"1","properties":{},"createdAt":"yesterday","updatedAt":"2024-01-01T00:00:00Z","archived":false}`},
		{"BatchResponseSimplePublicObject", `{"status":"DONE","results":[],"startedAt":"2024-01-01T00:00:00Z","completedAt":"2024-01-01T00:00:00Z"}`},
		{"BatchResponseSimplePublicObjectWithErrors", `{"status":"COMPLETE","results":[],"startedAt":"2024-01-01T00:00:00Z","completedAt":"2024-01-01T00:00:00Z","errors":[{"status":"error","message":"m"}]}`},
		{"BatchInputSimplePublicObjectBatchInputForCreate", `{"inputs":[{"properties":{}}]}`},
		{"PublicObjectSearchRequest", `{"filterGroups":[{"filters":[{"propertyName":"a","operator":"ABOUT"}]}]}`},
	}
	for _, b := range bad {
		var v any
		require.NoError(t, json.Unmarshal([]byte(b.body), &v))
		errs := contacts.check(ref(b.schema), v, "", false)
		assert.NotEqual(t, 0, len(errs), "checker accepted %s: %s", b.schema, b.body)
	}
}
