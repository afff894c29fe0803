package postgres

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/crmsync/crmsync"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// stmtCounter is a pgx tracer that counts the statements sent (alone or in
// a pipeline) whose text contains a marker.
type stmtCounter struct {
	marker string
	mu     sync.Mutex
	n      int
}

func (c *stmtCounter) see(sql string) {
	if strings.Contains(sql, c.marker) {
		c.mu.Lock()
		c.n++
		c.mu.Unlock()
	}
}

func (c *stmtCounter) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}

func (c *stmtCounter) TraceQueryStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	c.see(d.SQL)
	return ctx
}

func (c *stmtCounter) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

func (c *stmtCounter) TraceBatchStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchStartData) context.Context {
	return ctx
}

func (c *stmtCounter) TraceBatchQuery(_ context.Context, _ *pgx.Conn, d pgx.TraceBatchQueryData) {
	c.see(d.SQL)
}

func (c *stmtCounter) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData) {}

// pruneMarker is text only the prune statement holds.
const pruneMarker = "SET kept = false"

func openCounted(t *testing.T, schema string) (*Store, *stmtCounter) {
	t.Helper()
	c := &stmtCounter{marker: pruneMarker}
	s, err := Open(context.Background(), Config{DSN: testDSN(t), Schema: schema, MaxConns: 4,
		PoolConfig: func(pc *pgxpool.Config) { pc.ConnConfig.Tracer = c }})
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	return s, c
}

// An EndRun sends the prune statement only when a closed run can be due:
// its first one, one whose cutoff passed a run this Store closed or saw
// kept at its last prune, or one whose cutoff moved a minute past the last
// prune's (which catches runs other Stores closed). Runs past retention are
// still pruned, by a later EndRun or by PruneRuns.
func TestEndRunPrunesOnlyWhenDue(t *testing.T) {
	schema := freshSchema(t)
	s, sent := openCounted(t, schema)
	other := openSchema(t, schema)
	ctx := context.Background()
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	const retention = time.Hour
	run := func(st *Store, key string, id crmsync.RunID, now time.Time) int {
		t.Helper()
		rs, err := st.StartRun(ctx, crmsync.LeaseRequest{Key: key, Holder: "h", Workflow: "w", NewRun: id, TTL: time.Minute, Now: now})
		require.NoError(t, err)
		require.NoError(t, st.Commit(ctx, rs.Lease, crmsync.Checkpoint{Run: id,
			Step: crmsync.StepRecord{Step: "s", Result: json.RawMessage(`1`), Attempts: 1, Done: now}}))
		_, n, err := st.EndRun(ctx, rs.Lease, crmsync.RunEnd{Status: crmsync.RunFinished, Now: now, PruneBefore: now.Add(-retention)})
		require.NoError(t, err)
		return n
	}
	stepsOf := func(id crmsync.RunID) int {
		steps, err := s.LoadSteps(ctx, id)
		require.NoError(t, err)
		return len(steps)
	}

	assert.Equal(t, 0, run(s, "a", "r1", t0))
	assert.Equal(t, 1, sent.count(), "a Store's first EndRun prunes")
	for i := 1; i <= 20; i++ {
		assert.Equal(t, 0, run(s, "b", crmsync.RunID("q"+string(rune('a'+i))), t0.Add(time.Duration(i)*time.Second)))
	}
	assert.Equal(t, 1, sent.count(), "nothing due: no prune statement")

	// Another Store closes a run this one does not know of.
	run(other, "c", "r2", t0.Add(30*time.Second))

	// r1 falls due: the next EndRun prunes it (and the runs closed before
	// the cutoff), without waiting for the minute.
	assert.Equal(t, 2, run(s, "d", "r3", t0.Add(retention+1500*time.Millisecond)))
	assert.Equal(t, 2, sent.count())
	assert.Zero(t, stepsOf("r1"))
	assert.Equal(t, 1, stepsOf("r2"), "not due yet")

	// r2 falls due; this Store saw it kept at its last prune.
	assert.Equal(t, 20, run(s, "d", "r4", t0.Add(retention+31*time.Second)))
	assert.Equal(t, 3, sent.count())
	assert.Zero(t, stepsOf("r2"))

	// Another Store closes r5 after this one's last prune: it is found by
	// the prune of the first EndRun whose cutoff moved a minute on.
	run(other, "c", "r5", t0.Add(40*time.Second))
	assert.Equal(t, 0, run(s, "d", "r6", t0.Add(retention+50*time.Second)))
	assert.Equal(t, 3, sent.count(), "nothing due that this Store knows of")
	assert.Equal(t, 1, stepsOf("r5"))
	assert.Equal(t, 1, run(s, "d", "r7", t0.Add(retention+91*time.Second)))
	assert.Equal(t, 4, sent.count())
	assert.Zero(t, stepsOf("r5"))

	// PruneRuns always sends the prune.
	n, err := s.PruneRuns(ctx, t0.Add(92*time.Second))
	require.NoError(t, err)
	assert.Equal(t, 0, n)
	assert.Equal(t, 5, sent.count())
}

// EndRun closes the run and releases its lease in one statement, which
// also turns off the flush wait: with no audit rows and nothing to prune
// its pipeline is that statement. StartRun is one statement too when the
// key has no run to resume and no letter marked for replay (a key's first
// run, or one after a closed run): it takes the lease and opens the run.
// Otherwise that statement changes nothing and the full start follows in a
// second round trip: the lease lock, the start, the steps and the letters.
func TestRunStatements(t *testing.T) {
	schema := freshSchema(t)
	s, sent := openCounted(t, schema)
	sent.marker = "" // every statement
	ctx := context.Background()
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	start := func(run crmsync.RunID, statements int, what string) crmsync.RunStart {
		t.Helper()
		before := sent.count()
		rs, err := s.StartRun(ctx, crmsync.LeaseRequest{Key: "k", Holder: "h", Workflow: "w", NewRun: run, TTL: time.Minute, Now: t0})
		require.NoError(t, err)
		assert.Equal(t, statements, sent.count()-before, "StartRun: %s", what)
		return rs
	}
	end := func(rs crmsync.RunStart, status crmsync.RunStatus) {
		t.Helper()
		before := sent.count()
		ri, _, err := s.EndRun(ctx, rs.Lease, crmsync.RunEnd{Status: status, Now: t0})
		require.NoError(t, err)
		assert.Equal(t, 1, sent.count()-before, "EndRun")
		assert.Equal(t, status, ri.Status)
		l, err := s.GetLease(ctx, "k")
		require.NoError(t, err)
		assert.Empty(t, l.Holder, "released")
		_, _, err = s.EndRun(ctx, rs.Lease, crmsync.RunEnd{Status: crmsync.RunFinished, Now: t0})
		require.ErrorIs(t, err, crmsync.ErrLeaseLost)
	}

	rs := start("r0", 1, "the key's first run")
	assert.Equal(t, int64(1), rs.Lease.Generation)
	require.NoError(t, s.Commit(ctx, rs.Lease, crmsync.Checkpoint{Run: "r0", Step: crmsync.StepRecord{Step: "s", Error: "refused", Attempts: 1, Done: t0},
		DeadLetters: []crmsync.DeadLetter{{Key: "k", Run: "r0", Step: "s", System: "hubspot", RecordID: "101",
			Payload: json.RawMessage(`{}`), Error: "refused", Status: crmsync.DeadParked, Created: t0, Updated: t0}}}))
	end(rs, crmsync.RunFinished)

	rs = start("r1", 1, "after a closed run")
	assert.Equal(t, int64(2), rs.Lease.Generation)
	assert.Equal(t, crmsync.RunID("r1"), rs.Run.ID)
	assert.Empty(t, rs.Steps)
	assert.Empty(t, rs.Replays)
	end(rs, crmsync.RunOpen)

	rs = start("r2", 5, "a run to resume")
	assert.Equal(t, crmsync.RunID("r1"), rs.Run.ID, "resumed")
	assert.Equal(t, 2, rs.Run.Attempts)
	end(rs, crmsync.RunFinished)

	letters, err := s.ListDeadLetters(ctx, crmsync.DeadLetterQuery{Key: "k"})
	require.NoError(t, err)
	require.Len(t, letters, 1)
	require.NoError(t, s.SetDeadLetterStatus(ctx, letters[0].ID, crmsync.DeadReplay, t0))
	rs = start("r3", 5, "a letter marked for replay")
	require.Len(t, rs.Replays, 1, "claimed")
	assert.Equal(t, letters[0].ID, rs.Replays[0].ID)
	end(rs, crmsync.RunFinished)

	rs = start("r4", 1, "after the replay's run")
	assert.Empty(t, rs.Replays)
	assert.Equal(t, int64(5), rs.Lease.Generation)
}
