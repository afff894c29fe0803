package playbook

import (
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/crmsync/crmsync"
)

func countWarnings(log, field string) int {
	n := 0
	for _, line := range strings.Split(log, "\n") {
		if strings.Contains(line, "level=WARN") && strings.Contains(line, field) {
			n++
		}
	}
	return n
}

// A mapped Salesforce field that disappears (the fake's HideField: gone
// from describe, refused by SOQL and collections) is dropped from reads and
// writes, warned about once when it goes and once when it comes back, and
// the other fields keep syncing. Hidden before the pass, the schema read
// drops it; hidden during the pass, after the schema read, the API's
// refusal (FieldError) does.
func TestCoreHiddenFieldIsDroppedAndWarnedOnce(t *testing.T) {
	// When the field is hidden: before the pass, or when the pass's first
	// Salesforce lookup or first change read goes out (after the schema
	// read, as in a resumed run).
	whens := map[string]func(r *http.Request) bool{
		"before the pass": nil,
		"during a lookup": func(r *http.Request) bool {
			return isCall(r, "/query") && !strings.Contains(r.URL.Query().Get("q"), "ORDER BY SystemModstamp")
		},
		"during a change read": func(r *http.Request) bool {
			return isCall(r, "/query") && strings.Contains(r.URL.Query().Get("q"), "ORDER BY SystemModstamp")
		},
	}
	for name, when := range whens {
		t.Run(name, func(t *testing.T) {
			logs := &syncWriter{}
			o, user := withUser(fast(t))
			o.engine = func(c *crmsync.Config) { c.Logger = slog.New(slog.NewTextHandler(logs, nil)) }
			h := newHarness(t, o)
			hsID := h.f.hs.Seed("contacts", map[string]string{"email": "fls@x.example", "lastname": "Hidden", "phone": "1"})[0]
			var acted atomic.Bool
			if when != nil {
				user.arm(func(r *http.Request) bool {
					if !when(r) {
						return false
					}
					acted.Store(true)
					return h.f.sf.HideField("Phone") == nil
				})
			} else {
				require.NoError(t, h.f.sf.HideField("Phone"))
			}
			rep := h.pass()
			require.Equal(t, when != nil, acted.Load())
			assert.Contains(t, rep.Dropped, "salesforce.Phone")
			sf := sfByEmailOne(t, h, "fls@x.example")
			assert.Equal(t, "Hidden", sf.Fields["LastName"], "the other fields synced")

			must(t, h.f.hs.Edit("contacts", hsID, map[string]string{"lastname": "Still", "phone": "2"}))
			rep = h.pass()
			assert.Equal(t, "Still", sfByEmailOne(t, h, "fls@x.example").Fields["LastName"])
			assert.Empty(t, rep.Drift, "no drift reported again")
			assert.Equal(t, 1, countWarnings(logs.String(), "Phone"), "one warning while the field is gone:\n%s", logs.String())

			h.f.sf.RestoreField("Phone")
			must(t, h.f.hs.Edit("contacts", hsID, map[string]string{"phone": "3"}))
			h.pass()
			h.pass()
			assert.Equal(t, "3", sfByEmailOne(t, h, "fls@x.example").Fields["Phone"], "the field syncs again once it is back")
			assert.Equal(t, 2, countWarnings(logs.String(), "Phone"), "one more warning when it comes back:\n%s", logs.String())
		})
	}
}

// A healthy run warns about no schema field: the CRMs' own system fields
// and the fields unmapped from the start are no drift.
func TestCoreHealthyRunHasNoSchemaWarning(t *testing.T) {
	logs := &syncWriter{}
	o := fast(t)
	o.engine = func(c *crmsync.Config) { c.Logger = slog.New(slog.NewTextHandler(logs, nil)) }
	h := newHarness(t, o)
	h.f.hs.SeedContacts(3)
	rep := h.pass()
	assert.Empty(t, rep.Drift, "drift warnings on a healthy run")
	assert.NotContains(t, logs.String(), "schema drift")
	for _, f := range rep.Unmapped {
		for _, sys := range []string{"hs_object_id", "createdate", "lastmodifieddate", "Id", "SystemModstamp", "CreatedDate", "IsDeleted"} {
			assert.NotEqual(t, sys, strings.SplitN(f, ".", 2)[1], "system field listed as unmapped")
		}
	}
}
