package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/crmsync/crmsync"
)

const statusUsage = `usage: crmsync status [-key K] [-runs N] [-format table|json|csv]

Show, for each key (team, portal) that has runs: its last runs (when they
started, how long they took, their status and the counters of their
reports), its cursors, who holds its lease and until when, how many
conflicts are open (held or chosen) and how many dead letters are parked.

Flags:
  -key K       only this key
  -runs N      last runs to show per key (default 3)
  -format F    table, json or csv (csv: one row per key and run)
`

// maxKeyScan bounds how many runs status reads to find the keys.
const maxKeyScan = 100000

type runSummary struct {
	ID          crmsync.RunID     `json:"id"`
	Workflow    string            `json:"workflow"`
	Status      crmsync.RunStatus `json:"status"`
	StartedAt   time.Time         `json:"started_at"`
	FinishedAt  time.Time         `json:"finished_at,omitzero"`
	Duration    string            `json:"duration,omitempty"`
	Attempts    int               `json:"attempts"`
	Counters    crmsync.Counters  `json:"counters"`
	Error       string            `json:"error,omitempty"`
	reportError string
}

type leaseView struct {
	Holder  string        `json:"holder,omitempty"`
	Run     crmsync.RunID `json:"run,omitempty"`
	Expires time.Time     `json:"expires,omitzero"`
	// State is free, live or expired.
	State string `json:"state"`
}

type keyStatus struct {
	Key              string            `json:"key"`
	Lease            leaseView         `json:"lease"`
	Cursors          map[string]string `json:"cursors"`
	OpenConflicts    int               `json:"open_conflicts"`
	HeldConflicts    int               `json:"held_conflicts"`
	ChosenConflicts  int               `json:"chosen_conflicts"`
	ParkedDeadLetter int               `json:"parked_dead_letters"`
	// Pairs counts the open conflicts of each graph pair of the key (kept
	// under "<key>/<pair>"), included in the totals above.
	Pairs map[string]pairStatus `json:"pairs,omitempty"`
	Runs  []runSummary          `json:"runs"`
}

// pairStatus is the open conflicts of one graph pair.
type pairStatus struct {
	HeldConflicts   int `json:"held_conflicts"`
	ChosenConflicts int `json:"chosen_conflicts"`
}

func summarize(ri crmsync.RunInfo) runSummary {
	s := runSummary{ID: ri.ID, Workflow: ri.Workflow, Status: ri.Status, StartedAt: ri.StartedAt.UTC(),
		Attempts: ri.Attempts, Error: runError(ri)}
	if !ri.FinishedAt.IsZero() {
		s.FinishedAt = ri.FinishedAt.UTC()
		s.Duration = text(runDuration(ri))
	}
	if len(ri.Report) > 0 {
		var rep crmsync.Report
		if err := json.Unmarshal(ri.Report, &rep); err != nil {
			s.reportError = "unreadable report"
		}
		s.Counters = rep.Counters
	}
	return s
}

func runDuration(ri crmsync.RunInfo) dur {
	if ri.FinishedAt.IsZero() {
		return -1
	}
	return dur(ri.FinishedAt.Sub(ri.StartedAt))
}

func (c *cli) cmdStatus(ctx context.Context, args []string) error {
	c.usage = statusUsage
	fs := c.flags("status")
	key := fs.String("key", "", "")
	nruns := fs.Int("runs", 3, "")
	format := formatFlag(fs, "table")
	if err := parseList(fs, args, format); err != nil {
		return err
	}
	if *nruns < 1 {
		return usagef("status: -runs must be at least 1")
	}
	return c.withStore(ctx, func(st crmsync.Store) error {
		keys, err := listKeys(ctx, st, *key)
		if err != nil {
			return err
		}
		var out []keyStatus
		for _, k := range keys {
			ks, err := statusOf(ctx, st, k, *nruns)
			if err != nil {
				return err
			}
			out = append(out, ks)
		}
		switch *format {
		case "json":
			if out == nil {
				out = []keyStatus{}
			}
			return writeJSON(c.stdout, out)
		case "csv":
			return statusCSV(c, out)
		}
		return statusTable(c, out)
	})
}

// listKeys returns the keys with runs, sorted; with only set, just that key
// if it has runs.
func listKeys(ctx context.Context, st crmsync.Store, only string) ([]string, error) {
	runs, err := st.ListRuns(ctx, only, maxKeyScan)
	if err != nil {
		return nil, fmt.Errorf("list runs: %w", err)
	}
	if only != "" {
		if len(runs) == 0 {
			return nil, fmt.Errorf("key %q has no runs", only)
		}
		return []string{only}, nil
	}
	seen := map[string]bool{}
	var keys []string
	for _, r := range runs {
		if !seen[r.Key] {
			seen[r.Key] = true
			keys = append(keys, r.Key)
		}
	}
	slices.Sort(keys)
	return keys, nil
}

func statusOf(ctx context.Context, st crmsync.Store, key string, nruns int) (keyStatus, error) {
	ks := keyStatus{Key: key, Runs: []runSummary{}}
	runs, err := st.ListRuns(ctx, key, nruns)
	if err != nil {
		return ks, fmt.Errorf("list runs of key %s: %w", key, err)
	}
	for _, r := range runs {
		ks.Runs = append(ks.Runs, summarize(r))
	}
	ks.Cursors, err = st.ListCursors(ctx, key)
	if err != nil {
		return ks, fmt.Errorf("cursors of key %s: %w", key, err)
	}
	if ks.Cursors == nil {
		ks.Cursors = map[string]string{}
	}
	l, err := st.GetLease(ctx, key)
	switch {
	case errors.Is(err, crmsync.ErrNotFound):
		ks.Lease = leaseView{State: "free"}
	case err != nil:
		return ks, fmt.Errorf("lease of key %s: %w", key, err)
	case l.Holder == "" || l.Run == "":
		ks.Lease = leaseView{State: "free"}
	default:
		ks.Lease = leaseView{Holder: l.Holder, Run: l.Run, Expires: l.Expires.UTC(), State: "live"}
		if !l.Expires.After(now()) {
			ks.Lease.State = "expired"
		}
	}
	for _, s := range []crmsync.ConflictState{crmsync.ConflictHeld, crmsync.ConflictChosen} {
		cs, err := listConflicts(ctx, st, crmsync.ConflictFilter{Key: key, State: s})
		if err != nil {
			return ks, fmt.Errorf("conflicts of key %s: %w", key, err)
		}
		if s == crmsync.ConflictHeld {
			ks.HeldConflicts = len(cs)
		} else {
			ks.ChosenConflicts = len(cs)
		}
		for _, c := range cs {
			pair := pairOf(key, c.Key)
			if pair == "" {
				continue
			}
			if ks.Pairs == nil {
				ks.Pairs = map[string]pairStatus{}
			}
			ps := ks.Pairs[pair]
			if s == crmsync.ConflictHeld {
				ps.HeldConflicts++
			} else {
				ps.ChosenConflicts++
			}
			ks.Pairs[pair] = ps
		}
	}
	ks.OpenConflicts = ks.HeldConflicts + ks.ChosenConflicts
	// A letter whose replay failed again waits for a person as a parked one does.
	for _, s := range []crmsync.DeadLetterStatus{crmsync.DeadParked, crmsync.DeadFailedAgain} {
		err = eachDeadLetter(ctx, st, crmsync.DeadLetterQuery{Key: key, Status: s}, func(crmsync.DeadLetter) error {
			ks.ParkedDeadLetter++
			return nil
		})
		if err != nil {
			return ks, err
		}
	}
	return ks, nil
}

// eachDeadLetter pages through the letters q selects.
func eachDeadLetter(ctx context.Context, st crmsync.Store, q crmsync.DeadLetterQuery, fn func(crmsync.DeadLetter) error) error {
	q.Limit = 500
	for {
		page, err := st.ListDeadLetters(ctx, q)
		if err != nil {
			return fmt.Errorf("list dead letters: %w", err)
		}
		for _, d := range page {
			if err := fn(d); err != nil {
				return err
			}
		}
		if len(page) < q.Limit {
			return nil
		}
		q.After = page[len(page)-1].ID
	}
}

func leaseText(l leaseView) string {
	if l.State == "free" {
		return "free"
	}
	return fmt.Sprintf("%s by %s until %s (run %s)", l.State, l.Holder, stamp(l.Expires), l.Run)
}

func statusTable(c *cli, keys []keyStatus) error {
	if len(keys) == 0 {
		_, err := fmt.Fprintln(c.stdout, "no runs in this store")
		return err
	}
	for i, k := range keys {
		if i > 0 {
			fmt.Fprintln(c.stdout)
		}
		tw := newTab(c.stdout)
		fmt.Fprintf(tw, "key\t%s\n", k.Key)
		fmt.Fprintf(tw, "lease\t%s\n", leaseText(k.Lease))
		fmt.Fprintf(tw, "cursors\t%s\n", tableCell(k.Cursors))
		fmt.Fprintf(tw, "open conflicts\t%d (%d held, %d chosen)\n", k.OpenConflicts, k.HeldConflicts, k.ChosenConflicts)
		for _, name := range slices.Sorted(maps.Keys(k.Pairs)) {
			p := k.Pairs[name]
			fmt.Fprintf(tw, "  pair %s\t%d held, %d chosen\n", name, p.HeldConflicts, p.ChosenConflicts)
		}
		fmt.Fprintf(tw, "parked dead letters\t%d\n", k.ParkedDeadLetter)
		if err := tw.Flush(); err != nil {
			return err
		}
		l := newLister("table", c.stdout, runCols...)
		for _, r := range k.Runs {
			if err := l.row(runRow(r)...); err != nil {
				return err
			}
		}
		if err := l.close(); err != nil {
			return err
		}
	}
	return nil
}

var runCols = []string{"run", "started", "duration", "status", "attempts", "step_runs", "retries", "replays", "failed", "dead_letters", "api_calls", "error"}

func runRow(r runSummary) []any {
	d := dur(-1)
	if !r.FinishedAt.IsZero() {
		d = dur(r.FinishedAt.Sub(r.StartedAt))
	}
	errText := r.Error
	if r.reportError != "" {
		errText = r.reportError
	}
	return []any{string(r.ID), r.StartedAt, d, string(r.Status), r.Attempts, r.Counters.StepRuns, r.Counters.Retries,
		r.Counters.Replays, r.Counters.Failed, r.Counters.DeadLetters, r.Counters.APICalls, errText}
}

func statusCSV(c *cli, keys []keyStatus) error {
	cols := append([]string{"key", "lease_state", "lease_holder", "lease_until", "cursors", "open_conflicts", "parked_dead_letters"}, runCols...)
	l := newLister("csv", c.stdout, cols...)
	for _, k := range keys {
		head := []any{k.Key, k.Lease.State, k.Lease.Holder, k.Lease.Expires, k.Cursors, k.OpenConflicts, k.ParkedDeadLetter}
		if len(k.Runs) == 0 {
			if err := l.row(append(head, make([]any, len(runCols))...)...); err != nil {
				return err
			}
		}
		for _, r := range k.Runs {
			if err := l.row(append(slices.Clone(head), runRow(r)...)...); err != nil {
				return err
			}
		}
	}
	return l.close()
}
