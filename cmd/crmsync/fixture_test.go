package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/internal/clocktest"
	"github.com/crmsync/crmsync/store/sqlite"
	"github.com/stretchr/testify/require"
)

// t0 is when the fixture's first run starts.
var t0 = time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)

// cliNow is the CLI's clock in tests: after every fixture run.
var cliNow = t0.Add(10*time.Minute + 10*time.Second)

// Conflict ids of the fixture.
const (
	conflictHeld     = "5d1f0c9a2b7e4c11d0a3b6e8" // team-a, lifecyclestage, held
	conflictResolved = "a0b1c2d3e4f5061728394a5b" // team-a, phone, resolved by the rule
	conflictHeld2    = "9e8d7c6b5a49382716050f1e" // team-a, jobtitle, held (second run)
	conflictNumber   = "3c2b1a0f9e8d7c6b5a493827" // team-b, numberofemployees, held
	conflictPair     = "7a6b5c4d3e2f1a0b9c8d7e6f" // acme/contacts (a graph pair), firstname, held
)

// fixture is an SQLite store filled through the engine and the Store API.
type fixture struct {
	path string
	// runs are the run ids in the order they were started.
	runs []crmsync.RunID
}

// newEngine returns an engine on st with a fixed holder and clk.
func newEngine(t *testing.T, st crmsync.Store, clk *clocktest.Clock) *crmsync.Engine {
	t.Helper()
	eng, err := crmsync.NewEngine(crmsync.Config{
		Store:  st,
		Holder: "worker-1",
		Now:    clk.Now,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Sleep:  func(ctx context.Context, _ time.Duration) error { return ctx.Err() },
		Retry:  &crmsync.RetryPolicy{MaxAttempts: 3, InitialInterval: time.Millisecond, MaxInterval: time.Millisecond},
	})
	require.NoError(t, err)
	return eng
}

func jsonOf(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// fill creates the fixture store:
//
//   - team-a, run 1 (finished): cursors, one retried step, a write with its
//     ledger row, audit row and link, a step that fails permanently and parks
//     its payload (letter 1), a batch step that parks one record (letter 2),
//     a held and a resolved conflict, and a result;
//   - team-b, run 2: a held conflict on a number field; a step parks a
//     letter (letter 3), then the workflow
//     fails, so the run stays open; then worker-2 takes the key's lease and
//     holds it (as if it were resuming the run now);
//   - team-a, run 3 (finished): a newer cursor and a second held conflict;
//   - acme, run 4 (finished): a graph run whose contacts pair holds a
//     conflict (under the pair's key, acme/contacts).
func fill(t *testing.T) *fixture {
	t.Helper()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "crmsync.db")
	st, err := sqlite.Open(ctx, sqlite.Config{Path: path})
	require.NoError(t, err)
	defer st.Close()
	clk := clocktest.New(t0)
	eng := newEngine(t, st, clk)
	f := &fixture{path: path}

	// Run 1: team-a.
	info, err := eng.Run(ctx, "team-a", workflow("contacts", func(ctx context.Context, run *crmsync.Run) error {
		_, err := crmsync.Step(ctx, run, "read/hubspot", func(ctx context.Context, a *crmsync.Attempt) ([]string, error) {
			clk.Advance(2 * time.Second)
			run.AddAPICalls("hubspot", 2)
			a.SetCursor("hubspot", "2026-03-02T08:55:00.000Z")
			return []string{"101", "102"}, nil
		}, nil)
		if err != nil {
			return err
		}
		_, err = crmsync.Step(ctx, run, "read/salesforce", func(ctx context.Context, a *crmsync.Attempt) (int, error) {
			clk.Advance(time.Second)
			run.AddAPICalls("salesforce", 1)
			if a.N == 1 {
				return 0, errors.New("salesforce: query Contact: connection reset by peer")
			}
			a.SetCursor("salesforce", "2026-03-02T08:56:30.000Z")
			return 1, nil
		}, nil)
		if err != nil {
			return err
		}
		_, err = crmsync.Step(ctx, run, "write/salesforce/101", func(ctx context.Context, a *crmsync.Attempt) (string, error) {
			clk.Advance(time.Second)
			run.AddAPICalls("salesforce", 1)
			a.RecordWrite(crmsync.LedgerEntry{IdemKey: "hubspot:101:1772441700000", System: "salesforce", RecordID: "003A0000001"})
			a.Audit(crmsync.AuditEntry{Kind: crmsync.AuditWrite, System: "salesforce", RecordIDs: []string{"101", "003A0000001"},
				IdemKey: "hubspot:101:1772441700000", Detail: jsonOf(map[string]any{"op": "create", "fields": []string{"Email", "FirstName", "LastName"}})})
			a.Link(crmsync.Link{AID: "101", BID: "003A0000001", Base: crmsync.Fields{"email": "ann@example.com", "firstname": "Ann", "lastname": "Lee"}})
			return "003A0000001", nil
		}, nil)
		if err != nil {
			return err
		}
		_, err = crmsync.Step(ctx, run, "write/salesforce/102", func(ctx context.Context, a *crmsync.Attempt) (string, error) {
			clk.Advance(time.Second)
			run.AddAPICalls("salesforce", 1)
			return "", crmsync.Permanent(errors.New("salesforce: write Contact for hubspot 102: FIELD_CUSTOM_VALIDATION_EXCEPTION: Phone must be in E.164 form"))
		}, &crmsync.StepOpts{DeadLetter: &crmsync.DeadLetterSpec{System: "salesforce", RecordID: "102",
			Payload: map[string]any{"op": "upsert", "match": "HubSpot_Id__c", "fields": map[string]any{"Email": "bob@example.com", "Phone": "020 7946 0000"}}}})
		if !errors.Is(err, crmsync.ErrDeadLettered) {
			return fmt.Errorf("want a dead letter, got %v", err)
		}
		_, err = crmsync.Step(ctx, run, "write/hubspot/batch-1", func(ctx context.Context, a *crmsync.Attempt) (int, error) {
			clk.Advance(time.Second)
			run.AddAPICalls("hubspot", 1)
			a.Audit(crmsync.AuditEntry{Kind: crmsync.AuditWrite, System: "hubspot", RecordIDs: []string{"104", "003A0000004"},
				IdemKey: "salesforce:003A0000004:1772441790000", Detail: jsonOf(map[string]any{"op": "update", "fields": []string{"phone"}})})
			a.DeadLetter(crmsync.DeadLetter{System: "hubspot", RecordID: "003A0000005",
				Payload: jsonOf(map[string]any{"op": "upsert", "properties": map[string]any{"email": "cy@example.com"}}),
				Error:   "hubspot: batch upsert contacts: record 2: 409 CONFLICT: contact already exists"})
			a.Audit(crmsync.AuditEntry{Kind: crmsync.AuditSkip, System: "hubspot", RecordIDs: []string{"105"},
				Detail: jsonOf(map[string]any{"reason": "owned by salesforce", "fields": []string{"lifecyclestage"}})})
			return 1, nil
		}, nil)
		if err != nil {
			return err
		}
		_, err = crmsync.Step(ctx, run, "merge/103", func(ctx context.Context, a *crmsync.Attempt) (int, error) {
			clk.Advance(time.Second)
			a.SaveConflicts(
				crmsync.Conflict{ID: conflictHeld, SystemA: "hubspot", SystemB: "salesforce", RecordA: "103", RecordB: "003A0000003",
					Field: "lifecyclestage", FieldA: "lifecyclestage", FieldB: "Lifecycle_Stage__c", Type: crmsync.TypeEnum,
					Base: "lead", A: "customer", B: "opportunity", TimeA: t0.Add(-3 * time.Minute), TimeB: t0.Add(-2 * time.Minute),
					Rule: "hold", Held: true, State: crmsync.ConflictHeld},
				crmsync.Conflict{ID: conflictResolved, SystemA: "hubspot", SystemB: "salesforce", RecordA: "103", RecordB: "003A0000003",
					Field: "phone", FieldA: "phone", FieldB: "Phone", Type: crmsync.TypeString,
					Base: "+1 555 0100", A: "+1 555 0101", B: "+1 555 0102", Winner: "salesforce", Rule: "owner salesforce",
					State: crmsync.ConflictResolved},
			)
			a.Audit(crmsync.AuditEntry{Kind: crmsync.AuditConflict, RecordIDs: []string{"103", "003A0000003"},
				Detail: jsonOf(map[string]any{"conflict": conflictHeld, "field": "lifecyclestage", "held": true})},
				crmsync.AuditEntry{Kind: crmsync.AuditConflict, RecordIDs: []string{"103", "003A0000003"},
					Detail: jsonOf(map[string]any{"conflict": conflictResolved, "field": "phone", "winner": "salesforce"})})
			return 2, nil
		}, nil)
		if err != nil {
			return err
		}
		run.SetResult(map[string]int{"written": 2, "parked": 2, "conflicts": 2})
		clk.Advance(500 * time.Millisecond)
		return nil
	}))
	require.NoError(t, err, "run 1")
	f.runs = append(f.runs, info.ID)

	// Run 2: team-b, fails and stays open.
	clk.Set(t0.Add(time.Minute))
	info, err = eng.Run(ctx, "team-b", workflow("contacts", func(ctx context.Context, run *crmsync.Run) error {
		_, err := crmsync.Step(ctx, run, "read/hubspot", func(ctx context.Context, a *crmsync.Attempt) (int, error) {
			clk.Advance(time.Second)
			run.AddAPICalls("hubspot", 1)
			a.SetCursor("hubspot", "2026-03-02T08:58:00.000Z")
			a.SaveConflicts(crmsync.Conflict{ID: conflictNumber, SystemA: "hubspot", SystemB: "salesforce", RecordA: "202", RecordB: "003B0000002",
				Field: "numberofemployees", FieldA: "numberofemployees", FieldB: "NumberOfEmployees", Type: crmsync.TypeNumber,
				Base: 40.0, A: 45.0, B: 50.0, Rule: "hold", Held: true, State: crmsync.ConflictHeld})
			return 1, nil
		}, nil)
		if err != nil {
			return err
		}
		_, err = crmsync.Step(ctx, run, "write/salesforce/201", func(ctx context.Context, a *crmsync.Attempt) (int, error) {
			clk.Advance(time.Second)
			return 0, crmsync.Permanent(errors.New("salesforce: write Contact for hubspot 201: REQUIRED_FIELD_MISSING: LastName"))
		}, &crmsync.StepOpts{DeadLetter: &crmsync.DeadLetterSpec{System: "salesforce", RecordID: "201",
			Payload: map[string]any{"op": "create", "fields": map[string]any{"Email": "dee@example.com"}}}})
		if !errors.Is(err, crmsync.ErrDeadLettered) {
			return fmt.Errorf("want a dead letter, got %v", err)
		}
		clk.Advance(time.Second)
		return errors.New("salesforce: daily API allocation share reached")
	}))
	require.Error(t, err, "run 2: want an error")
	f.runs = append(f.runs, info.ID)

	// Run 3: team-a again.
	clk.Set(t0.Add(5 * time.Minute))
	info, err = eng.Run(ctx, "team-a", workflow("contacts", func(ctx context.Context, run *crmsync.Run) error {
		_, err := crmsync.Step(ctx, run, "read/hubspot", func(ctx context.Context, a *crmsync.Attempt) (int, error) {
			clk.Advance(1500 * time.Millisecond)
			run.AddAPICalls("hubspot", 1)
			a.SetCursor("hubspot", "2026-03-02T09:00:02.000Z")
			a.SaveConflicts(crmsync.Conflict{ID: conflictHeld2, SystemA: "hubspot", SystemB: "salesforce", RecordA: "106", RecordB: "003A0000006",
				Field: "jobtitle", FieldA: "jobtitle", FieldB: "Title", Type: crmsync.TypeString,
				Base: "Engineer", A: "Lead Engineer", B: "Staff Engineer", Rule: "hold", Held: true, State: crmsync.ConflictHeld})
			a.Audit(crmsync.AuditEntry{Kind: crmsync.AuditConflict, RecordIDs: []string{"106", "003A0000006"},
				Detail: jsonOf(map[string]any{"conflict": conflictHeld2, "field": "jobtitle", "held": true})})
			return 1, nil
		}, nil)
		return err
	}))
	require.NoError(t, err, "run 3")
	f.runs = append(f.runs, info.ID)

	// Run 4: a graph run of acme: a held conflict of its contacts pair.
	clk.Set(t0.Add(7 * time.Minute))
	info, err = eng.Run(ctx, "acme", workflow("graph", func(ctx context.Context, run *crmsync.Run) error {
		return holdPairConflict(ctx, run, clk)
	}))
	require.NoError(t, err, "run 4")
	f.runs = append(f.runs, info.ID)

	// Another worker takes team-b's lease, resuming its open run.
	_, _, err = st.AcquireLease(ctx, crmsync.LeaseRequest{Key: "team-b", Holder: "worker-2", Workflow: "contacts",
		NewRun: "run_unused", TTL: time.Minute, Now: t0.Add(10 * time.Minute)})
	require.NoError(t, err)
	return f
}

// holdPairConflict is the step of a graph run of acme in which its
// contacts pair holds conflict conflictPair (kept under acme/contacts).
func holdPairConflict(ctx context.Context, run *crmsync.Run, clk *clocktest.Clock) error {
	_, err := crmsync.Step(ctx, run, "contacts:merge:hubspot:0", func(ctx context.Context, a *crmsync.Attempt) (int, error) {
		clk.Advance(time.Second)
		a.SaveConflicts(crmsync.Conflict{ID: conflictPair, Key: crmsync.PairKey("acme", "contacts"),
			SystemA: "hubspot", SystemB: "salesforce", RecordA: "301", RecordB: "003C0000001",
			Field: "firstname", FieldA: "firstname", FieldB: "FirstName", Type: crmsync.TypeString,
			Base: "Al", A: "Alan", B: "Albert", Rule: "hold", Held: true, State: crmsync.ConflictHeld})
		return 1, nil
	}, nil)
	return err
}

// normalize replaces the random part of run ids with their order.
func (f *fixture) normalize(s string) string {
	for i, id := range f.runs {
		s = strings.ReplaceAll(s, string(id), stableRunID(id, i))
	}
	return strings.ReplaceAll(s, filepath.Dir(f.path), "$TMP")
}

// stableRunID keeps id's time and length but not its random suffix.
func stableRunID(id crmsync.RunID, i int) string {
	s := string(id)
	if j := strings.LastIndexByte(s, '_'); j > 0 {
		suffix := fmt.Sprintf("%0*d", len(s)-j-1, i+1)
		return s[:j+1] + suffix
	}
	return s
}

// expand replaces {RUN1}… in args with the fixture's run ids.
func (f *fixture) expand(args []string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		for j, id := range f.runs {
			a = strings.ReplaceAll(a, fmt.Sprintf("{RUN%d}", j+1), string(id))
		}
		out[i] = strings.ReplaceAll(a, "{STORE}", f.path)
	}
	return out
}

// dump returns every row of every table of the store at path, sorted, so
// that two dumps are equal iff the store's contents are.
func dump(t *testing.T, path string) string {
	t.Helper()
	tables := dumpTables(t, path)
	var b strings.Builder
	for _, name := range slices.Sorted(maps.Keys(tables)) {
		fmt.Fprintf(&b, "== %s\n%s\n", name, tables[name])
	}
	return b.String()
}

// dumpTables returns each table's rows, sorted, by table name.
func dumpTables(t *testing.T, path string) map[string]string {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro")
	require.NoError(t, err)
	defer db.Close()
	rows, err := db.Query(`SELECT name FROM sqlite_master WHERE type = 'table'`)
	require.NoError(t, err)
	var tables []string
	for rows.Next() {
		var n string
		require.NoError(t, rows.Scan(&n))
		tables = append(tables, n)
	}
	rows.Close()
	out := map[string]string{}
	for _, tab := range tables {
		rows, err := db.Query(`SELECT * FROM "` + tab + `"`)
		require.NoError(t, err)
		cols, _ := rows.Columns()
		var lines []string
		for rows.Next() {
			vals := make([]any, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			require.NoError(t, rows.Scan(ptrs...))
			var line []string
			for _, v := range vals {
				if bs, ok := v.([]byte); ok {
					v = string(bs)
				}
				line = append(line, fmt.Sprintf("%v", v))
			}
			lines = append(lines, strings.Join(line, "|"))
		}
		rows.Close()
		sort.Strings(lines)
		out[tab] = strings.Join(lines, "\n")
	}
	return out
}

// namedWorkflow is a workflow with the name the engine stores with its runs.
type namedWorkflow struct {
	name string
	fn   crmsync.WorkflowFunc
}

func (w namedWorkflow) Name() string { return w.name }

func (w namedWorkflow) Run(ctx context.Context, run *crmsync.Run) error { return w.fn(ctx, run) }

func workflow(name string, fn crmsync.WorkflowFunc) crmsync.Workflow {
	return namedWorkflow{name: name, fn: fn}
}
