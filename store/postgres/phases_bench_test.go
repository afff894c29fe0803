package postgres

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/crmsync/crmsync"
	"github.com/stretchr/testify/require"
)

// BenchmarkRunPhases runs short runs one at a time (StartRun, four
// one-statement checkpoints, EndRun) and reports the mean time of each
// call: where a step's time goes apart from the engine.
func BenchmarkRunPhases(b *testing.B) {
	s := openSchema(b, freshSchema(b))
	ctx := context.Background()
	const steps = 4
	result := make([]byte, 140)
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	var start, commit, end time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		now = now.Add(time.Millisecond)
		t0 := time.Now()
		rs, err := s.StartRun(ctx, crmsync.LeaseRequest{Key: fmt.Sprint("k", i%100), Holder: "h", Workflow: "w",
			NewRun: crmsync.RunID(fmt.Sprint("r", i)), TTL: time.Minute, Now: now})
		require.NoError(b, err)
		t1 := time.Now()
		for j := range steps {
			require.NoError(b, s.Commit(ctx, rs.Lease, crmsync.Checkpoint{Run: rs.Run.ID,
				Step: crmsync.StepRecord{Step: fmt.Sprint("s", j), Result: result, Attempts: 1, Done: now}}))
		}
		t2 := time.Now()
		_, _, err = s.EndRun(ctx, rs.Lease, crmsync.RunEnd{Status: crmsync.RunFinished, Now: now, PruneBefore: now.Add(-time.Hour)})
		require.NoError(b, err)
		end += time.Since(t2)
		start += t1.Sub(t0)
		commit += t2.Sub(t1)
	}
	n := float64(b.N)
	b.ReportMetric(float64(start.Microseconds())/n, "start-µs/run")
	b.ReportMetric(float64(commit.Microseconds())/(n*steps), "commit-µs/step")
	b.ReportMetric(float64(end.Microseconds())/n, "end-µs/run")
	b.ReportMetric(float64((start+commit+end).Microseconds())/(n*steps), "µs/step")
}
