package playbook

import (
	"encoding/json"
	"fmt"
	"go/token"
	"log/slog"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/crmsync/crmsync"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Every exported field of the report types has a type go doc can show: no
// exported field of an unexported type (SyncReport.Window was one).
func TestReportFieldTypesAreExported(t *testing.T) {
	seen := map[reflect.Type]bool{}
	var check func(path string, typ reflect.Type)
	check = func(path string, typ reflect.Type) {
		for typ.Kind() == reflect.Pointer || typ.Kind() == reflect.Slice || typ.Kind() == reflect.Map {
			if typ.Kind() == reflect.Map {
				check(path+"[key]", typ.Key())
			}
			typ = typ.Elem()
		}
		if typ.PkgPath() != reflect.TypeOf(crmsync.SyncReport{}).PkgPath() || seen[typ] {
			return
		}
		seen[typ] = true
		assert.True(t, token.IsExported(typ.Name()), "%s is of the unexported type %s", path, typ.Name())
		if typ.Kind() != reflect.Struct {
			return
		}
		for i := range typ.NumField() {
			f := typ.Field(i)
			if f.IsExported() {
				check(path+"."+f.Name, f.Type)
			}
		}
	}
	check("SyncReport", reflect.TypeOf(crmsync.SyncReport{}))
	assert.True(t, seen[reflect.TypeOf(crmsync.ReadWindow{})])
}

// A report stored before ReadWindow was exported decodes the same: the
// JSON field names did not change.
func TestStoredReportWindowDecodes(t *testing.T) {
	stored := `{"result":{"directions":{},"read":{"hubspot":3},"api_calls":{},"step_runs":0,"replays":0,"retries":0,"cursors":{},
		"window":{"since":{"hubspot":"2026-11-01T10:00:00Z","salesforce":"2026-11-01T09:00:00Z"},"until":"2026-11-01T11:00:00Z",
		"delayed":{"hubspot":"2026-11-01T08:00:00Z"},"delayed_until":"2026-11-01T10:00:00Z","skip_archived":{"hubspot":true},
		"archived_since":{"hubspot":"2026-11-01T07:00:00Z"},"first":{"salesforce":true}},"duration_ns":5}}`
	rep, err := crmsync.DecodeSyncReport(crmsync.RunInfo{ID: "r1", Report: json.RawMessage(stored)})
	require.NoError(t, err)
	at := func(h int) time.Time { return time.Date(2026, 11, 1, h, 0, 0, 0, time.UTC) }
	want := crmsync.ReadWindow{
		Since: map[string]time.Time{"hubspot": at(10), "salesforce": at(9)}, Until: at(11),
		Delayed: map[string]time.Time{"hubspot": at(8)}, DelayedUntil: at(10),
		SkipArchived: map[string]bool{"hubspot": true}, ArchivedSince: map[string]time.Time{"hubspot": at(7)},
		First: map[string]bool{"salesforce": true},
	}
	assert.Equal(t, want, rep.Window)

	again, err := json.Marshal(rep.Window)
	require.NoError(t, err)
	var back map[string]any
	require.NoError(t, json.Unmarshal(again, &back))
	for _, k := range []string{"since", "until", "delayed", "delayed_until", "skip_archived", "archived_since", "first"} {
		assert.Contains(t, back, k)
	}
}

// A planned write's values stay out of anything printed or logged.
func TestPlannedWriteRedactsValues(t *testing.T) {
	pw := crmsync.PlannedWrite{Direction: "hubspot->salesforce", Kind: crmsync.PlanUpdate, SourceID: "101", TargetID: "003A",
		Fields: []string{"Email"}, Values: crmsync.Fields{"Email": "ada@example.com"}}
	assert.NotContains(t, fmt.Sprintf("%v %+v", pw, pw), "ada@example.com")
	var b strings.Builder
	slog.New(slog.NewTextHandler(&b, nil)).Info("planned", "write", pw, "values", pw.Values)
	assert.NotContains(t, b.String(), "ada@example.com")
	assert.Contains(t, b.String(), "003A")
}
