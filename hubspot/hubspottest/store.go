package hubspottest

import (
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/crmsync/crmsync/internal/fold"
)

// Property is a property definition in the fake.
type Property struct {
	// Name, Label, Type ("string", "number", "enumeration", "datetime",
	// "date", "bool") and FieldType ("text", "select", "checkbox", ...).
	Name, Label, Type, FieldType string
	// GroupName and Description as HubSpot reports them.
	GroupName, Description string
	// Options are an enumeration's allowed values.
	Options []string
	// Unique is HubSpot's hasUniqueValue: no two live records share a value,
	// and upserts may use the property as idProperty.
	Unique bool
	// ReadOnly rejects writes (modificationMetadata.readOnlyValue).
	ReadOnly bool
	// Required is the fake's stand-in for a portal's required-property rule:
	// creates without it fail with a per-record VALIDATION_ERROR.
	Required bool
	// HubspotDefined marks HubSpot's own properties.
	HubspotDefined bool
}

// Record is a record as the fake stores it.
type Record struct {
	// ID is the record id (hs_object_id), a string of digits.
	ID string
	// Properties are the set property values; unset properties are absent.
	Properties map[string]string
	// CreatedAt and UpdatedAt are the record's stamps, in milliseconds.
	CreatedAt time.Time
	UpdatedAt time.Time
	// Archived and ArchivedAt report an archived record.
	Archived   bool
	ArchivedAt time.Time
}

func isContacts(object string) bool {
	return object == "contacts" || object == "contact" || object == "0-1"
}

// modProp is the object's modification stamp property.
func modProp(object string) string {
	if isContacts(object) {
		return "lastmodifieddate"
	}
	return "hs_lastmodifieddate"
}

func defaultProps(object string) []*Property {
	sys := func(name, typ, ft string) *Property {
		return &Property{Name: name, Label: name, Type: typ, FieldType: ft, GroupName: "system", ReadOnly: true, HubspotDefined: true}
	}
	text := func(name string) *Property {
		return &Property{Name: name, Label: name, Type: "string", FieldType: "text", GroupName: "info", HubspotDefined: true}
	}
	ps := []*Property{sys("hs_object_id", "number", "number"), sys("createdate", "datetime", "date"), sys(modProp(object), "datetime", "date"),
		sys("hs_merged_object_ids", "enumeration", "checkbox")}
	if isContacts(object) {
		ps = append(ps, text("email"), text("firstname"), text("lastname"), text("phone"), text("company"),
			&Property{Name: "lifecyclestage", Label: "Lifecycle stage", Type: "enumeration", FieldType: "radio", GroupName: "info", HubspotDefined: true,
				Options: []string{"subscriber", "lead", "marketingqualifiedlead", "salesqualifiedlead", "opportunity", "customer", "evangelist", "other"}})
		// HubSpot's other standard contact properties, so that clients
		// writing them work against the fake as against a new portal.
		for _, name := range []string{"mobilephone", "fax", "jobtitle", "website", "address", "city", "state", "zip", "country", "industry", "salutation"} {
			ps = append(ps, text(name))
		}
		ps = append(ps, &Property{Name: "associatedcompanyid", Label: "Primary Associated Company ID", Type: "number", FieldType: "number",
			GroupName: "contactinformation", ReadOnly: true, HubspotDefined: true})
		return append(ps, &Property{Name: "hs_lead_status", Label: "Lead status", Type: "enumeration", FieldType: "select", GroupName: "sales_properties",
			HubspotDefined: true, Options: []string{"NEW", "OPEN", "IN_PROGRESS", "OPEN_DEAL", "UNQUALIFIED", "ATTEMPTED_TO_CONTACT", "CONNECTED", "BAD_TIMING"}})
	}
	switch canonical(object) {
	case "companies":
		ps = append(ps, text("name"), text("domain"), text("website"), text("phone"), text("city"), text("state"), text("country"),
			text("industry"), text("description"), text("hs_additional_domains"), text("hubspot_owner_id"),
			&Property{Name: "numberofemployees", Label: "Number of Employees", Type: "number", FieldType: "number", GroupName: "companyinformation", HubspotDefined: true},
			&Property{Name: "annualrevenue", Label: "Annual Revenue", Type: "number", FieldType: "number", GroupName: "companyinformation", HubspotDefined: true},
			&Property{Name: "lifecyclestage", Label: "Lifecycle stage", Type: "enumeration", FieldType: "radio", GroupName: "companyinformation", HubspotDefined: true,
				Options: []string{"subscriber", "lead", "marketingqualifiedlead", "salesqualifiedlead", "opportunity", "customer", "evangelist", "other"}})
		return ps
	case "deals":
		ps = append(ps, text("dealname"), text("description"), text("hubspot_owner_id"),
			&Property{Name: "dealstage", Label: "Deal Stage", Type: "enumeration", FieldType: "radio", GroupName: "dealinformation", HubspotDefined: true, Options: DealStages},
			&Property{Name: "pipeline", Label: "Pipeline", Type: "enumeration", FieldType: "select", GroupName: "dealinformation", HubspotDefined: true, Options: []string{"default"}},
			&Property{Name: "amount", Label: "Amount", Type: "number", FieldType: "number", GroupName: "dealinformation", HubspotDefined: true},
			&Property{Name: "closedate", Label: "Close Date", Type: "datetime", FieldType: "date", GroupName: "dealinformation", HubspotDefined: true},
			&Property{Name: "dealtype", Label: "Deal Type", Type: "enumeration", FieldType: "radio", GroupName: "dealinformation", HubspotDefined: true,
				Options: []string{"newbusiness", "existingbusiness"}})
		return ps
	}
	return append(ps, text("name"), text("domain"))
}

// DealStages are the stage ids of the default deal pipeline, in order.
var DealStages = []string{"appointmentscheduled", "qualifiedtobuy", "presentationscheduled", "decisionmakerboughtin", "contractsent", "closedwon", "closedlost"}

// defaultReturned are the properties returned when none are asked for.
func defaultReturned(object string) []string {
	if isContacts(object) {
		return []string{"createdate", "email", "firstname", "hs_object_id", "lastmodifieddate", "lastname"}
	}
	switch canonical(object) {
	case "companies":
		return []string{"createdate", "domain", "hs_lastmodifieddate", "hs_object_id", "name"}
	case "deals":
		return []string{"amount", "closedate", "createdate", "dealname", "dealstage", "hs_lastmodifieddate", "hs_object_id", "pipeline"}
	}
	return []string{"createdate", "hs_lastmodifieddate", "hs_object_id", "name"}
}

// store returns the object's store, creating it; s.mu is held.
func (s *Server) store(object string) *objectStore {
	object = canonical(object) // "deals", "deal" and "0-3" are one object
	st := s.objects[object]
	if st == nil {
		st = &objectStore{recs: map[string]*rec{}, props: defaultProps(object), idx: map[string]map[string][]*rec{},
			merged: map[string]string{}, hidden: map[string]*Property{}}
		s.objects[object] = st
	}
	return st
}

func (st *objectStore) prop(name string) *Property {
	for _, p := range st.props {
		if p.Name == name {
			return p
		}
	}
	return nil
}

// DefineProperty adds or replaces a property of object.
func (s *Server) DefineProperty(object string, p Property) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.store(object)
	cp := p
	cp.Options = append([]string(nil), p.Options...)
	if cp.Label == "" {
		cp.Label = cp.Name
	}
	if cp.Type == "" {
		cp.Type, cp.FieldType = "string", "text"
	}
	if cp.GroupName == "" {
		cp.GroupName = "info"
	}
	for i, q := range st.props {
		if q.Name == p.Name {
			st.props[i] = &cp
			return
		}
	}
	st.props = append(st.props, &cp)
}

// newRec creates a record with props at now; s.mu is held.
func (s *Server) newRec(object string, props map[string]string) *rec {
	return s.newRecAt(object, props, s.now())
}

// newRecAt creates a record with props stamped now; s.mu is held.
func (s *Server) newRecAt(object string, props map[string]string, now time.Time) *rec {
	st := s.store(object)
	s.nextID++
	r := &rec{id: strconv.FormatInt(s.nextID, 10), num: s.nextID, props: map[string]string{}, created: now}
	for k, v := range props {
		if v != "" {
			r.props[k] = v
		}
	}
	if canonical(object) == "deals" && r.props["pipeline"] == "" {
		r.props["pipeline"] = "default" // HubSpot uses the default pipeline when none is given
	}
	r.props["hs_object_id"] = r.id
	r.props["createdate"] = stamp(now)
	r.updated = now
	r.props[modProp(object)] = stamp(now)
	st.recs[r.id] = r
	st.order = append(st.order, r)
	s.indexVersion(r)
	for name, idx := range st.idx {
		if v := r.props[name]; v != "" {
			k := foldKey(v)
			idx[k] = append(idx[k], r)
		}
	}
	return r
}

// touch bumps the record's modification stamp; s.mu is held.
func (s *Server) touch(object string, r *rec, now time.Time) {
	r.updated = now
	s.store(object).put(r, modProp(object), stamp(now))
	s.indexVersion(r)
}

// set changes the record's properties; "" clears one.
func (st *objectStore) set(r *rec, props map[string]string) {
	for k, v := range props {
		st.put(r, k, v)
	}
}

// put sets (or with "" clears) one property, keeping its index in step.
func (st *objectStore) put(r *rec, name, v string) {
	if idx := st.idx[name]; idx != nil {
		if old := r.props[name]; old != "" {
			k := foldKey(old)
			idx[k] = slices.DeleteFunc(idx[k], func(x *rec) bool { return x == r })
			if len(idx[k]) == 0 {
				delete(idx, k)
			}
		}
		if v != "" {
			k := foldKey(v)
			idx[k] = append(idx[k], r)
		}
	}
	if v == "" {
		delete(r.props, name)
	} else {
		r.props[name] = v
	}
}

// index returns the property's index, building it on first use.
func (st *objectStore) index(name string) map[string][]*rec {
	idx := st.idx[name]
	if idx == nil {
		idx = map[string][]*rec{}
		for _, r := range st.order {
			if v := r.props[name]; v != "" {
				k := foldKey(v)
				idx[k] = append(idx[k], r)
			}
		}
		st.idx[name] = idx
	}
	return idx
}

// foldKey is the case-insensitive index key (see fold.Key).
func foldKey(s string) string { return fold.Key(s) }

func (r *rec) export() Record {
	out := Record{ID: r.id, Properties: make(map[string]string, len(r.props)), CreatedAt: r.created, UpdatedAt: r.updated, Archived: r.archived, ArchivedAt: r.archivedAt}
	for k, v := range r.props {
		out.Properties[k] = v
	}
	return out
}

// Seed creates records of object with the given properties, unvalidated,
// stamped with the clock, and returns their ids. Properties the object does
// not have are defined as text properties.
func (s *Server) Seed(object string, records ...map[string]string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.store(object)
	ids := make([]string, len(records))
	for i, p := range records {
		for k := range p {
			if st.prop(k) == nil {
				st.props = append(st.props, &Property{Name: k, Label: k, Type: "string", FieldType: "text", GroupName: "info"})
			}
		}
		ids[i] = s.newRec(object, p).id
	}
	return ids
}

// SeedContacts creates n contacts with distinct emails
// (contactN@example.com) and names, and returns their ids.
func (s *Server) SeedContacts(n int) []string {
	recs := make([]map[string]string, n)
	s.mu.Lock()
	base := s.nextID
	s.mu.Unlock()
	for i := range recs {
		k := strconv.FormatInt(base+int64(i)+1, 10)
		recs[i] = map[string]string{"email": "contact" + k + "@example.com", "firstname": "First" + k, "lastname": "Last" + k}
	}
	return s.Seed("contacts", recs...)
}

// Edit changes a record's properties as a user would in HubSpot's UI,
// bumping its modification stamp; "" clears a property. It reports an error
// if the record does not exist.
func (s *Server) Edit(object, id string, props map[string]string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.store(object)
	r := st.recs[id]
	if r == nil {
		return fmt.Errorf("hubspottest: edit %s %s: no such record", object, id)
	}
	st.set(r, props)
	s.touch(object, r, s.now())
	return nil
}

// Archive archives a record as a user would, stamping archivedAt.
func (s *Server) Archive(object, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.store(object).recs[id]
	if r == nil {
		return fmt.Errorf("hubspottest: archive %s %s: no such record", object, id)
	}
	s.archive(r)
	return nil
}

func (s *Server) archive(r *rec) {
	if !r.archived {
		r.archived = true
		r.archivedAt = s.now()
	}
}

// Restore brings an archived record back, bumping its modification stamp.
func (s *Server) Restore(object, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.store(object).recs[id]
	if r == nil {
		return fmt.Errorf("hubspottest: restore %s %s: no such record", object, id)
	}
	r.archived, r.archivedAt = false, time.Time{}
	s.touch(object, r, s.now())
	return nil
}

// Get returns a copy of a record, archived or not.
func (s *Server) Get(object, id string) (Record, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.store(object).recs[id]
	if r == nil {
		return Record{}, false
	}
	return r.export(), true
}

// All returns copies of every record of object, archived included, by id.
func (s *Server) All(object string) []Record {
	s.mu.Lock()
	defer s.mu.Unlock()
	recs := s.store(object).order
	out := make([]Record, len(recs))
	for i, r := range recs {
		out[i] = r.export()
	}
	return out
}

// findBy returns the live record whose property holds value (emails and
// unique values compare case-insensitively), the oldest if several do;
// s.mu is held.
func (s *Server) findBy(object, prop, value string) *rec {
	st := s.store(object)
	if prop == "" || prop == "hs_object_id" {
		if r := st.recs[value]; r != nil && !r.archived {
			return r
		}
		return nil
	}
	if value == "" {
		return nil
	}
	var found *rec
	for _, r := range st.index(prop)[foldKey(value)] {
		if !r.archived && (found == nil || r.num < found.num) {
			found = r
		}
	}
	return found
}

// uniqueProps are the object's unique properties, email first for contacts.
func (st *objectStore) uniqueProps(object string) []string {
	var out []string
	if isContacts(object) {
		out = append(out, "email")
	}
	for _, p := range st.props {
		if p.Unique && p.Name != "email" {
			out = append(out, p.Name)
		}
	}
	return out
}

// json renders a record with the selected properties (nil means the
// defaults); selected but unset properties are null, as HubSpot's search
// and read endpoints return them.
func (r *rec) json(st *objectStore, object string, selected []string, nulls bool) map[string]any {
	if selected == nil {
		selected = defaultReturned(object)
	}
	props := map[string]any{}
	for _, name := range selected {
		if st.prop(name) == nil {
			continue // unknown (or deleted) properties are left out
		}
		if v, ok := r.props[name]; ok {
			props[name] = v
		} else if nulls {
			props[name] = nil
		}
	}
	out := map[string]any{
		"id":         r.id,
		"properties": props,
		"createdAt":  stamp(r.created),
		"updatedAt":  stamp(r.updated),
		"archived":   r.archived,
	}
	if r.archived {
		out["archivedAt"] = stamp(r.archivedAt)
	}
	return out
}

func (p *Property) json() map[string]any {
	opts := make([]map[string]any, len(p.Options))
	for i, o := range p.Options {
		opts[i] = map[string]any{"label": o, "value": o, "hidden": false, "displayOrder": i}
	}
	return map[string]any{
		"name":            p.Name,
		"label":           p.Label,
		"type":            p.Type,
		"fieldType":       p.FieldType,
		"groupName":       p.GroupName,
		"description":     p.Description,
		"options":         opts,
		"hasUniqueValue":  p.Unique,
		"hidden":          false,
		"calculated":      false,
		"externalOptions": false,
		"formField":       !p.ReadOnly,
		"hubspotDefined":  p.HubspotDefined,
		"archived":        false,
		"displayOrder":    -1,
		"modificationMetadata": map[string]any{
			"archivable":         !p.HubspotDefined,
			"readOnlyDefinition": p.HubspotDefined,
			"readOnlyValue":      p.ReadOnly,
		},
	}
}
