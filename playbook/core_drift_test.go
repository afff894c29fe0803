package playbook

import (
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/crmsync/crmsync"
)

// driftAbout lists the report's drift warnings that name field.
func driftAbout(rep *crmsync.SyncReport, field string) []string {
	var out []string
	for _, w := range rep.Drift {
		if strings.Contains(w, " "+field+" ") {
			out = append(out, w)
		}
	}
	return out
}

// The "done when", end to end against the fakes: a mapped field
// hidden in Salesforce (HideField), or a HubSpot property deleted
// (DeleteProperty), is warned about once (report and log), the other
// fields keep syncing both ways, later passes do not warn again; restored,
// it is warned about once as back, and it syncs again.
func TestCoreFieldGoneAndBackIsWarnedOnce(t *testing.T) {
	type world struct {
		gone, back func(h *harness) error
		system     string
		field      string
		// edit changes the field on the side that still has it.
		edit func(h *harness, hsID, sfID, v string) error
		// get reads the field where it went away.
		get func(h *harness, hsID, sfID string) string
	}
	worlds := map[string]world{
		"salesforce field hidden": {
			gone:   func(h *harness) error { return h.f.sf.HideField("Phone") },
			back:   func(h *harness) error { h.f.sf.RestoreField("Phone"); return nil },
			system: "salesforce", field: "Phone",
			edit: func(h *harness, hsID, _, v string) error {
				return h.f.hs.Edit("contacts", hsID, map[string]string{"phone": v})
			},
			get: func(h *harness, _, sfID string) string {
				r, _ := h.f.sf.Get(sfID)
				s, _ := r.Fields["Phone"].(string)
				return s
			},
		},
		"hubspot property deleted": {
			gone:   func(h *harness) error { return h.f.hs.DeleteProperty("contacts", "phone") },
			back:   func(h *harness) error { return h.f.hs.RestoreProperty("contacts", "phone") },
			system: "hubspot", field: "phone",
			edit: func(h *harness, _, sfID, v string) error { return h.f.sf.Edit(sfID, crmsync.Fields{"Phone": v}) },
			get: func(h *harness, hsID, _ string) string {
				r, _ := h.f.hs.Get("contacts", hsID)
				return r.Properties["phone"]
			},
		},
	}
	for name, w := range worlds {
		t.Run(name, func(t *testing.T) {
			logs := &syncWriter{}
			o := fast(t)
			o.engine = func(c *crmsync.Config) { c.Logger = slog.New(slog.NewTextHandler(logs, nil)) }
			h := newHarness(t, o)
			hsID := h.f.hs.Seed("contacts", map[string]string{"email": "gone@x.example", "firstname": "Ada", "lastname": "Gone", "phone": "1"})[0]
			h.pass()
			sfID := sfByEmailOne(t, h, "gone@x.example").ID
			require.Equal(t, "1", w.get(h, hsID, sfID))
			otherFieldsSync := func(last, first string) {
				t.Helper()
				must(t, h.f.hs.Edit("contacts", hsID, map[string]string{"lastname": last}))
				must(t, h.f.sf.Edit(sfID, crmsync.Fields{"FirstName": first}))
			}

			require.NoError(t, w.gone(h))
			otherFieldsSync("Still", "Augusta")
			rep := h.pass()
			assert.Len(t, driftAbout(rep, w.field), 1, "one drift warning when the field goes: %q", rep.Drift)
			assert.Contains(t, rep.Dropped, w.system+"."+w.field)
			assert.Equal(t, 1, countWarnings(logs.String(), w.field), "one warning in the log:\n%s", logs.String())
			sf, _ := h.f.sf.Get(sfID)
			hs, _ := h.f.hs.Get("contacts", hsID)
			assert.Equal(t, "Still", sf.Fields["LastName"], "HubSpot's edit of another field reached Salesforce")
			assert.Equal(t, "Augusta", hs.Properties["firstname"], "Salesforce's edit of another field reached HubSpot")
			assert.Equal(t, 0, rep.DeadLetters(), "nothing parked")

			otherFieldsSync("Again", "Grace")
			rep = h.pass()
			h.pass()
			assert.Empty(t, driftAbout(rep, w.field), "no warning on later passes: %q", rep.Drift)
			assert.Equal(t, 1, countWarnings(logs.String(), w.field), "no more warnings in the log:\n%s", logs.String())
			sf, _ = h.f.sf.Get(sfID)
			hs, _ = h.f.hs.Get("contacts", hsID)
			assert.Equal(t, "Again", sf.Fields["LastName"])
			assert.Equal(t, "Grace", hs.Properties["firstname"])

			require.NoError(t, w.back(h))
			must(t, w.edit(h, hsID, sfID, "3"))
			rep = h.pass()
			back := driftAbout(rep, w.field)
			if assert.Len(t, back, 1, "one drift warning when the field is back: %q", rep.Drift) {
				assert.Contains(t, back[0], "back")
			}
			assert.NotContains(t, rep.Dropped, w.system+"."+w.field)
			assert.Equal(t, "3", w.get(h, hsID, sfID), "the field syncs again")
			rep = h.pass()
			assert.Empty(t, driftAbout(rep, w.field), "no warning once it is back: %q", rep.Drift)
			assert.Equal(t, 2, countWarnings(logs.String(), w.field), "two warnings in all:\n%s", logs.String())
		})
	}
}

// A HubSpot property deleted during a pass, after the pass read the schema
// (or while a run that read it is resumed): HubSpot's reads leave it out
// without an error, so the records read lack it; that is no clear to copy
// to Salesforce. Salesforce's edit of it is refused by HubSpot
// (PROPERTY_DOESNT_EXIST, a FieldError): the field is dropped, the rest of
// the write lands, nothing is parked, and the edit arrives once the
// property is back.
func TestCorePropertyDeletedDuringAPassIsDropped(t *testing.T) {
	o, user := withUser(fast(t))
	h := newHarness(t, o)
	hsID := h.f.hs.Seed("contacts", map[string]string{"email": "mid@x.example", "lastname": "Mid", "phone": "1"})[0]
	h.pass()
	sfID := sfByEmailOne(t, h, "mid@x.example").ID
	must(t, h.f.hs.Edit("contacts", hsID, map[string]string{"lastname": "Later"}))
	must(t, h.f.sf.Edit(sfID, crmsync.Fields{"FirstName": "Ada", "Phone": "2"}))
	var acted atomic.Bool
	user.arm(func(r *http.Request) bool {
		if !isCall(r, "/contacts/search") {
			return false
		}
		acted.Store(true)
		return h.f.hs.DeleteProperty("contacts", "phone") == nil
	})
	rep := h.pass()
	require.True(t, acted.Load())
	sf, _ := h.f.sf.Get(sfID)
	assert.Equal(t, "2", sf.Fields["Phone"], "Salesforce keeps its phone")
	assert.Equal(t, "Later", sf.Fields["LastName"], "the other fields synced")
	assert.Equal(t, 0, rep.DeadLetters(), "nothing parked")
	assert.Contains(t, rep.Dropped, "hubspot.phone")
	hs, _ := h.f.hs.Get("contacts", hsID)
	assert.Equal(t, "Ada", hs.Properties["firstname"], "the rest of Salesforce's edit reached HubSpot")
	require.NoError(t, h.f.hs.RestoreProperty("contacts", "phone"))
	h.pass()
	hs, _ = h.f.hs.Get("contacts", hsID)
	assert.Equal(t, "2", hs.Properties["phone"], "Salesforce's edit of the phone arrives once the property is back")
}

// An edit made while the other side hid the field (for hours, past the
// delayed window) is not lost: once the field is back, the changes made
// since it went away are read again, and the edit arrives.
func TestCoreEditWhileAFieldWasGoneArrivesWhenItIsBack(t *testing.T) {
	clk := newTestClock()
	h := newHarness(t, clocked(fast(t), clk, 0))
	hsID := h.f.hs.Seed("contacts", map[string]string{"email": "while@x.example", "lastname": "While", "phone": "1"})[0]
	clk.Advance(time.Second)
	h.pass()
	require.NoError(t, h.f.sf.HideField("Phone"))
	clk.Advance(time.Second)
	require.NoError(t, h.f.hs.Edit("contacts", hsID, map[string]string{"phone": "2"}))
	clk.Advance(time.Second)
	h.pass()
	for range 5 {
		clk.Advance(time.Hour)
		h.pass()
	}
	require.Equal(t, "1", sfPhoneOf(h, "while@x.example"), "not written while hidden")
	h.f.sf.RestoreField("Phone")
	clk.Advance(time.Minute)
	h.pass()
	clk.Advance(time.Minute)
	h.pass()
	assert.Equal(t, "2", sfPhoneOf(h, "while@x.example"), "HubSpot's edit made while Salesforce hid the field arrives once it is back")
	clk.Advance(time.Minute)
	rep := h.pass()
	assert.Zero(t, rep.Writes(), "settled")
}

// A field hidden before the very first pass (which reads everything, from
// the zero time) is back: the cursors go back to the start, and the value
// written while it was gone arrives on the next pass, not an hour later.
func TestCoreFieldGoneOnTheFirstPassArrivesWhenItIsBack(t *testing.T) {
	clk := newTestClock()
	h := newHarness(t, clocked(fast(t), clk, 0))
	require.NoError(t, h.f.sf.HideField("Phone"))
	h.f.hs.Seed("contacts", map[string]string{"email": "first@x.example", "lastname": "First", "phone": "1"})
	clk.Advance(time.Second)
	h.pass()
	for range 3 {
		clk.Advance(5 * time.Minute)
		h.pass()
	}
	require.Len(t, h.liveSF(), 1)
	require.Empty(t, sfPhoneOf(h, "first@x.example"), "not written while hidden")
	h.f.sf.RestoreField("Phone")
	clk.Advance(time.Minute)
	h.pass()
	clk.Advance(time.Minute)
	h.pass()
	assert.Equal(t, "1", sfPhoneOf(h, "first@x.example"), "the value HubSpot had while Salesforce hid the field arrives once it is back")
}
