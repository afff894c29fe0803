package playbook

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/crmsync/crmsync"
)

// hideField makes w's CRM behave as if field were deleted or hidden by
// field-level security: absent from Schema (when inSchema is false) and
// refused with a FieldError by reads and writes that name it.
func hideField(w *wrapCRM, field string, inSchema bool) {
	refused := func(object string) error {
		return crmsync.Permanent(&crmsync.FieldError{System: w.CRM.System(), Object: object, Fields: []string{field}})
	}
	w.set(func(w *wrapCRM) {
		w.changes = func(ctx context.Context, next crmsync.CRM, q crmsync.ChangeQuery) (crmsync.Page, error) {
			if slices.Contains(q.Fields, field) {
				return crmsync.Page{}, refused(q.Object)
			}
			return next.Changes(ctx, q)
		}
		w.lookup = func(ctx context.Context, next crmsync.CRM, object, f string, values, fields []string) ([]crmsync.Record, error) {
			if slices.Contains(fields, field) {
				return nil, refused(object)
			}
			return next.Lookup(ctx, object, f, values, fields)
		}
		w.write = func(ctx context.Context, next crmsync.CRM, object string, ops []crmsync.WriteOp) ([]crmsync.WriteResult, error) {
			for _, op := range ops {
				if _, ok := op.Fields[field]; ok {
					return nil, refused(object)
				}
			}
			return next.Write(ctx, object, ops)
		}
		w.schema = nil
		if !inSchema {
			w.schema = func(ctx context.Context, next crmsync.CRM, object string) (crmsync.Schema, error) {
				s, err := next.Schema(ctx, object)
				s.Fields = slices.DeleteFunc(slices.Clone(s.Fields), func(f crmsync.FieldSchema) bool { return f.Name == field })
				return s, err
			}
		}
	})
}

func countWarnings(log, field string) int {
	n := 0
	for _, line := range strings.Split(log, "\n") {
		if strings.Contains(line, "level=WARN") && strings.Contains(line, field) {
			n++
		}
	}
	return n
}

// A mapped Salesforce field that disappears is dropped from reads and
// writes, warned about once when it goes and once when it comes back, and
// the other fields keep syncing.
func TestCoreHiddenFieldIsDroppedAndWarnedOnce(t *testing.T) {
	for _, inSchema := range []bool{false, true} {
		t.Run(fmt.Sprintf("in schema %v", inSchema), func(t *testing.T) {
			logs := &syncWriter{}
			o, _, sw := wrapped(fast(t))
			o.engine = func(c *crmsync.Config) { c.Logger = slog.New(slog.NewTextHandler(logs, nil)) }
			h := newHarness(t, o)
			hsID := h.f.hs.Seed("contacts", map[string]string{"email": "fls@x.example", "lastname": "Hidden", "phone": "1"})[0]
			hideField(sw, "Phone", inSchema)
			h.pass()
			sf := sfByEmailOne(t, h, "fls@x.example")
			assert.Equal(t, "Hidden", sf.Fields["LastName"], "the other fields synced")

			must(t, h.f.hs.Edit("contacts", hsID, map[string]string{"lastname": "Still", "phone": "2"}))
			h.pass()
			assert.Equal(t, "Still", sfByEmailOne(t, h, "fls@x.example").Fields["LastName"])
			assert.Equal(t, 1, countWarnings(logs.String(), "Phone"), "one warning while the field is gone:\n%s", logs.String())

			sw.set(func(w *wrapCRM) { w.changes, w.lookup, w.write, w.schema = nil, nil, nil, nil })
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
