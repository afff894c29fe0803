package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/crmsync/crmsync"
)

const dlqUsage = `usage: crmsync dlq list|show|replay|discard ...
       crmsync dlq list [-key K] [-status S] [-format table|json|csv]
       crmsync dlq show ID [-format table|json]
       crmsync dlq replay ID...
       crmsync dlq discard ID...

The dead-letter queue: payloads a run could not handle, parked with their
error so that one bad record does not block the rest.

  list          letters with their ids, record ids, steps, states and errors
                (no payloads: they hold record values)
  show ID       one letter, with its payload pretty-printed; the payload
                holds personal data, shown because you asked for this letter
  replay ID...  mark parked, replayed or failed-again letters for replay:
                the next run of their key claims them (replayed) and tries
                them again; a try the CRM refuses again leaves the letter
                failed-again with the new error
  discard ID... close parked, replayed or failed-again letters for good

replay and discard check every id first and change nothing if one is
unknown or closed; they print each letter's change.

Flags of list:
  -key K       only letters of this key
  -status S    only letters in state S: parked, replay, replayed,
               failed-again or discarded
  -format F    table, json or csv (show: table or json)
`

var deadCols = []string{"id", "key", "status", "system", "record_id", "run", "step", "claimed_by", "created", "updated", "error"}

func (c *cli) cmdDLQ(ctx context.Context, args []string) error {
	c.usage = dlqUsage
	if len(args) == 0 {
		return usagef("dlq: want list, show, replay or discard")
	}
	switch args[0] {
	case "list":
		return c.dlqList(ctx, args[1:])
	case "show":
		return c.dlqShow(ctx, args[1:])
	case "replay":
		return c.dlqSet(ctx, "replay", crmsync.DeadReplay, args[1:])
	case "discard":
		return c.dlqSet(ctx, "discard", crmsync.DeadDiscarded, args[1:])
	case "-h", "-help", "--help", "help":
		return errHelp
	}
	return usagef("dlq: unknown command %q (want list, show, replay or discard)", args[0])
}

func (c *cli) dlqList(ctx context.Context, args []string) error {
	c.hint = "usage: crmsync dlq list [-key K] [-status S] [-format table|json|csv]"
	fs := c.flags("dlq list")
	var q crmsync.DeadLetterQuery
	var status string
	fs.StringVar(&q.Key, "key", "", "")
	fs.StringVar(&status, "status", "", "")
	format := formatFlag(fs, "table")
	if err := parseList(fs, args, format); err != nil {
		return err
	}
	switch s := crmsync.DeadLetterStatus(status); s {
	case "", crmsync.DeadParked, crmsync.DeadReplay, crmsync.DeadReplayed, crmsync.DeadFailedAgain, crmsync.DeadDiscarded:
		q.Status = s
	default:
		return usagef("dlq list: -status %q: want parked, replay, replayed, failed-again or discarded", status)
	}
	return c.withStore(ctx, func(st crmsync.Store) error {
		l := newLister(*format, c.stdout, deadCols...)
		err := eachDeadLetter(ctx, st, q, func(d crmsync.DeadLetter) error {
			return l.row(d.ID, d.Key, string(d.Status), d.System, d.RecordID, string(d.Run), d.Step,
				string(d.ClaimedBy), d.Created, d.Updated, d.Error)
		})
		if err != nil {
			return err
		}
		return l.close()
	})
}

func parseIDs(what string, args []string) ([]int64, error) {
	if len(args) == 0 {
		return nil, usagef("%s: want at least one dead letter id", what)
	}
	ids := make([]int64, 0, len(args))
	seen := map[int64]bool{}
	for _, a := range args {
		id, err := strconv.ParseInt(a, 10, 64)
		if err != nil || id <= 0 {
			return nil, usagef("%s: %q is not a dead letter id (a positive number)", what, a)
		}
		if !seen[id] {
			seen[id] = true
			ids = append(ids, id)
		}
	}
	return ids, nil
}

func getLetter(ctx context.Context, st crmsync.Store, id int64) (crmsync.DeadLetter, error) {
	d, err := st.GetDeadLetter(ctx, id)
	if errors.Is(err, crmsync.ErrNotFound) {
		return d, fmt.Errorf("dead letter %d not found", id)
	}
	if err != nil {
		return d, fmt.Errorf("dead letter %d: %w", id, err)
	}
	return d, nil
}

func (c *cli) dlqShow(ctx context.Context, args []string) error {
	c.hint = "usage: crmsync dlq show ID [-format table|json]"
	fs := c.flags("dlq show")
	format := formatFlag(fs, "table")
	arg, err := parseOne(fs, args, "dead letter id")
	if err != nil {
		return err
	}
	if err := checkFormat(*format, "table", "json"); err != nil {
		return err
	}
	ids, err := parseIDs("dlq show", []string{arg})
	if err != nil {
		return err
	}
	return c.withStore(ctx, func(st crmsync.Store) error {
		d, err := getLetter(ctx, st, ids[0])
		if err != nil {
			return err
		}
		if *format == "json" {
			return writeJSON(c.stdout, d)
		}
		tw := newTab(c.stdout)
		vals := []any{d.ID, d.Key, string(d.Status), d.System, d.RecordID, string(d.Run), d.Step, string(d.ClaimedBy), d.Created, d.Updated, d.Error}
		for i, col := range deadCols {
			fmt.Fprintf(tw, "%s\t%s\n", col, tableCell(vals[i]))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		_, err = fmt.Fprintf(c.stdout, "payload:\n  %s\n", prettyJSON(d.Payload, "  "))
		return err
	})
}

// dlqSet marks letters for replay or discards them, after checking them all.
func (c *cli) dlqSet(ctx context.Context, verb string, to crmsync.DeadLetterStatus, args []string) error {
	c.hint = "usage: crmsync dlq " + verb + " ID..."
	fs := c.flags("dlq " + verb)
	rest, err := parseAll(fs, args)
	if err != nil {
		return err
	}
	ids, err := parseIDs("dlq "+verb, rest)
	if err != nil {
		return err
	}
	return c.withStore(ctx, func(st crmsync.Store) error {
		letters := make([]crmsync.DeadLetter, len(ids))
		for i, id := range ids {
			d, err := getLetter(ctx, st, id)
			if err != nil {
				return fmt.Errorf("%w; nothing changed", err)
			}
			switch {
			case d.Status == to:
			case d.Status == crmsync.DeadParked || d.Status == crmsync.DeadReplayed || d.Status == crmsync.DeadFailedAgain:
			default:
				return fmt.Errorf("dead letter %d is %s: only parked, replayed or failed-again letters can be %s; nothing changed", id, d.Status, pastTense[verb])
			}
			letters[i] = d
		}
		t := now()
		for _, d := range letters {
			if d.Status == to {
				fmt.Fprintf(c.stdout, "dead letter %d (key %s): already %s, unchanged\n", d.ID, d.Key, pastTense[verb])
				continue
			}
			if err := st.SetDeadLetterStatus(ctx, d.ID, to, t); err != nil {
				return fmt.Errorf("dead letter %d: %w", d.ID, err)
			}
			switch to {
			case crmsync.DeadReplay:
				fmt.Fprintf(c.stdout, "dead letter %d (key %s): %s -> replay; the next run of key %s retries it\n", d.ID, d.Key, d.Status, d.Key)
			default:
				fmt.Fprintf(c.stdout, "dead letter %d (key %s): %s -> discarded\n", d.ID, d.Key, d.Status)
			}
		}
		return nil
	})
}

var pastTense = map[string]string{"replay": "marked for replay", "discard": "discarded"}
