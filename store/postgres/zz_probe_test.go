package postgres

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/crmsync/crmsync"
	"github.com/stretchr/testify/require"
)

func BenchmarkProbeHOT(b *testing.B) {
	for _, hot := range []bool{false, true} {
		b.Run(fmt.Sprint("hot=", hot), func(b *testing.B) {
			schema := freshSchema(b)
			s := openSchema(b, schema)
			if hot {
				admin(b, `DROP INDEX `+schema+`.runs_open_key; DROP INDEX `+schema+`.runs_closed_kept; CREATE INDEX runs_key ON `+schema+`.runs (key)`)
			}
			ctx := context.Background()
			now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
			var start, end time.Duration
			for i := 0; i < b.N; i++ {
				now = now.Add(time.Millisecond)
				t0 := time.Now()
				rs, err := s.StartRun(ctx, crmsync.LeaseRequest{Key: fmt.Sprint("k", i%100), Holder: "h", Workflow: "w", NewRun: crmsync.RunID(fmt.Sprint("r", i)), TTL: time.Minute, Now: now})
				require.NoError(b, err)
				t1 := time.Now()
				_, _, err = s.EndRun(ctx, rs.Lease, crmsync.RunEnd{Status: crmsync.RunFinished, Now: now})
				require.NoError(b, err)
				end += time.Since(t1)
				start += t1.Sub(t0)
			}
			b.ReportMetric(float64(start.Microseconds())/float64(b.N), "start-us")
			b.ReportMetric(float64(end.Microseconds())/float64(b.N), "end-us")
			n := adminQuery[int](b, `SELECT n_tup_hot_upd::int FROM pg_stat_user_tables WHERE schemaname = $1 AND relname = 'runs'`, schema)
			b.ReportMetric(float64(n), "hot-upd")
		})
	}
}
