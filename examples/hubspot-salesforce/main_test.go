package main

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/crmsync/crmsync/store/storespec"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The example runs as a test too: the main job on its defaults, as a user
// runs it, in a child process. Its store is kept in the user's cache
// folder (here a temporary one), where its last line says, and the crmsync
// command can open it there.
func TestMainJob(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the command")
	}
	if os.Getenv("CRMSYNC_EXAMPLE_CHILD") == "1" {
		os.Args = []string{"hubspot-salesforce", "-seed", "100"}
		main()
		return
	}
	if runtime.GOOS != "linux" {
		t.Skip("points the cache folder elsewhere with XDG_CACHE_HOME")
	}
	cache := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestMainJob$")
	cmd.Env = append(os.Environ(), "CRMSYNC_EXAMPLE_CHILD=1", "XDG_CACHE_HOME="+cache, "CRMSYNC_STORE=")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "main job:\n%s", out)
	assert.Contains(t, string(out), "third pass (converged): 0 written")
	path := filepath.Join(cache, "crmsync", "demo.db")
	assert.Contains(t, string(out), "crmsync -store sqlite:"+path+" status", "the last lines say where the store is and how to open it")
	st, _, err := storespec.Open(context.Background(), "sqlite:"+path, storespec.Existing)
	require.NoError(t, err, "the demo store is kept")
	defer st.Close()
	runs, err := st.ListRuns(context.Background(), "", 10)
	require.NoError(t, err)
	assert.Len(t, runs, 3, "the three passes")
}

// TestMainJobShowsNoSecret runs the main job in a child process with a
// store spec of every DSN shape: the password appears on neither stdout nor
// stderr, and the error is one line.
func TestMainJobShowsNoSecret(t *testing.T) {
	if args := os.Getenv("CRMSYNC_EXAMPLE_SECRET_ARGS"); args != "" {
		require.NoError(t, json.Unmarshal([]byte(args), &os.Args))
		main()
		return
	}
	if testing.Short() {
		t.Skip("runs the command in child processes")
	}
	for _, spec := range []string{
		"postgres://postgres:S3cretPW@127.0.0.1:1/db?sslmode=disable",
		"postgresql://postgres:S3cretPW@127.0.0.1:notaport/db",
		"postgres://postgres@127.0.0.1:1/db?password=S3cretPW&sslmode=disable",
		"postgres://postgres@127.0.0.1:1/db?sslpassword=S3cretPW&sslmode=require&sslkey=/nonexistent",
		"host=127.0.0.1 port=1 user=postgres password=S3cretPW dbname=x sslmode=disable",
		"host=127.0.0.1 port=1 password='S3cretPW and more' dbname=x sslmode=disable",
		"host=127.0.0.1 password='S3cretPW and more dbname=x",
		"host=127.0.0.1 port=1 sslpassword=S3cretPW sslmode=require sslkey=/nonexistent",
		"mysql://root:S3cretPW@127.0.0.1/db",
	} {
		for _, args := range [][]string{
			{"hubspot-salesforce", "-store", spec, "-seed", "5"},
			{"hubspot-salesforce", "-store", spec, "-every", "1h", "-seed", "5"},
		} {
			b, err := json.Marshal(args)
			require.NoError(t, err)
			cmd := exec.Command(os.Args[0], "-test.run=^TestMainJobShowsNoSecret$")
			cmd.Dir = t.TempDir()
			cmd.Env = append(os.Environ(), "CRMSYNC_EXAMPLE_SECRET_ARGS="+string(b))
			var out, errOut strings.Builder
			cmd.Stdout, cmd.Stderr = &out, &errOut
			require.Error(t, cmd.Run(), "%v must fail", args)
			for _, s := range []string{"S3cretPW", "and more"} {
				assert.NotContains(t, out.String(), s, "stdout of %v", args)
				assert.NotContains(t, errOut.String(), s, "stderr of %v", args)
			}
			assert.Equal(t, 1, strings.Count(errOut.String(), "\n"), "one error line for %v:\n%s", args, errOut.String())
			entries, err := os.ReadDir(cmd.Dir)
			require.NoError(t, err)
			assert.Empty(t, entries, "no file named after the spec")
		}
	}
}
