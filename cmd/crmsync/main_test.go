package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

func TestMain(m *testing.M) {
	now = func() time.Time { return cliNow }
	demoStore = func() string { return "" }
	os.Exit(m.Run())
}

// result is one invocation's outcome.
type result struct {
	code           int
	stdout, stderr string
}

// invoke runs the CLI in-process with CRMSYNC_STORE set to store.
func invoke(ctx context.Context, store string, args ...string) result {
	var out, errOut bytes.Buffer
	env := func(k string) string {
		if k == "CRMSYNC_STORE" {
			return store
		}
		return ""
	}
	code := run(ctx, args, &out, &errOut, env)
	return result{code: code, stdout: out.String(), stderr: errOut.String()}
}

type goldenCase struct {
	name string
	args []string
	code int
	// changes names the tables the command changes; it then runs on a
	// fresh fixture, and exactly those tables must differ afterwards. Every
	// other case must leave the store exactly as it was.
	changes []string
	// noStore runs without CRMSYNC_STORE.
	noStore bool
}

var goldenCases = []goldenCase{
	// Help.
	{name: "help", args: []string{"-h"}},
	{name: "help-word", args: []string{"help"}},
	{name: "status-help", args: []string{"status", "-h"}},
	{name: "runs-help", args: []string{"runs", "--help"}},
	{name: "audit-help", args: []string{"audit", "-h"}},
	{name: "dlq-help", args: []string{"dlq", "-h"}},
	{name: "dlq-replay-help", args: []string{"dlq", "replay", "-h"}},
	{name: "conflicts-help", args: []string{"conflicts", "--help"}},
	{name: "conflicts-resolve-help", args: []string{"conflicts", "resolve", "-h"}},
	{name: "fake-help", args: []string{"fake", "-h"}, noStore: true},

	// status.
	{name: "status", args: []string{"status"}},
	{name: "status-json", args: []string{"status", "-format", "json"}},
	{name: "status-csv", args: []string{"status", "-format", "csv"}},
	{name: "status-key", args: []string{"status", "-key", "team-a", "-runs", "1"}},
	{name: "status-graph-key", args: []string{"status", "-key", "acme"}},
	{name: "status-store-flag", args: []string{"-store", "sqlite:{STORE}", "status", "-key", "team-b"}, noStore: true},
	{name: "status-store-flag-after", args: []string{"status", "-store", "{STORE}", "-key", "team-b"}, noStore: true},

	// runs.
	{name: "runs", args: []string{"runs"}},
	{name: "runs-json", args: []string{"runs", "-format", "json"}},
	{name: "runs-csv", args: []string{"runs", "-format", "csv"}},
	{name: "runs-key-limit", args: []string{"runs", "-key", "team-a", "-limit", "1"}},
	{name: "runs-show", args: []string{"runs", "show", "{RUN1}"}},
	{name: "runs-show-table", args: []string{"runs", "show", "{RUN2}", "-format", "table"}},

	// audit.
	{name: "audit", args: []string{"audit"}},
	{name: "audit-json", args: []string{"audit", "-format", "json"}},
	{name: "audit-csv", args: []string{"audit", "-format", "csv"}},
	{name: "audit-record", args: []string{"audit", "-record", "003A0000003"}},
	{name: "audit-kind", args: []string{"audit", "-kind", "dead-letter"}},
	{name: "audit-run-page", args: []string{"audit", "-run", "{RUN1}", "-limit", "3"}},
	{name: "audit-after", args: []string{"audit", "-run", "{RUN1}", "-limit", "3", "-after", "3"}},
	{name: "audit-all-csv", args: []string{"audit", "-all", "-limit", "2", "-format", "csv"}},
	{name: "audit-all-json", args: []string{"audit", "-all", "-limit", "4", "-format", "json", "-key", "team-b"}},
	{name: "audit-since-until", args: []string{"audit", "-since", "2026-03-02T09:01:00Z", "-until", "2026-03-02T09:05:00Z"}},

	// dlq.
	{name: "dlq-list", args: []string{"dlq", "list"}},
	{name: "dlq-list-json", args: []string{"dlq", "list", "-format", "json"}},
	{name: "dlq-list-csv", args: []string{"dlq", "list", "-format", "csv"}},
	{name: "dlq-list-filter", args: []string{"dlq", "list", "-key", "team-b", "-status", "parked"}},
	{name: "dlq-list-empty", args: []string{"dlq", "list", "-status", "discarded", "-format", "json"}},
	{name: "dlq-show", args: []string{"dlq", "show", "1"}},
	{name: "dlq-show-json", args: []string{"dlq", "show", "2", "-format", "json"}},
	{name: "dlq-replay", args: []string{"dlq", "replay", "1", "3"}, changes: []string{"dead_letters"}},
	{name: "dlq-discard", args: []string{"dlq", "discard", "2"}, changes: []string{"dead_letters"}},

	// conflicts.
	{name: "conflicts-list", args: []string{"conflicts", "list"}},
	{name: "conflicts-list-graph-key", args: []string{"conflicts", "list", "-key", "acme"}},
	{name: "conflicts-list-json", args: []string{"conflicts", "list", "-format", "json"}},
	{name: "conflicts-list-csv", args: []string{"conflicts", "list", "-format", "csv"}},
	{name: "conflicts-list-held", args: []string{"conflicts", "list", "-state", "held", "-key", "team-a"}},
	{name: "conflicts-show", args: []string{"conflicts", "show", conflictHeld}},
	{name: "conflicts-show-json", args: []string{"conflicts", "show", conflictResolved, "-format", "json"}},
	{name: "conflicts-resolve-pick", args: []string{"conflicts", "resolve", conflictHeld, "-pick", "salesforce"}, changes: []string{"conflicts"}},
	{name: "conflicts-resolve-value", args: []string{"conflicts", "resolve", "-value", "Principal Engineer", conflictHeld2}, changes: []string{"conflicts"}},

	// Bad input: one line, the usage hint, a non-zero code, no change.
	{name: "err-no-command", args: []string{}, code: 2},
	{name: "err-unknown-command", args: []string{"stats"}, code: 2},
	{name: "err-bad-flag", args: []string{"status", "-bogus"}, code: 2},
	{name: "err-bad-global-flag", args: []string{"-verbose", "status"}, code: 2},
	{name: "err-bad-format", args: []string{"runs", "-format", "xml"}, code: 2},
	{name: "err-show-csv", args: []string{"dlq", "show", "1", "-format", "csv"}, code: 2},
	{name: "err-dlq-show-two-ids", args: []string{"dlq", "show", "1", "2"}, code: 2},
	{name: "err-runs-show-no-id", args: []string{"runs", "show", "-format", "csv"}, code: 2},
	{name: "err-runs-show-csv", args: []string{"runs", "show", "{RUN1}", "-format", "csv"}, code: 2},
	{name: "err-conflicts-show-two-ids", args: []string{"conflicts", "show", conflictHeld, conflictResolved}, code: 2},
	{name: "err-conflicts-show-csv", args: []string{"conflicts", "show", conflictHeld, "-format", "csv"}, code: 2},
	{name: "err-no-store", args: []string{"status"}, code: 2, noStore: true},
	{name: "err-unknown-scheme", args: []string{"-store", "mysql://db.example.com/crm", "status"}, code: 2, noStore: true},
	{name: "err-missing-file", args: []string{"-store", "sqlite:{STORE}.missing", "status"}, code: 1, noStore: true},
	{name: "err-not-a-store", args: []string{"-store", "sqlite:testdata/not-a-store.db", "status"}, code: 1, noStore: true},
	{name: "err-unknown-run", args: []string{"runs", "show", "run_nope"}, code: 1},
	{name: "err-unknown-dlq", args: []string{"dlq", "show", "99"}, code: 1},
	{name: "err-bad-dlq-id", args: []string{"dlq", "show", "abc"}, code: 2},
	{name: "err-unknown-conflict", args: []string{"conflicts", "show", "nope"}, code: 1},
	{name: "err-dlq-sub", args: []string{"dlq", "purge"}, code: 2},
	{name: "err-dlq-bad-status", args: []string{"dlq", "list", "-status", "lost"}, code: 2},
	{name: "err-replay-unknown", args: []string{"dlq", "replay", "1", "99"}, code: 1},
	{name: "err-replay-none", args: []string{"dlq", "replay"}, code: 2},
	{name: "err-resolve-both", args: []string{"conflicts", "resolve", conflictHeld, "-pick", "hubspot", "-value", "x"}, code: 2},
	{name: "err-resolve-neither", args: []string{"conflicts", "resolve", conflictHeld}, code: 2},
	{name: "err-resolve-no-id", args: []string{"conflicts", "resolve", "-pick", "hubspot"}, code: 2},
	{name: "err-resolve-bad-pick", args: []string{"conflicts", "resolve", conflictHeld, "-pick", "zoho"}, code: 2},
	{name: "err-resolve-not-held", args: []string{"conflicts", "resolve", conflictResolved, "-pick", "hubspot"}, code: 1},
	{name: "err-resolve-unknown", args: []string{"conflicts", "resolve", "nope", "-pick", "hubspot"}, code: 1},
	{name: "err-bad-since", args: []string{"audit", "-since", "yesterday"}, code: 2},
	{name: "err-status-unknown-key", args: []string{"status", "-key", "team-z"}, code: 1},
	{name: "err-runs-limit", args: []string{"runs", "-limit", "0"}, code: 2},
	{name: "err-runs-argument", args: []string{"runs", "team-a"}, code: 2},
	{name: "err-status-argument", args: []string{"status", "team-a"}, code: 2},
	{name: "err-status-bad-format", args: []string{"status", "-format", "yaml"}, code: 2},
	{name: "err-audit-argument", args: []string{"audit", "team-a"}, code: 2},
	{name: "err-audit-bad-format", args: []string{"audit", "-format", "xml"}, code: 2},
	{name: "err-dlq-list-argument", args: []string{"dlq", "list", "team-a"}, code: 2},
	{name: "err-dlq-list-bad-format", args: []string{"dlq", "list", "-format", "xml"}, code: 2},
	{name: "err-conflicts-list-argument", args: []string{"conflicts", "list", "team-a"}, code: 2},
	{name: "err-conflicts-list-bad-format", args: []string{"conflicts", "list", "-format", "xml"}, code: 2},
	{name: "err-audit-bad-kind", args: []string{"audit", "-kind", "bogus"}, code: 2},
	{name: "err-sqlite-typo", args: []string{"-store", "sqlit:{STORE}", "status"}, code: 2, noStore: true},
	{name: "err-empty-file", args: []string{"-store", "testdata/empty.db", "status"}, code: 1, noStore: true},
}

func TestGolden(t *testing.T) {
	ctx := context.Background()
	shared := fill(t)
	before := dump(t, shared.path)
	for _, tc := range goldenCases {
		t.Run(tc.name, func(t *testing.T) {
			f := shared
			if tc.changes != nil {
				f = fill(t)
			}
			pre := dumpTables(t, f.path)
			store := f.path
			if tc.noStore {
				store = ""
			}
			args := f.expand(tc.args)
			res := invoke(ctx, store, args...)
			assert.Equal(t, tc.code, res.code, "exit code %d, want %d; stderr: %s", res.code, tc.code, res.stderr)
			if tc.code != 0 {
				checkErrorOutput(t, res)
			}
			post := dumpTables(t, f.path)
			var changed []string
			for _, name := range slices.Sorted(maps.Keys(pre)) {
				if pre[name] != post[name] {
					changed = append(changed, name)
				}
			}
			assert.Len(t, post, len(pre), "tables changed: %v, want %v", changed, tc.changes)
			assert.True(t, slices.Equal(changed, tc.changes), "tables changed: %v, want %v", changed, tc.changes)
			got := fmt.Sprintf("$ crmsync %s\nexit %d\n-- stdout --\n%s-- stderr --\n%s",
				shellJoin(tc.args), res.code, f.normalize(res.stdout), f.normalize(res.stderr))
			golden(t, tc.name, got)
		})
	}
	assert.Equal(t, before, dump(t, shared.path), "the read-only cases changed the shared store")
}

// checkErrorOutput checks a failure's stderr: one error line; bad input
// (exit 2) ends it with where to find help, a runtime error has no usage.
func checkErrorOutput(t *testing.T, res result) {
	t.Helper()
	lines := strings.Split(strings.TrimSuffix(res.stderr, "\n"), "\n")
	require.Len(t, lines, 1, "stderr is one error line:\n%s", res.stderr)
	assert.True(t, strings.HasPrefix(lines[0], "crmsync: "), "stderr: %s", res.stderr)
	if res.code == exitUsage {
		assert.True(t, strings.HasSuffix(lines[0], " -h for help)"), "a usage error says where help is: %s", res.stderr)
	} else {
		assert.NotContains(t, lines[0], "usage", "no usage after a runtime error")
	}
	assert.Empty(t, res.stdout, "stdout on error")
}

// With no store given, the error points at the demo's store if there is one.
func TestNoStoreNamesTheDemoStore(t *testing.T) {
	path := filepath.Join(t.TempDir(), "demo.db")
	demoStore = func() string { return path }
	defer func() { demoStore = func() string { return "" } }()
	res := invoke(context.Background(), "", "status")
	assert.Equal(t, exitUsage, res.code)
	assert.NotContains(t, res.stderr, "demo's store", "no demo store yet")
	require.NoError(t, os.WriteFile(path, []byte("x"), 0o644))
	res = invoke(context.Background(), "", "status")
	assert.Equal(t, exitUsage, res.code)
	checkErrorOutput(t, res)
	assert.Contains(t, res.stderr, "the demo's store is sqlite:"+path)
}

// TestStatusLeavesNonStoresAlone: status on an empty file or a missing
// path says so on one line and leaves the file (or its absence) as it was.
func TestStatusLeavesNonStoresAlone(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty.db")
	require.NoError(t, os.WriteFile(empty, nil, 0o644))
	missing := filepath.Join(dir, "missing.db")
	for _, spec := range []string{empty, "sqlite:" + empty, missing, "sqlite:" + missing} {
		res := invoke(context.Background(), spec, "status")
		assert.Equal(t, exitRuntime, res.code, "%s: %s", spec, res.stderr)
		checkErrorOutput(t, res)
	}
	fi, err := os.Stat(empty)
	require.NoError(t, err)
	assert.Zero(t, fi.Size(), "the empty file is still empty")
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	assert.Len(t, entries, 1, "no file was created")
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		require.NoError(t, os.WriteFile(path, []byte(got), 0o644))
		return
	}
	want, err := os.ReadFile(path)
	require.NoError(t, err, "%v (run go test -update to create it)", err)
	assert.Equal(t, string(want), got, "output differs from %s (go test -update rewrites it):\n--- got\n%s\n--- want\n%s", path, got, want)
}

// shellJoin quotes the arguments that need it.
func shellJoin(args []string) string {
	out := make([]string, len(args))
	for i, a := range args {
		if a == "" || strings.ContainsAny(a, " \t\"'") {
			a = strconv.Quote(a)
		}
		out[i] = a
	}
	return strings.Join(out, " ")
}
