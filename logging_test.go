package crmsync_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/store/memory"
)

// A library user who passes no logger gets no log lines on the process's
// default logger: not the run's info lines, nor its retry warnings.
func TestNoLogsWithoutALogger(t *testing.T) {
	var buf bytes.Buffer
	old := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})))
	t.Cleanup(func() { slog.SetDefault(old) })

	eng, err := crmsync.NewEngine(crmsync.Config{Store: memory.New()})
	require.NoError(t, err)
	tries := 0
	wf := crmsync.WorkflowFunc(func(ctx context.Context, run *crmsync.Run) error {
		_, err := crmsync.Step(ctx, run, "flaky", func(ctx context.Context, _ *crmsync.Attempt) (int, error) {
			if tries++; tries < 2 {
				return 0, errors.New("blip")
			}
			return 1, nil
		}, &crmsync.StepOpts{Retry: &crmsync.RetryPolicy{MaxAttempts: 3, InitialInterval: 1, MaxInterval: 1}})
		return err
	})
	_, err = eng.Run(context.Background(), "team-1", wf)
	require.NoError(t, err)
	require.Equal(t, 2, tries, "the step was retried once")
	assert.Empty(t, buf.String(), "log lines on the default logger")
}
