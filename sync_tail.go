package crmsync

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// The tail of a lagging side's window: the records a pass read that the
// next pass's window covers again. A CRM whose change reads lag its writes
// (HubSpot search) may list a record late, after the pass that should have
// read it; and a CRM clock that runs behind the sync host's stamps a late
// edit inside a window already read. So each pass starts reading at its
// cursor less Overlap, and the cursor stays the change lag short of the
// window's end: each window begins with the previous window's last minutes.
// After a burst of edits just before a pass, that tail holds the burst, and
// reading it again costs as much as the burst's read.
//
// Instead, a pass keeps the ids and stamps of what it read in that tail
// (the cursor "<system>:tail"). The next pass reads its window from a
// millisecond past the newest stamp kept, page by page as before, then
// counts the rest of the tail (ChangeCounter: one search call) and reads it
// again only when the count is not what it expects: the records kept, less
// those this pass read with a newer stamp (they left the tail). A record
// listed late or stamped late in the tail makes the count larger, and a
// record of the tail edited again is stamped past the newest kept one
// unless it was edited while that pass was still reading: both are read.
// What a count cannot tell is left to the delayed window
// (SyncConfig.DelayedLag), which reads every record of its hour page by
// page: a record of the tail edited again, while the pass that kept the
// tail was still reading, with a stamp (behind the host's clock, or
// sharing a truncated stamp) not past the newest kept; and a late record
// whose count a record leaving the tail meanwhile (archived, merged)
// cancels. Both are found within DelayedLag; nothing is lost.

// maxTail bounds the records a tail keeps; a larger tail is read again
// page by page.
const maxTail = 10_000

// tailCursor names the cursor holding a side's tail.
func tailCursor(system string) string { return system + ":tail" }

// tailState is a side's tail as kept in its cursor.
type tailState struct {
	// Since and Until bound the tail: the next window's start and this
	// window's end.
	Since time.Time `json:"since"`
	Until time.Time `json:"until"`
	// Seen maps each record read with a stamp in the tail to that stamp
	// (Unix milliseconds).
	Seen map[string]int64 `json:"seen,omitempty"`
}

// split reports where the counted part of the tail ends for a window from
// since to until: a millisecond past the newest stamp seen, so that a
// record of the tail edited again with a later stamp (a CRM clock behind
// the host's puts it inside the tail) is read, not counted. ok is false
// when the tail does not fit the window or holds nothing.
func (t tailState) split(since, until time.Time) (time.Time, bool) {
	if len(t.Seen) == 0 || !t.Since.Equal(since) || !t.Until.After(t.Since) || t.Until.After(until) {
		return time.Time{}, false
	}
	newest := int64(0)
	for _, ms := range t.Seen {
		newest = max(newest, ms)
	}
	end := time.UnixMilli(newest + 1).UTC()
	if end.After(t.Until) {
		end = t.Until
	}
	return end, end.After(since)
}

// tail loads system's tail; none is the zero tailState.
func (p *pass) tail(ctx context.Context, system string) (tailState, error) {
	var t tailState
	v, err := p.st.GetCursor(ctx, p.key, tailCursor(system))
	if errors.Is(err, ErrNotFound) || (err == nil && v == "") {
		return t, nil
	}
	if err != nil {
		return t, fmt.Errorf("crmsync: cursor %s of %s: %w", tailCursor(system), p.key, err)
	}
	if err := json.Unmarshal([]byte(v), &t); err != nil {
		// Not ours or damaged: the window is then read whole.
		return tailState{}, nil
	}
	return t, nil
}

// newTail is the tail this pass leaves for the next: what it read with a
// stamp in [since, until), or none when that is more than maxTail.
func (p *pass) newTail(sd *side, since, until time.Time) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	t := tailState{Since: since.UTC(), Until: until.UTC(), Seen: map[string]int64{}}
	for id, at := range p.stamps[sd.name] {
		if !at.Before(since) && at.Before(until) {
			t.Seen[id] = at.UnixMilli()
		}
	}
	if len(t.Seen) > maxTail {
		t.Seen = nil
	}
	b, _ := json.Marshal(t)
	return string(b)
}

// tailCheck is the result of a tail's count, a step result.
type tailCheck struct {
	Count    int `json:"count"`
	Expected int `json:"expected"`
	// Kept holds the records of the kept tail still in place (read again
	// by nobody), with their stamps, when the count matched.
	Kept map[string]int64 `json:"kept,omitempty"`
}

// checkTail counts sd's tail [since, until), after the window's read from
// until on, and reads it again when the count is not the expected one.
func (p *pass) checkTail(ctx context.Context, sd *side, since, until time.Time) error {
	tc, err := step(ctx, p, "tail-count:"+sd.name, func(ctx context.Context, _ *Attempt) (tailCheck, error) {
		t, err := p.tail(ctx, sd.name)
		if err != nil {
			return tailCheck{}, err
		}
		kept := map[string]int64{}
		p.mu.Lock()
		for id, at := range t.Seen {
			if _, again := p.stamps[sd.name][id]; !again {
				kept[id] = at
			}
		}
		p.mu.Unlock()
		p.apiCalls(sd.name, 1)
		n, err := sd.crm.(ChangeCounter).CountChanges(ctx, ChangeQuery{Object: sd.object, Since: since, Until: until})
		if err != nil {
			return tailCheck{}, err
		}
		tc := tailCheck{Count: n, Expected: len(kept)}
		if n == len(kept) {
			tc.Kept = kept
		}
		return tc, nil
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
	p.mu.Lock()
	for id, ms := range tc.Kept {
		if _, ok := p.stamps[sd.name][id]; !ok {
			p.stamps[sd.name][id] = time.UnixMilli(ms).UTC()
		}
	}
	p.mu.Unlock()
	return nil
}
