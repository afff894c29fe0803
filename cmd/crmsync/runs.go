package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/crmsync/crmsync"
)

const runsUsage = `usage: crmsync runs [-key K] [-limit N] [-format table|json|csv]
       crmsync runs show ID [-format json|table]

List runs, newest first, with the counters of their reports: steps run,
retries, replays (steps answered from the store), failed steps, dead
letters parked and API calls per system.

"runs show ID" prints one run's stored report (pretty JSON by default) and
its steps' names, attempts and errors (not their results).

Flags:
  -key K       only runs of this key
  -limit N     at most N runs (default 20)
  -format F    table, json or csv for the list; json or table for show
`

func (c *cli) cmdRuns(ctx context.Context, args []string) error {
	c.usage = runsUsage
	if len(args) > 0 && args[0] == "show" {
		return c.cmdRunsShow(ctx, args[1:])
	}
	fs := c.flags("runs")
	key := fs.String("key", "", "")
	limit := fs.Int("limit", 20, "")
	format := formatFlag(fs, "table")
	if err := parseList(fs, args, format); err != nil {
		return err
	}
	if *limit < 1 {
		return usagef("runs: -limit must be at least 1")
	}
	return c.withStore(ctx, func(st crmsync.Store) error {
		runs, err := st.ListRuns(ctx, *key, *limit)
		if err != nil {
			return fmt.Errorf("list runs: %w", err)
		}
		l := newLister(*format, c.stdout, append([]string{"key", "workflow"}, runCols...)...)
		for _, ri := range runs {
			if err := l.row(append([]any{ri.Key, ri.Workflow}, runRow(summarize(ri))...)...); err != nil {
				return err
			}
		}
		return l.close()
	})
}

// runError is a run's stored error without the run id it starts with (the
// run is named beside it).
func runError(ri crmsync.RunInfo) string {
	return strings.TrimPrefix(ri.Error, "crmsync: run "+string(ri.ID)+" ")
}

// stepView is a step without its result, which may hold record values.
type stepView struct {
	Step     string    `json:"step"`
	Attempts int       `json:"attempts"`
	Done     time.Time `json:"done"`
	Error    string    `json:"error,omitempty"`
}

type runView struct {
	ID         crmsync.RunID     `json:"id"`
	Key        string            `json:"key"`
	Workflow   string            `json:"workflow"`
	Status     crmsync.RunStatus `json:"status"`
	StartedAt  time.Time         `json:"started_at"`
	FinishedAt time.Time         `json:"finished_at,omitzero"`
	Duration   string            `json:"duration,omitempty"`
	Attempts   int               `json:"attempts"`
	Error      string            `json:"error,omitempty"`
	Report     json.RawMessage   `json:"report"`
	// Steps are the run's completed steps, until they are pruned.
	Steps []stepView `json:"steps"`
}

func (c *cli) cmdRunsShow(ctx context.Context, args []string) error {
	c.hint = "usage: crmsync runs show ID [-format json|table]"
	fs := c.flags("runs show")
	format := formatFlag(fs, "json")
	arg, err := parseOne(fs, args, "run id")
	if err != nil {
		return err
	}
	if err := checkFormat(*format, "json", "table"); err != nil {
		return err
	}
	id := crmsync.RunID(arg)
	return c.withStore(ctx, func(st crmsync.Store) error {
		ri, err := st.GetRun(ctx, id)
		if errors.Is(err, crmsync.ErrNotFound) {
			return fmt.Errorf("run %q not found", id)
		}
		if err != nil {
			return fmt.Errorf("run %s: %w", id, err)
		}
		steps, err := st.LoadSteps(ctx, id)
		if err != nil {
			return fmt.Errorf("steps of run %s: %w", id, err)
		}
		v := runView{ID: ri.ID, Key: ri.Key, Workflow: ri.Workflow, Status: ri.Status, StartedAt: ri.StartedAt.UTC(),
			Attempts: ri.Attempts, Error: runError(ri), Report: ri.Report, Steps: []stepView{}}
		if !ri.FinishedAt.IsZero() {
			v.FinishedAt = ri.FinishedAt.UTC()
			v.Duration = text(runDuration(ri))
		}
		if len(v.Report) == 0 {
			v.Report = json.RawMessage("null")
		}
		for _, s := range steps {
			v.Steps = append(v.Steps, stepView{Step: s.Step, Attempts: s.Attempts, Done: s.Done.UTC(), Error: s.Error})
		}
		sort.Slice(v.Steps, func(i, j int) bool {
			a, b := v.Steps[i], v.Steps[j]
			if !a.Done.Equal(b.Done) {
				return a.Done.Before(b.Done)
			}
			return a.Step < b.Step
		})
		if *format == "json" {
			return writeJSON(c.stdout, v)
		}
		tw := newTab(c.stdout)
		fmt.Fprintf(tw, "run\t%s\n", v.ID)
		fmt.Fprintf(tw, "key\t%s\n", v.Key)
		fmt.Fprintf(tw, "workflow\t%s\n", v.Workflow)
		fmt.Fprintf(tw, "status\t%s\n", v.Status)
		fmt.Fprintf(tw, "started\t%s\n", tableCell(v.StartedAt))
		fmt.Fprintf(tw, "finished\t%s\n", tableCell(v.FinishedAt))
		fmt.Fprintf(tw, "duration\t%s\n", tableCell(v.Duration))
		fmt.Fprintf(tw, "attempts\t%d\n", v.Attempts)
		fmt.Fprintf(tw, "error\t%s\n", tableCell(v.Error))
		if err := tw.Flush(); err != nil {
			return err
		}
		fmt.Fprintf(c.stdout, "report:\n  %s\n", prettyJSON(v.Report, "  "))
		fmt.Fprintln(c.stdout, "steps:")
		l := newLister("table", c.stdout, "step", "attempts", "done", "error")
		for _, s := range v.Steps {
			if err := l.row(s.Step, s.Attempts, s.Done, s.Error); err != nil {
				return err
			}
		}
		return l.close()
	})
}
