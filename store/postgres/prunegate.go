package postgres

import (
	"math"
	"sync"
	"time"
)

// sweepEvery is how far EndRun's prune cutoff must move past the last
// prune's before EndRun prunes again without knowing of a run that is due:
// the sweep that finds runs other Stores closed (and did not prune, for
// example because their process stopped).
const sweepEvery = time.Minute

// pruneGate decides whether an EndRun sends the prune statement. Most run
// ends have nothing to prune: the gate lets the statement go only when a
// closed run can be due. It knows the cutoff of the last prune this Store
// sent and the earliest finish time of a closed run not pruned by it: the
// earliest that prune saw kept, or that this Store closed since. Times are
// nanoseconds as the callers gave them.
type pruneGate struct {
	mu    sync.Mutex
	swept bool  // a prune went and succeeded (or is in flight)
	cut   int64 // its cutoff
	due   int64 // earliest finish time of a run known closed and kept; MaxInt64 if none
}

// take reports whether an EndRun with this cutoff should prune. If so it
// takes the prune on: it forgets the runs it knew of (the prune sees them
// all, or they are recorded by closed after it started) until done or
// failed.
func (g *pruneGate) take(cut int64) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.swept && cut <= g.due && cut < g.cut+int64(sweepEvery) {
		return false
	}
	g.swept, g.cut, g.due = true, cut, math.MaxInt64
	return true
}

// done records what a prune taken with take saw: the earliest finish time
// of a closed run still kept after it.
func (g *pruneGate) done(due int64) {
	g.mu.Lock()
	g.due = min(g.due, due)
	g.mu.Unlock()
}

// failed forgets a prune that did not happen: the next EndRun prunes.
func (g *pruneGate) failed() {
	g.mu.Lock()
	g.swept = false
	g.mu.Unlock()
}

// closed records a run this Store closed (its finish time), once its
// transaction committed.
func (g *pruneGate) closed(finished int64) {
	g.mu.Lock()
	g.due = min(g.due, finished)
	g.mu.Unlock()
}
