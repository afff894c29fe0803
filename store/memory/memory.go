// Package memory is an in-process [crmsync.Store] for tests and short-lived
// programs. Nothing survives the process: a crash loses every run, so use
// it where a resumed run does not matter, and store/sqlite or
// store/postgres elsewhere.
//
// [New] returns an empty Store, safe for concurrent use, that needs no
// closing. It passes the same conformance suite as the other backends
// (store/storetest).
package memory

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/crmsync/crmsync"
)

// Store is an in-memory crmsync.Store. The zero value is not usable; call New.
type Store struct {
	mu      sync.Mutex
	runs    map[crmsync.RunID]*crmsync.RunInfo
	open    map[string]crmsync.RunID // key -> open run
	leases  map[string]crmsync.Lease
	steps   map[crmsync.RunID]map[string]crmsync.StepRecord
	cursors map[string]map[string]string
	ledger  map[string]crmsync.LedgerEntry
	audit   []crmsync.AuditEntry
	dead    []crmsync.DeadLetter
	seq     int64 // run creation order
	order   map[crmsync.RunID]int64

	linksA        map[string]crmsync.Link // key\x00aid -> link
	linksB        map[string]string       // key\x00bid -> aid
	conflicts     map[string]crmsync.Conflict
	conflictOrder []string

	triggers   map[string]*crmsync.PendingTrigger // key\x00system -> pending
	triggerSeq int64
	positions  map[string][]byte
}

var (
	_ crmsync.Store      = (*Store)(nil)
	_ crmsync.RunStarter = (*Store)(nil)
	_ crmsync.RunEnder   = (*Store)(nil)

	_ crmsync.TriggerStore  = (*Store)(nil)
	_ crmsync.PositionStore = (*Store)(nil)
)

// New returns an empty Store.
func New() *Store {
	return &Store{
		runs:    map[crmsync.RunID]*crmsync.RunInfo{},
		open:    map[string]crmsync.RunID{},
		leases:  map[string]crmsync.Lease{},
		steps:   map[crmsync.RunID]map[string]crmsync.StepRecord{},
		cursors: map[string]map[string]string{},
		ledger:  map[string]crmsync.LedgerEntry{},
		order:   map[crmsync.RunID]int64{},

		linksA:    map[string]crmsync.Link{},
		linksB:    map[string]string{},
		conflicts: map[string]crmsync.Conflict{},

		triggers:  map[string]*crmsync.PendingTrigger{},
		positions: map[string][]byte{},
	}
}

// AcquireLease implements crmsync.RunStore.
func (s *Store) AcquireLease(_ context.Context, req crmsync.LeaseRequest) (crmsync.Lease, crmsync.RunInfo, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.acquireLease(req)
}

// acquireLease is AcquireLease with s.mu held.
func (s *Store) acquireLease(req crmsync.LeaseRequest) (crmsync.Lease, crmsync.RunInfo, error) {
	if req.Key == "" || req.Holder == "" || req.NewRun == "" || req.TTL <= 0 {
		return crmsync.Lease{}, crmsync.RunInfo{}, fmt.Errorf("memory: acquire lease: key, holder, new run id and a positive TTL are required")
	}
	cur, held := s.leases[req.Key]
	if held && cur.Run != "" && cur.Expires.After(req.Now) {
		return crmsync.Lease{}, crmsync.RunInfo{}, fmt.Errorf("memory: key %s held by %s until %s: %w", req.Key, cur.Holder, cur.Expires.Format(time.RFC3339), crmsync.ErrBusy)
	}
	id, ok := s.open[req.Key]
	if !ok {
		id = req.NewRun
		if _, dup := s.runs[id]; dup {
			return crmsync.Lease{}, crmsync.RunInfo{}, fmt.Errorf("memory: run %s already exists", id)
		}
		s.seq++
		s.order[id] = s.seq
		s.runs[id] = &crmsync.RunInfo{ID: id, Key: req.Key, Workflow: req.Workflow, Status: crmsync.RunOpen, StartedAt: req.Now}
		s.open[req.Key] = id
	}
	ri := s.runs[id]
	ri.Attempts++
	l := crmsync.Lease{Key: req.Key, Holder: req.Holder, Generation: cur.Generation + 1, Run: id, Expires: req.Now.Add(req.TTL)}
	s.leases[req.Key] = l
	return l, *ri, nil
}

func (s *Store) current(l crmsync.Lease) error {
	cur, ok := s.leases[l.Key]
	if !ok || cur.Generation != l.Generation || cur.Run == "" {
		return fmt.Errorf("memory: key %s generation %d: %w", l.Key, l.Generation, crmsync.ErrLeaseLost)
	}
	return nil
}

// RenewLease implements crmsync.RunStore.
func (s *Store) RenewLease(_ context.Context, l crmsync.Lease, ttl time.Duration, now time.Time) (crmsync.Lease, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.current(l); err != nil {
		return crmsync.Lease{}, err
	}
	l.Expires = now.Add(ttl)
	s.leases[l.Key] = l
	return l, nil
}

// ReleaseLease implements crmsync.RunStore.
func (s *Store) ReleaseLease(_ context.Context, l crmsync.Lease) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.releaseLease(l)
}

// releaseLease is ReleaseLease with s.mu held.
func (s *Store) releaseLease(l crmsync.Lease) error {
	if err := s.current(l); err != nil {
		return err
	}
	// Keep the generation so that fencing survives the release.
	s.leases[l.Key] = crmsync.Lease{Key: l.Key, Generation: l.Generation}
	return nil
}

// GetLease implements crmsync.RunStore.
func (s *Store) GetLease(_ context.Context, key string) (crmsync.Lease, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	l, ok := s.leases[key]
	if !ok {
		return crmsync.Lease{}, fmt.Errorf("memory: lease %s: %w", key, crmsync.ErrNotFound)
	}
	return l, nil
}

// FinishRun implements crmsync.RunStore.
func (s *Store) FinishRun(_ context.Context, l crmsync.Lease, status crmsync.RunStatus, report json.RawMessage, errMsg string, now time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.finishRun(l, status, report, errMsg, now)
}

// finishRun is FinishRun with s.mu held.
func (s *Store) finishRun(l crmsync.Lease, status crmsync.RunStatus, report json.RawMessage, errMsg string, now time.Time) error {
	if err := s.current(l); err != nil {
		return err
	}
	ri, ok := s.runs[l.Run]
	if !ok {
		return fmt.Errorf("memory: run %s: %w", l.Run, crmsync.ErrNotFound)
	}
	if status != crmsync.RunOpen && !status.Closed() {
		return fmt.Errorf("memory: finish run %s: unknown status %q", l.Run, status)
	}
	ri.Status, ri.Report, ri.Error = status, slices.Clone(report), errMsg
	if status.Closed() {
		ri.FinishedAt = now
		delete(s.open, l.Key)
	}
	return nil
}

// GetRun implements crmsync.RunStore.
func (s *Store) GetRun(_ context.Context, id crmsync.RunID) (crmsync.RunInfo, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.getRun(id)
}

// getRun is GetRun with s.mu held.
func (s *Store) getRun(id crmsync.RunID) (crmsync.RunInfo, error) {
	ri, ok := s.runs[id]
	if !ok {
		return crmsync.RunInfo{}, fmt.Errorf("memory: run %s: %w", id, crmsync.ErrNotFound)
	}
	return *ri, nil
}

// ListRuns implements crmsync.RunStore.
func (s *Store) ListRuns(_ context.Context, key string, limit int) ([]crmsync.RunInfo, error) {
	if limit <= 0 {
		limit = 100
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []crmsync.RunInfo
	for _, ri := range s.runs {
		if key == "" || ri.Key == key {
			out = append(out, *ri)
		}
	}
	sort.Slice(out, func(i, j int) bool { return s.order[out[i].ID] > s.order[out[j].ID] })
	if len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

// PruneRuns implements crmsync.RunStore.
func (s *Store) PruneRuns(_ context.Context, before time.Time) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pruneRuns(before)
}

// pruneRuns is PruneRuns with s.mu held.
func (s *Store) pruneRuns(before time.Time) (int, error) {
	n := 0
	for id, ri := range s.runs {
		if ri.Status.Closed() && ri.FinishedAt.Before(before) {
			if _, ok := s.steps[id]; ok {
				delete(s.steps, id)
				n++
			}
		}
	}
	return n, nil
}

// LoadSteps implements crmsync.StepStore.
func (s *Store) LoadSteps(_ context.Context, run crmsync.RunID) (map[string]crmsync.StepRecord, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.loadSteps(run)
}

// loadSteps is LoadSteps with s.mu held.
func (s *Store) loadSteps(run crmsync.RunID) (map[string]crmsync.StepRecord, error) {
	out := make(map[string]crmsync.StepRecord, len(s.steps[run]))
	for k, v := range s.steps[run] {
		out[k] = v
	}
	return out, nil
}

// Commit implements crmsync.StepStore.
func (s *Store) Commit(_ context.Context, l crmsync.Lease, cp crmsync.Checkpoint) error {
	if cp.Step.Step == "" {
		return fmt.Errorf("memory: commit run %s: empty step id", cp.Run)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.current(l); err != nil {
		return err
	}
	if l.Run != cp.Run {
		return fmt.Errorf("memory: commit run %s under lease of run %s: %w", cp.Run, l.Run, crmsync.ErrLeaseLost)
	}
	steps := s.steps[cp.Run]
	if steps == nil {
		steps = map[string]crmsync.StepRecord{}
		s.steps[cp.Run] = steps
	}
	if _, done := steps[cp.Step.Step]; done {
		return nil
	}
	rec := cp.Step
	rec.Result = slices.Clone(rec.Result)
	steps[rec.Step] = rec
	if len(cp.Cursors) > 0 && s.cursors[l.Key] == nil {
		s.cursors[l.Key] = map[string]string{}
	}
	for k, v := range cp.Cursors {
		s.cursors[l.Key][k] = v
	}
	for _, e := range cp.Ledger {
		if _, ok := s.ledger[e.IdemKey]; !ok {
			e.Result = slices.Clone(e.Result)
			s.ledger[e.IdemKey] = e
		}
	}
	s.appendAudit(cp.Audit)
	for _, d := range cp.DeadLetters {
		d.Payload = slices.Clone(d.Payload)
		if d.ID > 0 && d.ID <= int64(len(s.dead)) {
			cur := &s.dead[d.ID-1]
			if cur.ClaimedBy == cp.Run && (cur.Status == crmsync.DeadReplayed || cur.Status == crmsync.DeadFailedAgain) {
				cur.Status, cur.Error, cur.Payload, cur.Updated = d.Status, d.Error, d.Payload, d.Updated
				continue
			}
		}
		d.ID, d.Status, d.ClaimedBy = int64(len(s.dead)+1), crmsync.DeadParked, ""
		s.dead = append(s.dead, d)
	}
	s.putLinks(cp.Links)
	s.saveConflicts(cp.Conflicts)
	return nil
}

// GetCursor implements crmsync.CursorStore.
func (s *Store) GetCursor(_ context.Context, key, name string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.cursors[key][name]
	if !ok {
		return "", fmt.Errorf("memory: cursor %s/%s: %w", key, name, crmsync.ErrNotFound)
	}
	return v, nil
}

// ListCursors implements crmsync.CursorStore.
func (s *Store) ListCursors(_ context.Context, key string) (map[string]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]string{}
	for k, v := range s.cursors[key] {
		out[k] = v
	}
	return out, nil
}

// LookupWrites implements crmsync.LedgerStore.
func (s *Store) LookupWrites(_ context.Context, keys []string) (map[string]crmsync.LedgerEntry, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]crmsync.LedgerEntry{}
	for _, k := range keys {
		if e, ok := s.ledger[k]; ok {
			out[k] = e
		}
	}
	return out, nil
}

func (s *Store) appendAudit(rows []crmsync.AuditEntry) {
	for _, r := range rows {
		r.ID = int64(len(s.audit) + 1)
		r.RecordIDs = slices.Clone(r.RecordIDs)
		r.Detail = slices.Clone(r.Detail)
		s.audit = append(s.audit, r)
	}
}

// AppendAudit implements crmsync.AuditStore.
func (s *Store) AppendAudit(_ context.Context, rows []crmsync.AuditEntry) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.appendAudit(rows)
	return nil
}

// QueryAudit implements crmsync.AuditStore.
func (s *Store) QueryAudit(_ context.Context, q crmsync.AuditQuery) ([]crmsync.AuditEntry, error) {
	limit := q.Limit
	if limit <= 0 {
		limit = 100
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []crmsync.AuditEntry
	for _, r := range s.audit {
		if r.ID <= q.After ||
			(q.Key != "" && r.Key != q.Key) ||
			(q.Run != "" && r.Run != q.Run) ||
			(q.Kind != "" && r.Kind != q.Kind) ||
			(q.RecordID != "" && !slices.Contains(r.RecordIDs, q.RecordID)) ||
			(!q.Since.IsZero() && r.Time.Before(q.Since)) ||
			(!q.Until.IsZero() && !r.Time.Before(q.Until)) {
			continue
		}
		out = append(out, r)
		if len(out) == limit {
			break
		}
	}
	return out, nil
}

// ListDeadLetters implements crmsync.DeadLetterStore.
func (s *Store) ListDeadLetters(_ context.Context, q crmsync.DeadLetterQuery) ([]crmsync.DeadLetter, error) {
	limit := q.Limit
	if limit <= 0 {
		limit = 100
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []crmsync.DeadLetter
	for _, d := range s.dead {
		if d.ID <= q.After || (q.Key != "" && d.Key != q.Key) || (q.Status != "" && d.Status != q.Status) {
			continue
		}
		out = append(out, d)
		if len(out) == limit {
			break
		}
	}
	return out, nil
}

// GetDeadLetter implements crmsync.DeadLetterStore.
func (s *Store) GetDeadLetter(_ context.Context, id int64) (crmsync.DeadLetter, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if id < 1 || id > int64(len(s.dead)) {
		return crmsync.DeadLetter{}, fmt.Errorf("memory: dead letter %d: %w", id, crmsync.ErrNotFound)
	}
	return s.dead[id-1], nil
}

// SetDeadLetterStatus implements crmsync.DeadLetterStore.
func (s *Store) SetDeadLetterStatus(_ context.Context, id int64, status crmsync.DeadLetterStatus, now time.Time) error {
	if status != crmsync.DeadReplay && status != crmsync.DeadDiscarded {
		return fmt.Errorf("memory: dead letter %d: status %q: only %q or %q may be set", id, status, crmsync.DeadReplay, crmsync.DeadDiscarded)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if id < 1 || id > int64(len(s.dead)) {
		return fmt.Errorf("memory: dead letter %d: %w", id, crmsync.ErrNotFound)
	}
	d := &s.dead[id-1]
	if d.Status != crmsync.DeadParked && d.Status != crmsync.DeadReplayed && d.Status != crmsync.DeadFailedAgain {
		return fmt.Errorf("memory: dead letter %d is %s, not parked", id, d.Status)
	}
	d.Status, d.Updated, d.ClaimedBy = status, now, ""
	return nil
}

// ClaimReplays implements crmsync.DeadLetterStore.
func (s *Store) ClaimReplays(_ context.Context, l crmsync.Lease, now time.Time) ([]crmsync.DeadLetter, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.claimReplays(l, now)
}

// claimReplays is ClaimReplays with s.mu held.
func (s *Store) claimReplays(l crmsync.Lease, now time.Time) ([]crmsync.DeadLetter, error) {
	if err := s.current(l); err != nil {
		return nil, err
	}
	first := s.runs[l.Run] != nil && s.runs[l.Run].Attempts == 1
	var out []crmsync.DeadLetter
	for i := range s.dead {
		d := &s.dead[i]
		if d.Key != l.Key {
			continue
		}
		if first && d.Status == crmsync.DeadReplay {
			d.Status, d.ClaimedBy, d.Updated = crmsync.DeadReplayed, l.Run, now
		}
		if d.ClaimedBy == l.Run && (d.Status == crmsync.DeadReplayed || d.Status == crmsync.DeadFailedAgain) {
			out = append(out, *d)
		}
	}
	return out, nil
}

// LinksByA implements crmsync.LinkStore.
func (s *Store) LinksByA(_ context.Context, key string, ids []string) (map[string]crmsync.Link, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]crmsync.Link{}
	for _, id := range ids {
		if l, ok := s.linksA[key+"\x00"+id]; ok {
			out[id] = cloneLink(l)
		}
	}
	return out, nil
}

// LinksByB implements crmsync.LinkStore.
func (s *Store) LinksByB(_ context.Context, key string, ids []string) (map[string]crmsync.Link, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]crmsync.Link{}
	for _, id := range ids {
		if aid, ok := s.linksB[key+"\x00"+id]; ok {
			out[id] = cloneLink(s.linksA[key+"\x00"+aid])
		}
	}
	return out, nil
}

// PutLinks implements crmsync.LinkStore.
func (s *Store) PutLinks(_ context.Context, links []crmsync.Link) error {
	for _, l := range links {
		if l.Key == "" || l.AID == "" || l.BID == "" {
			return fmt.Errorf("memory: put link %s/%s: key and both ids are required", l.AID, l.BID)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.putLinks(links)
	return nil
}

func (s *Store) putLinks(links []crmsync.Link) {
	for _, l := range links {
		ka, kb := l.Key+"\x00"+l.AID, l.Key+"\x00"+l.BID
		if old, ok := s.linksA[ka]; ok {
			delete(s.linksB, l.Key+"\x00"+old.BID)
		}
		if oldA, ok := s.linksB[kb]; ok {
			delete(s.linksA, l.Key+"\x00"+oldA)
		}
		s.linksA[ka] = cloneLink(l)
		s.linksB[kb] = l.AID
	}
}

func cloneLink(l crmsync.Link) crmsync.Link {
	if l.Base != nil {
		b := make(crmsync.Fields, len(l.Base))
		for k, v := range l.Base {
			b[k] = v
		}
		l.Base = b
	}
	return l
}

// SaveConflicts implements crmsync.ConflictStore.
func (s *Store) SaveConflicts(_ context.Context, cs []crmsync.Conflict) error {
	for _, c := range cs {
		if c.ID == "" {
			return fmt.Errorf("memory: save conflict: empty id")
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.saveConflicts(cs)
	return nil
}

func (s *Store) saveConflicts(cs []crmsync.Conflict) {
	for _, c := range cs {
		old, ok := s.conflicts[c.ID]
		if ok && (c.State == crmsync.ConflictHeld || c.State == crmsync.ConflictResolved) &&
			(old.State == crmsync.ConflictChosen || old.State == crmsync.ConflictApplied) {
			continue // keep the person's choice
		}
		if !ok {
			s.conflictOrder = append(s.conflictOrder, c.ID)
		}
		s.conflicts[c.ID] = cloneConflict(c)
	}
}

func cloneConflict(c crmsync.Conflict) crmsync.Conflict {
	if c.Resolution != nil {
		r := *c.Resolution
		c.Resolution = &r
	}
	return c
}

// ListConflicts implements crmsync.ConflictStore.
func (s *Store) ListConflicts(_ context.Context, f crmsync.ConflictFilter) ([]crmsync.Conflict, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []crmsync.Conflict
	for _, id := range s.conflictOrder {
		c := s.conflicts[id]
		if (f.Key != "" && c.Key != f.Key) || (f.State != "" && c.State != f.State) || (f.Field != "" && c.Field != f.Field) {
			continue
		}
		out = append(out, cloneConflict(c))
		if f.Limit > 0 && len(out) == f.Limit {
			break
		}
	}
	return out, nil
}

// GetConflict implements crmsync.ConflictStore.
func (s *Store) GetConflict(_ context.Context, id string) (crmsync.Conflict, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.conflicts[id]
	if !ok {
		return crmsync.Conflict{}, fmt.Errorf("memory: conflict %s: %w", id, crmsync.ErrNotFound)
	}
	return cloneConflict(c), nil
}

// ResolveConflict implements crmsync.ConflictStore.
func (s *Store) ResolveConflict(_ context.Context, id string, r crmsync.Resolution, now time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.conflicts[id]
	if !ok {
		return fmt.Errorf("memory: conflict %s: %w", id, crmsync.ErrNotFound)
	}
	if c.State != crmsync.ConflictHeld && c.State != crmsync.ConflictChosen {
		return fmt.Errorf("memory: conflict %s is %s; only a held conflict can be resolved", id, c.State)
	}
	c.Resolution, c.ResolvedAt, c.State = &r, now, crmsync.ConflictChosen
	s.conflicts[id] = c
	return nil
}

// PendingResolutions implements crmsync.ConflictStore.
func (s *Store) PendingResolutions(ctx context.Context, key string) ([]crmsync.Conflict, error) {
	return s.ListConflicts(ctx, crmsync.ConflictFilter{Key: key, State: crmsync.ConflictChosen})
}

// StartRun implements crmsync.RunStarter: AcquireLease, LoadSteps and
// ClaimReplays under one lock.
func (s *Store) StartRun(_ context.Context, req crmsync.LeaseRequest) (crmsync.RunStart, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var rs crmsync.RunStart
	var err error
	if rs.Lease, rs.Run, err = s.acquireLease(req); err != nil {
		return crmsync.RunStart{}, err
	}
	rs.Steps, _ = s.loadSteps(rs.Run.ID)
	rs.Replays, _ = s.claimReplays(rs.Lease, req.Now) // the lease was just taken
	return rs, nil
}

// EndRun implements crmsync.RunEnder: AppendAudit, FinishRun, ReleaseLease,
// GetRun and PruneRuns under one lock.
func (s *Store) EndRun(_ context.Context, l crmsync.Lease, end crmsync.RunEnd) (crmsync.RunInfo, int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.appendAudit(end.Audit)
	if err := s.finishRun(l, end.Status, end.Report, end.Error, end.Now); err != nil {
		return crmsync.RunInfo{}, 0, err
	}
	if err := s.releaseLease(l); err != nil {
		return crmsync.RunInfo{}, 0, err
	}
	ri, err := s.getRun(l.Run)
	if err != nil {
		return crmsync.RunInfo{}, 0, err
	}
	n := 0
	if !end.PruneBefore.IsZero() {
		n, _ = s.pruneRuns(end.PruneBefore)
	}
	return ri, n, nil
}
