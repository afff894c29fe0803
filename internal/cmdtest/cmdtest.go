// Package cmdtest holds tests shared by the commands that run a sync job,
// cmd/crmsync and examples/hubspot-salesforce.
package cmdtest

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/store/sqlite"
	"github.com/stretchr/testify/require"
)

// Job is a command that syncs on a schedule, as SIGTERMReleasesLease starts it.
type Job struct {
	// Name is what failure messages call the job, such as "demo".
	Name string
	// Args returns the job's os.Args: a pass every hour on key "default",
	// with its store in the SQLite file at path. The job must print
	// "syncing every" once it has opened its store.
	Args func(path string) []string
	// Main is the command's main function.
	Main func()
}

// childStoreEnv tells the test binary it is the job, and where its store is.
const childStoreEnv = "CRMSYNC_SIGTERM_CHILD_STORE"

// SIGTERMReleasesLease checks that a container stop, which sends SIGTERM,
// stops job cleanly in the middle of a pass and gives its key's lease up,
// so the next start does not wait for the lease to expire.
//
// It runs the calling test again in a child process that runs job.Main, so
// it must be called from a top-level test and nothing else in that test may
// come before it. It skips in -short mode.
func SIGTERMReleasesLease(t *testing.T, job Job) {
	if testing.Short() {
		t.Skip("builds and runs the command")
	}
	if path := os.Getenv(childStoreEnv); path != "" {
		os.Args = job.Args(path)
		job.Main()
		return
	}
	path := filepath.Join(t.TempDir(), "crmsync.db")
	cmd := exec.Command(os.Args[0], "-test.run=^"+regexp.QuoteMeta(t.Name())+"$")
	cmd.Env = append(os.Environ(), childStoreEnv+"="+path)
	out := &LockedBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	require.NoError(t, cmd.Start())
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()

	ctx := context.Background()
	// Wait until the first pass holds the key's lease.
	var st *sqlite.Store
	for held := false; !held; {
		select {
		case err := <-done:
			t.Fatalf("%s exited before its first pass held the lease: %v\n%s", job.Name, err, out.String())
		case <-time.After(5 * time.Millisecond):
		}
		if st == nil {
			if !strings.Contains(out.String(), "syncing every") {
				continue // the job has not opened (and migrated) its store yet
			}
			s, err := sqlite.Open(ctx, sqlite.Config{Path: path})
			if err != nil {
				continue
			}
			st = s
			t.Cleanup(func() { st.Close() })
		}
		l, err := st.GetLease(ctx, "default")
		held = err == nil && l.Run != "" && l.Expires.After(time.Now())
	}
	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	select {
	case err := <-done:
		var exit *exec.ExitError
		if errors.As(err, &exit) && exit.Sys().(syscall.WaitStatus).Signaled() {
			t.Fatalf("%s was killed by %v instead of stopping cleanly\n%s", job.Name, exit.Sys().(syscall.WaitStatus).Signal(), out.String())
		}
	case <-time.After(time.Minute):
		_ = cmd.Process.Kill()
		t.Fatalf("%s did not stop within a minute of SIGTERM\n%s", job.Name, out.String())
	}

	// The lease is free: a new run on the key starts at once.
	eng, err := crmsync.NewEngine(crmsync.Config{Store: st, Holder: "next-container", Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	_, err = eng.Run(ctx, "default", crmsync.WorkflowFunc(func(context.Context, *crmsync.Run) error { return nil }))
	require.False(t, errors.Is(err, crmsync.ErrBusy), "the next start found the key busy: the stopped job left its lease behind (%v)", err)
	require.NoError(t, err)
}

// LockedBuffer is an io.Writer safe to read while a command writes to it.
// Its zero value is empty and ready to use.
type LockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

// Write appends p to the buffer.
func (w *LockedBuffer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

// String returns what was written so far.
func (w *LockedBuffer) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}
