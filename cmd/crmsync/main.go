// Command crmsync is the operator's tool for a crmsync Store: it shows what
// the sync did (status, runs, audit) and acts on what it could not do (dead
// letters, conflicts), without writing Go. It also serves the fake HubSpot
// and Salesforce APIs for local runs.
//
// Usage:
//
//	crmsync [-store SPEC] <command> [flags] [args]
//
// The store is sqlite:PATH or a file path, a postgres:// DSN or a key=value
// DSN (package storespec), from -store or the CRMSYNC_STORE environment
// variable; the commands open an existing store only and never print its
// password. Errors are one line: bad input exits 2, a failure 1. Run
// "crmsync -h" for the commands and "crmsync <command> -h" for each
// command's flags.
//
// Record field values are personal data: listings show ids, field names,
// kinds and errors only. "dlq show" and "conflicts show" print one item's
// payload or values, because the operator asked for that item by id.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/playbook"
	"github.com/crmsync/crmsync/store/postgres"
	"github.com/crmsync/crmsync/store/storespec"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr, os.Getenv)
	stop()
	os.Exit(code)
}

// demoStore is where the demo keeps its store by default (tests replace it).
var demoStore = playbook.DemoStore

// now is the clock for the times the CLI writes (replay, discard, resolve)
// and for judging leases live; tests replace it.
var now = time.Now

// Exit codes.
const (
	exitOK      = 0
	exitRuntime = 1
	exitUsage   = 2
)

const mainUsage = `usage: crmsync [-store SPEC] <command> [flags] [args]

Inspect and act on a crmsync store.

Commands:
  status                          per key: last runs, cursors, lease, open conflicts, parked dead letters
  runs [-key K] [-limit N]        list runs, newest first
  runs show ID                    one run's stored report
  audit [filters]                 the audit log, page by page or all of it (export)
  dlq list|show|replay|discard    the dead-letter queue
  conflicts list|show|resolve     conflicts held for a person
  serve                           the web console (and /metrics, /healthz, /readyz) until interrupted
  fake                            serve fake HubSpot and Salesforce APIs until interrupted
  demo                            run the reference workflow against in-process fakes (no credentials)

Global flags:
  -store SPEC    the store: sqlite:PATH or a file path, a postgres:// DSN, or
                 a key=value DSN ("host=h dbname=crm user=u"); it must
                 exist, except for demo (default: $CRMSYNC_STORE; may also
                 follow the command)

Listing commands take -format table|json|csv (default table).
Record field values are personal data: listings show ids, field names, kinds
and errors only; "dlq show" and "conflicts show" print one item's payload or
values because you asked for that item by id.

Run "crmsync <command> -h" for a command's flags.
`

// errHelp asks for the usage text on stdout and exit code 0.
var errHelp = errors.New("help requested")

// usageError is bad input from the command line: exit code 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

// cli is one invocation's state.
type cli struct {
	stdout, stderr io.Writer
	env            func(string) string
	store          string // the -store flag, defaulting to $CRMSYNC_STORE
	// usage is the help text of the command being run; hint, or else the
	// usage's first line, is printed after an error.
	usage, hint string
}

// run runs the command line args and returns the process exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, env func(string) string) int {
	if env == nil {
		env = func(string) string { return "" }
	}
	c := &cli{stdout: stdout, stderr: stderr, env: env, store: storespec.Resolve("", env), usage: mainUsage}
	err := c.dispatch(ctx, args)
	var ue *usageError
	var done reported
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, errHelp):
		fmt.Fprint(stdout, c.usage)
		return exitOK
	case errors.As(err, &done):
		return done.code // already said, on one line
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "crmsync: %s (%s -h for help)\n", oneLine(err.Error()), commandName(c.hint, c.usage))
		return exitUsage
	}
	fmt.Fprintf(stderr, "crmsync: %s\n", oneLine(err.Error()))
	return exitRuntime
}

// reported is a failure already reported on stderr, with its exit code.
type reported struct{ code int }

func (e reported) Error() string { return fmt.Sprintf("failed (exit %d)", e.code) }

// commandName is the command a usage line names: "usage: crmsync dlq
// replay ID..." gives "crmsync dlq replay".
func commandName(hint, usage string) string {
	line := hint
	if line == "" {
		line = strings.SplitN(usage, "\n", 2)[0]
	}
	var words []string
	for _, w := range strings.Fields(strings.TrimPrefix(line, "usage:")) {
		if strings.Trim(w, "abcdefghijklmnopqrstuvwxyz") != "" {
			break
		}
		words = append(words, w)
	}
	if len(words) == 0 {
		return "crmsync"
	}
	return strings.Join(words, " ")
}

// oneLine keeps an error message on one line, with every password in it
// redacted.
func oneLine(s string) string {
	return strings.Join(strings.Fields(postgres.RedactDSN(s)), " ")
}

func (c *cli) dispatch(ctx context.Context, args []string) error {
	fs := c.flags("crmsync")
	rest, err := parseFirst(fs, args)
	if err != nil {
		return err
	}
	if len(rest) == 0 {
		return usagef("no command given")
	}
	cmd, rest := rest[0], rest[1:]
	switch cmd {
	case "status":
		return c.cmdStatus(ctx, rest)
	case "runs":
		return c.cmdRuns(ctx, rest)
	case "audit":
		return c.cmdAudit(ctx, rest)
	case "dlq":
		return c.cmdDLQ(ctx, rest)
	case "conflicts":
		return c.cmdConflicts(ctx, rest)
	case "serve":
		return c.cmdServe(ctx, rest)
	case "fake":
		return c.cmdFake(ctx, rest)
	case "demo":
		return c.cmdDemo(ctx, rest)
	case "help":
		return errHelp
	}
	return usagef("unknown command %q", cmd)
}

// flags returns a FlagSet that reports errors instead of printing them and
// knows -store, so that it may come before or after the command.
func (c *cli) flags(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	fs.StringVar(&c.store, "store", c.store, "")
	return fs
}

// parseFirst parses the flags before the first argument.
func parseFirst(fs *flag.FlagSet, args []string) ([]string, error) {
	if err := fs.Parse(args); err != nil {
		return nil, flagError(err)
	}
	return fs.Args(), nil
}

// parseAll parses flags wherever they appear among the arguments, so that
// "conflicts resolve ID -pick hubspot" works; "--" ends the flags.
func parseAll(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, flagError(err)
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		// A "--" just before rest ends the flags.
		if n := len(args) - len(rest); n > 0 && args[n-1] == "--" {
			return append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

func flagError(err error) error {
	if errors.Is(err, flag.ErrHelp) {
		return errHelp
	}
	return &usageError{msg: err.Error()}
}

// formatFlag adds -format to fs with its default; checkFormat checks it.
func formatFlag(fs *flag.FlagSet, def string) *string {
	return fs.String("format", def, "")
}

func checkFormat(f string, allowed ...string) error {
	for _, a := range allowed {
		if f == a {
			return nil
		}
	}
	return usagef("-format %q: want one of %s", f, strings.Join(allowed, ", "))
}

// parseList parses the flags of a command that lists: it takes no
// arguments, and its -format is table, json or csv.
func parseList(fs *flag.FlagSet, args []string, format *string) error {
	rest, err := parseAll(fs, args)
	if err != nil {
		return err
	}
	if len(rest) > 0 {
		return usagef("%s: unexpected argument %q", fs.Name(), rest[0])
	}
	return checkFormat(*format, "table", "json", "csv")
}

// parseOne parses the flags of a command that takes one argument, the id
// of one thing; what names it in the usage error ("run id").
func parseOne(fs *flag.FlagSet, args []string, what string) (string, error) {
	rest, err := parseAll(fs, args)
	if err != nil {
		return "", err
	}
	if len(rest) != 1 {
		return "", usagef("%s: want one %s, got %d arguments", fs.Name(), what, len(rest))
	}
	return rest[0], nil
}

// withStore opens the store named by -store or $CRMSYNC_STORE, calls fn
// and closes the store.
func (c *cli) withStore(ctx context.Context, fn func(st crmsync.Store) error) error {
	if strings.TrimSpace(c.store) == "" {
		msg := "no store given: " + storespec.Help + " (flag -store or $" + storespec.EnvVar + ")"
		if path := demoStore(); path != "" {
			if fi, err := os.Stat(path); err == nil && fi.Size() > 0 {
				msg += "; the demo's store is sqlite:" + path
			}
		}
		return usagef("%s", msg)
	}
	st, err := openStore(ctx, c.store)
	if err != nil {
		return err
	}
	err = fn(st)
	if cerr := st.Close(); cerr != nil && err == nil {
		err = fmt.Errorf("close store: %w", cerr)
	}
	return err
}
