package crmsync

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// RoutedObject is one object of a [Routed] CRM.
type RoutedObject struct {
	// Name is the object in the CRM's naming ("Lead", "Contact"). Required.
	Name string
	// Fields renames the policy's field names (the keys) to this object's
	// (Contact "MobilePhone" may be Lead "MobilePhone", Contact
	// "Account_Name__c" Lead "Company"); a name not in the map is the same
	// on the object, and one mapped to "" is a field the object does not
	// have: it is neither read nor written there (a Lead has no AccountId),
	// so the merge leaves it alone for records of this object.
	Fields map[string]string
	// Defaults are set on a record created in this object when the create
	// does not name them, in this object's field names (a Lead's required
	// Company, say).
	Defaults Fields
	// Unreferenced says that records of this object cannot be the target
	// of another pair's references (a Lead holds no opportunity contact
	// role): in a set of references, an element whose counterpart is such
	// a record is left out of this side's value and kept in the other
	// side's, and the referencing record waits (read again each pass)
	// until the element can be written (a converted Lead's Contact).
	Unreferenced bool
}

// RoutedConfig configures a [Routed] CRM.
type RoutedConfig struct {
	// CRM is the client that serves every object. Required.
	CRM CRM
	// Objects are read in this order within each window, all of them
	// (so put Lead before Contact: a converted Lead is read, and its
	// counterpart relinked to the new Contact, before that Contact is
	// read). At least one is required.
	Objects []RoutedObject
	// Route names the object a new record is created in, given the record
	// on the other side it comes from (WriteOp.Source; for a create
	// without one, a Record with the create's fields in the policy's
	// names), such as Lead or Contact by HubSpot lifecycle stage. A name
	// that is not one of Objects refuses that create (a dead letter).
	// Required with more than one object; nil means the only one.
	Route func(src Record) string
}

// Routed is a CRM that presents several objects of one CRM as one object
// to a [Sync], such as Salesforce Leads and Contacts as "people" synced
// with HubSpot contacts: changes are read from every object (each window
// object by object, in the order configured), lookups ask every object,
// updates go to the record's own object and creates to the object Route
// picks. Field names are the policy's, renamed per object.
//
// A record an object reports merged or converted (MergedInto set: a
// Salesforce Lead converted to a Contact) is relinked by the sync to the
// record it became (see Record.MergedInto) and never written again; a
// converted record is not a match for a new record's identity.
//
// When the client is a [MergedAwayLister] (Salesforce), Routed is one too,
// asking it object by object, so that a merge's winner read before its
// loser's deletion takes over the loser's link in a routed pair as in a
// plain one; otherwise its MergedAway answers nothing. Routed also passes
// on the client's ChangeLag.
//
// Routed remembers which object each id it has seen belongs to; an id it
// has not seen is looked up in each object before an update.
type Routed struct {
	c  RoutedConfig
	mu sync.Mutex
	of map[string]int // record id -> object index
}

var (
	_ CRM              = (*Routed)(nil)
	_ MergedAwayLister = (*Routed)(nil)
)

// NewRouted validates c and returns a Routed CRM.
func NewRouted(c RoutedConfig) (*Routed, error) {
	var probs []string
	if c.CRM == nil {
		probs = append(probs, "RoutedConfig.CRM is required")
	}
	if len(c.Objects) == 0 {
		probs = append(probs, "RoutedConfig.Objects is empty")
	}
	seen := map[string]bool{}
	for i, o := range c.Objects {
		if o.Name == "" {
			probs = append(probs, fmt.Sprintf("object %d has no name", i))
		} else if seen[o.Name] {
			probs = append(probs, fmt.Sprintf("object %s is listed twice", o.Name))
		}
		seen[o.Name] = true
	}
	if len(c.Objects) > 1 && c.Route == nil {
		probs = append(probs, "RoutedConfig.Route is required with more than one object")
	}
	if len(probs) > 0 {
		return nil, fmt.Errorf("crmsync: NewRouted: %s", strings.Join(probs, "; "))
	}
	return &Routed{c: c, of: map[string]int{}}, nil
}

// Object names the routed object for SyncConfig: the object names joined
// by "+" ("Lead+Contact"). Routed serves whatever object name it is
// asked for.
func (r *Routed) Object() string {
	names := make([]string, len(r.c.Objects))
	for i, o := range r.c.Objects {
		names[i] = o.Name
	}
	return strings.Join(names, "+")
}

// System implements CRM.
func (r *Routed) System() string { return r.c.CRM.System() }

// Limits implements CRM.
func (r *Routed) Limits() Limits { return r.c.CRM.Limits() }

// ChangeLag implements ChangeLagger with the client's lag (zero if none).
func (r *Routed) ChangeLag() time.Duration {
	if l, ok := r.c.CRM.(ChangeLagger); ok {
		return l.ChangeLag()
	}
	return 0
}

// field is the object's name for a policy field, and whether it has one.
func (o RoutedObject) field(name string) (string, bool) {
	if f, ok := o.Fields[name]; ok {
		return f, f != ""
	}
	return name, true
}

func (o RoutedObject) fieldList(names []string) []string {
	if names == nil {
		return nil
	}
	out := make([]string, 0, len(names))
	for _, n := range names {
		if f, ok := o.field(n); ok && !slices.Contains(out, f) {
			out = append(out, f)
		}
	}
	return out
}

// toPolicy renames a record's fields from the object's names to the policy's.
func (o RoutedObject) toPolicy(rec Record) Record {
	if len(o.Fields) == 0 {
		return rec
	}
	back := make(map[string]string, len(o.Fields))
	for p, f := range o.Fields {
		if f != "" {
			back[f] = p
		}
	}
	out := make(Fields, len(rec.Fields))
	for k, v := range rec.Fields {
		if p, ok := back[k]; ok {
			out[p] = v
			continue
		}
		if f, renamed := o.Fields[k]; renamed && f != k {
			continue // the policy's name means another field here
		}
		out[k] = v
	}
	rec.Fields = out
	if len(rec.FieldTimes) > 0 {
		ft := make(map[string]time.Time, len(rec.FieldTimes))
		for k, t := range rec.FieldTimes {
			if p, ok := back[k]; ok {
				k = p
			}
			ft[k] = t
		}
		rec.FieldTimes = ft
	}
	return rec
}

// toObject renames fields from the policy's names to the object's,
// leaving out those the object does not have.
func (o RoutedObject) toObject(f Fields) Fields {
	out := make(Fields, len(f))
	for k, v := range f {
		if name, ok := o.field(k); ok {
			out[name] = v
		}
	}
	return out
}

func (r *Routed) remember(i int, recs []Record) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rec := range recs {
		r.of[rec.ID] = i
	}
}

// Changes implements CRM: the window's changes of each object in turn.
// Page tokens are "<object index>|<the client's token>".
func (r *Routed) Changes(ctx context.Context, q ChangeQuery) (Page, error) {
	i, inner := 0, ""
	if q.PageToken != "" {
		n, rest, ok := strings.Cut(q.PageToken, "|")
		idx, err := strconv.Atoi(n)
		if !ok || err != nil || idx < 0 || idx >= len(r.c.Objects) {
			return Page{}, Permanent(errors.New("crmsync: routed: page token not made by Routed"))
		}
		i, inner = idx, rest
	}
	o := r.c.Objects[i]
	iq := q
	iq.Object, iq.PageToken, iq.Fields = o.Name, inner, o.fieldList(q.Fields)
	page, err := r.c.CRM.Changes(ctx, iq)
	if err != nil && i > 0 && inner == "" && errors.Is(err, ErrHistoryLost) && !q.Until.IsZero() {
		// The sync handles a lost history on the query's first page (the
		// first object's) by reading what the API still holds; the later
		// objects do the same here.
		iq.Since = q.Until.Add(-historyFallback)
		page, err = r.c.CRM.Changes(ctx, iq)
	}
	if err != nil {
		return Page{}, err
	}
	r.remember(i, page.Records)
	out := Page{Records: make([]Record, len(page.Records))}
	for j, rec := range page.Records {
		out.Records[j] = o.toPolicy(rec)
	}
	switch {
	case page.Next != "":
		out.Next = strconv.Itoa(i) + "|" + page.Next
	case i+1 < len(r.c.Objects):
		out.Next = strconv.Itoa(i+1) + "|"
	}
	return out, nil
}

// Lookup implements CRM: every object is asked (each that has field). A
// lookup by a field other than "id" leaves out records merged or
// converted away: they are not a new record's match.
func (r *Routed) Lookup(ctx context.Context, object, field string, values []string, fields []string) ([]Record, error) {
	var out []Record
	for i, o := range r.c.Objects {
		name := "id"
		if field != "id" {
			var ok bool
			if name, ok = o.field(field); !ok {
				continue
			}
		}
		recs, err := r.c.CRM.Lookup(ctx, o.Name, name, values, o.fieldList(fields))
		if err != nil {
			return nil, err
		}
		r.remember(i, recs)
		for _, rec := range recs {
			if field != "id" && rec.MergedInto != "" {
				continue
			}
			out = append(out, o.toPolicy(rec))
		}
	}
	return out, nil
}

// objectOf finds the object of each id, asking the CRM about ids not seen
// before.
func (r *Routed) objectOf(ctx context.Context, ids []string) (map[string]int, error) {
	out := map[string]int{}
	var unknown []string
	r.mu.Lock()
	for _, id := range ids {
		if i, ok := r.of[id]; ok {
			out[id] = i
		} else {
			unknown = append(unknown, id)
		}
	}
	r.mu.Unlock()
	for i, o := range r.c.Objects {
		if len(unknown) == 0 {
			break
		}
		recs, err := r.c.CRM.Lookup(ctx, o.Name, "id", unknown, []string{})
		if err != nil {
			return nil, err
		}
		r.remember(i, recs)
		for _, rec := range recs {
			out[rec.ID] = i
			unknown = slices.DeleteFunc(unknown, func(id string) bool { return id == rec.ID })
		}
	}
	return out, nil
}

// MergedAway implements MergedAwayLister when the client is one: the
// winners are grouped by their object (an id not seen before is looked up
// in each object; one that no object has is left out) and the client is
// asked once per object, under that object's name; the answers are merged.
// When the client is not a MergedAwayLister, the answer is empty and
// nothing is asked.
func (r *Routed) MergedAway(ctx context.Context, object string, winners []string) (map[string][]string, error) {
	out := map[string][]string{}
	lister, ok := r.c.CRM.(MergedAwayLister)
	if !ok || len(winners) == 0 {
		return out, nil
	}
	of, err := r.objectOf(ctx, winners)
	if err != nil {
		return nil, err
	}
	groups := make([][]string, len(r.c.Objects))
	for _, id := range winners {
		if i, ok := of[id]; ok && !slices.Contains(groups[i], id) {
			groups[i] = append(groups[i], id)
		}
	}
	for i, ids := range groups {
		if len(ids) == 0 {
			continue
		}
		got, err := lister.MergedAway(ctx, r.c.Objects[i].Name, ids)
		if err != nil {
			return nil, err
		}
		for w, losers := range got {
			out[w] = append(out[w], losers...)
		}
	}
	return out, nil
}

// unreferenced returns the ids among ids whose records cannot be
// referenced (RoutedObject.Unreferenced).
func (r *Routed) unreferenced(ctx context.Context, ids []string) (map[string]bool, error) {
	out := map[string]bool{}
	if !slices.ContainsFunc(r.c.Objects, func(o RoutedObject) bool { return o.Unreferenced }) {
		return out, nil
	}
	of, err := r.objectOf(ctx, ids)
	if err != nil {
		return nil, err
	}
	for id, i := range of {
		if r.c.Objects[i].Unreferenced {
			out[id] = true
		}
	}
	return out, nil
}

// Write implements CRM: updates go to each record's object, creates to
// the object Route picks, one call per object.
func (r *Routed) Write(ctx context.Context, object string, ops []WriteOp) ([]WriteResult, error) {
	res := make([]WriteResult, len(ops))
	var ids []string
	for _, op := range ops {
		if op.Kind == Update {
			ids = append(ids, op.ID)
		}
	}
	of, err := r.objectOf(ctx, ids)
	if err != nil {
		return nil, err
	}
	groups := make([][]int, len(r.c.Objects))
	for j, op := range ops {
		i := 0
		switch {
		case op.Kind == Update:
			var ok bool
			if i, ok = of[op.ID]; !ok {
				// Deleted (or never there): no object reads it by id.
				res[j].Err = Permanent(fmt.Errorf("crmsync: routed: record %s not found in %s: %w", op.ID, r.Object(), ErrRecordGone))
				continue
			}
		case len(r.c.Objects) > 1:
			src := Record{ID: op.MatchValue, Fields: op.Fields}
			if op.Source != nil {
				src = *op.Source
			}
			name := r.c.Route(src)
			i = slices.IndexFunc(r.c.Objects, func(o RoutedObject) bool { return o.Name == name })
			if i < 0 {
				res[j].Err = Permanent(fmt.Errorf("crmsync: routed: route for %s names %q, which is not one of %s", src.ID, name, r.Object()))
				continue
			}
		}
		groups[i] = append(groups[i], j)
	}
	for i, idx := range groups {
		if len(idx) == 0 {
			continue
		}
		o := r.c.Objects[i]
		batch := make([]WriteOp, len(idx))
		for k, j := range idx {
			op := ops[j]
			op.Fields = o.toObject(op.Fields)
			if op.MatchField != "" {
				op.MatchField, _ = o.field(op.MatchField)
			}
			if op.Kind != Update {
				for f, v := range o.Defaults {
					if _, set := op.Fields[f]; !set {
						op.Fields[f] = v
					}
				}
			}
			batch[k] = op
		}
		out, err := r.c.CRM.Write(ctx, o.Name, batch)
		if err != nil && len(out) != len(batch) {
			// The outcome of this call is unknown; the calls before it are
			// reported as they went, so only a transient error is passed
			// on as a whole (the sync sends every op again, which is safe).
			return nil, err
		}
		for k, j := range idx {
			res[j] = out[k]
			if out[k].ID != "" { // written, if only in part
				r.remember(i, []Record{{ID: out[k].ID}})
			}
		}
	}
	return res, nil
}

// Schema implements CRM: the union of the objects' fields, in the policy's
// names (the first object that has a field describes it). A field is
// required only when every object requires it (the route is not known
// ahead) and no object's Defaults fill it.
func (r *Routed) Schema(ctx context.Context, object string) (Schema, error) {
	out := Schema{Object: object}
	seen := map[string]bool{}
	optional := map[string]bool{}
	for _, o := range r.c.Objects {
		s, err := r.c.CRM.Schema(ctx, o.Name)
		if err != nil {
			return Schema{}, err
		}
		back := map[string]string{}
		for p, f := range o.Fields {
			if f != "" {
				back[f] = p
			}
		}
		for _, f := range s.Fields {
			name := f.Name
			if p, ok := back[name]; ok {
				name = p
			} else if to, renamedAway := o.Fields[name]; renamedAway && to != name {
				continue
			}
			if _, filled := o.Defaults[f.Name]; filled || !f.Required {
				optional[name] = true
			}
			if seen[name] {
				continue
			}
			seen[name] = true
			f.Name = name
			out.Fields = append(out.Fields, f)
		}
	}
	for i, f := range out.Fields {
		n := 0
		for _, o := range r.c.Objects {
			if _, has := o.field(f.Name); has {
				n++
			}
		}
		if optional[f.Name] || n < len(r.c.Objects) {
			out.Fields[i].Required = false
		}
	}
	return out, nil
}
