package main

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/crmsync/crmsync"
)

const auditUsage = `usage: crmsync audit [-key K] [-record ID] [-run ID] [-kind K] [-since T] [-until T] [-limit N] [-after ID] [-all] [-format table|json|csv]

List audit rows in id order: what each run wrote, skipped, retried, parked
and held, with record ids, idempotency keys and details (errors, field
names), never record values.

One page is printed; when more rows match, the id to continue from is
printed on stderr (use it with -after). -all pages through every matching
row, streaming: "-all -format csv > audit.csv" exports the log.

Flags:
  -key K       only rows of this key
  -record ID   only rows naming this record id
  -run ID      only rows of this run
  -kind K      only rows of this kind: write, replay, retry, dead-letter, conflict, skip or operator
  -since T     only rows at or after T (RFC3339)
  -until T     only rows before T (RFC3339)
  -limit N     page size (default 100)
  -after ID    start after this audit row id
  -all         every page, not just the first
  -format F    table, json or csv
`

// auditKinds are the kinds of audit row the sync writes.
var auditKinds = []string{crmsync.AuditWrite, crmsync.AuditReplay, crmsync.AuditRetry, crmsync.AuditDeadLetter, crmsync.AuditConflict, crmsync.AuditSkip, crmsync.AuditOperator}

var auditCols = []string{"id", "time", "key", "run", "step", "kind", "system", "record_ids", "idem_key", "detail"}

func (c *cli) cmdAudit(ctx context.Context, args []string) error {
	c.usage = auditUsage
	fs := c.flags("audit")
	var q crmsync.AuditQuery
	var run, since, until string
	fs.StringVar(&q.Key, "key", "", "")
	fs.StringVar(&q.RecordID, "record", "", "")
	fs.StringVar(&run, "run", "", "")
	fs.StringVar(&q.Kind, "kind", "", "")
	fs.StringVar(&since, "since", "", "")
	fs.StringVar(&until, "until", "", "")
	fs.IntVar(&q.Limit, "limit", 100, "")
	fs.Int64Var(&q.After, "after", 0, "")
	all := fs.Bool("all", false, "")
	format := formatFlag(fs, "table")
	err := parseList(fs, args, format)
	if err != nil {
		return err
	}
	q.Run = crmsync.RunID(run)
	if q.Since, err = parseTime("since", since); err != nil {
		return err
	}
	if q.Until, err = parseTime("until", until); err != nil {
		return err
	}
	if !q.Since.IsZero() && !q.Until.IsZero() && !q.Until.After(q.Since) {
		return usagef("audit: -until must be after -since")
	}
	if q.Kind != "" && !slices.Contains(auditKinds, q.Kind) {
		return usagef("audit: -kind %q: want one of %s", q.Kind, strings.Join(auditKinds, ", "))
	}
	if q.Limit < 1 {
		return usagef("audit: -limit must be at least 1")
	}
	if q.After < 0 {
		return usagef("audit: -after must not be negative")
	}
	return c.withStore(ctx, func(st crmsync.Store) error {
		l := newLister(*format, c.stdout, auditCols...)
		for {
			page, err := st.QueryAudit(ctx, q)
			if err != nil {
				return fmt.Errorf("query audit: %w", err)
			}
			for _, a := range page {
				err := l.row(a.ID, a.Time, a.Key, string(a.Run), a.Step, a.Kind, a.System, a.RecordIDs, a.IdemKey, a.Detail)
				if err != nil {
					return err
				}
			}
			if len(page) < q.Limit {
				break
			}
			q.After = page[len(page)-1].ID
			if !*all {
				if err := l.close(); err != nil {
					return err
				}
				// The page was full: there may be more.
				more, err := st.QueryAudit(ctx, crmsync.AuditQuery{Key: q.Key, Run: q.Run, RecordID: q.RecordID,
					Kind: q.Kind, Since: q.Since, Until: q.Until, After: q.After, Limit: 1})
				if err != nil {
					return fmt.Errorf("query audit: %w", err)
				}
				if len(more) > 0 {
					fmt.Fprintf(c.stderr, "more rows: continue with -after %d\n", q.After)
				}
				return nil
			}
		}
		return l.close()
	})
}

func parseTime(flag, s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, usagef("-%s %q: want an RFC3339 time such as 2026-03-02T09:00:00Z", flag, s)
	}
	return t, nil
}
