package sqlite_test

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/store/sqlite"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The helper process runs a six-step workflow. Each step appends its name to
// a side-effect file before it returns; step 4 of the first process then
// blocks until the parent kills the process with SIGKILL.
func TestMain(m *testing.M) {
	if os.Getenv("CRMSYNC_CRASH_HELPER") == "1" {
		os.Exit(crashHelper())
	}
	os.Exit(m.Run())
}

func crashHelper() int {
	dbPath, effects, hang := os.Getenv("CRMSYNC_DB"), os.Getenv("CRMSYNC_EFFECTS"), os.Getenv("CRMSYNC_HANG") == "1"
	ctx := context.Background()
	st, err := sqlite.Open(ctx, sqlite.Config{Path: dbPath})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	defer st.Close()
	eng, err := crmsync.NewEngine(crmsync.Config{
		Store: st, LeaseTTL: time.Second, Heartbeat: 200 * time.Millisecond, WaitForLease: true,
		Logger: slog.New(slog.NewTextHandler(os.Stderr, nil)),
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	f, err := os.OpenFile(effects, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	defer f.Close()
	_, err = eng.Run(ctx, "team-1", crmsync.WorkflowFunc(func(ctx context.Context, run *crmsync.Run) error {
		for i := 1; i <= 6; i++ {
			_, err := crmsync.Step(ctx, run, fmt.Sprintf("step-%d", i), func(ctx context.Context, _ *crmsync.Attempt) (int, error) {
				fmt.Fprintf(f, "%s step-%d\n", run.ID, i)
				f.Sync()
				if i == 4 && hang {
					select {} // killed here, inside step 4
				}
				return i * 10, nil
			}, nil)
			if err != nil {
				return err
			}
		}
		return nil
	}))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

func TestCrashResume(t *testing.T) {
	if testing.Short() {
		t.Skip("starts helper processes")
	}
	dir := t.TempDir()
	db, effects := filepath.Join(dir, "crmsync.db"), filepath.Join(dir, "effects.txt")
	helper := func(hang bool) *exec.Cmd {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), "CRMSYNC_CRASH_HELPER=1", "CRMSYNC_DB="+db, "CRMSYNC_EFFECTS="+effects)
		if hang {
			cmd.Env = append(cmd.Env, "CRMSYNC_HANG=1")
		}
		return cmd
	}
	first := helper(true)
	var firstErr strings.Builder
	first.Stderr = &firstErr
	require.NoError(t, first.Start())
	deadline := time.Now().Add(60 * time.Second)
	for !strings.Contains(readFile(effects), "step-4") {
		if time.Now().After(deadline) {
			first.Process.Kill()
			t.Fatalf("helper never reached step 4; stderr:\n%s", firstErr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	require.NoError(t, first.Process.Kill()) // SIGKILL
	first.Wait()

	// The second process starts at once; it waits for the dead one's lease to expire.
	second := helper(false)
	out, err := second.CombinedOutput()
	require.NoError(t, err, "second process:\n%s", out)

	var runs []string
	count := map[string]int{}
	sc := bufio.NewScanner(strings.NewReader(readFile(effects)))
	for sc.Scan() {
		run, step, _ := strings.Cut(sc.Text(), " ")
		runs = append(runs, run)
		count[step]++
	}
	want := map[string]int{"step-1": 1, "step-2": 1, "step-3": 1, "step-4": 2, "step-5": 1, "step-6": 1}
	assert.Equal(t, want, count, "side effects (steps 1-3 not again, 4 again, 5-6 once)")
	for _, r := range runs {
		if r != runs[0] {
			t.Errorf("side effects from runs %v, want one run id throughout", runs)
			break
		}
	}
	st := open(t, db)
	info, err := st.GetRun(context.Background(), crmsync.RunID(runs[0]))
	if assert.NoError(t, err, "GetRun") {
		assert.Equal(t, crmsync.RunFinished, info.Status, "run %+v: want finished after 2 attempts", info)
		assert.Equal(t, 2, info.Attempts, "run %+v: want finished after 2 attempts", info)
	}
}

func readFile(p string) string {
	b, _ := os.ReadFile(p)
	return string(b)
}
