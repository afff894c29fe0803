package crmsync_test

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/store/memory"
)

// flakyCommitStore fails its first fails Commits with a transient error.
type flakyCommitStore struct {
	crmsync.Store
	fails   atomic.Int32
	commits atomic.Int32
}

func (s *flakyCommitStore) Commit(ctx context.Context, l crmsync.Lease, cp crmsync.Checkpoint) error {
	s.commits.Add(1)
	if s.fails.Add(-1) >= 0 {
		return errFlaky
	}
	return s.Store.Commit(ctx, l, cp)
}

func TestStepCommitRetriesWithoutRerunningStep(t *testing.T) {
	for _, tc := range []struct {
		name      string
		fails     int32
		wantErr   bool
		wantCalls int32
	}{
		{name: "two transient failures", fails: 2, wantCalls: 3},
		{name: "more failures than DefaultRetry allows", fails: 100, wantErr: true, wantCalls: int32(crmsync.DefaultRetry.MaxAttempts)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := &flakyCommitStore{Store: memory.New()}
			c := newClock()
			sl := &sleeper{c: c}
			eng := newEngine(t, st, c, func(cfg *crmsync.Config) { cfg.Sleep = sl.Sleep })
			runs := 0
			_, err := eng.Run(context.Background(), "team-1", crmsync.WorkflowFunc(func(ctx context.Context, run *crmsync.Run) error {
				st.fails.Store(tc.fails)
				_, err := crmsync.Step(ctx, run, "a", func(context.Context, *crmsync.Attempt) (int, error) {
					runs++
					return 1, nil
				}, nil)
				st.fails.Store(0)
				return err
			}))
			assert.Equal(t, 1, runs, "the step function runs once")
			assert.Equal(t, tc.wantCalls, st.commits.Load(), "commit attempts (the run's start and end do not commit)")
			if tc.wantErr {
				require.ErrorIs(t, err, errFlaky)
				assert.Contains(t, err.Error(), "commit")
			} else {
				require.NoError(t, err)
			}
		})
	}
}
