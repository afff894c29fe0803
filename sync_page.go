package crmsync

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"
)

// pair is one changed record, its counterpart and what the merge decided.
type pair struct {
	src, other Record // other.ID == "" when there is no counterpart yet
	link       *Link
	res        MergeResult
	mergeErr   error
	// hidden holds, per reference rule, side A's ids left out of the
	// merge because their counterparts cannot be referenced (refs.go).
	hidden map[string][]string
	// named holds, per reference rule, the ids (side A's) either record
	// names, before gone references were left out (refs.go); nil for a
	// rule left out of the merge.
	named map[string][]string
	// refs are the page's translation tables of the reference rules.
	refs map[string]refLinks
}

// writeItem is one op of a write batch and the pair it serves.
type writeItem struct {
	Pair int     `json:"pair"`
	Op   WriteOp `json:"op"`
	// Role is "create", "update" or "link" (only the link field is written).
	Role string `json:"role"`
	// Resend sends the op although the ledger says it was refused before:
	// it is the very write of a letter this run replays.
	Resend bool `json:"resend,omitempty"`
}

// writeOutcome is what became of one writeItem; it is a step result.
type writeOutcome struct {
	ID        string `json:"id,omitempty"`
	Created   bool   `json:"created,omitempty"`
	Error     string `json:"error,omitempty"`
	Permanent bool   `json:"permanent,omitempty"`
	Ledger    bool   `json:"ledger,omitempty"` // applied by an earlier run
	// Unknown marks a write whose call failed as a whole with an error no
	// retry fixes: it may or may not have landed. It is neither parked nor
	// ledgered; its pair stays unlinked, and a later read recovers the
	// link through the link field if the write landed.
	Unknown bool `json:"unknown,omitempty"`
	// Again marks a refused write that updated the letter this run
	// replays (failed again) instead of parking a new one.
	Again bool `json:"again,omitempty"`
	// Partial names, for a refused write whose record was written all the
	// same (ID is set: a PartialWriteError), the op's fields that were not.
	Partial []string `json:"partial,omitempty"`
	// Gone holds, per field the API refused because it names archived or
	// deleted records (a ReferenceError), the ids refused; the record was
	// written without those fields.
	Gone map[string][]string `json:"gone,omitempty"`
	// Vanished marks a write refused because the record it updates is
	// archived or deleted now (ErrRecordGone): it is neither parked nor
	// ledgered; the archive is read and handled as such.
	Vanished bool `json:"vanished,omitempty"`
	// ReadBack marks a create (an upsert on a match field) refused with no
	// record made: an earlier attempt of its call may have landed. It is
	// neither parked nor ledgered by its write step; the read-back that
	// follows parks it, or ledgers it as landed if it finds the record
	// (readBack).
	ReadBack bool `json:"read_back,omitempty"`
	// Existing names, for a create refused because another record holds
	// a value that must be unique (a DuplicateError), that record: made or
	// restored while the pass ran, after its match found none. The
	// read-back reads it and matches it as a change; the create is parked
	// only if that does not link the two (settleExisting).
	Existing string `json:"existing,omitempty"`
}

func (o writeOutcome) ok() bool { return o.Error == "" }

// made reports that the record exists on the side written: the write
// landed, or was refused after it made or updated the record (partial).
func (o writeOutcome) made() bool { return o.ok() || o.ID != "" }

// parked reports a refused write this step parked as a new dead letter.
func (o writeOutcome) parked() bool {
	return !o.ok() && !o.Ledger && !o.Unknown && !o.Again && !o.Vanished && !o.ReadBack
}

// handle takes one page of changes on side sd through match, merge, write
// and commit. Every input to the merge is a step result, so a resumed run
// rebuilds the same writes.
func (p *pass) handle(ctx context.Context, sd *side, pg string, recs []Record) error {
	other := p.other(sd)
	recs = latestByID(recs)
	ids := make([]string, len(recs))
	for i, r := range recs {
		ids[i] = r.ID
	}
	links, err := step(ctx, p, "links:"+pg, func(ctx context.Context, _ *Attempt) (map[string]Link, error) {
		return p.linksBy(ctx, sd, ids)
	}, nil)
	if err != nil {
		return err
	}
	if err := p.resolveArchived(ctx, sd, pg, recs, links); err != nil {
		return err
	}
	if recs, err = p.merges(ctx, sd, pg, recs, links); err != nil {
		return err
	}

	// Counterparts of linked records, by id, in batches.
	var linkedIDs []string
	for _, r := range recs {
		if l, ok := links[r.ID]; ok {
			linkedIDs = append(linkedIDs, otherID(l, sd))
		}
	}
	counterparts, err := p.lookup(ctx, other, "fetch:"+pg, "id", linkedIDs)
	if err != nil {
		return err
	}
	byID := map[string]Record{}
	for _, r := range counterparts {
		byID[r.ID] = r
	}
	if err := p.goneCounterparts(ctx, sd, pg, recs, links, byID); err != nil {
		return err
	}
	if err := p.goneMarks(ctx, sd, pg, recs, links, byID); err != nil {
		return err
	}

	recovered, err := p.recoverLinks(ctx, sd, pg, recs, links)
	if err != nil {
		return err
	}

	// Unlinked records: match on the identity key, in batches.
	pol := p.s.c.Policy
	var keys []string
	seen := map[string]bool{}
	srcByKey := map[string][]string{}
	for _, r := range recs {
		if _, ok := links[r.ID]; ok {
			continue
		}
		if _, ok := recovered[r.ID]; ok {
			continue
		}
		if k, ok := pol.IdentityKey(r, sd.name); ok {
			if !slices.Contains(srcByKey[k], r.ID) {
				srcByKey[k] = append(srcByKey[k], r.ID)
			}
			if !seen[k] {
				seen[k] = true
				keys = append(keys, k)
			}
		}
	}
	matches, err := p.lookup(ctx, other, "match:"+pg, p.s.identityField(other.name), identityValues(pol, other, keys))
	if err != nil {
		return err
	}
	// A lookup of a key's forms may find records of other keys (or none
	// asked for): only records whose own key was asked for match.
	matches = slices.DeleteFunc(matches, func(r Record) bool {
		k, ok := pol.IdentityKey(r, other.name)
		return !ok || !seen[k]
	})
	var matchedIDs []string
	for _, r := range matches {
		matchedIDs = append(matchedIDs, r.ID)
	}
	taken, err := step(ctx, p, "links-matched:"+pg, func(ctx context.Context, _ *Attempt) (map[string]Link, error) {
		return p.linksBy(ctx, other, matchedIDs)
	}, nil)
	if err != nil {
		return err
	}
	// A match linked to a record that is gone from this side (archived or
	// deleted since) is free: creating a counterpart for its key would make
	// a duplicate on the other side, so the match is linked anew. A partner
	// a merge took away is not gone (takenByMerge): the merge's record
	// takes the link over when it is read.
	var partners []string
	for _, r := range matches {
		if l, linked := taken[r.ID]; linked {
			partners = append(partners, otherID(l, other))
		}
	}
	live, err := p.lookup(ctx, sd, "taken:"+pg, "id", partners)
	if err != nil {
		return err
	}
	alive := map[string]bool{}
	for _, r := range live {
		alive[r.ID] = true
	}
	if err := p.takenByMerge(ctx, sd, pg, partners, alive); err != nil {
		return err
	}
	if err := p.convertedPartners(ctx, sd, pg, recs, links, recovered, matches, live, taken, byID); err != nil {
		return err
	}
	merged, err := p.mergeRecords(ctx, other, pg, matches, taken)
	if err != nil {
		return err
	}
	// A record read archived or deleted has nothing to sync: it may pair
	// with an unlinked match (to flag it), never take over a match whose
	// partner is gone. That link stays with its own record, whose archive
	// or merge reaches the match when it is read (a Salesforce merge loser
	// looks gone here, since Salesforce cannot say where its id went).
	byKey := map[string]Record{}
	unlinked := map[string]Record{}
	cands := map[string][]string{}
	latest := func(in map[string]Record, k string, r Record) {
		if cur, dup := in[k]; !dup || r.ModifiedAt.After(cur.ModifiedAt) || (r.ModifiedAt.Equal(cur.ModifiedAt) && r.ID < cur.ID) {
			in[k] = r
		}
	}
	for _, r := range matches {
		l, linked := taken[r.ID]
		if linked && alive[otherID(l, other)] {
			continue // already linked to another record
		}
		if !linked && merged[r.ID] {
			continue // a merge's record: it takes its merged id's link when read
		}
		k, ok := pol.IdentityKey(r, other.name)
		if !ok {
			continue
		}
		if !slices.Contains(cands[k], r.ID) {
			cands[k] = append(cands[k], r.ID)
		}
		latest(byKey, k, r)
		if !linked {
			latest(unlinked, k, r)
		}
	}

	if err := p.mergeWinners(ctx, sd, pg, recs, links, recovered, byKey, byID); err != nil {
		return err
	}

	// Merge each pair.
	pairs := make([]*pair, 0, len(recs))
	claimed := map[string]bool{}
	for _, cp := range recovered {
		claimed[cp.ID] = true
	}
	for _, r := range recs {
		pr := &pair{src: r}
		if l, ok := links[r.ID]; ok {
			l := l
			pr.link = &l
			cp, found := byID[otherID(l, sd)]
			if !found {
				p.skip(sd, r.ID, "", "counterpart "+otherID(l, sd)+" not found on "+other.name+" (archived or deleted there)")
				continue
			}
			pr.other = cp
		} else if cp, ok := recovered[r.ID]; ok {
			pr.other = cp
		} else if k, ok := pol.IdentityKey(r, sd.name); ok {
			if pol.Identity.Strict && len(cands[k]) > 0 && len(cands[k])+len(srcByKey[k]) > 2 {
				p.skip(sd, r.ID, "", ambiguousReason(sd, other, r.ID, srcByKey[k], cands[k]))
				continue
			}
			pick := byKey
			if r.Archived {
				pick = unlinked
			}
			if cp, found := pick[k]; found && !claimed[cp.ID] {
				claimed[cp.ID] = true
				pr.other = cp
			}
		}
		pairs = append(pairs, pr)
	}
	pairs, refs, err := p.gate(ctx, sd, pg, pairs)
	if err != nil {
		return err
	}
	for _, pr := range pairs {
		var base Fields
		if pr.link != nil {
			base = pr.link.Base
		}
		if sd.isA {
			pr.res, pr.mergeErr = Merge(base, pr.src, pr.other, pol)
		} else {
			pr.res, pr.mergeErr = Merge(base, pr.other, pr.src, pol)
		}
		p.refPatches(pr, refs)
		pr.refs = refs
	}
	return p.writePairs(ctx, sd, pg, pairs)
}

// merges handles records that merges made or took away, before pairing,
// and returns the records left to pair. A record merged away (MergedInto
// set: a Salesforce loser read as deleted, an old HubSpot id) is never
// archived on the other side: its counterpart is relinked to the winner if
// the winner has no link yet; if it has one, the counterpart is left as it
// is (not archived, not synced) and the pass reports it for a person. A
// record with MergedFrom naming a linked old id and no link of its own
// takes that link over, so its counterpart is updated, neither created
// again nor archived. links is updated in place.
func (p *pass) merges(ctx context.Context, sd *side, pg string, recs []Record, links map[string]Link) ([]Record, error) {
	var ids []string
	for _, r := range recs {
		if r.MergedInto != "" {
			ids = append(ids, r.MergedInto)
		} else if _, linked := links[r.ID]; !linked {
			ids = append(ids, r.MergedFrom...)
		}
	}
	if len(ids) == 0 {
		return recs, nil
	}
	known, err := step(ctx, p, "links-merged:"+pg, func(ctx context.Context, _ *Attempt) (map[string]Link, error) {
		return p.linksBy(ctx, sd, ids)
	}, nil)
	if err != nil {
		return nil, err
	}
	linkOf := func(id string) (Link, bool) {
		if l, ok := links[id]; ok {
			return l, true
		}
		l, ok := known[id]
		return l, ok
	}
	type relink struct {
		Link    Link   `json:"link"`
		From    string `json:"from"`
		Winner  string `json:"winner"`
		Blocked string `json:"blocked,omitempty"` // the winner's own counterpart
	}
	var moves []relink
	keep := recs[:0:0]
	for _, r := range recs {
		switch {
		case r.MergedInto != "":
			l, ok := links[r.ID]
			if !ok {
				continue // nothing linked to the loser: nothing to do, nothing to archive
			}
			cp := otherID(l, sd)
			if wl, taken := linkOf(r.MergedInto); taken {
				if otherID(wl, sd) != cp {
					moves = append(moves, relink{From: r.ID, Winner: r.MergedInto, Blocked: otherID(wl, sd), Link: l})
				}
				continue
			}
			nl := newLink(sd, r.MergedInto, cp, l.Base)
			links[r.MergedInto] = nl
			moves = append(moves, relink{From: r.ID, Winner: r.MergedInto, Link: nl})
		case len(r.MergedFrom) > 0:
			if _, ok := links[r.ID]; ok {
				break
			}
			for _, old := range r.MergedFrom {
				if l, ok := known[old]; ok {
					nl := newLink(sd, r.ID, otherID(l, sd), l.Base)
					links[r.ID] = nl
					moves = append(moves, relink{From: old, Winner: r.ID, Link: nl})
					break
				}
			}
			keep = append(keep, r)
		default:
			keep = append(keep, r)
		}
	}
	if len(moves) == 0 {
		return keep, nil
	}
	_, err = step(ctx, p, "relink:"+pg, func(ctx context.Context, a *Attempt) (int, error) {
		for _, m := range moves {
			detail, _ := json.Marshal(map[string]any{"merge": "relinked", "from": m.From, "winner": m.Winner})
			if m.Blocked != "" {
				detail, _ = json.Marshal(map[string]any{"merge": "needs a person", "from": m.From, "winner": m.Winner,
					"winner_linked_to": m.Blocked, "left_unlinked": otherID(m.Link, sd)})
			} else {
				a.Link(m.Link)
			}
			a.Audit(AuditEntry{Kind: AuditSkip, System: sd.name, RecordIDs: []string{m.From, m.Winner, otherID(m.Link, sd)}, Detail: detail})
		}
		return len(moves), nil
	}, nil)
	if err != nil {
		return nil, err
	}
	for _, m := range moves {
		if m.Blocked != "" {
			p.skip(sd, m.From, "", "merged into "+m.Winner+", which is already linked to "+m.Blocked+"; "+otherID(m.Link, sd)+" on "+p.other(sd).name+" is left unlinked and not archived: a person must merge it")
		}
	}
	return keep, nil
}

// resolveArchived asks sd's CRM, if it is an IDResolver, where each
// record read archived with no MergedInto now lives, when it is linked and
// its counterpart has not been flagged archived yet (so each such record
// costs one call, once); a record that lives on under another id gets
// MergedInto set to it, in recs. The answers are a step result.
func (p *pass) resolveArchived(ctx context.Context, sd *side, pg string, recs []Record, links map[string]Link) error {
	res, ok := sd.crm.(IDResolver)
	if !ok {
		return nil
	}
	flag := archivedKeyPrefix + p.other(sd).name
	var ids []string
	for _, r := range recs {
		l, linked := links[r.ID]
		if !r.Archived || r.MergedInto != "" || !linked || l.Base[flag] == true {
			continue
		}
		ids = append(ids, r.ID)
	}
	if len(ids) == 0 {
		return nil
	}
	now, err := step(ctx, p, "resolve:"+pg, func(ctx context.Context, _ *Attempt) (map[string]string, error) {
		out := map[string]string{}
		for _, id := range ids {
			p.apiCalls(sd.name, 1)
			to, err := res.ResolveID(ctx, sd.object, id)
			if err != nil {
				return nil, err
			}
			if to != "" && to != id {
				out[id] = to
			}
		}
		return out, nil
	}, nil)
	if err != nil {
		return err
	}
	for i, r := range recs {
		if to, ok := now[r.ID]; ok {
			recs[i].MergedInto = to
		}
	}
	return nil
}

// convertedPartners hands a match's link to the record of recs its
// partner became: a partner read by id with MergedInto naming an unlinked
// record of recs (a Lead converted into the Contact read on this page) was
// converted or merged into it. The record takes the partner's link over,
// as merges does when the partner is read, and the match is its
// counterpart (added to byID); otherwise the record, its match taken,
// would be created on the other side a second time. This happens when the
// record is read before its partner's conversion is: a run resumed after
// the conversion replays the partner's page as read before it. links is
// updated in place; the inputs and the links are step results.
func (p *pass) convertedPartners(ctx context.Context, sd *side, pg string, recs []Record, links map[string]Link, recovered map[string]Record, matches, live []Record, taken map[string]Link, byID map[string]Record) error {
	into := map[string]string{} // partner id -> the record it became
	for _, r := range live {
		if r.MergedInto != "" {
			into[r.ID] = r.MergedInto
		}
	}
	if len(into) == 0 {
		return nil
	}
	free := map[string]bool{} // unlinked live records of recs
	for _, r := range recs {
		if _, linked := links[r.ID]; linked || r.Archived || r.MergedInto != "" {
			continue
		}
		if _, ok := recovered[r.ID]; ok {
			continue
		}
		free[r.ID] = true
	}
	type relink struct {
		Link   Link   `json:"link"`
		From   string `json:"from"`
		Winner string `json:"winner"`
	}
	var moves []relink
	for _, m := range matches {
		l, linked := taken[m.ID]
		if !linked {
			continue
		}
		from := otherID(l, p.other(sd))
		winner := into[from]
		if !free[winner] {
			continue
		}
		free[winner] = false
		nl := newLink(sd, winner, m.ID, l.Base)
		links[winner] = nl
		byID[m.ID] = m
		moves = append(moves, relink{Link: nl, From: from, Winner: winner})
	}
	if len(moves) == 0 {
		return nil
	}
	_, err := step(ctx, p, "relink-converted:"+pg, func(ctx context.Context, a *Attempt) (int, error) {
		for _, m := range moves {
			detail, _ := json.Marshal(map[string]any{"merge": "relinked", "from": m.From, "winner": m.Winner})
			a.Link(m.Link)
			a.Audit(AuditEntry{Kind: AuditSkip, System: sd.name, RecordIDs: []string{m.From, m.Winner, otherID(m.Link, sd)}, Detail: detail})
		}
		return len(moves), nil
	}, nil)
	return err
}

// takenByMerge asks sd's CRM, if it is an IDResolver, about the partners
// (ids on sd linked to matches on the other side) that a lookup by id did
// not find. One that still resolves is not gone: a merge took it away, and
// its id leads to the merge's record, which takes the link over when it is
// read (merges). It is marked alive, so its match stays taken; linking the
// match to another record instead would leave the merge's record unlinked,
// to be created again on the other side. The answers are a step result.
func (p *pass) takenByMerge(ctx context.Context, sd *side, pg string, partners []string, alive map[string]bool) error {
	res, ok := sd.crm.(IDResolver)
	if !ok {
		return nil
	}
	var ids []string
	for _, id := range partners {
		if !alive[id] && !slices.Contains(ids, id) {
			ids = append(ids, id)
		}
	}
	if len(ids) == 0 {
		return nil
	}
	resolved, err := p.resolveIDs(ctx, sd, res, "resolve-taken:"+pg, ids, true)
	if err != nil {
		return err
	}
	for _, id := range resolved {
		alive[id] = true
	}
	return nil
}

// mergeWinners asks sd's CRM, if it is a MergedAwayLister, which deleted
// records were merged into the live records of recs that have no link and
// no match, and so would be created on the other side. Such a record is a
// merge's winner whose loser's deletion this pass has not read (the merge
// came after the pass read the bin, and the winner was stamped inside the
// window by a clock behind the host's): it takes over the loser's link, as
// merges does when the loser is read, and its counterpart is fetched into
// byID; otherwise the pass would create a second counterpart for the
// person, and the loser's link would stay put. links is updated in place;
// the answers and the links are step results.
func (p *pass) mergeWinners(ctx context.Context, sd *side, pg string, recs []Record, links map[string]Link, recovered, byKey, byID map[string]Record) error {
	lister, ok := sd.crm.(MergedAwayLister)
	if !ok {
		return nil
	}
	pol := p.s.c.Policy
	var ids []string
	for _, r := range recs {
		if r.Archived || r.MergedInto != "" {
			continue
		}
		if _, linked := links[r.ID]; linked {
			continue
		}
		if _, ok := recovered[r.ID]; ok {
			continue
		}
		if k, ok := pol.IdentityKey(r, sd.name); ok {
			if _, found := byKey[k]; found {
				continue
			}
		}
		ids = append(ids, r.ID)
	}
	if len(ids) == 0 {
		return nil
	}
	size := sd.crm.Limits().LookupBatch
	if size <= 0 {
		size = 100
	}
	losers, err := step(ctx, p, "merged-away:"+pg, func(ctx context.Context, _ *Attempt) (map[string][]string, error) {
		p.apiCalls(sd.name, (len(ids)+size-1)/size)
		return lister.MergedAway(ctx, sd.object, ids)
	}, nil)
	if err != nil {
		return err
	}
	var all []string
	for _, id := range ids {
		all = append(all, losers[id]...)
	}
	if len(all) == 0 {
		return nil
	}
	known, err := step(ctx, p, "links-merged-away:"+pg, func(ctx context.Context, _ *Attempt) (map[string]Link, error) {
		return p.linksBy(ctx, sd, dedupe(all))
	}, nil)
	if err != nil {
		return err
	}
	type relink struct {
		Link   Link   `json:"link"`
		From   string `json:"from"`
		Winner string `json:"winner"`
	}
	var moves []relink
	taken := map[string]bool{} // counterparts relinked on this page
	var cps []string
	for _, id := range ids {
		for _, old := range losers[id] {
			l, ok := known[old]
			if !ok || taken[otherID(l, sd)] {
				continue
			}
			cp := otherID(l, sd)
			taken[cp] = true
			nl := newLink(sd, id, cp, l.Base)
			links[id] = nl
			moves = append(moves, relink{Link: nl, From: old, Winner: id})
			cps = append(cps, cp)
			break
		}
	}
	if len(moves) == 0 {
		return nil
	}
	if _, err := step(ctx, p, "relink-winners:"+pg, func(ctx context.Context, a *Attempt) (int, error) {
		for _, m := range moves {
			detail, _ := json.Marshal(map[string]any{"merge": "relinked", "from": m.From, "winner": m.Winner})
			a.Link(m.Link)
			a.Audit(AuditEntry{Kind: AuditSkip, System: sd.name, RecordIDs: []string{m.From, m.Winner, otherID(m.Link, sd)}, Detail: detail})
		}
		return len(moves), nil
	}, nil); err != nil {
		return err
	}
	found, err := p.lookup(ctx, p.other(sd), "fetch-winners:"+pg, "id", cps)
	if err != nil {
		return err
	}
	for _, r := range found {
		byID[r.ID] = r
	}
	return nil
}

// mergeRecords returns the unlinked matches (records on side other) that a
// merge made from a linked record: one of their MergedFrom ids is linked.
// Such a match is not free: when it is read it takes that link over
// (merges), so linking it to another record now would leave the link on
// the merged-away id and the match's counterpart behind. The links are a
// step result.
func (p *pass) mergeRecords(ctx context.Context, other *side, pg string, matches []Record, taken map[string]Link) (map[string]bool, error) {
	var ids []string
	for _, r := range matches {
		if _, linked := taken[r.ID]; !linked {
			ids = append(ids, r.MergedFrom...)
		}
	}
	if len(ids) == 0 {
		return nil, nil
	}
	known, err := step(ctx, p, "links-merged-matched:"+pg, func(ctx context.Context, _ *Attempt) (map[string]Link, error) {
		return p.linksBy(ctx, other, dedupe(ids))
	}, nil)
	if err != nil {
		return nil, err
	}
	out := map[string]bool{}
	for _, r := range matches {
		if _, linked := taken[r.ID]; linked {
			continue
		}
		for _, old := range r.MergedFrom {
			if _, ok := known[old]; ok {
				out[r.ID] = true
			}
		}
	}
	return out, nil
}

// goneCounterparts asks the other side's CRM, if it is an IDResolver,
// about the linked counterparts of live records in recs that a lookup by
// id did not find and whose record is not flagged archived yet. A
// counterpart that resolves to nothing was archived or deleted there: it
// is added to byID as an archived record, so the pair flags the record
// archived. This catches an archive whose own read found the link on an id
// a merge took away since (the link moved to the survivor after the
// archive was read). The answers are a step result.
func (p *pass) goneCounterparts(ctx context.Context, sd *side, pg string, recs []Record, links map[string]Link, byID map[string]Record) error {
	other := p.other(sd)
	res, ok := other.crm.(IDResolver)
	if !ok {
		return nil
	}
	flag := archivedKeyPrefix + sd.name
	var ids []string
	for _, r := range recs {
		l, linked := links[r.ID]
		if r.Archived || !linked || l.Base[flag] == true {
			continue
		}
		if _, found := byID[otherID(l, sd)]; !found {
			ids = append(ids, otherID(l, sd))
		}
	}
	if len(ids) == 0 {
		return nil
	}
	gone, err := p.resolveIDs(ctx, other, res, "resolve-gone:"+pg, ids, false)
	if err != nil {
		return err
	}
	for _, id := range gone {
		byID[id] = Record{ID: id, Archived: true}
	}
	return nil
}

// resolveIDs asks sd's CRM (res), one call per id, what each of ids
// resolves to now, in one step named id, and returns the ids that resolve
// to a record (alive true) or to none (alive false).
func (p *pass) resolveIDs(ctx context.Context, sd *side, res IDResolver, id string, ids []string, alive bool) ([]string, error) {
	return step(ctx, p, id, func(ctx context.Context, _ *Attempt) ([]string, error) {
		var out []string
		for _, rid := range ids {
			p.apiCalls(sd.name, 1)
			to, err := res.ResolveID(ctx, sd.object, rid)
			if err != nil {
				return nil, err
			}
			if (to != "") == alive {
				out = append(out, rid)
			}
		}
		return out, nil
	}, nil)
}

// goneKeyPrefix keys, in a link's base, the mark that the record on a
// system ("$archived:gone:<system>") was read archived or deleted while its
// counterpart was already gone, so the pair could not flag anything.
const goneKeyPrefix = archivedKeyPrefix + "gone:"

// withGoneMark returns l with the gone mark mark set in a copy of its base.
func withGoneMark(l Link, mark string) Link {
	l.Base = maps.Clone(l.Base)
	if l.Base == nil {
		l.Base = Fields{}
	}
	l.Base[mark] = true
	l.UpdatedAt = time.Time{}
	return l
}

// goneMarks handles linked records whose counterpart a lookup by id did not
// find (nor goneCounterparts). An archived record marks its link's base (a
// step): neither side could be flagged, since both records were gone. A
// live record whose link carries the other side's mark, and which is not
// flagged archived yet, gets its counterpart added to byID as an archived
// record, so the pair flags it. This catches a counterpart restored after
// both deletions were read (Salesforce cannot say an id was deleted). The
// commit marks a link so too when a record read archived could not flag
// its counterpart because the flag's write found that record gone.
func (p *pass) goneMarks(ctx context.Context, sd *side, pg string, recs []Record, links map[string]Link, byID map[string]Record) error {
	other := p.other(sd)
	mine, theirs := goneKeyPrefix+sd.name, goneKeyPrefix+other.name
	var marks []Link
	for _, r := range recs {
		l, linked := links[r.ID]
		if !linked {
			continue
		}
		cp := otherID(l, sd)
		if _, found := byID[cp]; found {
			continue
		}
		switch {
		case r.Archived && l.Base[mine] != true:
			marks = append(marks, withGoneMark(l, mine))
		case !r.Archived && l.Base[theirs] == true && l.Base[archivedKeyPrefix+sd.name] != true:
			byID[cp] = Record{ID: cp, Archived: true}
		}
	}
	if len(marks) == 0 {
		return nil
	}
	_, err := step(ctx, p, "gone:"+pg, func(ctx context.Context, a *Attempt) (int, error) {
		a.Link(marks...)
		return len(marks), nil
	}, nil)
	return err
}

// newLink is a link between id on sd and cp on the other side.
func newLink(sd *side, id, cp string, base Fields) Link {
	if sd.isA {
		return Link{AID: id, BID: cp, Base: base}
	}
	return Link{AID: cp, BID: id, Base: base}
}

// recoverLinks finds, for records with no link row whose link field holds
// an id of the other side, that counterpart: a write landed but its link
// was never stored (a crash, a call whose outcome was unknown). The
// counterpart is taken only if no other record is linked to it and its own
// link field is empty or names the record. It returns them by record id.
func (p *pass) recoverLinks(ctx context.Context, sd *side, pg string, recs []Record, links map[string]Link) (map[string]Record, error) {
	other := p.other(sd)
	want := map[string]string{} // counterpart id -> record id
	var ids []string
	for _, r := range recs {
		if _, ok := links[r.ID]; ok {
			continue
		}
		v, _ := r.Fields[sd.linkField].(string)
		if v == "" {
			continue
		}
		if _, dup := want[v]; dup {
			continue // two records name one counterpart: neither is trusted over the other
		}
		want[v] = r.ID
		ids = append(ids, v)
	}
	out := map[string]Record{}
	if len(ids) == 0 {
		return out, nil
	}
	found, err := p.lookup(ctx, other, "recover:"+pg, "id", ids)
	if err != nil {
		return nil, err
	}
	var foundIDs []string
	for _, r := range found {
		foundIDs = append(foundIDs, r.ID)
	}
	taken, err := step(ctx, p, "links-recovered:"+pg, func(ctx context.Context, _ *Attempt) (map[string]Link, error) {
		return p.linksBy(ctx, other, foundIDs)
	}, nil)
	if err != nil {
		return nil, err
	}
	for _, cp := range found {
		rid, ok := want[cp.ID]
		if !ok {
			continue
		}
		if _, linked := taken[cp.ID]; linked {
			continue
		}
		if back, _ := cp.Fields[other.linkField].(string); back != "" && back != rid {
			continue
		}
		out[rid] = cp
	}
	return out, nil
}

// writePairs writes the merged pairs: first the other side (creates need
// their new ids), then the source side (its patches and link write-backs),
// then commits links, snapshots and conflicts.
func (p *pass) writePairs(ctx context.Context, sd *side, pg string, pairs []*pair) error {
	other := p.other(sd)
	toOther := p.opsFor(other, sd, pairs, nil)
	otherOut, err := p.writeAll(ctx, other, sd, pg, toOther, pairs)
	if err != nil {
		return err
	}
	created := map[int]string{} // pair -> id created on the other side
	for i, it := range toOther {
		if o := otherOut[i]; o.made() && o.ID != "" && it.Role == "create" {
			created[it.Pair] = o.ID
		}
	}
	toSrc := p.opsFor(sd, other, pairs, created)
	srcOut, err := p.writeAll(ctx, sd, sd, pg, toSrc, pairs)
	if err != nil {
		return err
	}
	if err := p.commit(ctx, sd, pg, pairs, toOther, otherOut, toSrc, srcOut); err != nil {
		return err
	}
	if err := p.readBack(ctx, other, pg, toOther, otherOut, pairs); err != nil {
		return err
	}
	return p.readBack(ctx, sd, pg, toSrc, srcOut, pairs)
}

// readBack reads back the records the pass wrote on side to (items, with
// their outcomes out), when to's change reads leave out the sync's own
// writes (OwnWriteFilter), and handles them as changes of that side. A
// person's edit that landed after the read window's end and before the
// write is in what it reads; the sync's own values match the snapshot just
// committed and write nothing. Records the write created are not read
// back (nobody could edit them before it), and what is read back does not
// count as read in the report. Records are read by id, and an upsert whose
// outcome is unknown by its match field, so that a create that landed
// unseen is linked through its link field as a later read would have. A
// create refused with no record made is read back by its match field too,
// whatever to's reads leave out: an earlier attempt of its call may have
// landed (a response lost, its repeat refused whole), and a record left
// unlinked would be created again by the source's next change, an upsert
// landing on it over any edit made there since. Such a refusal is parked
// here, not by its write step, and only if this read finds no live record
// holding its match value: a record found is the create's, and the write
// is audited as found, with no letter for a failure that did not happen.
// A create refused because another record holds its unique value names
// that record (Existing): it is read back by id and handled with the rest,
// and the create parked only if that did not link it (settleExisting).
// A create whose outcome is unknown is read back so on every side. A plan
// reads back what it would have written, as its view of the records shows
// them, so that its counts stay those of the pass.
func (p *pass) readBack(ctx context.Context, to *side, pg string, items []writeItem, out []writeOutcome, pairs []*pair) error {
	own := filtersOwn(to)
	var ids []string
	byField := map[string][]string{}
	seen := map[string]bool{}
	for i, o := range out {
		op := items[i].Op
		if items[i].Role == "create" && !o.made() && !o.Ledger && !o.Vanished {
			// Refused with no record, or unknown: it may have landed.
			if op.Kind == Upsert && op.MatchField != "" && op.MatchValue != "" {
				byField[op.MatchField] = append(byField[op.MatchField], op.MatchValue)
			}
			if o.ReadBack && o.Existing != "" && !seen[o.Existing] {
				// The record holding its unique value: read and matched.
				seen[o.Existing] = true
				ids = append(ids, o.Existing)
			}
			continue
		}
		if !own || (!o.made() && !o.Unknown) || (o.Created && !o.Ledger) {
			// Refused, or created by this very write: nobody edited it
			// before the write.
			continue
		}
		id := o.ID
		if id == "" {
			id = op.ID // an update whose result names no id
		}
		switch {
		case id != "" && !seen[id]:
			seen[id] = true
			ids = append(ids, id)
		case id == "" && op.Kind == Upsert && op.MatchField != "" && op.MatchValue != "":
			byField[op.MatchField] = append(byField[op.MatchField], op.MatchValue)
		}
	}
	recs, err := p.lookup(ctx, to, "back:"+pg+":"+to.name, "id", ids)
	if err != nil {
		return err
	}
	found := map[string]string{} // match field and value, joined by a NUL -> live record id
	for _, f := range slices.Sorted(maps.Keys(byField)) {
		more, err := p.lookup(ctx, to, "back:"+pg+":"+to.name+":"+f, f, dedupe(byField[f]))
		if err != nil {
			return err
		}
		for _, r := range more {
			if v, _ := r.Fields[f].(string); v != "" && !r.Archived {
				found[f+"\x00"+v] = r.ID
			}
		}
		recs = append(recs, more...)
	}
	existing := map[string]bool{} // live records read back by id
	for _, r := range recs {
		if !r.Archived {
			existing[r.ID] = true
		}
	}
	if err := p.parkUnfound(ctx, to, pg, items, out, pairs, found, existing); err != nil {
		return err
	}
	if len(recs) == 0 {
		return nil
	}
	if err := p.handle(ctx, to, pg+":back:"+to.name, recs); err != nil {
		return err
	}
	return p.settleExisting(ctx, to, pg, items, out, pairs, found, existing)
}

// deferred reports whether parkUnfound leaves the refused create o (of
// item it) to settleExisting: its match value was not found on a live
// record, and the record holding its unique value (Existing) was read
// back live, to be matched as a change.
func deferred(it writeItem, o writeOutcome, found map[string]string, existing map[string]bool) bool {
	if !o.ReadBack || o.Existing == "" || !existing[o.Existing] {
		return false
	}
	_, ok := found[it.Op.MatchField+"\x00"+it.Op.MatchValue]
	return !ok
}

// settleExisting settles, in one step after the read-back's records were
// handled, the creates refused because a live record held their unique
// value (deferred): the record is the person's, made or restored while
// the pass ran after its match found none. If handling it linked it to the
// create's source record, nothing failed: the refusal is audited as a skip
// naming the record, and no letter is parked. Otherwise (it is linked to
// another record, say) the create is parked as its write step parks a
// refusal, for a person to decide. The decision comes from step results
// and the links as the handled steps left them, so a resumed run makes the
// same one.
func (p *pass) settleExisting(ctx context.Context, to *side, pg string, items []writeItem, out []writeOutcome, pairs []*pair, found map[string]string, existing map[string]bool) error {
	var pending []int
	var srcIDs []string
	for i, o := range out {
		if deferred(items[i], o, found, existing) {
			pending = append(pending, i)
			srcIDs = append(srcIDs, pairs[items[i].Pair].src.ID)
		}
	}
	src := p.other(to)
	direction := src.name + "->" + to.name
	var links map[string]Link
	fetched := false // read once: a store may answer "no links" with a nil map
	return p.settleRefused(ctx, to, "back-matched:"+pg+":"+to.name, pending, items, out, pairs,
		func(ctx context.Context, a *Attempt, it writeItem, o writeOutcome, pr *pair) (bool, error) {
			if !fetched {
				l, err := p.linksBy(ctx, src, dedupe(srcIDs))
				if err != nil {
					return false, err
				}
				links, fetched = l, true
			}
			if l, ok := links[pr.src.ID]; !ok || otherID(l, src) != o.Existing {
				return false, nil
			}
			detail, _ := json.Marshal(map[string]any{"direction": direction, "role": it.Role, "op": it.Op.Kind,
				"outcome": "matched by read-back", "existing": o.Existing, "refused": o.Error})
			a.Audit(AuditEntry{Kind: AuditSkip, System: to.name, RecordIDs: []string{o.Existing, pr.src.ID}, IdemKey: it.Op.Key, Detail: detail})
			return true, nil
		})
}

// settleRefused settles, in step id, the creates of items at pending that
// their write step refused with no record made: settled handles one and
// reports whether it found the create's record (and audited it); one it
// did not is parked and ledgered as a write step parks a refusal, and
// counted in the report's dead letters.
func (p *pass) settleRefused(ctx context.Context, to *side, id string, pending []int, items []writeItem, out []writeOutcome, pairs []*pair,
	settled func(ctx context.Context, a *Attempt, it writeItem, o writeOutcome, pr *pair) (bool, error)) error {
	if len(pending) == 0 {
		return nil
	}
	src := p.other(to)
	parked, err := step(ctx, p, id, func(ctx context.Context, a *Attempt) (int, error) {
		n := 0
		for _, i := range pending {
			it, o, pr := items[i], out[i], pairs[items[i].Pair]
			ok, err := settled(ctx, a, it, o, pr)
			if err != nil {
				return 0, err
			}
			if !ok && !p.park(a, to, src, it, pr, o) {
				n++
			}
		}
		return n, nil
	}, nil)
	if err != nil {
		return err
	}
	p.mu.Lock()
	p.rep.direction(src.name, to.name).DeadLetters += parked
	p.mu.Unlock()
	return nil
}

// parkUnfound settles, in one step, the creates of items that their write
// step refused with no record made (ReadBack): one whose match value the
// read-back found on a live record (found) is ledgered and audited as a
// write that landed, its refusal a repeat's; any other is parked and
// ledgered as its write step parks a refusal; one whose Existing record
// was read back live is left to settleExisting. The decision comes from step results only
// (the write's outcome, the read-back's lookup), so a resumed run makes
// the same one.
func (p *pass) parkUnfound(ctx context.Context, to *side, pg string, items []writeItem, out []writeOutcome, pairs []*pair, found map[string]string, existing map[string]bool) error {
	var pending []int
	for i, o := range out {
		if o.ReadBack && !deferred(items[i], o, found, existing) {
			pending = append(pending, i)
		}
	}
	direction := p.other(to).name + "->" + to.name
	return p.settleRefused(ctx, to, "back-letters:"+pg+":"+to.name, pending, items, out, pairs,
		func(_ context.Context, a *Attempt, it writeItem, o writeOutcome, pr *pair) (bool, error) {
			id, ok := found[it.Op.MatchField+"\x00"+it.Op.MatchValue]
			if !ok {
				return false, nil
			}
			// The write landed: it is ledgered and audited as such, the
			// refusal its repeat's.
			landed, _ := json.Marshal(writeOutcome{ID: id, Created: true})
			a.RecordWrite(LedgerEntry{IdemKey: it.Op.Key, System: to.name, RecordID: id, Result: landed})
			detail, _ := json.Marshal(map[string]any{"direction": direction, "role": it.Role, "op": it.Op.Kind,
				"created": true, "fields": slices.Sorted(maps.Keys(it.Op.Fields)), "object": to.object,
				"outcome": "found by read-back", "refused": o.Error})
			a.Audit(AuditEntry{Kind: AuditWrite, System: to.name, RecordIDs: []string{id, pr.src.ID}, IdemKey: it.Op.Key, Detail: detail})
			return true, nil
		})
}

// opsFor builds the writes to side to. With created nil, to is the other
// side of the page's source records (from): patches and creates. Otherwise
// to is the source side itself: its patches and the link write-backs, with
// created holding the ids just created on the other side.
func (p *pass) opsFor(to, from *side, pairs []*pair, created map[int]string) []writeItem {
	var items []writeItem
	for i, pr := range pairs {
		if pr.mergeErr != nil {
			continue
		}
		patch := pr.res.PatchB
		if to.isA {
			patch = pr.res.PatchA
		}
		fields := Fields{}
		for k, v := range patch {
			if p.isDropped(to, k) {
				delete(patch, k) // not written: it is not a change to tally either
				continue
			}
			fields[k] = v
		}
		if created == nil { // to is the other side of the source records
			if pr.other.ID == "" {
				if len(fields) == 0 {
					continue // nothing to create (an archived record, say)
				}
				src := pr.src
				items = append(items, writeItem{Pair: i, Role: "create",
					Op: WriteOp{Kind: Upsert, MatchField: to.linkField, MatchValue: pr.src.ID, Fields: fields, Source: &src}})
				continue
			}
			// An archived record cannot be written: its link field waits
			// for its restore.
			if v, _ := pr.other.Fields[to.linkField].(string); v != pr.src.ID && !pr.other.Archived {
				fields[to.linkField] = pr.src.ID
			}
			if len(fields) == 0 {
				continue
			}
			role := "update"
			if len(patch) == 0 {
				role = "link"
			}
			items = append(items, writeItem{Pair: i, Role: role, Op: WriteOp{Kind: Update, ID: pr.other.ID, Fields: fields}})
			continue
		}
		// to is the source side: its patch, and the link write-back.
		otherID := pr.other.ID
		if id, ok := created[i]; ok {
			otherID = id
		}
		if otherID == "" {
			continue // the counterpart was not created; nothing to link
		}
		if v, _ := pr.src.Fields[to.linkField].(string); v != otherID && !pr.src.Archived {
			fields[to.linkField] = otherID
		}
		if len(fields) == 0 {
			continue
		}
		role := "update"
		if len(patch) == 0 {
			role = "link"
		}
		items = append(items, writeItem{Pair: i, Role: role, Op: WriteOp{Kind: Update, ID: pr.src.ID, Fields: fields}})
	}
	for i := range items {
		pr := pairs[items[i].Pair]
		items[i].Op.Key = idemKey(p.key, from.name, to.name, pr.src, items[i].Op)
	}
	return items
}

// idemKey derives a write's idempotency key from the concurrency key (the
// ledger is shared by every key of a store), its direction, the source
// record and version, and the payload.
func idemKey(key, from, to string, src Record, op WriteOp) string {
	h := sha256.New()
	fmt.Fprintf(h, "%q|%s>%s|%s|%s|%s|%s|%s|%s|", key, from, to, src.ID, src.ModifiedAt.UTC().Format(time.RFC3339Nano), op.Kind, op.ID, op.MatchField, op.MatchValue)
	names := make([]string, 0, len(op.Fields))
	for k := range op.Fields {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		v, _ := json.Marshal(op.Fields[k])
		fmt.Fprintf(h, "%s=%s;", k, v)
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// writeAll writes items to side to in batches, with bounded concurrency,
// each batch a step; src is the side of the page's source records. It
// returns one outcome per item.
func (p *pass) writeAll(ctx context.Context, to, src *side, pg string, items []writeItem, pairs []*pair) ([]writeOutcome, error) {
	out := make([]writeOutcome, len(items))
	if len(items) == 0 {
		return out, nil
	}
	size := to.crm.Limits().WriteBatch
	if size <= 0 {
		size = 100
	}
	// One kind per call: group by kind, keeping order within a kind.
	var batches [][]int
	for _, kind := range []WriteKind{Upsert, Update, Create} {
		var cur []int
		for i, it := range items {
			if it.Op.Kind != kind {
				continue
			}
			cur = append(cur, i)
			if len(cur) == size {
				batches = append(batches, cur)
				cur = nil
			}
		}
		if len(cur) > 0 {
			batches = append(batches, cur)
		}
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(p.s.c.WriteConcurrency)
	for bi, idx := range batches {
		batch := make([]writeItem, len(idx))
		for j, i := range idx {
			batch[j] = items[i]
		}
		id := fmt.Sprintf("write:%s:%s:%d", pg, to.name, bi)
		g.Go(func() error {
			res, err := p.writeBatch(gctx, to, src, id, batch, pairs)
			if err != nil {
				return err
			}
			for j, i := range idx {
				out[i] = res[j]
			}
			return nil
		})
	}
	return out, g.Wait()
}

// deadPayload is what a parked write keeps, so a person can see it and a
// replay can find the source record again.
type deadPayload struct {
	SourceSystem string   `json:"source_system"`
	SourceID     string   `json:"source_id"`
	TargetSystem string   `json:"target_system,omitempty"`
	Op           *WriteOp `json:"op,omitempty"`
	// Record is the source record where a replay cannot read it again by
	// id: a record that failed to merge, or an archived (deleted) one.
	Record *Record `json:"record,omitempty"`
}

// writeBatch is one durable write step. Ops that failed transiently are
// retried within the step (only they are sent again); ops that failed
// permanently are parked, but for creates refused with no record made,
// which the read-back parks unless it finds their record (ReadBack); the
// ledger skips ops applied by an earlier run.
func (p *pass) writeBatch(ctx context.Context, to, src *side, id string, batch []writeItem, pairs []*pair) ([]writeOutcome, error) {
	direction := p.other(to).name + "->" + to.name
	done := map[int]writeOutcome{}
	// gone holds, per item, the fields the API refused as naming archived
	// or deleted records (ReferenceError), with the ids refused: they are
	// left out when the item is sent again.
	gone := map[int]map[string][]string{}
	ledgerChecked := false
	landed, err := p.landedCreates(ctx, to, id, batch)
	if err != nil {
		return nil, err
	}
	out, err := step(ctx, p, id, func(ctx context.Context, a *Attempt) ([]writeOutcome, error) {
		if !ledgerChecked {
			keys := make([]string, len(batch))
			for i, it := range batch {
				keys[i] = it.Op.Key
			}
			applied, err := p.lookupWrites(ctx, keys)
			if err != nil {
				return nil, fmt.Errorf("ledger: %w", err)
			}
			for i, it := range batch {
				e, ok := applied[it.Op.Key]
				if !ok {
					continue
				}
				var prev writeOutcome
				_ = json.Unmarshal(e.Result, &prev)
				if prev.ok() {
					done[i] = writeOutcome{ID: e.RecordID, Ledger: true, Created: it.Role == "create", Gone: prev.Gone}
				} else if !p.replaying && !it.Resend {
					// The same write (same source version, same payload) was
					// refused and parked before: do not send it, or park it,
					// again. A replay or a new edit of the source sends it.
					// A record it made all the same is kept (partial).
					done[i] = writeOutcome{Error: prev.Error, Permanent: true, Ledger: true, ID: prev.ID, Created: prev.Created, Partial: prev.Partial}
				}
			}
			ledgerChecked = true
			for i, it := range batch {
				if _, ok := done[i]; !ok && landed[it.Op.MatchField+"\x00"+it.Op.MatchValue] != "" {
					// The earlier attempt's create landed: it is this
					// write, not sent again.
					done[i] = writeOutcome{ID: landed[it.Op.MatchField+"\x00"+it.Op.MatchValue], Created: true}
				}
			}
		}
		var pending []int
		for i := range batch {
			if _, ok := done[i]; !ok {
				pending = append(pending, i)
			}
		}
		var transient error
		for round := 0; len(pending) > 0 && transient == nil; round++ {
			var ops []WriteOp
			var res []WriteResult
			var err error
			for try := 0; ; try++ {
				ops = p.withoutDropped(to, batch, pending, gone)
				if p.plan != nil { // a plan writes nothing: it predicts
					res = p.plan.predict(to, ops)
					break
				}
				p.apiCalls(to.name, 1)
				res, err = to.crm.Write(ctx, to.object, ops)
				p.noteWrites(to, res)
				// A field the API refuses is left out from then on, and
				// the ops are sent again without it.
				names := refusedFields(err)
				for _, r := range res {
					names = append(names, refusedFields(r.Err)...)
				}
				if len(names) > 0 && try < maxFieldRetries {
					p.drop(to, names...)
					// Send again if these ops named a field left out now,
					// whether this refusal or a concurrent call's dropped it.
					if p.sentDropped(to, names, func(f string) bool {
						for _, op := range ops {
							if _, ok := op.Fields[f]; ok {
								return true
							}
						}
						return false
					}) {
						continue
					}
				}
				break
			}
			if err != nil && errors.Is(err, ErrUnauthorized) {
				// Refused credentials are no verdict on these records: do
				// not park them. The step fails (not memoized), and the run
				// resumes here once the credentials are fixed.
				return nil, fmt.Errorf("%s refused the write call's credentials (%v): %w", to.name, err.Error(), ErrUnauthorized)
			}
			// The client knows each op's outcome when it returns one result
			// per op (the CRM contract says it then returns a nil error;
			// a client that also returns an error is still taken at its
			// per-record word). Otherwise every op's outcome is unknown.
			if err != nil && len(res) != len(ops) {
				if !IsPermanent(err) {
					return nil, err // the whole call failed: try the pending ops again
				}
				// No retry fixes the call, and it may have landed: do not
				// park these ops as refused. Their pairs stay unlinked.
				for _, i := range pending {
					done[i] = writeOutcome{Error: err.Error(), Unknown: true}
				}
				pending = nil
			}
			var again []int
			for j, i := range pending {
				var rerr error
				var r WriteResult
				if j < len(res) {
					r, rerr = res[j], res[j].Err
				} else {
					rerr = Permanent(fmt.Errorf("%s returned %d results for %d writes", to.name, len(res), len(ops)))
				}
				var refErr *ReferenceError
				if rerr != nil && errors.As(rerr, &refErr) {
					// A reference to an archived or deleted record is no
					// verdict on the record: it is written without it.
					if g := p.goneFields(to, ops[j], refErr); len(g) > 0 {
						if gone[i] == nil {
							gone[i] = map[string][]string{}
						}
						for f, ids := range g {
							gone[i][f] = ids
						}
						var pe *PartialWriteError
						if r.ID != "" && !(errors.As(rerr, &pe) && slices.ContainsFunc(pe.Fields, func(f string) bool { _, ok := g[f]; return !ok })) {
							// The record was written; only references to
							// archived or deleted records were refused.
							done[i] = writeOutcome{ID: r.ID, Created: r.Created, Gone: gone[i]}
							continue
						}
						if left := p.withoutDropped(to, batch, []int{i}, gone)[0]; len(left.Fields) == 0 && left.Kind == Update {
							// Nothing else to write: the record is as it was.
							done[i] = writeOutcome{ID: left.ID, Gone: gone[i]}
							continue
						}
						if round < maxFieldRetries {
							again = append(again, i)
							continue
						}
					}
				}
				switch {
				case rerr == nil:
					done[i] = writeOutcome{ID: r.ID, Created: r.Created, Gone: gone[i]}
				case errors.Is(rerr, ErrRecordGone) && r.ID == "":
					done[i] = writeOutcome{Error: rerr.Error(), Permanent: true, Vanished: true}
				case IsPermanent(rerr):
					o := writeOutcome{Error: rerr.Error(), Permanent: true}
					var dup *DuplicateError
					if r.ID == "" && batch[i].Role == "create" && errors.As(rerr, &dup) {
						o.Existing = dup.ExistingID
					}
					if r.ID != "" {
						// The record was made or updated, only a part of the
						// write was refused: it exists, so its pair is linked.
						o.ID, o.Created, o.Gone = r.ID, r.Created, gone[i]
						o.Partial = partialFields(rerr, ops[j])
					}
					done[i] = o
				default:
					if transient == nil {
						transient = rerr
					}
				}
			}
			pending = again
		}
		if transient != nil {
			return nil, fmt.Errorf("%d of %d writes to %s failed transiently: %w", len(batch)-len(done), len(batch), to.name, transient)
		}
		out := make([]writeOutcome, len(batch))
		for i, it := range batch {
			o := done[i]
			out[i] = o
			pr := pairs[it.Pair]
			if o.ok() {
				if o.Ledger {
					continue
				}
				okResult, _ := json.Marshal(writeOutcome{ID: o.ID, Created: o.Created, Gone: o.Gone})
				a.RecordWrite(LedgerEntry{IdemKey: it.Op.Key, System: to.name, RecordID: o.ID, Result: okResult})
				names := make([]string, 0, len(it.Op.Fields))
				for k := range it.Op.Fields {
					names = append(names, k)
				}
				sort.Strings(names)
				fields := map[string]any{"direction": direction, "role": it.Role,
					"op": it.Op.Kind, "created": o.Created, "fields": names, "object": to.object}
				if len(o.Gone) > 0 {
					fields["refused_references"] = slices.Sorted(maps.Keys(o.Gone))
				}
				detail, _ := json.Marshal(fields)
				a.Audit(AuditEntry{Kind: AuditWrite, System: to.name, RecordIDs: []string{o.ID, pr.src.ID}, IdemKey: it.Op.Key, Detail: detail})
				continue
			}
			if o.Ledger {
				continue // parked by an earlier run
			}
			if o.Vanished {
				detail, _ := json.Marshal(map[string]any{"direction": direction, "role": it.Role, "op": it.Op.Kind, "outcome": "record gone", "error": o.Error})
				a.Audit(AuditEntry{Kind: AuditSkip, System: to.name, RecordIDs: []string{it.Op.ID, pr.src.ID}, IdemKey: it.Op.Key, Detail: detail})
				p.skip(src, pr.src.ID, "", "write to "+to.name+" record "+it.Op.ID+" refused: archived or deleted since it was read; not parked, its archive is handled when read")
				continue
			}
			if o.Unknown {
				detail, _ := json.Marshal(map[string]any{"direction": direction, "role": it.Role, "op": it.Op.Kind, "outcome": "unknown", "error": o.Error})
				a.Audit(AuditEntry{Kind: AuditSkip, System: to.name, RecordIDs: []string{pr.src.ID}, IdemKey: it.Op.Key, Detail: detail})
				p.skip(src, pr.src.ID, "", "write to "+to.name+" failed as a whole call, outcome unknown: left unlinked and not parked; if it landed, the link is recovered through the link field")
				continue
			}
			if op := it.Op; it.Role == "create" && o.ID == "" && op.Kind == Upsert && op.MatchField != "" && op.MatchValue != "" {
				// An earlier attempt of the call may have landed (its
				// response lost, its repeat refused whole): the read-back
				// parks it unless it finds the record.
				out[i].ReadBack = true
				continue
			}
			out[i].Again = p.park(a, to, src, it, pr, o)
		}
		return out, nil
	}, nil)
	if err == nil && p.plan != nil {
		p.plan.record(p, to, src, batch, out, pairs)
	}
	return out, err
}

// park parks item it, a write to side to of the change of pr's source
// record (on side src) refused with outcome o, and ledgers its refusal,
// so the same write is neither sent nor parked again until a replay or a
// new edit. It reports whether the letter updates one the run replays
// (failed again) rather than parking a new one.
func (p *pass) park(a *Attempt, to, src *side, it writeItem, pr *pair, o writeOutcome) bool {
	op := it.Op
	payload, _ := json.Marshal(deadPayload{SourceSystem: src.name, SourceID: pr.src.ID, TargetSystem: to.name, Op: &op, Record: replayRecord(pr.src)})
	rid := it.Op.ID
	if rid == "" {
		rid = pr.src.ID
	}
	a.DeadLetter(DeadLetter{System: to.name, RecordID: rid, Payload: payload, Error: o.Error})
	failed, _ := json.Marshal(writeOutcome{Error: o.Error, Permanent: true, ID: o.ID, Created: o.Created, Partial: o.Partial})
	a.RecordWrite(LedgerEntry{IdemKey: it.Op.Key, System: to.name, RecordID: rid, Result: failed})
	return a.failedAgain()
}

// landedCreates finds, in a resumed run whose write step id is not stored,
// the creates of batch (upserts on a match field) an earlier attempt made:
// the records on side to whose match field holds the create's value, read
// in one lookup per match field. The earlier attempt may have been lost
// after its call landed and before the step was stored, and a person may
// have edited the record since: sending the same upsert again would write
// over that edit. It returns the match field and value (joined by a NUL)
// of each create found, with the record's id: the create is that record,
// linked with the values it was sent, and an edit made to it since is a
// change of to the next read finds. A run that is not resumed, or a plan,
// looks up nothing.
func (p *pass) landedCreates(ctx context.Context, to *side, id string, batch []writeItem) (map[string]string, error) {
	if p.run == nil || !p.run.Resumed || p.plan != nil || p.run.stored(p.stepID(id)) {
		return nil, nil
	}
	byField := map[string][]string{}
	for _, it := range batch {
		if op := it.Op; it.Role == "create" && op.Kind == Upsert && op.MatchField != "" && op.MatchValue != "" {
			byField[op.MatchField] = append(byField[op.MatchField], op.MatchValue)
		}
	}
	found := map[string]string{}
	for _, f := range slices.Sorted(maps.Keys(byField)) {
		recs, err := p.lookup(ctx, to, "landed:"+id+":"+f, f, dedupe(byField[f]))
		if err != nil {
			return nil, err
		}
		for _, r := range recs {
			if v, _ := r.Fields[f].(string); v != "" && !r.Archived {
				found[f+"\x00"+v] = r.ID
			}
		}
	}
	return found, nil
}

// goneFields returns, for a write refused with a ReferenceError, the op's
// fields it refused with the ids refused in each: the fields it names, or
// every reference field of the op when it names none; the ids it names
// among a field's, or all of them when it names none. Only fields of
// reference rules (FieldRule.Ref) the op holds count: a refused field of
// any other rule is no reference the sync can leave out, and its record
// is parked.
func (p *pass) goneFields(to *side, op WriteOp, e *ReferenceError) map[string][]string {
	var names []string
	for _, i := range p.s.refRules() {
		f := refField(p.s.c.Policy.Rules[i], to)
		if len(e.Fields) == 0 || slices.Contains(e.Fields, f) {
			names = append(names, f)
		}
	}
	out := map[string][]string{}
	for _, f := range names {
		v, ok := op.Fields[f]
		if !ok {
			continue
		}
		ids := splitIDs(v)
		if len(e.IDs) > 0 {
			ids = slices.DeleteFunc(ids, func(id string) bool { return !slices.Contains(e.IDs, id) })
		}
		out[f] = ids
	}
	return out
}

// refField is rule r's field on side sd.
func refField(r FieldRule, sd *side) string {
	if sd.isA {
		return r.A
	}
	return r.B
}

// partialFields returns the op's fields a refused write whose record was
// written did not write: those a PartialWriteError names, or all of them.
func partialFields(err error, op WriteOp) []string {
	var pe *PartialWriteError
	if errors.As(err, &pe) && len(pe.Fields) > 0 {
		return slices.Clone(pe.Fields)
	}
	return slices.Sorted(maps.Keys(op.Fields))
}

// sentDropped reports whether a call that named (sent) some of the refused
// fields names can be sent again: one it named is left out on sd now.
func (p *pass) sentDropped(sd *side, names []string, sent func(string) bool) bool {
	for _, f := range names {
		if sent(f) && p.isDropped(sd, f) {
			return true
		}
	}
	return false
}

// withoutDropped returns the ops of batch at pending, less the fields
// dropped on side to and the fields refused (gone) for each item.
func (p *pass) withoutDropped(to *side, batch []writeItem, pending []int, gone map[int]map[string][]string) []WriteOp {
	ops := make([]WriteOp, len(pending))
	for j, i := range pending {
		op := batch[i].Op
		fields := make(Fields, len(op.Fields))
		for k, v := range op.Fields {
			if _, refused := gone[i][k]; !refused && !p.isDropped(to, k) {
				fields[k] = v
			}
		}
		op.Fields = fields
		ops[j] = op
	}
	return ops
}

func (p *pass) linksBy(ctx context.Context, sd *side, ids []string) (map[string]Link, error) {
	if len(ids) == 0 {
		return map[string]Link{}, nil
	}
	var links map[string]Link
	var err error
	links, err = p.storeLinks(ctx, p.key, sd.isA, ids)
	if err != nil || p.plan == nil {
		return links, err
	}
	return p.plan.links(links, sd.isA, ids), nil
}

// lookup finds records on sd whose field holds one of values, in batches,
// each a step.
func (p *pass) lookup(ctx context.Context, sd *side, prefix, field string, values []string) ([]Record, error) {
	size := sd.crm.Limits().LookupBatch
	if size <= 0 {
		size = 100
	}
	type lookupResult struct {
		Records []Record `json:"records"`
		Dropped []string `json:"dropped,omitempty"`
	}
	var out []Record
	all := values
	if p.plan != nil {
		values = p.plan.lookupValues(field, values)
	}
	for j := 0; len(values) > 0; j++ {
		chunk := values[:min(size, len(values))]
		values = values[len(chunk):]
		lr, err := step(ctx, p, fmt.Sprintf("%s:%d", prefix, j), func(ctx context.Context, _ *Attempt) (lookupResult, error) {
			var res lookupResult
			for try := 0; ; try++ {
				p.apiCalls(sd.name, 1)
				fields := p.fieldsFor(sd)
				recs, err := sd.crm.Lookup(ctx, sd.object, field, chunk, fields)
				if names := refusedFields(err); len(names) > 0 && try < maxFieldRetries {
					added := p.drop(sd, names...)
					res.Dropped = append(res.Dropped, added...)
					// (A concurrent call may have dropped them first.)
					if p.sentDropped(sd, names, func(f string) bool { return slices.Contains(fields, f) }) {
						continue
					}
				}
				res.Records = recs
				return res, err
			}
		}, nil)
		if err != nil {
			return nil, err
		}
		p.drop(sd, lr.Dropped...)
		out = append(out, lr.Records...)
	}
	if p.plan != nil {
		out = p.plan.lookupView(sd.name, field, all, out)
	}
	return out, nil
}

func otherID(l Link, sd *side) string {
	if sd.isA {
		return l.BID
	}
	return l.AID
}

// latestByID keeps the newest version of each record, in first-seen order.
func latestByID(recs []Record) []Record {
	idx := map[string]int{}
	var out []Record
	for _, r := range recs {
		if i, ok := idx[r.ID]; ok {
			if r.ModifiedAt.After(out[i].ModifiedAt) {
				out[i] = r
			}
			continue
		}
		idx[r.ID] = len(out)
		out = append(out, r)
	}
	return out
}

func (p *pass) skip(sd *side, id, field, reason string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.rep.Skips = append(p.rep.Skips, SkipNote{System: sd.name, RecordID: id, Field: field, Reason: reason})
}

// commit stores, in one step, the links and base snapshots of the pairs
// whose writes landed, the conflicts, and the audit rows for conflicts,
// skips and records that could not be merged.
func (p *pass) commit(ctx context.Context, sd *side, pg string, pairs []*pair, toOther []writeItem, otherOut []writeOutcome, toSrc []writeItem, srcOut []writeOutcome) error {
	other := p.other(sd)
	type state struct {
		otherID, srcID string
		failed         bool
		// vanished marks a write to the other side refused because its
		// record is gone (archived or deleted meanwhile); unknown, a write
		// whose outcome is unknown.
		vanished, unknown bool
		wroteO, wroteS    bool
		created           bool
		// keep names the rules whose write did not land: their base stays.
		keep map[string]bool
		// gone holds, per reference rule, the ids (side A's) a write was
		// refused for naming archived or deleted records.
		gone map[string][]string
	}
	st := make([]state, len(pairs))
	for i, pr := range pairs {
		st[i].otherID = pr.other.ID
	}
	// unlanded notes in s the rules of the fields o's write to side to
	// did not write.
	unlanded := func(s *state, pr *pair, to *side, o writeOutcome) {
		for _, r := range p.s.c.Policy.Rules {
			f := refField(r, to)
			ids, refused := o.Gone[f]
			if !refused && !slices.Contains(o.Partial, f) {
				continue
			}
			if s.keep == nil {
				s.keep = map[string]bool{}
			}
			s.keep[r.Key()] = true
			if !refused || r.Ref == "" {
				continue
			}
			if s.gone == nil {
				s.gone = map[string][]string{}
			}
			for _, id := range ids {
				if !to.isA {
					a, ok := pr.refs[r.Ref].BToA[id]
					if !ok {
						continue
					}
					id = a
				}
				s.gone[r.Key()] = append(s.gone[r.Key()], id)
			}
		}
	}
	for i, it := range toOther {
		o := otherOut[i]
		s := &st[it.Pair]
		if !o.made() {
			s.failed = true
			s.vanished = s.vanished || o.Vanished
			s.unknown = s.unknown || o.Unknown
			continue
		}
		unlanded(s, pairs[it.Pair], other, o)
		if it.Role == "create" {
			s.otherID, s.created = o.ID, true
			continue
		}
		if o.ID != "" && o.ID != it.Op.ID && !o.Ledger {
			s.otherID = o.ID // the record was merged: the write went to the winner
		}
		if it.Role == "update" {
			s.wroteO = true
		}
	}
	for i, it := range toSrc {
		if !srcOut[i].made() {
			if it.Role != "link" {
				s := &st[it.Pair]
				s.failed = true
				s.unknown = s.unknown || srcOut[i].Unknown
			}
			continue
		}
		unlanded(&st[it.Pair], pairs[it.Pair], sd, srcOut[i])
		if o := srcOut[i]; o.ID != "" && o.ID != it.Op.ID && !o.Ledger {
			st[it.Pair].srcID = o.ID // the source record was merged into o.ID
		}
		if it.Role == "update" {
			st[it.Pair].wroteS = true
		}
	}
	dir := p.rep.direction(sd.name, other.name)
	back := p.rep.direction(other.name, sd.name)
	type commitResult struct {
		Links        int             `json:"links"`
		NewConflicts map[string]bool `json:"new_conflicts,omitempty"`
		Parked       map[int]bool    `json:"parked,omitempty"` // pairs whose merge failure was parked now as a new letter
	}
	cr, err := step(ctx, p, "commit:"+pg, func(ctx context.Context, a *Attempt) (commitResult, error) {
		res := commitResult{NewConflicts: map[string]bool{}, Parked: map[int]bool{}}
		for i, pr := range pairs {
			s := st[i]
			if pr.mergeErr != nil {
				var ve *ValueError
				reason := "merge failed"
				if errors.As(pr.mergeErr, &ve) {
					reason = "bad value in " + ve.Field
				}
				// Park it once per version of the source record.
				key := idemKey(p.key, sd.name, "merge", pr.src, WriteOp{})
				prev, err := p.lookupWrites(ctx, []string{key})
				if err != nil {
					return res, err
				}
				if _, seen := prev[key]; seen && !p.replaying {
					continue
				}
				rec := pr.src
				payload, _ := json.Marshal(deadPayload{SourceSystem: sd.name, SourceID: pr.src.ID, Record: &rec})
				d := DeadLetter{System: sd.name, RecordID: pr.src.ID, Payload: payload, Error: reason + ": " + pr.mergeErr.Error()}
				a.DeadLetter(d)
				failed, _ := json.Marshal(writeOutcome{Error: reason, Permanent: true})
				a.RecordWrite(LedgerEntry{IdemKey: key, System: sd.name, RecordID: pr.src.ID, Result: failed})
				res.Parked[i] = !a.failedAgain()
				continue
			}
			srcID := pr.src.ID
			if s.srcID != "" {
				srcID = s.srcID
			}
			aID, bID := srcID, s.otherID
			if !sd.isA {
				aID, bID = s.otherID, srcID
			}
			for _, c := range pr.res.Conflicts {
				// A conflict seen before (same records, field and values) is
				// neither saved nor told again.
				if seen, err := p.conflictSeen(ctx, c.ID); err != nil {
					return res, err
				} else if seen {
					continue
				}
				res.NewConflicts[c.ID] = true
				c.Key = p.key
				a.SaveConflicts(c)
				detail, _ := json.Marshal(map[string]any{"conflict": c.ID, "field": c.Field, "winner": c.Winner, "rule": c.Rule, "held": c.Held})
				a.Audit(AuditEntry{Kind: AuditConflict, RecordIDs: []string{c.RecordA, c.RecordB}, Detail: detail})
			}
			for _, sk := range pr.res.Skipped {
				detail, _ := json.Marshal(sk)
				a.Audit(AuditEntry{Kind: AuditSkip, System: sk.Side, RecordIDs: []string{pr.src.ID}, Detail: detail})
			}
			if aID == "" || bID == "" {
				continue // no pair yet
			}
			if s.failed {
				// A write did not land: keep the old base. A new pair of
				// two records, whose write was refused (parked) or found
				// its record gone (archived, deleted or merged away since
				// the read), is linked all the same, with an empty base:
				// its link fields may name each other already, and a merge
				// or an archive of either record must follow the link
				// (else a merge's loser leaves its counterpart unlinked,
				// and it gets a second record on the other side). Not when
				// a write's outcome is unknown: a create may not have
				// landed, and the read-back or the link field settles it.
				if pr.link == nil && !s.created && !s.unknown {
					a.Link(Link{AID: aID, BID: bID, Base: Fields{}})
					res.Links++
				}
				// An archived source whose counterpart vanished before it
				// could be flagged: both records are gone, and the link
				// says so (goneMarks), so that the counterpart, if it is
				// restored while the source stays gone, is flagged then.
				if mark := goneKeyPrefix + sd.name; s.vanished && pr.src.Archived && pr.link != nil && pr.link.Base[mark] != true {
					a.Link(withGoneMark(*pr.link, mark))
					res.Links++
				}
				continue
			}
			p.keepDroppedBase(pr)
			p.keepBase(pr, s.keep)
			p.goneBase(pr, s.gone)
			if pr.link != nil && pr.link.AID == aID && pr.link.BID == bID && sameFields(pr.link.Base, pr.res.NewBase) {
				continue
			}
			a.Link(Link{AID: aID, BID: bID, Base: pr.res.NewBase})
			res.Links++
		}
		return res, nil
	}, nil)
	if err != nil {
		return err
	}
	// A pair a write was refused for a reference to an archived or deleted
	// record waits: it is read again next pass, when the merge leaves that
	// reference out.
	for i, pr := range pairs {
		if k := sortedKeys(st[i].gone); len(k) > 0 {
			p.wait(sd, pr.src.ID, k[0], "reference "+k[0]+" names a record archived or deleted on the other side: written without it, and left out of the sync while a side names that record")
		}
	}
	// Tally the report from the (replayable) outcomes.
	p.mu.Lock()
	defer p.mu.Unlock()
	for i, pr := range pairs {
		s := st[i]
		if pr.mergeErr != nil {
			if cr.Parked[i] {
				dir.DeadLetters++
			}
			continue
		}
		switch {
		case s.created:
			dir.Created++
		case s.wroteO:
			dir.Updated++
		}
		if s.wroteS {
			back.Updated++
		}
		if pr.res.Empty() && len(pr.res.Conflicts) == 0 && pr.link != nil {
			dir.Unchanged++
		}
		if archivedIn(pr.res, p.s.c.Policy, other.name) {
			dir.Archived++
		}
		for _, sk := range pr.res.Skipped {
			// A change the policy kept from the other side (reverted or not
			// copied because the other side owns the field).
			if strings.Contains(sk.Reason, "reverted") || strings.Contains(sk.Reason, "not copied") {
				dir.OwnedElsewhere++
				break
			}
		}
		for _, c := range pr.res.Conflicts {
			if !cr.NewConflicts[c.ID] {
				continue
			}
			p.rep.Conflicts++
			if c.Held {
				p.rep.Held++
			}
			c.Key = p.key
			p.conflicts = append(p.conflicts, c)
		}
	}
	for _, o := range otherOut {
		if o.parked() {
			dir.DeadLetters++
		}
	}
	for _, o := range srcOut {
		if o.parked() {
			back.DeadLetters++
		}
	}
	return nil
}

// keepDroppedBase keeps, in pr's new base, the old base of every rule
// whose field is dropped on either side in this pass: nothing was read or
// written there, so nothing was synced.
func (p *pass) keepDroppedBase(pr *pair) {
	for _, r := range p.s.c.Policy.Rules {
		if p.isDropped(p.a, r.A) || p.isDropped(p.b, r.B) {
			pr.keepOldBase(r.Key())
		}
	}
}

// keepBase keeps, in pr's new base, the old base of the rules keep names:
// their write did not land, so they are written again.
func (p *pass) keepBase(pr *pair, keep map[string]bool) {
	for k := range keep {
		pr.keepOldBase(k)
	}
}

// keepOldBase sets key k of pr's new base back to its link's old base, or
// removes it where the old base had none.
func (pr *pair) keepOldBase(k string) {
	if pr.link != nil {
		if old, had := pr.link.Base[k]; had {
			pr.res.NewBase[k] = old
			return
		}
	}
	delete(pr.res.NewBase, k)
}

func archivedIn(res MergeResult, pol *Policy, system string) bool {
	field := pol.Archived.B
	patch := res.PatchB
	if system == pol.A {
		field, patch = pol.Archived.A, res.PatchA
	}
	if field == "" {
		return false
	}
	v, ok := patch[field]
	if !ok {
		return false
	}
	switch x := v.(type) {
	case bool:
		return x
	case string:
		return x == "true"
	}
	return false
}

func sameFields(a, b Fields) bool {
	if len(a) != len(b) {
		return false
	}
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return string(ja) == string(jb)
}

// identityValues are the values of other's identity field to look up for
// keys: each key's forms when the policy names them, else the keys.
func identityValues(pol *Policy, other *side, keys []string) []string {
	forms := pol.Identity.ValuesB
	if other.name == pol.A {
		forms = pol.Identity.ValuesA
	}
	if forms == nil {
		return keys
	}
	var out []string
	seen := map[string]bool{}
	for _, k := range keys {
		for _, v := range forms(k) {
			if v != "" && !seen[v] {
				seen[v] = true
				out = append(out, v)
			}
		}
	}
	return out
}

// ambiguousReason says, by record ids only, why an unlinked record was
// neither linked nor created: its identity key is shared.
func ambiguousReason(sd, other *side, id string, same, cands []string) string {
	var peers []string
	for _, s := range same {
		if s != id {
			peers = append(peers, s)
		}
	}
	msg := "ambiguous identity match, linked and created nothing: " + other.name + " records " + strings.Join(cands, ", ") + " have the same identity"
	if len(peers) > 0 {
		msg += ", and so do " + sd.name + " records " + strings.Join(peers, ", ")
	}
	return msg + "; link one by hand or make the identities differ"
}
