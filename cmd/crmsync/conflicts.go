package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/crmsync/crmsync"
)

const conflictsUsage = `usage: crmsync conflicts list|show|resolve ...
       crmsync conflicts list [-key K] [-state S] [-field F] [-format table|json|csv]
       crmsync conflicts show ID [-format table|json]
       crmsync conflicts resolve ID (-pick hubspot|salesforce | -value V)

Conflicts: a field changed on both sides since the last sync, to different
values. A held conflict waits for a person; the choice is applied to both
sides by the next run of its key.

  list         conflicts with their ids, records, field names, rule and
               state (no values: they are personal data)
  show ID      one conflict with its base and both sides' values; shown
               because you asked for this conflict
  resolve ID   choose for a held (or already chosen) conflict:
                 -pick SYSTEM   take that side's value (hubspot or salesforce:
                                the conflict's system_a or system_b)
                 -value V       set V, in system_a's terms ("" clears the field)

Flags of list:
  -key K       only conflicts of this key
  -state S     only conflicts in state S: held, chosen, resolved or applied
  -field F     only conflicts on this field (the policy rule's name)
  -format F    table, json or csv (show: table or json)
`

var conflictCols = []string{"id", "key", "state", "field", "type", "system_a", "record_a", "field_a", "system_b", "record_b", "field_b", "rule", "winner", "pick", "detected", "resolved"}

func conflictRow(x crmsync.Conflict) []any {
	pick := ""
	if x.Resolution != nil {
		pick = x.Resolution.Pick
	}
	return []any{x.ID, x.Key, string(x.State), x.Field, string(x.Type), x.SystemA, x.RecordA, x.FieldA, x.SystemB, x.RecordB,
		x.FieldB, x.Rule, x.Winner, pick, x.DetectedAt, x.ResolvedAt}
}

func (c *cli) cmdConflicts(ctx context.Context, args []string) error {
	c.usage = conflictsUsage
	if len(args) == 0 {
		return usagef("conflicts: want list, show or resolve")
	}
	switch args[0] {
	case "list":
		return c.conflictsList(ctx, args[1:])
	case "show":
		return c.conflictsShow(ctx, args[1:])
	case "resolve":
		return c.conflictsResolve(ctx, args[1:])
	case "-h", "-help", "--help", "help":
		return errHelp
	}
	return usagef("conflicts: unknown command %q (want list, show or resolve)", args[0])
}

func (c *cli) conflictsList(ctx context.Context, args []string) error {
	c.hint = "usage: crmsync conflicts list [-key K] [-state S] [-field F] [-format table|json|csv]"
	fs := c.flags("conflicts list")
	var f crmsync.ConflictFilter
	var state string
	fs.StringVar(&f.Key, "key", "", "")
	fs.StringVar(&state, "state", "", "")
	fs.StringVar(&f.Field, "field", "", "")
	format := formatFlag(fs, "table")
	if err := parseList(fs, args, format); err != nil {
		return err
	}
	switch s := crmsync.ConflictState(state); s {
	case "", crmsync.ConflictHeld, crmsync.ConflictChosen, crmsync.ConflictResolved, crmsync.ConflictApplied:
		f.State = s
	default:
		return usagef("conflicts list: -state %q: want held, chosen, resolved or applied", state)
	}
	return c.withStore(ctx, func(st crmsync.Store) error {
		cs, err := listConflicts(ctx, st, f)
		if err != nil {
			return err
		}
		l := newLister(*format, c.stdout, conflictCols...)
		for _, x := range cs {
			if err := l.row(conflictRow(x)...); err != nil {
				return err
			}
		}
		return l.close()
	})
}

func getConflict(ctx context.Context, st crmsync.Store, id string) (crmsync.Conflict, error) {
	x, err := st.GetConflict(ctx, id)
	if errors.Is(err, crmsync.ErrNotFound) {
		return x, fmt.Errorf("conflict %q not found", id)
	}
	if err != nil {
		return x, fmt.Errorf("conflict %s: %w", id, err)
	}
	return x, nil
}

func (c *cli) conflictsShow(ctx context.Context, args []string) error {
	c.hint = "usage: crmsync conflicts show ID [-format table|json]"
	fs := c.flags("conflicts show")
	format := formatFlag(fs, "table")
	id, err := parseOne(fs, args, "conflict id")
	if err != nil {
		return err
	}
	if err := checkFormat(*format, "table", "json"); err != nil {
		return err
	}
	return c.withStore(ctx, func(st crmsync.Store) error {
		x, err := getConflict(ctx, st, id)
		if err != nil {
			return err
		}
		if *format == "json" {
			return writeJSON(c.stdout, x)
		}
		tw := newTab(c.stdout)
		vals := conflictRow(x)
		for i, col := range conflictCols {
			fmt.Fprintf(tw, "%s\t%s\n", col, tableCell(vals[i]))
		}
		fmt.Fprintf(tw, "base\t%s\n", jsonValue(x.Base))
		fmt.Fprintf(tw, "%s value (a)\t%s\n", x.SystemA, jsonValue(x.A))
		fmt.Fprintf(tw, "%s value (b)\t%s\n", x.SystemB, jsonValue(x.B))
		fmt.Fprintf(tw, "time a\t%s\n", tableCell(x.TimeA))
		fmt.Fprintf(tw, "time b\t%s\n", tableCell(x.TimeB))
		if x.Resolution != nil {
			if x.Resolution.Pick == crmsync.PickValue {
				fmt.Fprintf(tw, "chosen value\t%s\n", jsonValue(x.Resolution.Value))
			} else {
				fmt.Fprintf(tw, "chosen side\t%s\n", x.Resolution.Pick)
			}
		}
		return tw.Flush()
	})
}

func (c *cli) conflictsResolve(ctx context.Context, args []string) error {
	c.hint = "usage: crmsync conflicts resolve ID (-pick hubspot|salesforce | -value V)"
	fs := c.flags("conflicts resolve")
	pick := fs.String("pick", "", "")
	var value string
	valueSet := false
	fs.Func("value", "", func(s string) error { value, valueSet = s, true; return nil })
	id, err := parseOne(fs, args, "conflict id")
	if err != nil {
		return err
	}
	switch {
	case *pick != "" && valueSet:
		return usagef("conflicts resolve: give -pick or -value, not both")
	case *pick == "" && !valueSet:
		return usagef("conflicts resolve: give -pick hubspot|salesforce or -value V")
	case *pick == crmsync.PickValue:
		return usagef("conflicts resolve: use -value V to set a value")
	}
	return c.withStore(ctx, func(st crmsync.Store) error {
		x, err := getConflict(ctx, st, id)
		if err != nil {
			return err
		}
		if x.State != crmsync.ConflictHeld && x.State != crmsync.ConflictChosen {
			return fmt.Errorf("conflict %s is %s: only held or chosen conflicts can be resolved; nothing changed", id, x.State)
		}
		var r crmsync.Resolution
		if valueSet {
			v, err := crmsync.Normalize(x.Type, value)
			if err != nil {
				// The error does not quote the value.
				return usagef("conflicts resolve: -value is not a valid %s for field %s: %v", x.Type, x.Field, err)
			}
			r = crmsync.Resolution{Pick: crmsync.PickValue, Value: v}
		} else {
			p := strings.ToLower(*pick)
			if p != x.SystemA && p != x.SystemB {
				return usagef("conflicts resolve: -pick %q: conflict %s is between %s and %s", *pick, id, x.SystemA, x.SystemB)
			}
			r = crmsync.Resolution{Pick: p}
		}
		if err := st.ResolveConflict(ctx, id, r, now()); err != nil {
			return fmt.Errorf("resolve conflict %s: %w", id, err)
		}
		what := "the " + r.Pick + " value"
		if r.Pick == crmsync.PickValue {
			what = "a value of your own"
			if r.Value == nil {
				what = "to clear the field"
			}
		}
		_, err = fmt.Fprintf(c.stdout, "conflict %s (key %s, field %s): %s -> chosen: %s; the next run of key %s applies it to both sides\n",
			id, x.Key, x.Field, x.State, what, x.Key)
		return err
	})
}

// inKey says whether k, a store key, belongs to key as the operator named
// it: key itself, or one of its graph pairs ("<key>/<pair>", as
// crmsync.PairKey makes them). An empty key selects every key; a pair's
// own key selects that pair only.
func inKey(key, k string) bool {
	return key == "" || k == key || (!strings.Contains(key, "/") && strings.HasPrefix(k, key+"/"))
}

// pairOf names the graph pair of store key k under key, or "" for key itself.
func pairOf(key, k string) string {
	if key == "" || k == key {
		return ""
	}
	return strings.TrimPrefix(k, key+"/")
}

// listConflicts lists the conflicts f selects, those of f.Key's graph
// pairs included, oldest first.
func listConflicts(ctx context.Context, st crmsync.Store, f crmsync.ConflictFilter) ([]crmsync.Conflict, error) {
	key := f.Key
	if key != "" && !strings.Contains(key, "/") {
		f.Key = "" // the store matches keys exactly; the pairs are filtered here
	}
	cs, err := st.ListConflicts(ctx, f)
	if err != nil {
		return nil, fmt.Errorf("list conflicts: %w", err)
	}
	return slices.DeleteFunc(cs, func(c crmsync.Conflict) bool { return !inKey(key, c.Key) }), nil
}
