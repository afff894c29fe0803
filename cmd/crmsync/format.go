package main

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// lister writes rows as an aligned table, a JSON array of objects or CSV
// with a header. Rows stream: CSV and JSON rows are written as they come
// (audit -all pages through the whole log).
type lister struct {
	format string
	w      io.Writer
	cols   []string
	tw     *tabwriter.Writer
	cw     *csv.Writer
	n      int
}

func newLister(format string, w io.Writer, cols ...string) *lister {
	l := &lister{format: format, w: w, cols: cols}
	switch format {
	case "table":
		l.tw = newTab(w)
		head := make([]string, len(cols))
		for i, c := range cols {
			head[i] = strings.ToUpper(strings.ReplaceAll(c, "_", " "))
		}
		fmt.Fprintln(l.tw, strings.Join(head, "\t"))
	case "csv":
		l.cw = csv.NewWriter(w)
		_ = l.cw.Write(cols)
	}
	return l
}

func newTab(w io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
}

// row writes one row; vals match the columns.
func (l *lister) row(vals ...any) error {
	if len(vals) != len(l.cols) {
		panic(fmt.Sprintf("crmsync: %d values for %d columns", len(vals), len(l.cols)))
	}
	l.n++
	switch l.format {
	case "table":
		cells := make([]string, len(vals))
		for i, v := range vals {
			cells[i] = tableCell(v)
		}
		_, err := fmt.Fprintln(l.tw, strings.Join(cells, "\t"))
		return err
	case "csv":
		cells := make([]string, len(vals))
		for i, v := range vals {
			cells[i] = text(v)
		}
		if err := l.cw.Write(cells); err != nil {
			return err
		}
		l.cw.Flush()
		return l.cw.Error()
	}
	var b bytes.Buffer
	if l.n == 1 {
		b.WriteString("[\n")
	} else {
		b.WriteString(",\n")
	}
	b.WriteString("  {")
	for i, c := range l.cols {
		if i > 0 {
			b.WriteString(", ")
		}
		k, _ := json.Marshal(c)
		b.Write(k)
		b.WriteString(": ")
		b.Write(jsonValue(vals[i]))
	}
	b.WriteString("}")
	_, err := l.w.Write(b.Bytes())
	return err
}

// close ends the listing.
func (l *lister) close() error {
	switch l.format {
	case "table":
		return l.tw.Flush()
	case "csv":
		l.cw.Flush()
		return l.cw.Error()
	}
	end := "\n]\n"
	if l.n == 0 {
		end = "[]\n"
	}
	_, err := io.WriteString(l.w, end)
	return err
}

// dur is a run's duration.
type dur time.Duration

// text renders a value for CSV (and, via tableCell, tables).
func text(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return x
	case int:
		return strconv.Itoa(x)
	case int64:
		return strconv.FormatInt(x, 10)
	case bool:
		return strconv.FormatBool(x)
	case time.Time:
		return stamp(x)
	case dur:
		if x < 0 {
			return ""
		}
		return time.Duration(x).Round(time.Millisecond).String()
	case []string:
		return strings.Join(x, ";")
	case map[string]int:
		parts := make([]string, 0, len(x))
		for _, k := range slices.Sorted(maps.Keys(x)) {
			parts = append(parts, k+"="+strconv.Itoa(x[k]))
		}
		return strings.Join(parts, ";")
	case map[string]string:
		parts := make([]string, 0, len(x))
		for _, k := range slices.Sorted(maps.Keys(x)) {
			parts = append(parts, k+"="+x[k])
		}
		return strings.Join(parts, ";")
	case json.RawMessage:
		if len(x) == 0 {
			return ""
		}
		var b bytes.Buffer
		if json.Compact(&b, x) != nil {
			return string(x)
		}
		return b.String()
	case fmt.Stringer:
		return x.String()
	}
	return fmt.Sprint(v)
}

// tableCell renders a value for a table: one line, "-" when empty.
func tableCell(v any) string {
	s := oneLine(text(v))
	if s == "" {
		return "-"
	}
	return s
}

// jsonValue renders a value for a JSON listing.
func jsonValue(v any) []byte {
	var out any = v
	switch x := v.(type) {
	case time.Time:
		if x.IsZero() {
			out = nil
		} else {
			out = stamp(x)
		}
	case dur:
		if x < 0 {
			out = nil
		} else {
			out = text(x)
		}
	case []string:
		if x == nil {
			out = []string{}
		}
	case map[string]int:
		if x == nil {
			out = map[string]int{}
		}
	case map[string]string:
		if x == nil {
			out = map[string]string{}
		}
	case json.RawMessage:
		if len(x) == 0 {
			out = nil
		} else {
			var b bytes.Buffer
			if json.Compact(&b, x) == nil {
				return b.Bytes()
			}
			out = string(x)
		}
	}
	b, err := json.Marshal(out)
	if err != nil {
		b, _ = json.Marshal(fmt.Sprint(v))
	}
	return b
}

// stamp formats a time in UTC, "" for the zero time.
func stamp(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
}

// writeJSON writes v as indented JSON.
func writeJSON(w io.Writer, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	b = append(b, '\n')
	_, err = w.Write(b)
	return err
}

// prettyJSON indents raw JSON, or returns it as is if it is not JSON.
func prettyJSON(raw []byte, indent string) string {
	if len(raw) == 0 {
		return "null"
	}
	var b bytes.Buffer
	if err := json.Indent(&b, raw, indent, "  "); err != nil {
		return string(raw)
	}
	return b.String()
}
