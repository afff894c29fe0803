package crmsync

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"
)

// What a lagging side's passes know, and how a pass checks by count what
// an earlier pass read rather than read it again.
//
// A CRM whose change reads lag its writes (HubSpot search) may list a
// record late, and a CRM clock that runs behind the sync host's stamps an
// edit inside a window already read. So each pass starts reading at its
// cursor less Overlap, and the cursor stays the change lag short of the
// window's end: each window begins with the previous window's last minutes
// (its tail). And an hour later the delayed window (SyncConfig.DelayedLag)
// covers the hour again, for a record listed later still. After a burst of
// edits both hold the burst, and reading them again costs as much as the
// burst's read.
//
// Instead, a pass keeps the id and stamp of every record it read (the
// cursor "<system>:known", written when they change; the tail's span and
// the stamp lag go in "<system>:tail"), for as long as a later tail or
// delayed window covers them, with the read's bound: the window's end less
// how far the CRM's stamps were measured to run behind the host's clock
// (on the side's own writes, whose answers carry the record's new stamp;
// Overlap without a measurement of the last day) and stampMargin. Search
// hits are read by id, live, so an edit made after a read is stamped at
// or after its bound.
//
// The tail: the next pass counts (ChangeCounter: one search call) the part
// of its window the previous pass read, up to the first bound of a record
// read there, and reads the rest (past the newest record read, and the
// stretch a clock behind the host's could stamp again). It reads the
// counted part again when the count is not the records known there less
// those it read again with a newer stamp and those it saw leave (read
// archived, or named merged away by a merged record's MergedFrom). A
// record listed late raises the count; one edited again moves past the
// counted part; one that left is not listed, and a record listed late
// would hide behind it if the pass still expected it there.
//
// The delayed window [D, E), on a side whose archived reads list the whole
// bin (WholeBinReader): E is lowered to the first bound of a record known
// in it, so that no record known there can have been stamped again inside
// it. After the pass's own read, one search counts what is listed from D
// on, with no upper end (a known record edited again later stays counted):
// n. The records known from D on are k. n > k: something is listed that
// no pass read at a stamp from D on (listed late, or edited into the
// window by an edit no pass read); the window is read page by page, as it
// always was. Else the check waits for the next bin read (the bin's own
// cadence, SyncConfig.ArchivedEvery), which tells the known records that
// left meanwhile: n must equal k less those (read archived, or named
// merged away by a merged record's MergedFrom). Equal: every record listed
// from D on had been read at a stamp from D on, and none known in [D, E)
// was stamped again inside it, so every record stamped in [D, E) was read
// at its stamp. Different: the window is read page by page. A record that
// leaves without passing the bin (merged away while the merged record is
// not read yet, deleted for good) makes n short; only a record listed late
// alongside it can hide behind it, the one case a count can miss.
//
// Lowering E to the first bound made the delayed windows crawl: after a
// spell of passes that each read something, each hourly check reached one
// pass's bound further, and a late edit past them waited hours. So when E
// is lowered, that pass counts nothing: it reads by id, in one call, the
// records whose bounds lower E (vouchDelayed). One found as it was read,
// or edited again only past the window, lowers nothing; one edited inside
// the window after its read means an edit no pass read there, and the
// window is read at once. The next pass counts up to the first bound of a
// record not vouched for (none found, or past the call's 100). The read is
// on a pass of its own so that a quiet tick stays at one extra call.

// maxKnown bounds the records a side's known state keeps; past it the
// state is dropped and the windows it covered are read again page by page.
const maxKnown = 20_000

// stampMargin is added to the measured lag of a CRM's stamps behind the
// host's clock, for stamps truncated to coarser steps than milliseconds.
const stampMargin = 100 * time.Millisecond

// skewMaxAge is how long a measurement of a CRM's stamp lag is used; after
// it, with no write to measure again, Overlap stands for it.
const skewMaxAge = 24 * time.Hour

// knownCursor names the cursor holding what a side's passes read, and
// tailCursor the one holding the span of its tail.
func knownCursor(system string) string { return system + ":known" }

func tailCursor(system string) string { return system + ":tail" }

// checkCursor names the cursor holding a side's delayed check waiting for a
// bin read.
func checkCursor(system string) string { return system + ":check" }

// knownState is what a lagging side's passes read: its records, in the
// cursor "<system>:known" (written only when they change), and the tail's
// span and the stamp lag, in the small cursor "<system>:tail".
type knownState struct {
	tailSpan
	knownReads
	// sorted is entries(), as loaded.
	sorted []knownEntry
}

// tailSpan is the small part of a known state.
type tailSpan struct {
	// Since and Until bound the tail: the next window's start and the
	// last window's end.
	Since time.Time `json:"since"`
	Until time.Time `json:"until"`
	// Behind is how far the CRM's stamps were measured to run behind the
	// host's clock (milliseconds, at least 0), at Measured.
	Behind   int64     `json:"behind_ms,omitempty"`
	Measured time.Time `json:"measured,omitzero"`
}

// knownReads is the large part of a known state.
type knownReads struct {
	// Reads holds, per pass, the records it read still known (each id
	// in the newest read only).
	Reads []knownRead `json:"reads,omitempty"`
	// Partial is set when records went over maxKnown: records read with
	// a stamp before it may be missing.
	Partial time.Time `json:"partial,omitzero"`
}

// knownRead is the records one pass read.
type knownRead struct {
	// Bound (Unix milliseconds): an edit made after the read is stamped
	// at or after it.
	Bound int64 `json:"bound"`
	// Stamps maps each record read to its stamp (Unix milliseconds).
	Stamps map[string]int64 `json:"stamps"`
}

// knownEntry is one known record.
type knownEntry struct {
	id           string
	stamp, bound int64
}

// entries lists the known records, by stamp.
func (k knownState) entries() []knownEntry {
	seen := map[string]int{}
	var out []knownEntry
	for _, r := range k.Reads {
		for id, ms := range r.Stamps {
			e := knownEntry{id: id, stamp: ms, bound: r.Bound}
			if i, ok := seen[id]; ok {
				if e.stamp >= out[i].stamp {
					out[i] = e
				}
				continue
			}
			seen[id] = len(out)
			out = append(out, e)
		}
	}
	slices.SortFunc(out, func(a, b knownEntry) int {
		if a.stamp != b.stamp {
			return compareInt(a.stamp, b.stamp)
		}
		return compareInt(a.bound, b.bound)
	})
	return out
}

func compareInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// capEnd lowers end (Unix ms) until every entry stamped in [from, end) has a
// bound at or past it: no record known there can have been stamped again
// inside. es is sorted by stamp.
func capEnd(es []knownEntry, from, end int64) int64 {
	return capEndExcept(es, from, end, nil)
}

// capEndExcept is capEnd with the entries except names left out (nil:
// none).
func capEndExcept(es []knownEntry, from, end int64, except func(id string) bool) int64 {
	for _, e := range es {
		if e.stamp < from {
			continue
		}
		if e.stamp >= end {
			break
		}
		if except != nil && except(e.id) {
			continue
		}
		end = min(end, e.bound)
	}
	return end
}

// vouchSet lists what vouchDelayed reads for a delayed window [from, to):
// the records known there whose bounds fall inside it, by stamp, at most
// size, less those skip names (nil: none), with their known stamps; and
// where a check would end if every one of them were found as read.
func vouchSet(es []knownEntry, from, to int64, size int, skip func(id string) bool) (map[string]int64, []string, int64) {
	stamps := map[string]int64{}
	var ids []string
	for _, e := range es {
		if e.stamp >= to || len(ids) == size {
			break
		}
		if e.stamp < from || e.bound >= to {
			continue
		}
		if _, dup := stamps[e.id]; dup || (skip != nil && skip(e.id)) {
			continue
		}
		stamps[e.id] = e.stamp
		ids = append(ids, e.id)
	}
	reach := capEndExcept(es, from, to, func(id string) bool {
		_, in := stamps[id]
		return in || (skip != nil && skip(id))
	})
	return stamps, ids, reach
}

// lookupBatch is how many ids one Lookup of sd takes.
func lookupBatch(sd *side) int {
	if n := sd.crm.Limits().LookupBatch; n > 0 {
		return n
	}
	return 100
}

// split reports where the counted part of the tail ends for a window from
// since to until: a millisecond past the newest stamp known there, lowered
// to the first bound of a record known there (capEnd), so that a record
// of the tail edited again is read, not counted. ok is false when the tail
// does not fit the window or holds nothing.
func (k knownState) split(since, until time.Time) (time.Time, bool) {
	if !k.Since.Equal(since) || !k.Until.After(k.Since) || k.Until.After(until) {
		return time.Time{}, false
	}
	from, to := since.UnixMilli(), k.Until.UnixMilli()
	es := k.sorted
	newest := int64(-1)
	for _, e := range es {
		if e.stamp >= from && e.stamp < to {
			newest = e.stamp
		}
	}
	if newest < 0 {
		return time.Time{}, false
	}
	end := capEnd(es, from, min(newest+1, to))
	return time.UnixMilli(end).UTC(), end > from
}

// rawCursor reads a cursor of the pass's key; "" when there is none.
func (p *pass) rawCursor(ctx context.Context, name string) (string, error) {
	v, err := p.st.GetCursor(ctx, p.leaseKey, p.cursorName(name))
	if errors.Is(err, ErrNotFound) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("crmsync: cursor %s of %s: %w", name, p.key, err)
	}
	return v, nil
}

// known loads system's known state; none is the zero knownState. The
// cursor changes only in the side's cursor step, after every use: a pass
// loads it once.
func (p *pass) known(ctx context.Context, system string) (knownState, error) {
	name := p.cursorName(knownCursor(system))
	p.mu.Lock()
	k, ok := p.tails.known[name]
	p.mu.Unlock()
	if ok {
		return k, nil
	}
	for _, c := range []struct {
		name string
		v    any
	}{{tailCursor(system), &k.tailSpan}, {knownCursor(system), &k.knownReads}} {
		v, err := p.rawCursor(ctx, c.name)
		if err != nil {
			return knownState{}, err
		}
		if v != "" && json.Unmarshal([]byte(v), c.v) != nil {
			// Not ours or damaged: the windows are then read whole.
			k = knownState{}
			break
		}
	}
	k.sorted = k.entries()
	p.mu.Lock()
	if p.tails.known == nil {
		p.tails.known = map[string]knownState{}
	}
	p.tails.known[name] = k
	p.mu.Unlock()
	return k, nil
}

// tailPass is what a pass notes for the known state: the records read
// archived or merged away, and its measure of the CRM's stamp lag.
type tailPass struct {
	gone   map[string]map[string]bool
	behind map[string]time.Duration
	known  map[string]knownState // as loaded, per cursor
}

// noteGone notes ids of sd that left (archived, merged away).
func (p *pass) noteGone(sd *side, ids ...string) {
	if len(ids) == 0 || changeLag(sd) <= 0 {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.tails.gone == nil {
		p.tails.gone = map[string]map[string]bool{}
	}
	if p.tails.gone[sd.name] == nil {
		p.tails.gone[sd.name] = map[string]bool{}
	}
	for _, id := range ids {
		p.tails.gone[sd.name][id] = true
	}
}

// noteWrites measures, on a write to a lagging side, how far the stamps the
// CRM gave the written records run behind the host's clock when the answer
// came: the newest stamp of the batch against the host's time after it.
func (p *pass) noteWrites(sd *side, res []WriteResult) {
	if changeLag(sd) <= 0 {
		return
	}
	var newest time.Time
	for _, r := range res {
		if r.Err == nil && r.ModifiedAt.After(newest) {
			newest = r.ModifiedAt
		}
	}
	if newest.IsZero() {
		return
	}
	behind := max(p.s.c.Now().Sub(newest), 0)
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.tails.behind == nil {
		p.tails.behind = map[string]time.Duration{}
	}
	if b, ok := p.tails.behind[sd.name]; !ok || behind > b {
		p.tails.behind[sd.name] = behind
	}
}

// newKnown sets the known state this pass leaves for the next: the records
// known before, less those stamped before keep and those gone, with this
// pass's reads as a read whose bound is until less the stamp lag; the tail
// is [since, until). The records' cursor is written only when they change.
func (p *pass) newKnown(a *Attempt, sd *side, old knownState, since, until, keep time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var k knownState
	k.tailSpan = tailSpan{Since: since.UTC(), Until: until.UTC(), Behind: old.Behind, Measured: old.Measured}
	if b, ok := p.tails.behind[sd.name]; ok {
		k.Behind, k.Measured = b.Milliseconds()+1, until.UTC()
	}
	behind := p.s.c.Overlap
	if !k.Measured.IsZero() && until.Sub(k.Measured) <= skewMaxAge {
		behind = time.Duration(k.Behind) * time.Millisecond
	}
	from := keep.UnixMilli()
	gone := p.tails.gone[sd.name]
	read := p.stamps[sd.name]
	n, changed := 0, false
	for _, r := range old.Reads {
		kr := knownRead{Bound: r.Bound, Stamps: map[string]int64{}}
		for id, ms := range r.Stamps {
			if _, again := read[id]; again || gone[id] || ms < from {
				changed = true
				continue
			}
			kr.Stamps[id] = ms
		}
		if len(kr.Stamps) > 0 {
			k.Reads = append(k.Reads, kr)
			n += len(kr.Stamps)
		}
	}
	now := knownRead{Bound: until.Add(-behind - stampMargin).UnixMilli(), Stamps: map[string]int64{}}
	for id, at := range read {
		if ms := at.UnixMilli(); ms >= from && !gone[id] {
			now.Stamps[id] = ms
		}
	}
	if len(now.Stamps) > 0 {
		k.Reads = append(k.Reads, now)
		n += len(now.Stamps)
		changed = true
	}
	if old.Partial.After(keep) {
		k.Partial = old.Partial
	}
	if n > maxKnown {
		k.Reads, k.Partial = nil, until.UTC()
	}
	b, _ := json.Marshal(k.tailSpan)
	a.SetCursor(tailCursor(sd.name), string(b))
	if changed || !k.Partial.Equal(old.Partial) {
		b, _ := json.Marshal(k.knownReads)
		a.SetCursor(knownCursor(sd.name), string(b))
	}
}

// tailCheck is the result of a tail's count, a step result.
type tailCheck struct {
	Count    int `json:"count"`
	Expected int `json:"expected"`
}

// checkTail counts sd's tail [since, until), after the window's read from
// until on, and reads it again when the count is not the expected one.
func (p *pass) checkTail(ctx context.Context, sd *side, since, until time.Time) error {
	tc, err := step(ctx, p, "tail-count:"+sd.name, func(ctx context.Context, _ *Attempt) (tailCheck, error) {
		k, err := p.known(ctx, sd.name)
		if err != nil {
			return tailCheck{}, err
		}
		from, to := since.UnixMilli(), until.UnixMilli()
		kept := 0
		p.mu.Lock()
		for _, e := range k.sorted {
			// A record the pass read again is counted where its new stamp
			// is; one it saw leave (archived, merged away) is not listed.
			_, again := p.stamps[sd.name][e.id]
			if !again && !p.tails.gone[sd.name][e.id] && e.stamp >= from && e.stamp < to {
				kept++
			}
		}
		p.mu.Unlock()
		p.apiCalls(sd.name, 1)
		n, err := sd.crm.(ChangeCounter).CountChanges(ctx, ChangeQuery{Object: sd.object, Since: since, Until: until})
		if err != nil {
			return tailCheck{}, err
		}
		return tailCheck{Count: n, Expected: kept}, nil
	}, nil)
	if err != nil {
		return err
	}
	if tc.Count != tc.Expected {
		if p.log != nil {
			p.log.Debug("tail count differs: reading the tail again", "crm", sd.name, "count", tc.Count, "expected", tc.Expected)
		}
		return p.readSide(ctx, sd, since, until, false, "tail")
	}
	return nil
}

// DelayedCheck is a delayed window checked by count and waiting for the
// bin read that confirms it (see ReadWindow.Confirm).
type DelayedCheck struct {
	// Since and Until bound the window checked.
	Since time.Time `json:"since"`
	Until time.Time `json:"until"`
	// Count is what search listed from Since on; Known is how many records
	// the passes had read with a stamp from Since on.
	Count int `json:"count"`
	Known int `json:"known"`
}

// checkable reports where sd's delayed window from d checked by count would
// end (capEnd of d and until), and whether it is checked by count: the side
// counts, lists its whole bin on archived reads, and its known state is
// whole from d on.
func (p *pass) checkable(ctx context.Context, sd *side, d, until time.Time) (time.Time, bool, error) {
	if !counts(sd) || !wholeBin(sd) || !until.After(d) {
		return time.Time{}, false, nil
	}
	k, err := p.known(ctx, sd.name)
	if err != nil {
		return time.Time{}, false, err
	}
	if k.Partial.After(d) {
		return time.Time{}, false, nil
	}
	end := capEnd(k.sorted, d.UnixMilli(), until.UnixMilli())
	if end <= d.UnixMilli() {
		return time.Time{}, false, nil
	}
	return time.UnixMilli(end).UTC(), true, nil
}

// DelayedVouch is what reading by id the records that cap a delayed check
// found, a step result.
type DelayedVouch struct {
	// Since is the delayed window's start.
	Since time.Time `json:"since"`
	// End is where the check by count may end.
	End time.Time `json:"end"`
	// Read is set when a record known in the window was edited inside it
	// after its read: the window holds an edit no pass read, and is read.
	Read bool `json:"read,omitempty"`
}

// vouchDelayed reads by id, in one call, the records known in sd's delayed
// window [d, until) whose bounds cap its check by count (capEnd): the
// count cannot tell whether they were edited again inside the window.
// Each found with the stamp it was read at, or read again by this pass, or
// seen leaving, or edited again only at or after until (a later window
// holds that stamp, and the record's read then brings its whole state),
// caps nothing. One found stamped inside the window after its read was
// edited there by an edit no pass read: Read. The others (not found, or
// past the call's batch) still cap the check.
func (p *pass) vouchDelayed(ctx context.Context, sd *side, d, end, until time.Time) (DelayedVouch, error) {
	return step(ctx, p, "delayed-vouch:"+sd.name, func(ctx context.Context, _ *Attempt) (DelayedVouch, error) {
		k, err := p.known(ctx, sd.name)
		if err != nil {
			return DelayedVouch{}, err
		}
		from, to := d.UnixMilli(), until.UnixMilli()
		p.mu.Lock()
		skip := func(id string) bool {
			_, again := p.stamps[sd.name][id]
			return again || p.tails.gone[sd.name][id]
		}
		stamps, ids, _ := vouchSet(k.sorted, from, to, lookupBatch(sd), skip)
		p.mu.Unlock()
		vouched := map[string]bool{}
		if len(ids) > 0 {
			p.apiCalls(sd.name, 1)
			recs, err := sd.crm.Lookup(ctx, sd.object, "id", ids, []string{})
			if err != nil {
				return DelayedVouch{}, err
			}
			for _, r := range recs {
				known, ok := stamps[r.ID]
				if !ok || r.Archived {
					continue
				}
				switch ms := r.ModifiedAt.UnixMilli(); {
				case ms == known || ms >= to:
					vouched[r.ID] = true
				case ms > known:
					return DelayedVouch{Since: d, End: until, Read: true}, nil
				}
			}
		}
		p.mu.Lock()
		defer p.mu.Unlock()
		e := capEndExcept(k.sorted, from, to, func(id string) bool { return skip(id) || vouched[id] })
		return DelayedVouch{Since: d, End: time.UnixMilli(max(e, end.UnixMilli())).UTC()}, nil
	}, nil)
}

// checkDelayed counts what sd's search lists from since on, after the
// pass's read, against the records known from since on. The result has
// Count > Known when the window must be read.
func (p *pass) checkDelayed(ctx context.Context, sd *side, since, until time.Time) (DelayedCheck, error) {
	return step(ctx, p, "delayed-count:"+sd.name, func(ctx context.Context, _ *Attempt) (DelayedCheck, error) {
		k, err := p.known(ctx, sd.name)
		if err != nil {
			return DelayedCheck{}, err
		}
		from := since.UnixMilli()
		ids := map[string]bool{}
		p.mu.Lock()
		for _, e := range k.sorted {
			if e.stamp >= from {
				ids[e.id] = true
			}
		}
		for id, at := range p.stamps[sd.name] {
			ids[id] = at.UnixMilli() >= from
		}
		for id := range p.tails.gone[sd.name] {
			delete(ids, id)
		}
		p.mu.Unlock()
		known := 0
		for _, in := range ids {
			if in {
				known++
			}
		}
		p.apiCalls(sd.name, 1)
		n, err := sd.crm.(ChangeCounter).CountChanges(ctx, ChangeQuery{Object: sd.object, Since: since})
		if err != nil {
			return DelayedCheck{}, err
		}
		return DelayedCheck{Since: since, Until: until, Count: n, Known: known}, nil
	}, nil)
}

// confirmDelayed reports whether the bin read of this pass confirms the
// delayed check c: its count equals the records known then less those
// read archived or merged away since. Known records read archived that
// were not known then are taken away too: that errs towards reading.
func (p *pass) confirmDelayed(ctx context.Context, sd *side, c DelayedCheck) (bool, error) {
	return step(ctx, p, "delayed-confirm:"+sd.name, func(ctx context.Context, _ *Attempt) (bool, error) {
		k, err := p.known(ctx, sd.name)
		if err != nil {
			return false, err
		}
		if k.Partial.After(c.Since) {
			return false, nil // records known then were dropped since
		}
		from := c.Since.UnixMilli()
		left := 0
		p.mu.Lock()
		for _, e := range k.sorted {
			if e.stamp >= from && p.tails.gone[sd.name][e.id] {
				left++
			}
		}
		p.mu.Unlock()
		return c.Count == c.Known-left, nil
	}, nil)
}

// vouchHelps reports whether reading by id the records that lower sd's
// delayed check from d to end (vouchDelayed) could take it further: not
// when more of them share the first bound than one call reads.
func (p *pass) vouchHelps(ctx context.Context, sd *side, d, end, until time.Time) (bool, error) {
	k, err := p.known(ctx, sd.name)
	if err != nil {
		return false, err
	}
	_, ids, reach := vouchSet(k.sorted, d.UnixMilli(), until.UnixMilli(), lookupBatch(sd), nil)
	return len(ids) > 0 && reach > end.UnixMilli(), nil
}

// vouchCursor names the cursor holding what a side's last vouchDelayed
// found.
func vouchCursor(system string) string { return system + ":vouch" }

// vouched loads what system's last vouchDelayed found; the next pass whose
// delayed window starts where it did counts as far as it allows.
func (p *pass) vouched(ctx context.Context, system string) (DelayedVouch, bool, error) {
	v, err := p.rawCursor(ctx, vouchCursor(system))
	if err != nil || v == "" {
		return DelayedVouch{}, false, err
	}
	var dv DelayedVouch
	if json.Unmarshal([]byte(v), &dv) != nil {
		return DelayedVouch{}, false, nil // not ours: vouch again
	}
	return dv, true, nil
}

// pendingCheck loads sd's delayed check waiting for a bin read.
func (p *pass) pendingCheck(ctx context.Context, system string) (DelayedCheck, bool, error) {
	v, err := p.rawCursor(ctx, checkCursor(system))
	if err != nil || v == "" {
		return DelayedCheck{}, false, err
	}
	var c DelayedCheck
	if err := json.Unmarshal([]byte(v), &c); err != nil || !c.Until.After(c.Since) {
		return DelayedCheck{}, false, nil
	}
	return c, true, nil
}
