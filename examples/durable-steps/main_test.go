package main

import (
	"bytes"
	"context"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"path/filepath"
	"testing"
)

func TestStopAndResume(t *testing.T) {
	store := filepath.Join(t.TempDir(), "s.db")
	args := []string{"-store", store, "-pages", "4", "-fail-at", "0"}
	ctx, cancel := context.WithCancel(context.Background())
	var first bytes.Buffer
	err := run(ctx, args, &first, func(page int) {
		if page == 2 {
			cancel() // as Ctrl-C after page 2
		}
	})
	require.Error(t, err, "first run = nil error, want it stopped:\n%s", first.String())
	var second bytes.Buffer
	require.NoError(t, run(context.Background(), args, &second, nil))
	out := second.String()
	assert.Contains(t, out, "resuming run", "second run output:\n%s\nwant it to resume, skip pages 1-2, write 3-4 and report 8 written", out)
	assert.NotContains(t, out, "wrote page 1 ", "second run output:\n%s\nwant it to resume, skip pages 1-2, write 3-4 and report 8 written", out)
	assert.NotContains(t, out, "wrote page 2 ", "second run output:\n%s\nwant it to resume, skip pages 1-2, write 3-4 and report 8 written", out)
	assert.Contains(t, out, "wrote page 3 ", "second run output:\n%s\nwant it to resume, skip pages 1-2, write 3-4 and report 8 written", out)
	assert.Contains(t, out, "cursor page=4", "second run output:\n%s\nwant it to resume, skip pages 1-2, write 3-4 and report 8 written", out)
	assert.Contains(t, out, `"written":8`, "second run output:\n%s\nwant it to resume, skip pages 1-2, write 3-4 and report 8 written", out)
}

func TestTransientFailureRetried(t *testing.T) {
	var out bytes.Buffer
	require.NoError(t, run(context.Background(), []string{"-store", filepath.Join(t.TempDir(), "s.db"), "-pages", "3", "-fail-at", "2"}, &out, nil))
	assert.Contains(t, out.String(), "wrote page 2 (2 records, attempt 2)", "output:\n%s\nwant page 2 written on attempt 2 and one retry", out.String())
	assert.Contains(t, out.String(), `"retries":1`, "output:\n%s\nwant page 2 written on attempt 2 and one retry", out.String())
}
