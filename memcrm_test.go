package crmsync_test

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/crmsync/crmsync"
)

// memCRM is a small in-memory CRM for the graph tests of the root package
// (the fakes' companies, deals and leads live in hubspottest and
// salesforcetest; the playbook tests drive those). It keeps several
// objects, stamps every write with its clock, upserts on a unique field,
// refuses writes to a record marked read-only (a converted lead) per
// record, and counts calls.
type memCRM struct {
	system string
	clock  func() time.Time

	mu      sync.Mutex
	objects map[string]map[string]*crmsync.Record
	unique  map[string]string // object -> unique (external id) field
	next    int
	calls   int
	writes  []string // object/id of every record written
	// failWrite, if set, fails a Write call to object as a whole with
	// the error it returns (nil lets it through).
	failWrite func(object string) error
}

func newMemCRM(system string, clock func() time.Time) *memCRM {
	return &memCRM{system: system, clock: clock, objects: map[string]map[string]*crmsync.Record{}, unique: map[string]string{}}
}

func (m *memCRM) System() string { return m.system }

func (m *memCRM) Limits() crmsync.Limits { return crmsync.Limits{WriteBatch: 100, LookupBatch: 100} }

func (m *memCRM) Schema(_ context.Context, object string) (crmsync.Schema, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.calls++
	return crmsync.Schema{Object: object}, nil
}

// put stores a record as a user's edit (stamped now) and returns its id.
func (m *memCRM) put(object string, fields crmsync.Fields) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.next++
	id := fmt.Sprintf("%s-%s-%d", m.system[:2], object[:3], m.next)
	now := m.clock()
	m.obj(object)[id] = &crmsync.Record{ID: id, Fields: clone(fields), CreatedAt: now, ModifiedAt: now}
	return id
}

// edit changes fields of a record as a user would.
func (m *memCRM) edit(object, id string, fields crmsync.Fields) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r := m.obj(object)[id]
	for k, v := range fields {
		r.Fields[k] = v
	}
	r.ModifiedAt = m.clock()
}

// convert marks a record converted into another (a Salesforce Lead
// conversion): MergedInto set, IsConverted true, read-only from then on.
func (m *memCRM) convert(object, id, into string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r := m.obj(object)[id]
	r.MergedInto = into
	r.Fields["IsConverted"] = true
	r.ModifiedAt = m.clock()
}

func (m *memCRM) get(object, id string) crmsync.Record {
	m.mu.Lock()
	defer m.mu.Unlock()
	r := m.obj(object)[id]
	if r == nil {
		return crmsync.Record{}
	}
	out := *r
	out.Fields = clone(r.Fields)
	return out
}

func (m *memCRM) all(object string) []crmsync.Record {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []crmsync.Record
	for _, r := range m.obj(object) {
		c := *r
		c.Fields = clone(r.Fields)
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

func (m *memCRM) obj(object string) map[string]*crmsync.Record {
	o := m.objects[object]
	if o == nil {
		o = map[string]*crmsync.Record{}
		m.objects[object] = o
	}
	return o
}

func (m *memCRM) Changes(_ context.Context, q crmsync.ChangeQuery) (crmsync.Page, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.calls++
	var out []crmsync.Record
	for _, r := range m.obj(q.Object) {
		if r.Archived != q.Archived || r.ModifiedAt.Before(q.Since) || (!q.Until.IsZero() && !r.ModifiedAt.Before(q.Until)) {
			continue
		}
		out = append(out, project(*r, q.Fields))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return crmsync.Page{Records: out}, nil
}

func (m *memCRM) Lookup(_ context.Context, object, field string, values, fields []string) ([]crmsync.Record, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.calls++
	var out []crmsync.Record
	for _, r := range m.obj(object) {
		if r.Archived {
			continue
		}
		v := r.ID
		if field != "id" {
			s, _ := r.Fields[field].(string)
			v = strings.ToLower(strings.TrimSpace(s))
		}
		if slices.Contains(values, v) {
			out = append(out, project(*r, fields))
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

func (m *memCRM) Write(_ context.Context, object string, ops []crmsync.WriteOp) ([]crmsync.WriteResult, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.calls++
	if m.failWrite != nil {
		if err := m.failWrite(object); err != nil {
			return nil, err
		}
	}
	res := make([]crmsync.WriteResult, len(ops))
	now := m.clock()
	for i, op := range ops {
		var r *crmsync.Record
		switch op.Kind {
		case crmsync.Update:
			r = m.obj(object)[op.ID]
			if r == nil || r.Archived {
				res[i].Err = crmsync.Permanent(fmt.Errorf("%s: %s not found", m.system, op.ID))
				continue
			}
		case crmsync.Upsert, crmsync.Create:
			for _, x := range m.obj(object) {
				if op.MatchField != "" && x.Fields[op.MatchField] == op.MatchValue {
					r = x
				}
			}
			if r == nil {
				m.next++
				id := fmt.Sprintf("%s-%s-%d", m.system[:2], object[:3], m.next)
				r = &crmsync.Record{ID: id, Fields: crmsync.Fields{}, CreatedAt: now}
				if op.MatchField != "" {
					r.Fields[op.MatchField] = op.MatchValue
				}
				m.obj(object)[id] = r
				res[i].Created = true
			}
		}
		if r.MergedInto != "" {
			res[i] = crmsync.WriteResult{Err: crmsync.Permanent(fmt.Errorf("%s: %s is converted and read-only", m.system, r.ID))}
			continue
		}
		for k, v := range op.Fields {
			r.Fields[k] = v
		}
		r.ModifiedAt = now
		res[i].ID = r.ID
		m.writes = append(m.writes, object+"/"+r.ID)
	}
	return res, nil
}

func project(r crmsync.Record, fields []string) crmsync.Record {
	out := r
	out.Fields = crmsync.Fields{}
	for k, v := range r.Fields {
		if fields == nil || slices.Contains(fields, k) {
			if l, ok := v.([]string); ok {
				v = slices.Clone(l)
			}
			out.Fields[k] = v
		}
	}
	return out
}

func clone(f crmsync.Fields) crmsync.Fields {
	out := crmsync.Fields{}
	for k, v := range f {
		if l, ok := v.([]string); ok {
			v = slices.Clone(l)
		}
		out[k] = v
	}
	return out
}

// fixedClock is a settable clock for the graph tests.
type fixedClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fixedClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fixedClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// archive archives a record as a user would.
func (m *memCRM) archive(object, id string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r := m.obj(object)[id]
	r.Archived = true
	r.ModifiedAt = m.clock()
}
