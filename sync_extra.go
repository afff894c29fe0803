package crmsync

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
)

// applyResolutions writes the choices people made for held conflicts. A
// choice whose write was refused stays pending and its write is parked;
// the ledger keeps it from being sent again until a person replays that
// letter: then the run that claims it sends the write again, and the
// choice is applied once it lands.
func (p *pass) applyResolutions(ctx context.Context) error {
	pending, err := step(ctx, p, "resolutions", func(ctx context.Context, _ *Attempt) ([]Conflict, error) {
		return p.st.PendingResolutions(ctx, p.key)
	}, nil)
	if err != nil || len(pending) == 0 {
		return err
	}
	pol := p.s.c.Policy
	type res struct {
		c   Conflict
		mr  MergeResult
		err error
	}
	var all []res
	var toA, toB []writeItem
	var pairs []*pair
	replays := p.replayedWrites()
	for _, c := range pending {
		if c.Resolution == nil {
			continue
		}
		mr, err := pol.ApplyResolution(c, *c.Resolution)
		all = append(all, res{c: c, mr: mr, err: err})
		if err != nil {
			continue
		}
		i := len(pairs)
		pairs = append(pairs, &pair{src: Record{ID: c.RecordA}, other: Record{ID: c.RecordB}})
		if len(mr.PatchA) > 0 {
			op := WriteOp{Kind: Update, ID: c.RecordA, Fields: mr.PatchA}
			op.Key = idemKey(p.key, "resolution:"+c.ID, p.a.name, Record{ID: c.RecordA}, op)
			toA = append(toA, writeItem{Pair: i, Role: "update", Op: op, Resend: replays[op.Key]})
		}
		if len(mr.PatchB) > 0 {
			op := WriteOp{Kind: Update, ID: c.RecordB, Fields: mr.PatchB}
			op.Key = idemKey(p.key, "resolution:"+c.ID, p.b.name, Record{ID: c.RecordA}, op)
			toB = append(toB, writeItem{Pair: i, Role: "update", Op: op, Resend: replays[op.Key]})
		}
	}
	outA, err := p.writeAll(ctx, p.a, p.a, "resolve", toA, pairs)
	if err != nil {
		return err
	}
	outB, err := p.writeAll(ctx, p.b, p.a, "resolve", toB, pairs)
	if err != nil {
		return err
	}
	failed := map[int]bool{}
	parked := func(out []writeOutcome, items []writeItem, dir *DirectionReport) {
		for i, o := range out {
			if o.ok() {
				continue
			}
			failed[items[i].Pair] = true
			if o.parked() {
				p.mu.Lock()
				dir.DeadLetters++
				p.mu.Unlock()
			}
		}
	}
	parked(outA, toA, p.rep.direction(p.b.name, p.a.name))
	parked(outB, toB, p.rep.direction(p.a.name, p.b.name))
	applied, err := step(ctx, p, "resolve:commit", func(ctx context.Context, a *Attempt) (int, error) {
		ids := make([]string, 0, len(all))
		for _, r := range all {
			ids = append(ids, r.c.RecordA)
		}
		links, err := p.storeLinks(ctx, p.key, true, ids)
		if err != nil {
			return 0, err
		}
		n, i := 0, 0
		for _, r := range all {
			if r.err != nil {
				detail, _ := json.Marshal(map[string]string{"conflict": r.c.ID, "error": r.err.Error()})
				a.Audit(AuditEntry{Kind: AuditSkip, RecordIDs: []string{r.c.RecordA, r.c.RecordB}, Detail: detail})
				continue
			}
			idx := i
			i++
			if failed[idx] {
				continue // the letter is parked; the choice stays pending
			}
			c := r.c
			c.State = ConflictApplied
			a.SaveConflicts(c)
			if l, ok := links[c.RecordA]; ok {
				base := Fields{}
				for k, v := range l.Base {
					base[k] = v
				}
				for k, v := range r.mr.NewBase {
					base[k] = v
				}
				l.Base = base
				links[c.RecordA] = l
				a.Link(l)
			}
			detail, _ := json.Marshal(map[string]any{"conflict": c.ID, "field": c.Field, "pick": c.Resolution.Pick, "applied": true})
			a.Audit(AuditEntry{Kind: AuditConflict, RecordIDs: []string{c.RecordA, c.RecordB}, Detail: detail})
			n++
		}
		return n, nil
	}, nil)
	if err != nil {
		return err
	}
	p.rep.Resolved = applied
	if err := p.readBack(ctx, p.a, "resolve", toA, outA, pairs); err != nil {
		return err
	}
	return p.readBack(ctx, p.b, "resolve", toB, outB, pairs)
}

// replayDeadLetters takes the letters a person marked for replay: it reads
// their source records again and handles them like fresh changes. A source
// record the read by id no longer finds because it is archived (deleted) is
// taken from the letter, which keeps it for that reason, so its archive
// flag is still written; one found neither way is noted as a skip.
func (p *pass) replayDeadLetters(ctx context.Context) error {
	if p.run == nil {
		return nil
	}
	letters := p.ownLetters(p.run.Replays())
	if len(letters) == 0 {
		return nil
	}
	ids := map[string][]string{}
	kept := map[string]map[string]Record{} // system -> id -> archived source record
	for _, d := range letters {
		var pl deadPayload
		if err := json.Unmarshal(d.Payload, &pl); err != nil || pl.SourceID == "" {
			p.log.Warn("dead letter cannot be replayed: no source record in its payload", "dead_letter", d.ID)
			continue
		}
		ids[pl.SourceSystem] = append(ids[pl.SourceSystem], pl.SourceID)
		if r := pl.Record; r != nil && r.Archived && r.ID == pl.SourceID {
			if kept[pl.SourceSystem] == nil {
				kept[pl.SourceSystem] = map[string]Record{}
			}
			if cur, ok := kept[pl.SourceSystem][r.ID]; !ok || r.ModifiedAt.After(cur.ModifiedAt) {
				kept[pl.SourceSystem][r.ID] = *r
			}
		}
	}
	systems := make([]string, 0, len(ids))
	for s := range ids {
		systems = append(systems, s)
	}
	sort.Strings(systems)
	for _, sys := range systems {
		sd := p.a
		if sys == p.b.name {
			sd = p.b
		} else if sys != p.a.name {
			return fmt.Errorf("crmsync: dead letter names unknown system %q", sys)
		}
		want := dedupe(ids[sys])
		recs, err := p.lookup(ctx, sd, "replay-fetch:"+sys, "id", want)
		if err != nil {
			return err
		}
		found := map[string]bool{}
		for _, r := range recs {
			found[r.ID] = true
		}
		for _, id := range want {
			if found[id] {
				continue
			}
			if r, ok := kept[sys][id]; ok {
				recs = append(recs, r)
				continue
			}
			p.skip(sd, id, "", "dead letter replay: source record not found on "+sys+" (archived or deleted since it was parked); nothing replayed")
		}
		p.rep.Replayed += len(ids[sys])
		if len(recs) > 0 {
			p.replaying = true
			err := p.handle(ctx, sd, "replay:"+sys, recs)
			p.replaying = false
			if err != nil {
				return err
			}
		}
	}
	return nil
}

// replayRecord is the source record a write's dead letter keeps: an
// archived (deleted) record, which a replay cannot read again by id; nil
// for a live one, which the replay reads afresh.
func replayRecord(src Record) *Record {
	if !src.Archived {
		return nil
	}
	return &src
}

// replayedWrites returns the idempotency keys of the writes of the
// letters this run claimed for replay.
func (p *pass) replayedWrites() map[string]bool {
	keys := map[string]bool{}
	if p.run == nil {
		return keys
	}
	for _, d := range p.run.Replays() {
		var pl deadPayload
		if json.Unmarshal(d.Payload, &pl) == nil && pl.Op != nil && pl.Op.Key != "" {
			keys[pl.Op.Key] = true
		}
	}
	return keys
}

func dedupe(s []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, v := range s {
		if !seen[v] {
			seen[v] = true
			out = append(out, v)
		}
	}
	return out
}
