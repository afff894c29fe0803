package postgres

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Group commit. Checkpoints that are one statement each (a step alone, or a
// step with cursors, ledger rows, audit rows and new letters) and arrive
// while a group, or two checkpoints, are in flight on the same Store wait
// for one of them to end, then go together: one pipeline, which the server
// runs as one implicit transaction, so one round trip and one WAL flush for
// all of them. A checkpoint that finds nothing in flight, or one checkpoint
// sent alone, goes at once, alone, as before: one or two at a time nothing
// waits.
//
// Each statement still checks its own lease, and each caller learns its
// own statement's row count: a fenced-out checkpoint writes nothing and
// only its caller sees ErrLeaseLost. If the group's transaction fails (one
// statement's error aborts all of them), each checkpoint is sent again
// alone, so an error in one is that caller's only. Every statement is
// idempotent (ON CONFLICT DO NOTHING, the rest written only if the step was
// new), so sending one again after an uncertain failure is safe. A caller
// returns only after the commit that holds its checkpoint, or with an
// error: durability is that of a checkpoint sent alone.

// pending is one checkpoint statement waiting for its group.
type pending struct {
	ctx  context.Context
	sql  string
	args []any
	scan bool // the statement returns a count; else its row count is used

	n    int64 // rows written
	err  error
	done chan struct{} // closed when n and err are set; nil for one sent alone
}

// committer groups a Store's one-statement checkpoints.
//
// A checkpoint goes at once, alone, when nothing is in flight, or when the
// only thing in flight is one other checkpoint sent alone: two runs in
// flight overlap as they would without grouping (the server's own group
// commit may cover both with one flush), where waiting would put one
// round trip and one flush after the other. Otherwise it queues, and the
// queue goes as one group when a send ends.
type committer struct {
	pool *pgxpool.Pool

	mu       sync.Mutex
	alone    int        // checkpoints in flight sent alone by their callers
	draining bool       // a goroutine is sending the queue, group by group
	held     bool       // for tests: every checkpoint queues
	queue    []*pending // waiting for a send to end

	batches atomic.Int64 // groups sent (a group sent again alone counts once)
}

// do runs p's statement, alone or in a group, and returns its row count.
func (g *committer) do(p *pending) (int64, error) {
	g.mu.Lock()
	if !g.held && len(g.queue) == 0 && !g.draining && g.alone <= 1 {
		g.alone++
		g.mu.Unlock()
		g.run([]*pending{p})
		g.mu.Lock()
		g.alone--
		g.startDrain()
		g.mu.Unlock()
		return p.n, p.err
	}
	p.done = make(chan struct{})
	g.queue = append(g.queue, p)
	g.mu.Unlock()
	select {
	case <-p.done:
		return p.n, p.err
	case <-p.ctx.Done():
	}
	g.mu.Lock()
	if i := slices.Index(g.queue, p); i >= 0 {
		// Not sent: it never will be.
		g.queue = slices.Delete(g.queue, i, i+1)
		g.mu.Unlock()
		return 0, p.ctx.Err()
	}
	g.mu.Unlock()
	select {
	case <-p.done:
		return p.n, p.err
	default:
		return 0, p.ctx.Err() // in flight: its outcome is unknown
	}
}

// startDrain sends the queue in the background, unless it is empty, held
// or already being sent. g.mu is held.
func (g *committer) startDrain() {
	if len(g.queue) == 0 || g.held || g.draining {
		return
	}
	g.draining = true
	group := g.queue
	g.queue = nil
	go g.drain(group)
}

// drain sends groups until none is waiting.
func (g *committer) drain(group []*pending) {
	for {
		g.run(group)
		for _, p := range group {
			close(p.done)
		}
		g.mu.Lock()
		if len(g.queue) == 0 || g.held {
			g.draining = false
			g.mu.Unlock()
			return
		}
		group = g.queue
		g.queue = nil
		g.mu.Unlock()
	}
}

// run sends one group and sets each member's outcome.
func (g *committer) run(group []*pending) {
	live := group[:0:0]
	for _, p := range group {
		if err := p.ctx.Err(); err != nil {
			p.err = err
			continue
		}
		live = append(live, p)
	}
	if len(live) == 0 {
		return
	}
	g.batches.Add(1)
	if len(live) == 1 {
		g.one(live[0])
		return
	}
	// The group's statements are sent under a context that ends when every
	// member's does.
	ctx, cancel := context.WithCancel(context.WithoutCancel(live[0].ctx))
	defer cancel()
	var left atomic.Int64
	left.Store(int64(len(live)))
	for _, p := range live {
		stop := context.AfterFunc(p.ctx, func() {
			if left.Add(-1) == 0 {
				cancel()
			}
		})
		defer stop()
	}
	b := &pgx.Batch{}
	for _, p := range live {
		b.Queue(p.sql, p.args...)
	}
	br := g.pool.SendBatch(ctx, b)
	counts := make([]int64, len(live))
	var err error
	for i, p := range live {
		counts[i], err = result(br, p.scan)
		if err != nil {
			break
		}
	}
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		// Nothing of the group was committed, or it is unknown: each again
		// alone, under its own context.
		for _, p := range live {
			g.one(p)
		}
		return
	}
	for i, p := range live {
		p.n = counts[i]
	}
}

// one sends p's statement alone.
func (g *committer) one(p *pending) {
	if p.scan {
		var n int64
		p.err = g.pool.QueryRow(p.ctx, p.sql, p.args...).Scan(&n)
		p.n = n
		return
	}
	tag, err := g.pool.Exec(p.ctx, p.sql, p.args...)
	p.n, p.err = tag.RowsAffected(), err
}

// result reads one statement's count from a batch.
func result(br pgx.BatchResults, scan bool) (int64, error) {
	if scan {
		var n int64
		err := br.QueryRow().Scan(&n)
		return n, err
	}
	tag, err := br.Exec()
	return tag.RowsAffected(), err
}

// hold and release stop and restart the committer, for tests: while held,
// every checkpoint queues.
func (g *committer) hold() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.held = true
}

func (g *committer) release() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.held = false
	g.startDrain()
}

// queued is the number of checkpoints waiting.
func (g *committer) queued() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.queue)
}
