package main

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/store/sqlite"
	"github.com/stretchr/testify/require"
)

// TestSIGTERMReleasesLease: a container stop sends SIGTERM. The main job,
// in the middle of a pass, stops cleanly and gives its key's lease up, so
// the next start (in a new container) does not wait for the lease to expire.
func TestSIGTERMReleasesLease(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the command")
	}
	if path := os.Getenv("CRMSYNC_SIGTERM_CHILD_STORE"); path != "" {
		os.Args = []string{"hubspot-salesforce", "-seed", "3000", "-every", "1h", "-store", path}
		main()
		return
	}
	path := filepath.Join(t.TempDir(), "crmsync.db")
	cmd := exec.Command(os.Args[0], "-test.run=^TestSIGTERMReleasesLease$")
	cmd.Env = append(os.Environ(), "CRMSYNC_SIGTERM_CHILD_STORE="+path)
	out := &lockedBuffer{}
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
			t.Fatalf("main job exited before its first pass held the lease: %v\n%s", err, out.String())
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
			t.Fatalf("main job was killed by %v instead of stopping cleanly\n%s", exit.Sys().(syscall.WaitStatus).Signal(), out.String())
		}
	case <-time.After(time.Minute):
		_ = cmd.Process.Kill()
		t.Fatalf("main job did not stop within a minute of SIGTERM\n%s", out.String())
	}

	// The lease is free: a new run on the key starts at once.
	eng, err := crmsync.NewEngine(crmsync.Config{Store: st, Holder: "next-container", Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	_, err = eng.Run(ctx, "default", crmsync.WorkflowFunc(func(context.Context, *crmsync.Run) error { return nil }))
	require.False(t, errors.Is(err, crmsync.ErrBusy), "the next start found the key busy: the stopped job left its lease behind (%v)", err)
	require.NoError(t, err)
}

// lockedBuffer collects a child's output while the test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (w *lockedBuffer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *lockedBuffer) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}
