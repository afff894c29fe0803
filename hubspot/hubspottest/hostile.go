package hubspottest

import (
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"
)

// version is a record's state as the search index will hold it from at on.
type version struct {
	props    map[string]string
	updated  time.Time
	at       time.Time
	archived bool
}

// indexVersion queues r's current state for the search index, visible
// after a random lag; without lag search reads r itself. s.mu is held.
func (s *Server) indexVersion(r *rec) {
	if s.cfg.SearchLagMax <= 0 {
		return
	}
	lag := s.cfg.SearchLagMin
	if d := s.cfg.SearchLagMax - s.cfg.SearchLagMin; d > 0 {
		lag += time.Duration(s.rnd.Int64N(int64(d) + 1))
	}
	r.versions = append(r.versions, version{props: maps.Clone(r.props), updated: r.updated, archived: r.archived,
		at: s.cfg.Now().UTC().Add(lag)})
}

// searchView returns r as search sees it now: the latest indexed state, or
// nil while nothing of it is indexed. s.mu is held.
func (s *Server) searchView(r *rec) *rec {
	if s.cfg.SearchLagMax <= 0 || len(r.versions) == 0 {
		return r
	}
	now := s.cfg.Now().UTC()
	for i := len(r.versions) - 1; i >= 0; i-- {
		v := r.versions[i]
		if v.at.After(now) {
			continue
		}
		r.versions = r.versions[i:] // older states are superseded
		view := *r
		view.props, view.updated, view.archived, view.versions = v.props, v.updated, v.archived || r.archived, nil
		return &view
	}
	return nil
}

// SettleSearch makes every write visible to search at once, as after a
// long pause. What search then lists is indexed: a later write leaves it
// listed, stale, until the write's own lag has passed (a record does not
// leave search while an edit waits for the index).
func (s *Server) SettleSearch() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, st := range s.objects {
		for _, r := range st.order {
			r.versions = nil
			if s.cfg.SearchLagMax > 0 {
				// The current state is indexed: a later write is stale in
				// search until its own lag passes, the record still listed.
				r.versions = []version{{props: maps.Clone(r.props), updated: r.updated, archived: r.archived}}
			}
		}
	}
}

// refuseBatch draws whether a multi-input batch write is refused whole,
// and with which status (0: not refused). s.mu is held.
func (s *Server) refuseBatch(inputs int) int {
	if inputs < 2 || s.cfg.RefuseBatchRate <= 0 || s.rnd.Float64() >= s.cfg.RefuseBatchRate {
		return 0
	}
	return []int{http.StatusBadRequest, http.StatusConflict, http.StatusRequestEntityTooLarge}[s.rnd.IntN(3)]
}

// DeleteProperty removes a property from object's schema, as an admin
// deleting it (or field-level security hiding it) would: reads leave it
// out and writes naming it fail with PROPERTY_DOESNT_EXIST. Its values are
// kept for RestoreProperty. It reports an error if there is no such
// property.
func (s *Server) DeleteProperty(object, name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.store(object)
	i := slices.IndexFunc(st.props, func(p *Property) bool { return p.Name == name })
	if i < 0 {
		return fmt.Errorf("hubspottest: delete property %s %s: no such property", object, name)
	}
	st.hidden[name] = st.props[i]
	st.props = slices.Delete(st.props, i, i+1)
	return nil
}

// RestoreProperty puts back a property DeleteProperty removed, with its
// values.
func (s *Server) RestoreProperty(object, name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.store(object)
	p := st.hidden[name]
	if p == nil {
		return fmt.Errorf("hubspottest: restore property %s %s: not deleted", object, name)
	}
	delete(st.hidden, name)
	st.props = append(st.props, p)
	return nil
}

// resolve follows merges from id to the record it lives on now, if any;
// s.mu is held.
func (st *objectStore) resolve(id string) *rec {
	for n := 0; n < 1000; n++ {
		if r := st.recs[id]; r != nil {
			return r
		}
		next, ok := st.merged[id]
		if !ok {
			return nil
		}
		id = next
	}
	return nil
}

// Merge merges record other into primary as HubSpot now does for contacts
// and companies: a new record with a new id takes the primary's values,
// the other's where the primary's are blank, and hs_merged_object_ids
// "primary;other" (plus the ids merged into either before). Both old ids
// leave search, lists (archived lists included) and batch calls, where they
// fail as not found; a single GET by either returns the new record, with
// its new id. It returns the new id.
func (s *Server) Merge(object, primary, other string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, err := s.merge(object, primary, other)
	if err != nil {
		return "", err
	}
	return r.id, nil
}

func (s *Server) merge(object, primary, other string) (*rec, error) {
	st := s.store(object)
	a, b := st.recs[primary], st.recs[other]
	if a == nil || b == nil || a.archived || b.archived {
		return nil, fmt.Errorf("hubspottest: merge %s %s into %s: no such live records", object, other, primary)
	}
	if a == b {
		return nil, errors.New("hubspottest: merge: a record cannot merge with itself")
	}
	props := maps.Clone(b.props)
	maps.Copy(props, a.props)
	var ids []string
	for _, x := range []*rec{a, b} {
		if prev := x.props["hs_merged_object_ids"]; prev != "" {
			ids = append(ids, strings.Split(prev, ";")...)
		}
	}
	ids = append(ids, a.id, b.id)
	for _, k := range []string{"hs_object_id", "createdate", modProp(object)} {
		delete(props, k)
	}
	for _, x := range []*rec{a, b} {
		for name := range maps.Clone(x.props) {
			st.put(x, name, "") // leave every index
		}
		delete(st.recs, x.id)
		st.order = slices.DeleteFunc(st.order, func(y *rec) bool { return y == x })
	}
	props["hs_merged_object_ids"] = strings.Join(ids, ";")
	delete(props, "associatedcompanyid") // follows the associations below
	n := s.newRec(object, props)
	st.merged[a.id], st.merged[b.id] = n.id, n.id
	s.moveAssociations(object, []string{a.id, b.id}, n.id)
	return n, nil
}

func (s *Server) serveMerge(w http.ResponseWriter, r *http.Request, object string) {
	var req struct {
		PrimaryObjectID string `json:"primaryObjectId"`
		ObjectIDToMerge string `json:"objectIdToMerge"`
	}
	if _, ok := readBody(w, r, &req); !ok {
		return
	}
	if req.PrimaryObjectID == "" || req.ObjectIDToMerge == "" {
		writeError(w, http.StatusBadRequest, "VALIDATION_ERROR", "primaryObjectId and objectIdToMerge are required")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	n, err := s.merge(object, req.PrimaryObjectID, req.ObjectIDToMerge)
	if err != nil {
		writeError(w, http.StatusNotFound, "OBJECT_NOT_FOUND", "resource not found")
		return
	}
	writeJSON(w, http.StatusOK, n.json(s.store(object), object, nil, false))
}
