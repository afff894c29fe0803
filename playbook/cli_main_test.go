package playbook

import (
	"bytes"
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/store/storespec"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The demo's default store goes to a temporary folder of this test
// binary's (made when first asked for), not to the user's cache.
func init() {
	cacheDir = sync.OnceValues(func() (string, error) {
		return os.MkdirTemp("", "crmsync-playbook-cache-")
	})
}

// mainRun runs Main in process.
func mainRun(t *testing.T, env map[string]string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = Main(context.Background(), "hubspot-salesforce", args, &out, &errb, func(k string) string { return env[k] })
	return code, out.String(), errb.String()
}

// Bad flags are refused before anything runs: one line naming what was
// wrong, exit 2, no usage text, nothing on stdout.
func TestMainFlagsAreChecked(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-every", "-5s"}, "-every -5s: want a positive interval"},
		{[]string{"-seed", "-5"}, "-seed -5"},
		{[]string{"-cron", "0 0 30 2 *"}, "never fires"},
		{[]string{"-cron", "not a cron"}, "cron expression"},
		{[]string{"-every", "5m", "-cron", "*/5 * * * *"}, "-every and -cron"},
		{[]string{"-plan", "-every", "1m"}, "-plan makes one dry run"},
		{[]string{"-key", " "}, "-key is empty"},
		{[]string{"-seed", "10", "extra"}, `unexpected argument "extra"`},
		{[]string{"-bogus"}, "flag provided but not defined: -bogus"},
		{[]string{"-every", "soon"}, `invalid value "soon" for flag -every`},
		{[]string{"-store", "sqlit:pfx.db"}, `unknown scheme "sqlit"`},
		{[]string{"-store", "mysql://root:S3cretPW@db/crm"}, `unknown scheme "mysql"`},
		{[]string{"-salesforce-api-version", "sixty"}, `-salesforce-api-version "sixty": want a version`},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			code, out, errOut := mainRun(t, nil, tc.args...)
			assert.Equal(t, 2, code)
			assert.Empty(t, out)
			assert.Equal(t, 1, strings.Count(errOut, "\n"), "one line:\n%s", errOut)
			assert.Contains(t, errOut, tc.want)
			assert.True(t, strings.HasPrefix(errOut, "hubspot-salesforce: "), errOut)
			assert.NotContains(t, errOut, "S3cretPW")
			assert.NotContains(t, errOut, "Usage")
		})
	}
}

// -h prints the flags on stdout and exits 0.
func TestMainHelp(t *testing.T) {
	code, out, errOut := mainRun(t, nil, "-h")
	assert.Equal(t, 0, code)
	assert.Empty(t, errOut)
	assert.Contains(t, out, "-store")
	assert.Contains(t, out, "-plan")
}

// -store means what it means to the crmsync command: sqlite:PATH is the
// file PATH (not a file named "sqlite:PATH"), a plain path is a file, and
// $CRMSYNC_STORE stands in for the flag. The last lines say where the store
// is and how to open it.
func TestMainStoreSpec(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the reference workflow")
	}
	dir := t.TempDir()
	t.Chdir(dir)
	for _, tc := range []struct {
		args []string
		env  map[string]string
		file string
	}{
		{args: []string{"-store", "sqlite:pfx.db"}, file: "pfx.db"},
		{args: []string{"-store", filepath.Join(dir, "plain")}, file: "plain"},
		{env: map[string]string{"CRMSYNC_STORE": "sqlite:env.db"}, file: "env.db"},
	} {
		code, out, errOut := mainRun(t, tc.env, append(tc.args, "-seed", "20")...)
		require.Equal(t, 0, code, "%v: %s", tc.args, errOut)
		path := filepath.Join(dir, tc.file)
		st, _, err := storespec.Open(context.Background(), path, storespec.Existing)
		require.NoError(t, err, "%v made %s", tc.args, path)
		runs, err := st.ListRuns(context.Background(), "", 10)
		require.NoError(t, err)
		assert.Len(t, runs, 3)
		require.NoError(t, st.Close())
		assert.Contains(t, out, "crmsync -store sqlite:")
	}
	_, err := os.Stat(filepath.Join(dir, "sqlite:pfx.db"))
	assert.True(t, os.IsNotExist(err), "no file named sqlite:pfx.db")
}

// The default store is kept where the last line says, and the crmsync
// command opens it; the next start begins a new demo on a new store.
func TestMainDefaultStoreIsKept(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the reference workflow")
	}
	for range 2 {
		code, out, errOut := mainRun(t, nil, "-seed", "20")
		require.Equal(t, 0, code, errOut)
		dir, err := cacheDir()
		require.NoError(t, err)
		path := filepath.Join(dir, "crmsync", "demo.db")
		assert.Contains(t, out, "crmsync -store sqlite:"+path+" status")
		assert.Contains(t, out, "the next start begins a new demo")
		st, _, err := storespec.Open(context.Background(), path, storespec.Existing)
		require.NoError(t, err)
		runs, err := st.ListRuns(context.Background(), "", 10)
		require.NoError(t, err)
		assert.Len(t, runs, 3, "this start's three passes only")
		require.NoError(t, st.Close())
	}
}

// The main job runs on PostgreSQL as well, given a DSN.
func TestMainOnPostgres(t *testing.T) {
	dsn := os.Getenv("CRMSYNC_TEST_POSTGRES_DSN")
	if dsn == "" {
		t.Skip("CRMSYNC_TEST_POSTGRES_DSN is unset")
	}
	ctx := context.Background()
	u, err := url.Parse(dsn)
	if err != nil || u.Scheme == "" {
		t.Skip("CRMSYNC_TEST_POSTGRES_DSN is not a URL")
	}
	admin, err := pgx.Connect(ctx, dsn)
	require.NoError(t, err)
	defer admin.Close(ctx)
	db := fmt.Sprintf("crmsync_main_%d", time.Now().UnixNano())
	_, err = admin.Exec(ctx, "CREATE DATABASE "+db)
	require.NoError(t, err)
	defer admin.Exec(ctx, "DROP DATABASE "+db+" WITH (FORCE)") //nolint:errcheck
	u.Path = "/" + db

	code, out, errOut := mainRun(t, nil, "-store", u.String(), "-seed", "30")
	require.Equal(t, 0, code, errOut)
	assert.Contains(t, out, "third pass (converged): 0 written")
	st, _, err := storespec.Open(ctx, u.String(), storespec.Existing)
	require.NoError(t, err)
	defer st.Close()
	runs, err := st.ListRuns(ctx, "", 10)
	require.NoError(t, err)
	assert.Len(t, runs, 3)
}

// The progress line never shows more read than expected.
func TestProgressText(t *testing.T) {
	got := progressText(crmsync.Progress{Phase: "hubspot changes", Read: 1200, Expected: 1000, Written: 5})
	assert.NotContains(t, got, "1200/")
	assert.Contains(t, got, "read   1200 ")
	got = progressText(crmsync.Progress{Phase: "hubspot changes", Read: 500, Expected: 1000, Remaining: 3 * time.Second, RecordsPerSecond: 100})
	assert.Contains(t, got, "read    500/1000")
	assert.Contains(t, got, "~3s left")
}

// A log line never lands on the progress line: it is cleared first.
func TestConsoleClearsProgressBeforeALogLine(t *testing.T) {
	var b bytes.Buffer
	con := &console{w: &b, tty: true}
	con.progress("read 10/20")
	_, err := con.Write([]byte("level=WARN msg=x\n"))
	require.NoError(t, err)
	con.progress("read 20/20")
	con.clear()
	con.clear()
	assert.Equal(t, "\rread 10/20\033[K\r\033[Klevel=WARN msg=x\n\rread 20/20\033[K\r\033[K", b.String())
}

// A pass that fails is one line on stderr naming its run once, with no
// usage text, and exit 1; the store then lists the run as failed.
func TestMainFailedPassIsOneLine(t *testing.T) {
	w, err := NewWorld(10)
	require.NoError(t, err)
	defer w.Close()
	env := map[string]string{
		"HUBSPOT_TOKEN": "not-the-token", "HUBSPOT_BASE_URL": w.w.f.hsURL,
		"SALESFORCE_ACCESS_TOKEN": w.w.f.sf.Token(), "SALESFORCE_INSTANCE_URL": w.w.f.sfURL,
	}
	path := filepath.Join(t.TempDir(), "x.db")
	code, out, errOut := mainRun(t, env, "-store", path)
	assert.Equal(t, 1, code)
	assert.Empty(t, out)
	require.Equal(t, 1, strings.Count(errOut, "\n"), "one line:\n%s", errOut)
	assert.Contains(t, errOut, "401")
	st, _, err := storespec.Open(context.Background(), path, storespec.Existing)
	require.NoError(t, err)
	defer st.Close()
	runs, err := st.ListRuns(context.Background(), "", 10)
	require.NoError(t, err)
	require.Len(t, runs, 1)
	assert.Equal(t, 1, strings.Count(errOut, string(runs[0].ID)), "the run id once:\n%s", errOut)
	assert.Equal(t, crmsync.RunFailed, runs[0].Status)

	// Against external CRMs the store must be named.
	code, _, errOut = mainRun(t, env)
	assert.Equal(t, 2, code)
	assert.Contains(t, errOut, "no store")
}

// -plan on a fresh store plans the first sync of the whole data set, right
// after the fakes are seeded: all 30 HubSpot contacts, and the 20
// Salesforce contacts HubSpot has no match for (the 10 matched ones the
// pass writes while it handles the HubSpot side, which moves them out of
// its window, so it does not read them again; nor does the plan).
func TestMainPlanSeesTheSeededData(t *testing.T) {
	for range 5 {
		code, out, errOut := mainRun(t, nil, "-plan", "-seed", "30", "-store", filepath.Join(t.TempDir(), "p.db"))
		require.Equal(t, 0, code, errOut)
		assert.Contains(t, out, "read hubspot 30, salesforce 20 (plan: nothing was written)")
		assert.Contains(t, out, "salesforce->hubspot      created 20, updated 10")
	}
}

// -salesforce-api-version reaches the Salesforce client: the in-process
// fake serves 31.0 to 66.0, so 30.0 fails the pass and 60.0 syncs.
func TestMainSalesforceAPIVersion(t *testing.T) {
	code, _, errOut := mainRun(t, nil, "-seed", "3", "-salesforce-api-version", "30.0", "-store", filepath.Join(t.TempDir(), "a.db"))
	assert.Equal(t, 1, code, errOut)
	assert.Contains(t, errOut, "NOT_FOUND")
	code, out, errOut := mainRun(t, nil, "-seed", "3", "-salesforce-api-version", "60.0", "-store", filepath.Join(t.TempDir(), "b.db"))
	assert.Equal(t, 0, code, errOut)
	assert.Contains(t, out, "third pass")
}
