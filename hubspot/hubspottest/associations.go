package hubspottest

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
)

// Association categories, as the v4 API names them.
const (
	HubSpotDefined = "HUBSPOT_DEFINED"
	UserDefined    = "USER_DEFINED"
)

// HubSpot-defined association type ids. They depend on direction: the
// contact → company primary is 1, its inverse (company → contact) is 2.
const (
	ContactToCompany        = 279
	CompanyToContact        = 280
	ContactToCompanyPrimary = 1
	CompanyToContactPrimary = 2
	DealToCompany           = 341
	CompanyToDeal           = 342
	DealToCompanyPrimary    = 5
	CompanyToDealPrimary    = 6
	DealToContact           = 3
	ContactToDeal           = 4
)

// Limits of the associations v4 batch endpoints.
const (
	// AssociationReadBatch is the most inputs of one batch read.
	AssociationReadBatch = 1000
	// AssociationWriteBatch is the most inputs of one batch create or
	// archive.
	AssociationWriteBatch = 2000
)

// AssociationType is one type of an association: its category and type id,
// and the label HubSpot reports ("" for an unlabeled type).
type AssociationType struct {
	Category string
	TypeID   int
	Label    string
}

// Association is one associated record and the types that link it.
type Association struct {
	ToID  string
	Types []AssociationType
}

// Graph holds the ids SeedGraph made.
type Graph struct {
	Companies, Contacts, Deals []string
}

type assocKey struct{ from, to string }

type typeSpec struct {
	from, to string
	id, inv  int
	label    string
	primary  bool // at most one per from record
}

var typeSpecs = []typeSpec{
	{"contacts", "companies", ContactToCompany, CompanyToContact, "", false},
	{"contacts", "companies", ContactToCompanyPrimary, CompanyToContactPrimary, "Primary", true},
	{"companies", "contacts", CompanyToContact, ContactToCompany, "", false},
	{"companies", "contacts", CompanyToContactPrimary, ContactToCompanyPrimary, "Contact with Primary Company", false},
	{"deals", "companies", DealToCompany, CompanyToDeal, "", false},
	{"deals", "companies", DealToCompanyPrimary, CompanyToDealPrimary, "Primary", true},
	{"companies", "deals", CompanyToDeal, DealToCompany, "", false},
	{"companies", "deals", CompanyToDealPrimary, DealToCompanyPrimary, "Deal with Primary Company", false},
	{"deals", "contacts", DealToContact, ContactToDeal, "", false},
	{"contacts", "deals", ContactToDeal, DealToContact, "", false},
}

func findSpec(from, to string, id int) *typeSpec {
	for i := range typeSpecs {
		if t := &typeSpecs[i]; t.from == from && t.to == to && t.id == id {
			return t
		}
	}
	return nil
}

// unlabeled returns the pair's unlabeled type id, or 0 when the fake knows
// no HubSpot-defined types between them.
func unlabeled(from, to string) int {
	for _, t := range typeSpecs {
		if t.from == from && t.to == to && t.label == "" {
			return t.id
		}
	}
	return 0
}

// canonical maps an object type as paths name it (singular, plural or
// type id) to the plural the fake stores it under.
func canonical(object string) string {
	switch object {
	case "contact", "contacts", "0-1":
		return "contacts"
	case "company", "companies", "0-2":
		return "companies"
	case "deal", "deals", "0-3":
		return "deals"
	}
	return object
}

func typeIDOf(object string) string {
	switch object {
	case "contacts":
		return "0-1"
	case "companies":
		return "0-2"
	case "deals":
		return "0-3"
	}
	return object
}

// edges returns the stored types from id to each record of key; s.mu is held.
func (s *Server) edges(k assocKey, id string) map[string][]AssociationType {
	if s.assoc == nil {
		s.assoc = map[assocKey]map[string]map[string][]AssociationType{}
	}
	m := s.assoc[k]
	if m == nil {
		m = map[string]map[string][]AssociationType{}
		s.assoc[k] = m
	}
	e := m[id]
	if e == nil {
		e = map[string][]AssociationType{}
		m[id] = e
	}
	return e
}

// peek returns the stored types from id to each record of key without
// creating anything (nil when none); s.mu is held.
func (s *Server) peek(k assocKey, id string) map[string][]AssociationType {
	return s.assoc[k][id]
}

func addType(list []AssociationType, t AssociationType) []AssociationType {
	for _, x := range list {
		if x.Category == t.Category && x.TypeID == t.TypeID {
			return list
		}
	}
	list = append(list, t)
	slices.SortFunc(list, func(a, b AssociationType) int {
		if a.Category != b.Category {
			if a.Category == HubSpotDefined {
				return -1
			}
			if b.Category == HubSpotDefined {
				return 1
			}
		}
		return a.TypeID - b.TypeID
	})
	return list
}

// link associates fromID with toID with t and its inverse, and the
// unlabeled type both ways; a primary type leaves the record's other
// associations of the pair unlabeled. s.mu is held.
func (s *Server) link(from, fromID, to, toID string, t AssociationType) {
	defer s.touchOnChange(from, fromID, to, toID)()
	if spec := findSpec(from, to, t.TypeID); t.Category == HubSpotDefined && spec != nil {
		if inv := findSpec(to, from, spec.inv); inv != nil && inv.primary {
			// Setting the inverse of a primary (company → primary
			// contact) sets the primary from the other side.
			s.link(to, toID, from, fromID, AssociationType{Category: HubSpotDefined, TypeID: inv.id, Label: inv.label})
			return
		}
		t.Label = spec.label
		if spec.primary {
			s.dropPrimary(from, fromID, to, spec, toID)
		}
		s.putType(assocKey{from, to}, fromID, toID, t)
		s.putType(assocKey{to, from}, toID, fromID, AssociationType{Category: HubSpotDefined, TypeID: spec.inv, Label: findSpec(to, from, spec.inv).label})
	} else {
		s.putType(assocKey{from, to}, fromID, toID, t)
	}
	if u := unlabeled(from, to); u != 0 {
		s.putType(assocKey{from, to}, fromID, toID, AssociationType{Category: HubSpotDefined, TypeID: u})
		s.putType(assocKey{to, from}, toID, fromID, AssociationType{Category: HubSpotDefined, TypeID: unlabeled(to, from)})
	}
	if from == "contacts" && to == "companies" || from == "companies" && to == "contacts" {
		s.syncPrimaryProp(from, fromID, to, toID)
	}
}

// touchOnChange returns a func that, with Config.AssociationsTouch, bumps
// both records' stamps if the associations between them changed since
// touchOnChange was called. s.mu is held.
func (s *Server) touchOnChange(from, fromID, to, toID string) func() {
	if !s.cfg.AssociationsTouch {
		return func() {}
	}
	before := fmt.Sprint(s.peek(assocKey{from, to}, fromID)[toID], s.peek(assocKey{to, from}, toID)[fromID])
	return func() {
		after := fmt.Sprint(s.peek(assocKey{from, to}, fromID)[toID], s.peek(assocKey{to, from}, toID)[fromID])
		if after == before {
			return
		}
		now := s.now()
		for _, x := range []struct{ object, id string }{{from, fromID}, {to, toID}} {
			if r := s.store(x.object).recs[x.id]; r != nil && r.updated.Before(now) {
				s.touch(x.object, r, now)
			}
		}
	}
}

func (s *Server) putType(k assocKey, fromID, toID string, t AssociationType) {
	e := s.edges(k, fromID)
	e[toID] = addType(e[toID], t)
}

// dropPrimary removes the primary type spec from fromID's associations
// other than keep, and its inverse. s.mu is held.
func (s *Server) dropPrimary(from, fromID, to string, spec *typeSpec, keep string) {
	e := s.edges(assocKey{from, to}, fromID)
	for other, types := range e {
		if other == keep {
			continue
		}
		e[other] = slices.DeleteFunc(types, func(t AssociationType) bool { return t.Category == HubSpotDefined && t.TypeID == spec.id })
		back := s.edges(assocKey{to, from}, other)
		back[fromID] = slices.DeleteFunc(back[fromID], func(t AssociationType) bool { return t.Category == HubSpotDefined && t.TypeID == spec.inv })
	}
}

// unlink removes every association between fromID and toID, both ways.
// s.mu is held.
func (s *Server) unlink(from, fromID, to, toID string) {
	defer s.touchOnChange(from, fromID, to, toID)()
	delete(s.peek(assocKey{from, to}, fromID), toID)
	delete(s.peek(assocKey{to, from}, toID), fromID)
	if from == "contacts" && to == "companies" || from == "companies" && to == "contacts" {
		s.syncPrimaryProp(from, fromID, to, toID)
	}
}

// syncPrimaryProp keeps the contact's associatedcompanyid (HubSpot's
// "Primary Associated Company ID") on its primary company: a change of
// primary changes the property and the contact's modification stamp.
func (s *Server) syncPrimaryProp(from, fromID, _, toID string) {
	contact := fromID
	if from == "companies" {
		contact = toID
	}
	r := s.store("contacts").recs[contact]
	if r == nil {
		return
	}
	primary := ""
	for id, types := range s.peek(assocKey{"contacts", "companies"}, contact) {
		if hasType(types, ContactToCompanyPrimary) {
			primary = id
		}
	}
	if r.props["associatedcompanyid"] != primary {
		st := s.store("contacts")
		st.put(r, "associatedcompanyid", primary)
		s.touch("contacts", r, s.now())
	}
}

func hasType(types []AssociationType, id int) bool {
	for _, t := range types {
		if t.Category == HubSpotDefined && t.TypeID == id {
			return true
		}
	}
	return false
}

// overCap reports that a new association from id to toID would take id
// past Config.AssociationCap records of object to; s.mu is held.
func (s *Server) overCap(from, id, to, toID string) bool {
	e := s.peek(assocKey{from, to}, id)
	if len(e[toID]) > 0 {
		return false // already associated: a new type, not a new record
	}
	n := 0
	for _, types := range e {
		if len(types) > 0 {
			n++
		}
	}
	return n >= s.cfg.AssociationCap
}

// live reports a live record of a canonical object; s.mu is held.
func (s *Server) live(object, id string) bool {
	r := s.store(object).recs[id]
	return r != nil && !r.archived
}

// visible returns id's associations to live records of to, by id; s.mu is
// held. Associations of an archived record are hidden, not dropped: they
// come back when it is restored.
func (s *Server) visible(from, id, to string) []Association {
	if !s.live(from, id) {
		return nil
	}
	var out []Association
	for toID, types := range s.peek(assocKey{from, to}, id) {
		if len(types) == 0 || !s.live(to, toID) {
			continue
		}
		out = append(out, Association{ToID: toID, Types: slices.Clone(types)})
	}
	slices.SortFunc(out, func(a, b Association) int { return cmpID(a.ToID, b.ToID) })
	return out
}

func cmpID(a, b string) int {
	x, _ := strconv.ParseInt(a, 10, 64)
	y, _ := strconv.ParseInt(b, 10, 64)
	return cmpInt(x, y)
}

// Associate associates two records as a user would, with the given types
// (none means the pair's unlabeled type) and their inverses; a primary
// type (ContactToCompanyPrimary, DealToCompanyPrimary) takes the primary
// from the record's other company. Object types may be singular, plural
// or type ids. It reports an error if either record is not live.
func (s *Server) Associate(from, fromID, to, toID string, types ...AssociationType) error {
	from, to = canonical(from), canonical(to)
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.live(from, fromID) || !s.live(to, toID) {
		return fmt.Errorf("hubspottest: associate %s %s with %s %s: no such live records", from, fromID, to, toID)
	}
	if len(types) == 0 {
		types = []AssociationType{{Category: HubSpotDefined, TypeID: unlabeled(from, to)}}
	}
	for _, t := range types {
		if t.Category == "" {
			t.Category = HubSpotDefined
		}
		s.link(from, fromID, to, toID, t)
	}
	return nil
}

// FailAssociations makes association creates from the given records fail
// with a per-input error of category (INTERNAL_ERROR, VALIDATION_ERROR, ...)
// until ClearFaults.
func (s *Server) FailAssociations(category string, fromIDs ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failAssoc == nil {
		s.failAssoc = map[string]string{}
	}
	for _, id := range fromIDs {
		s.failAssoc[id] = category
	}
}

// Dissociate removes every association between two records, both ways.
func (s *Server) Dissociate(from, fromID, to, toID string) {
	from, to = canonical(from), canonical(to)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.unlink(from, fromID, to, toID)
}

// Associations returns a record's associations to live records of object
// to, by id, as the v4 read endpoints report them (none for an archived
// record).
func (s *Server) Associations(from, fromID, to string) []Association {
	from, to = canonical(from), canonical(to)
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.visible(from, fromID, to)
}

// PrimaryCompany returns the id of a contact's or a deal's primary
// company, or "".
func (s *Server) PrimaryCompany(from, fromID string) string {
	from = canonical(from)
	primary := ContactToCompanyPrimary
	if from == "deals" {
		primary = DealToCompanyPrimary
	}
	for _, a := range s.Associations(from, fromID, "companies") {
		if hasType(a.Types, primary) {
			return a.ToID
		}
	}
	return ""
}

// SeedGraph creates companies companies, contacts contacts and deals deals:
// contact i has company i mod companies as its primary company, deal i has
// company i mod companies as its primary company and contact i mod
// contacts. Records get distinct names, emails and domains. A storm for
// benchmarks: SeedGraph(500, 10000, 0).
func (s *Server) SeedGraph(companies, contacts, deals int) Graph {
	var g Graph
	cs := make([]map[string]string, companies)
	for i := range cs {
		k := strconv.Itoa(i + 1)
		cs[i] = map[string]string{"name": "Company " + k, "domain": "company" + k + ".example.com"}
	}
	g.Companies = s.Seed("companies", cs...)
	g.Contacts = s.SeedContacts(contacts)
	ds := make([]map[string]string, deals)
	for i := range ds {
		ds[i] = map[string]string{"dealname": "Deal " + strconv.Itoa(i+1), "dealstage": "appointmentscheduled", "pipeline": "default", "amount": strconv.Itoa(1000 * (i%9 + 1))}
	}
	g.Deals = s.Seed("deals", ds...)
	s.mu.Lock()
	defer s.mu.Unlock()
	primary := AssociationType{Category: HubSpotDefined, TypeID: ContactToCompanyPrimary}
	for i, id := range g.Contacts {
		if companies > 0 {
			s.link("contacts", id, "companies", g.Companies[i%companies], primary)
		}
	}
	for i, id := range g.Deals {
		if companies > 0 {
			s.link("deals", id, "companies", g.Companies[i%companies], AssociationType{Category: HubSpotDefined, TypeID: DealToCompanyPrimary})
		}
		if contacts > 0 {
			s.link("deals", id, "contacts", g.Contacts[i%contacts], AssociationType{Category: HubSpotDefined, TypeID: DealToContact})
		}
	}
	return g
}

// moveAssociations gives record n every association of the merged records
// olds (the primary first), both ways; the primary's primary company wins.
// s.mu is held.
func (s *Server) moveAssociations(object string, olds []string, n string) {
	object = canonical(object)
	for k, m := range s.assoc {
		if k.from != object {
			continue
		}
		// The other merged record first, so that the primary's types
		// (a primary company) are linked last and win.
		for i := len(olds) - 1; i >= 0; i-- {
			old := olds[i]
			for toID, types := range m[old] {
				s.unlink(k.from, old, k.to, toID)
				for _, t := range types {
					s.link(k.from, n, k.to, toID, t)
				}
			}
			delete(m, old)
		}
	}
}

// assocPath returns the endpoint and object pair of an associations v4
// batch path: crm/v4/associations/{from}/{to}/batch/{op}.
func assocRoute(parts []string, method string) (route, bool) {
	if len(parts) != 7 || parts[0] != "crm" || parts[1] != "v4" || parts[2] != "associations" || parts[5] != "batch" || method != http.MethodPost {
		return route{}, false
	}
	switch parts[6] {
	case "read", "create", "archive":
		return route{endpoint: "associations/batch/" + parts[6], object: canonical(parts[3]), id: canonical(parts[4])}, true
	}
	return route{}, false
}

type assocInput struct {
	ID    string `json:"id"`
	After string `json:"after"`
	From  struct {
		ID json.Number `json:"id"`
	} `json:"from"`
	To    any `json:"to"`
	Types []struct {
		AssociationCategory string `json:"associationCategory"`
		AssociationTypeID   int    `json:"associationTypeId"`
	} `json:"types"`
}

// idOf reads an id sent as a string or a number ({"id": "12"} or {"id": 12}).
func idOf(v any) string {
	m, ok := v.(map[string]any)
	if !ok {
		return ""
	}
	switch id := m["id"].(type) {
	case string:
		return id
	case float64:
		return strconv.FormatFloat(id, 'f', -1, 64)
	}
	return ""
}

func assocBatchOK(w http.ResponseWriter, n, limit int) bool {
	if n > limit {
		writeError(w, http.StatusBadRequest, "VALIDATION_ERROR", fmt.Sprintf("Batch input size exceeds limit of %d", limit))
		return false
	}
	if n == 0 {
		writeError(w, http.StatusBadRequest, "VALIDATION_ERROR", "inputs must not be empty")
		return false
	}
	return true
}

// readAssocInputs reads the inputs of an associations batch call between
// from and to, of at most limit; on a refusal it has answered and reports
// false.
func readAssocInputs(w http.ResponseWriter, r *http.Request, from, to string, limit int) ([]assocInput, bool) {
	var req struct {
		Inputs []assocInput `json:"inputs"`
	}
	if _, ok := readBody(w, r, &req); !ok || !assocBatchOK(w, len(req.Inputs), limit) {
		return nil, false
	}
	if !knownObject(from) || !knownObject(to) {
		writeError(w, http.StatusBadRequest, "VALIDATION_ERROR", "Unable to infer object type from: "+from+", "+to)
		return nil, false
	}
	return req.Inputs, true
}

// writeAssocBatch answers an associations batch call: status when every
// input succeeded, 207 Multi-Status when some failed.
func (s *Server) writeAssocBatch(w http.ResponseWriter, status int, results, errs []map[string]any) {
	started := s.now()
	if len(errs) > 0 {
		status = http.StatusMultiStatus
	}
	writeJSON(w, status, batchBody(results, errs, started))
}

func knownObject(object string) bool {
	return object == "contacts" || object == "companies" || object == "deals"
}

func assocErr(category, subCategory, message string, context map[string][]string) map[string]any {
	return map[string]any{"status": "error", "category": category, "subCategory": subCategory, "message": message,
		"context": context, "errors": []any{}, "links": map[string]string{}}
}

// serveAssocRead is POST /crm/v4/associations/{from}/{to}/batch/read: up to
// 1,000 ids, each with its associated records (a page of
// Config.AssociationPage per id, continued with the id and paging.next.after).
// An id with no association (or no live record) gets a 207 error,
// OBJECT_NOT_FOUND, subcategory crm.associations.NO_ASSOCIATIONS_FOUND.
// toObjectId is a string, as the 2026 spec types it (the guide's examples
// show a number; clients should take both).
func (s *Server) serveAssocRead(w http.ResponseWriter, r *http.Request, from, to string) {
	inputs, ok := readAssocInputs(w, r, from, to, AssociationReadBatch)
	if !ok {
		return
	}
	page := s.cfg.AssociationPage
	s.mu.Lock()
	defer s.mu.Unlock()
	var results, errs []map[string]any
	for _, in := range inputs {
		all := s.visible(from, in.ID, to)
		start := 0
		if in.After != "" {
			b, err := base64.RawURLEncoding.DecodeString(in.After)
			n, err2 := strconv.Atoi(string(b))
			if err != nil || err2 != nil || n < 0 {
				writeError(w, http.StatusBadRequest, "VALIDATION_ERROR", "after is not a valid paging cursor")
				return
			}
			start = min(n, len(all))
		}
		if len(all[start:]) == 0 {
			errs = append(errs, assocErr("OBJECT_NOT_FOUND", "crm.associations.NO_ASSOCIATIONS_FOUND",
				fmt.Sprintf("No %s is associated with %s %s.", to, from, in.ID), map[string][]string{"fromObjectId": {in.ID}}))
			continue
		}
		end := min(start+page, len(all))
		tos := make([]map[string]any, 0, end-start)
		for _, a := range all[start:end] {
			types := make([]map[string]any, len(a.Types))
			for i, t := range a.Types {
				var label any
				if t.Label != "" {
					label = t.Label
				}
				types[i] = map[string]any{"category": t.Category, "typeId": t.TypeID, "label": label}
			}
			tos = append(tos, map[string]any{"toObjectId": a.ToID, "associationTypes": types})
		}
		res := map[string]any{"from": map[string]string{"id": in.ID}, "to": tos}
		if end < len(all) {
			next := base64.RawURLEncoding.EncodeToString([]byte(strconv.Itoa(end)))
			res["paging"] = map[string]any{"next": map[string]string{"after": next, "link": "?after=" + next}}
		}
		results = append(results, res)
	}
	s.writeAssocBatch(w, http.StatusOK, results, errs)
}

// serveAssocCreate is POST /crm/v4/associations/{from}/{to}/batch/create:
// up to 2,000 pairs, each with its types; 201, or 207 with a
// VALIDATION_ERROR per pair whose records are not live, whose types the
// pair does not have, or that would take a record past
// Config.AssociationCap (context fromObjectId and toObjectId).
func (s *Server) serveAssocCreate(w http.ResponseWriter, r *http.Request, from, to string) {
	inputs, ok := readAssocInputs(w, r, from, to, AssociationWriteBatch)
	if !ok {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var results, errs []map[string]any
	for _, in := range inputs {
		toID, fromID := idOf(in.To), in.From.ID.String()
		ctx := map[string][]string{"fromObjectId": {fromID}, "toObjectId": {toID}}
		if fromID == "" || toID == "" || len(in.Types) == 0 {
			writeError(w, http.StatusBadRequest, "VALIDATION_ERROR", "each input needs from.id, to.id and types")
			return
		}
		if cat, ok := s.failAssoc[fromID]; ok {
			errs = append(errs, assocErr(cat, "", "injected association failure", ctx))
			continue
		}
		if !s.live(from, fromID) || !s.live(to, toID) {
			errs = append(errs, assocErr("VALIDATION_ERROR", "crm.associations.INVALID_OBJECT_IDS",
				fmt.Sprintf("One or more of the ids are invalid: %s %s, %s %s", from, fromID, to, toID), ctx))
			continue
		}
		var bad bool
		for _, t := range in.Types {
			switch t.AssociationCategory {
			case HubSpotDefined:
				bad = bad || findSpec(from, to, t.AssociationTypeID) == nil
			case UserDefined, "INTEGRATOR_DEFINED":
				bad = bad || t.AssociationTypeID < 1
			default:
				bad = true
			}
		}
		if bad {
			errs = append(errs, assocErr("VALIDATION_ERROR", "crm.associations.INVALID_ASSOCIATION_TYPE",
				fmt.Sprintf("Invalid association type between %s and %s", from, to), ctx))
			continue
		}
		if s.overCap(from, fromID, to, toID) || s.overCap(to, toID, from, fromID) {
			errs = append(errs, assocErr("VALIDATION_ERROR", "crm.associations.TOO_MANY_ASSOCIATIONS",
				fmt.Sprintf("A record would exceed its limit of %d %s associations", s.cfg.AssociationCap, to), ctx))
			continue
		}
		for _, t := range in.Types {
			s.link(from, fromID, to, toID, AssociationType{Category: t.AssociationCategory, TypeID: t.AssociationTypeID})
		}
		var labels []string
		for _, t := range s.peek(assocKey{from, to}, fromID)[toID] {
			if t.Label != "" {
				labels = append(labels, t.Label)
			}
		}
		results = append(results, map[string]any{"fromObjectTypeId": typeIDOf(from), "fromObjectId": fromID,
			"toObjectTypeId": typeIDOf(to), "toObjectId": toID, "labels": append([]string{}, labels...)})
	}
	s.writeAssocBatch(w, http.StatusCreated, results, errs)
}

// serveAssocArchive is POST /crm/v4/associations/{from}/{to}/batch/archive:
// up to 2,000 inputs, each removing every association between its from
// record and its to records; 204, ids with nothing to remove included.
func (s *Server) serveAssocArchive(w http.ResponseWriter, r *http.Request, from, to string) {
	inputs, ok := readAssocInputs(w, r, from, to, AssociationWriteBatch)
	if !ok {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, in := range inputs {
		list, ok := in.To.([]any)
		fromID := in.From.ID.String()
		if !ok || fromID == "" {
			writeError(w, http.StatusBadRequest, "VALIDATION_ERROR", "each input needs from.id and a list of to ids")
			return
		}
		for _, x := range list {
			if id := idOf(x); id != "" {
				s.unlink(from, fromID, to, id)
			}
		}
	}
	w.WriteHeader(http.StatusNoContent)
}
