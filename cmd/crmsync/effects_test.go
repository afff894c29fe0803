package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/hubspot"
	"github.com/crmsync/crmsync/internal/clocktest"
	"github.com/crmsync/crmsync/salesforce"
	"github.com/crmsync/crmsync/store/sqlite"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func openFixture(t *testing.T, f *fixture) *sqlite.Store {
	t.Helper()
	st, err := sqlite.Open(context.Background(), sqlite.Config{Path: f.path})
	require.NoError(t, err)
	t.Cleanup(func() { st.Close() })
	return st
}

// TestReplayGoesToNextRun: a letter marked for replay by the CLI is handed
// to the next run of its key, and only to that key's run.
func TestReplayGoesToNextRun(t *testing.T) {
	ctx := context.Background()
	f := fill(t)
	if res := invoke(ctx, f.path, "dlq", "replay", "1", "3"); res.code != 0 {
		t.Fatalf("dlq replay: exit %d: %s", res.code, res.stderr)
	}
	st := openFixture(t, f)
	before, err := st.GetDeadLetter(ctx, 1)
	require.NoError(t, err)
	require.Equal(t, crmsync.DeadReplay, before.Status, "letter 1 after replay: status %s updated %s, want replay at %s", before.Status, before.Updated, cliNow)
	require.True(t, before.Updated.Equal(cliNow), "letter 1 after replay: status %s updated %s, want replay at %s", before.Status, before.Updated, cliNow)

	clk := clocktest.New(t0.Add(20 * time.Minute))
	eng := newEngine(t, st, clk)
	var got []crmsync.DeadLetter
	info, err := eng.Run(ctx, "team-a", workflow("contacts", func(ctx context.Context, run *crmsync.Run) error {
		got = run.Replays()
		return nil
	}))
	require.NoError(t, err)
	require.Len(t, got, 1, "run.Replays() = %v, want letter 1 only", got)
	require.Equal(t, int64(1), got[0].ID, "run.Replays() = %v, want letter 1 only", got)
	if got[0].Status != crmsync.DeadReplayed || got[0].ClaimedBy != info.ID || !bytes.Equal(got[0].Payload, before.Payload) {
		t.Errorf("replayed letter = %+v, want status replayed, claimed by %s, same payload", got[0], info.ID)
	}

	// The CLI shows the claim; team-b's letter waits for team-b's run.
	res := invoke(ctx, f.path, "dlq", "list", "-format", "json")
	var rows []map[string]any
	err = json.Unmarshal([]byte(res.stdout), &rows)
	require.NoError(t, err, "dlq list -format json: %v\n%s", err, res.stdout)
	want := map[float64][2]string{1: {"replayed", string(info.ID)}, 2: {"parked", ""}, 3: {"replay", ""}}
	for _, r := range rows {
		w := want[r["id"].(float64)]
		if r["status"] != w[0] || r["claimed_by"] != w[1] {
			t.Errorf("letter %v: status %v claimed by %v, want %v", r["id"], r["status"], r["claimed_by"], w)
		}
	}
}

// TestResolveThenPending: choices made with the CLI are what the next run
// gets from PendingResolutions.
func TestResolveThenPending(t *testing.T) {
	ctx := context.Background()
	f := fill(t)
	for _, args := range [][]string{
		{"conflicts", "resolve", conflictHeld, "-pick", "hubspot"},
		{"conflicts", "resolve", conflictHeld, "-pick", "SalesForce"}, // a person may change their mind
		{"conflicts", "resolve", conflictHeld2, "-value", "  Principal Engineer "},
	} {
		res := invoke(ctx, f.path, args...)
		require.Equal(t, 0, res.code, "%v: exit %d: %s", args, res.code, res.stderr)
	}
	st := openFixture(t, f)
	pending, err := st.PendingResolutions(ctx, "team-a")
	require.NoError(t, err)
	got := map[string]crmsync.Resolution{}
	for _, c := range pending {
		if c.Resolution == nil || c.State != crmsync.ConflictChosen || !c.ResolvedAt.Equal(cliNow) {
			t.Errorf("pending %s: state %s resolution %v resolved %s", c.ID, c.State, c.Resolution, c.ResolvedAt)
			continue
		}
		got[c.ID] = *c.Resolution
	}
	want := map[string]crmsync.Resolution{
		conflictHeld:  {Pick: "salesforce"},
		conflictHeld2: {Pick: crmsync.PickValue, Value: "Principal Engineer"},
	}
	if len(got) != len(want) || got[conflictHeld] != want[conflictHeld] || got[conflictHeld2] != want[conflictHeld2] {
		t.Errorf("PendingResolutions = %v, want %v", got, want)
	}
	// The rule-resolved conflict is untouched.
	c, err := st.GetConflict(ctx, conflictResolved)
	if err != nil || c.State != crmsync.ConflictResolved || c.Resolution != nil {
		t.Errorf("resolved conflict = %+v, %v; want it unchanged", c, err)
	}
}

// TestResolveValueIsTyped: -value is read as the field's type; a value
// that is not one is a usage error that does not quote it.
func TestResolveValueIsTyped(t *testing.T) {
	ctx := context.Background()
	f := fill(t)
	pre := dump(t, f.path)
	res := invoke(ctx, f.path, "conflicts", "resolve", conflictNumber, "-value", "lots-of-people")
	assert.Equal(t, 2, res.code, "bad number: exit %d, stderr %q", res.code, res.stderr)
	assert.NotContains(t, res.stderr, "lots-of-people", "bad number: exit %d, stderr %q", res.code, res.stderr)
	assert.Contains(t, res.stderr, "not a valid number", "bad number: exit %d, stderr %q", res.code, res.stderr)
	require.Equal(t, pre, dump(t, f.path), "a refused resolve changed the store")
	st := openFixture(t, f)
	for _, tc := range []struct {
		value string
		want  any
		says  string
	}{
		{"1,250", nil, ""}, // not a number: refused
		{" 250 ", 250.0, "a value of your own"},
		{"", nil, "to clear the field"},
	} {
		res := invoke(ctx, f.path, "conflicts", "resolve", conflictNumber, "-value", tc.value)
		if tc.says == "" {
			assert.Equal(t, 2, res.code, "-value %q: exit %d, want 2", tc.value, res.code)
			continue
		}
		require.Equal(t, 0, res.code, "-value %q: exit %d, stdout %q, stderr %q", tc.value, res.code, res.stdout, res.stderr)
		require.Contains(t, res.stdout, tc.says, "-value %q: exit %d, stdout %q, stderr %q", tc.value, res.code, res.stdout, res.stderr)
		pending, err := st.PendingResolutions(ctx, "team-b")
		require.NoError(t, err, "PendingResolutions = %v", pending)
		require.Len(t, pending, 1, "PendingResolutions = %v, %v", pending, err)
		require.NotNil(t, pending[0].Resolution, "PendingResolutions = %v, %v", pending, err)
		if r := *pending[0].Resolution; r.Pick != crmsync.PickValue || r.Value != tc.want {
			t.Errorf("-value %q: resolution %+v, want value %v", tc.value, r, tc.want)
		}
	}
}

// TestDiscardIsAllOrNothing: a discard naming one unknown letter changes none.
func TestDiscardIsAllOrNothing(t *testing.T) {
	ctx := context.Background()
	f := fill(t)
	pre := dump(t, f.path)
	res := invoke(ctx, f.path, "dlq", "discard", "1", "2", "42")
	require.Equal(t, 1, res.code, "exit %d, stderr %q", res.code, res.stderr)
	require.Contains(t, res.stderr, "dead letter 42 not found; nothing changed", "exit %d, stderr %q", res.code, res.stderr)
	require.Equal(t, pre, dump(t, f.path), "the failed discard changed the store")
	// Discarding again is a no-op that says so; replaying a discarded letter fails.
	if res := invoke(ctx, f.path, "dlq", "discard", "2"); res.code != 0 {
		t.Fatal(res.stderr)
	}
	mid := dump(t, f.path)
	res = invoke(ctx, f.path, "dlq", "discard", "2")
	if assert.Equal(t, 0, res.code, "second discard: exit %d, stdout %q, or the store changed", res.code, res.stdout) {
		if assert.Contains(t, res.stdout, "already discarded, unchanged", "second discard: exit %d, stdout %q, or the store changed", res.code, res.stdout) {
			assert.Equal(t, mid, dump(t, f.path), "second discard: exit %d, stdout %q, or the store changed", res.code, res.stdout)
		}
	}
	res = invoke(ctx, f.path, "dlq", "replay", "1", "2")
	if assert.Equal(t, 1, res.code, "replay of a discarded letter: exit %d, stderr %q, or the store changed", res.code, res.stderr) {
		if assert.Contains(t, res.stderr, "dead letter 2 is discarded", "replay of a discarded letter: exit %d, stderr %q, or the store changed", res.code, res.stderr) {
			assert.Equal(t, mid, dump(t, f.path), "replay of a discarded letter: exit %d, stderr %q, or the store changed", res.code, res.stderr)
		}
	}
}

// personal holds every record value the fixture stores.
var personal = []string{"bob@example.com", "020 7946 0000", "cy@example.com", "dee@example.com", "ann@example.com",
	"customer", "opportunity", "Lead Engineer", "Staff Engineer", "+1 555 01"}

// TestListingsHideValues: listings never print record values; show does.
func TestListingsHideValues(t *testing.T) {
	ctx := context.Background()
	f := fill(t)
	for _, args := range [][]string{
		{"status"}, {"status", "-format", "json"}, {"status", "-format", "csv"},
		{"runs", "-format", "json"}, {"runs", "show", string(f.runs[0])},
		{"audit", "-all", "-format", "json"}, {"audit", "-format", "csv"},
		{"dlq", "list", "-format", "json"}, {"dlq", "list", "-format", "csv"}, {"dlq", "list"},
		{"conflicts", "list", "-format", "json"}, {"conflicts", "list", "-format", "csv"}, {"conflicts", "list"},
	} {
		res := invoke(ctx, f.path, args...)
		require.Equal(t, 0, res.code, "%v: exit %d: %s", args, res.code, res.stderr)
		for _, v := range personal {
			assert.NotContains(t, res.stdout, v, "%v prints the record value %q", args, v)
		}
	}
	res := invoke(ctx, f.path, "dlq", "show", "1")
	assert.Contains(t, res.stdout, "bob@example.com", "dlq show does not print the payload:\n%s", res.stdout)
	res = invoke(ctx, f.path, "conflicts", "show", conflictHeld2)
	assert.Contains(t, res.stdout, "Staff Engineer", "conflicts show does not print the values:\n%s", res.stdout)
}

// TestFormatsParse: json listings are JSON arrays, csv listings rectangular.
func TestFormatsParse(t *testing.T) {
	ctx := context.Background()
	f := fill(t)
	for _, cmd := range [][]string{{"status"}, {"runs"}, {"audit", "-all", "-limit", "3"}, {"dlq", "list"}, {"conflicts", "list"},
		{"dlq", "list", "-status", "discarded"}} {
		res := invoke(ctx, f.path, append(slices.Clone(cmd), "-format", "json")...)
		var arr []map[string]any
		if err := json.Unmarshal([]byte(res.stdout), &arr); err != nil || arr == nil {
			t.Errorf("%v -format json: %v\n%s", cmd, err, res.stdout)
		}
		res = invoke(ctx, f.path, append(slices.Clone(cmd), "-format", "csv")...)
		recs, err := csv.NewReader(strings.NewReader(res.stdout)).ReadAll()
		if err != nil || len(recs) != len(arr)+1 && cmd[0] != "status" {
			t.Errorf("%v -format csv: %d records for %d json rows, %v\n%s", cmd, len(recs), len(arr), err, res.stdout)
		}
	}
}

func TestOpenStore(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	good := filepath.Join(dir, "good.db")
	st, err := sqlite.Open(ctx, sqlite.Config{Path: good})
	require.NoError(t, err)
	st.Close()
	for _, tc := range []struct {
		spec    string
		ok      bool
		usage   bool
		mention string
	}{
		{spec: "sqlite:" + good, ok: true},
		{spec: good, ok: true},
		{spec: "sqlite://" + good, ok: true},
		{spec: "postgres://crm@127.0.0.1:1/crmsync?connect_timeout=2", mention: "127.0.0.1"},
		{spec: "redis://localhost:6379", usage: true, mention: `"redis"`},
		{spec: "sqlite:", usage: true},
		{spec: filepath.Join(dir, "store.sqlite3"), mention: "no such file"}, // any path is an SQLite file
		{spec: "sqlite:" + filepath.Join(dir, "absent.db"), mention: "no such file"},
		{spec: filepath.Join(dir, "absent.db"), mention: "no such file"},
		{spec: "sqlite:" + dir, mention: "folder"},
	} {
		if tc.spec == "" {
			continue
		}
		st, err := openStore(ctx, tc.spec)
		if tc.ok {
			if err != nil {
				t.Errorf("openStore(%q): %v", tc.spec, err)
				continue
			}
			if _, err := st.ListRuns(ctx, "", 1); err != nil {
				t.Errorf("openStore(%q): ListRuns: %v", tc.spec, err)
			}
			st.Close()
			continue
		}
		var ue *usageError
		if assert.Error(t, err, "openStore(%q) = %v; want an error (usage %v) mentioning %q", tc.spec, err, tc.usage, tc.mention) {
			if assert.Equal(t, tc.usage, errors.As(err, &ue), "openStore(%q) = %v; want an error (usage %v) mentioning %q", tc.spec, err, tc.usage, tc.mention) {
				assert.Contains(t, err.Error(), tc.mention, "openStore(%q) = %v; want an error (usage %v) mentioning %q", tc.spec, err, tc.usage, tc.mention)
			}
		}
	}
	_, err = os.Stat(filepath.Join(dir, "absent.db"))
	assert.ErrorIs(t, err, os.ErrNotExist, "opening a missing store created it (%v)", err)
}

// syncBuffer is a bytes.Buffer safe for one writer and one reader.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	l.Close()
	return addr
}

// TestFake serves both fakes and reads a page of each with the real clients.
func TestFake(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errOut syncBuffer
	done := make(chan int, 1)
	hsAddr, sfAddr := freeAddr(t), freeAddr(t)
	go func() {
		done <- run(ctx, []string{"fake", "-hubspot-addr", hsAddr, "-salesforce-addr", sfAddr, "-salesforce-pubsub-addr", "127.0.0.1:0", "-seed", "3"}, &out, &errOut, nil)
	}()
	vars := map[string]string{}
	deadline := time.After(10 * time.Second)
	for !strings.Contains(out.String(), "# Serving until interrupted.") {
		select {
		case code := <-done:
			t.Fatalf("fake exited with %d: %s", code, errOut.String())
		case <-deadline:
			t.Fatalf("fake printed no URLs: %q", out.String())
		case <-time.After(10 * time.Millisecond):
		}
	}
	for _, line := range strings.Split(out.String(), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") {
			vars[k] = v
		}
	}
	if vars["HUBSPOT_BASE_URL"] != "http://"+hsAddr || vars["SALESFORCE_INSTANCE_URL"] != "http://"+sfAddr {
		t.Fatalf("printed URLs %q and %q, want the listen addresses %s and %s", vars["HUBSPOT_BASE_URL"], vars["SALESFORCE_INSTANCE_URL"], hsAddr, sfAddr)
	}

	rctx, rcancel := context.WithTimeout(ctx, 20*time.Second)
	defer rcancel()
	hc, err := hubspot.New(hubspot.Config{Token: vars["HUBSPOT_TOKEN"], BaseURL: vars["HUBSPOT_BASE_URL"]})
	require.NoError(t, err)
	page, err := hc.Changes(rctx, crmsync.ChangeQuery{Object: "contacts", Since: time.Now().Add(-time.Hour)})
	require.NoError(t, err, "hubspot Changes")
	assert.Len(t, page.Records, 3, "hubspot: %d contacts, want 3", len(page.Records))

	for name, cfg := range map[string]salesforce.Config{
		"access token": {AccessToken: vars["SALESFORCE_ACCESS_TOKEN"], InstanceURL: vars["SALESFORCE_INSTANCE_URL"]},
		"client credentials": {LoginURL: vars["SALESFORCE_INSTANCE_URL"], ClientCredentials: &salesforce.ClientCredentialsAuth{
			ClientID: vars["SALESFORCE_CLIENT_ID"], ClientSecret: vars["SALESFORCE_CLIENT_SECRET"]}},
	} {
		sc, err := salesforce.New(cfg)
		require.NoError(t, err)
		page, err := sc.Changes(rctx, crmsync.ChangeQuery{Object: "Contact", Since: time.Now().Add(-time.Hour)})
		require.NoError(t, err, "salesforce Changes (%s)", name)
		assert.Len(t, page.Records, 3, "salesforce (%s): %d contacts, want 3", name, len(page.Records))
	}

	cancel()
	select {
	case code := <-done:
		assert.Equal(t, 0, code, "fake exited with %d after cancel: %s", code, errOut.String())
	case <-time.After(10 * time.Second):
		t.Fatal("fake did not stop after cancel")
	}
}

// TestFakeBusyPort: a port in use is a one-line runtime error.
func TestFakeBusyPort(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	var out, errOut bytes.Buffer
	code := run(context.Background(), []string{"fake", "-hubspot-addr", freeAddr(t), "-salesforce-addr", l.Addr().String()}, &out, &errOut, nil)
	assert.Equal(t, 1, code, "exit %d, stderr %q", code, errOut.String())
	assert.True(t, strings.HasPrefix(errOut.String(), "crmsync: fake: salesforce: listen on "), "exit %d, stderr %q", code, errOut.String())
}

// TestEmptyStoreAndFlagOverEnv: a store without runs lists nothing in every
// format, and -store wins over CRMSYNC_STORE.
func TestEmptyStoreAndFlagOverEnv(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "empty.db")
	st, err := sqlite.Open(ctx, sqlite.Config{Path: path})
	require.NoError(t, err)
	st.Close()
	missing := filepath.Join(filepath.Dir(path), "missing.db")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-store", path, "status"}, "no runs in this store\n"},
		{[]string{"status", "-store", path, "-format", "json"}, "[]\n"},
		{[]string{"-store", path, "runs", "-format", "json"}, "[]\n"},
		{[]string{"-store", path, "audit", "-format", "csv"}, strings.Join(auditCols, ",") + "\n"},
		{[]string{"-store", path, "dlq", "list"}, "ID  KEY  STATUS  SYSTEM  RECORD ID  RUN  STEP  CLAIMED BY  CREATED  UPDATED  ERROR\n"},
		{[]string{"-store", "sqlite:" + path, "conflicts", "list", "-format", "json"}, "[]\n"},
	} {
		res := invoke(ctx, missing, tc.args...)
		assert.Equal(t, 0, res.code, "%v: exit %d, stdout %q, want %q; stderr %s", tc.args, res.code, res.stdout, tc.want, res.stderr)
		assert.Equal(t, tc.want, res.stdout, "%v: exit %d, stdout %q, want %q; stderr %s", tc.args, res.code, res.stdout, tc.want, res.stderr)
	}
	res := invoke(ctx, missing, "status")
	assert.Equal(t, 1, res.code, "CRMSYNC_STORE naming a missing file: exit %d, stderr %q", res.code, res.stderr)
	assert.Contains(t, res.stderr, "no such file", "CRMSYNC_STORE naming a missing file: exit %d, stderr %q", res.code, res.stderr)
}
