// Package playbook is the reference workflow: it keeps HubSpot and
// Salesforce in step both ways, companies with accounts, contacts with
// Leads and Contacts, deals with opportunities, parents first in one run
// ([NewGraph]), each pair under its own field-ownership policy
// ([CompaniesPolicy], [PeoplePolicy], [DealsPolicy]; [Policy] for contacts
// alone). [Main] is the main job behind `go run ./examples/hubspot-salesforce`
// and `crmsync demo`.
//
// With no credentials, Main starts both CRMs as in-process fakes seeded with
// a realistic data set, syncs them on a SQLite store (by default demo.db in
// the user's cache folder, kept for the crmsync command to inspect), lets
// simulated users edit both sides, syncs again, and shows that a last pass
// writes nothing. With credentials in the environment (HUBSPOT_TOKEN,
// and SALESFORCE_ACCESS_TOKEN with SALESFORCE_INSTANCE_URL or
// SALESFORCE_CLIENT_ID, SALESFORCE_CLIENT_SECRET and SALESFORCE_LOGIN_URL) it
// syncs real accounts.
package playbook

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/hubspot"
	"github.com/crmsync/crmsync/salesforce"
	"github.com/crmsync/crmsync/schedule"
	"github.com/crmsync/crmsync/store/postgres"
	"github.com/crmsync/crmsync/store/storespec"
)

type options struct {
	store         string
	json, plan    bool
	planValues    bool
	every         time.Duration
	cron          string
	next          func(time.Time) time.Time // the schedule of -every or -cron
	key           string
	hubspotURL    string
	salesforceURL string
	sfAPIVersion  string
	seed          int
	verbose       bool
	objects       string // "all" or "contacts"
}

// apiVersion is the shape of a Salesforce REST API version.
var apiVersion = regexp.MustCompile(`^v?[0-9]{2}\.0$`)

const mainHelp = `usage: %[1]s [flags]

Keeps HubSpot and Salesforce in step both ways under the playbook's
policies: companies and accounts, then contacts and Salesforce Leads and
Contacts, then deals and opportunities (-objects contacts: contacts only). With no credentials in the environment, both CRMs are
fakes in this process, seeded with a realistic data set: it syncs, lets
simulated users edit both sides, syncs again, and shows that a last pass
writes nothing. With credentials (HUBSPOT_TOKEN, SALESFORCE_ACCESS_TOKEN
and SALESFORCE_INSTANCE_URL, or SALESFORCE_CLIENT_ID, SALESFORCE_CLIENT_SECRET
and SALESFORCE_LOGIN_URL) it syncs the real accounts.

Flags:
`

// Main runs the main job with command-line args and returns the exit code:
// 0, 1 for a failed sync, 2 for bad arguments (each reported on one line
// of stderr, with every password redacted). name names the command in
// messages.
//
// The store is -store, else $CRMSYNC_STORE, in any form package storespec
// reads (sqlite:PATH, a path, a PostgreSQL DSN). Against the in-process
// fakes it defaults to demo.db in the user's cache folder
// (os.UserCacheDir()/crmsync/demo.db), replaced at each start because the
// fakes start afresh, and kept afterwards so that the crmsync command can
// show what the demo did. Against real or external CRMs there is no
// default: the store must be named.
func Main(ctx context.Context, name string, args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	o, err := parseArgs(name, args, stdout, getenv)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "%s: %s (%s -h for help)\n", name, oneLine(err), name)
		return 2
	}
	con := newConsole(stderr)
	if err := runSync(ctx, o, stdout, con, getenv); err != nil {
		con.clear()
		var ue usageError
		if errors.As(err, &ue) {
			fmt.Fprintf(stderr, "%s: %s (%s -h for help)\n", name, oneLine(err), name)
			return 2
		}
		fmt.Fprintf(stderr, "%s: %s\n", name, oneLine(err))
		return 1
	}
	return 0
}

// usageError is bad input found after the flags were parsed (a store spec
// that does not fit the CRMs).
type usageError struct{ error }

// oneLine is err's text on one line, every password in it redacted.
func oneLine(err error) string {
	return strings.Join(strings.Fields(postgres.RedactDSN(err.Error())), " ")
}

// parseArgs parses and checks the flags; -h prints the help on stdout and
// returns flag.ErrHelp.
func parseArgs(name string, args []string, stdout io.Writer, getenv func(string) string) (options, error) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var o options
	fs.StringVar(&o.store, "store", "", "the store: sqlite:PATH or a file path, a postgres:// or key=value DSN (default: $CRMSYNC_STORE, else with the in-process fakes demo.db in the user's cache folder, replaced at each start)")
	fs.BoolVar(&o.json, "json", false, "print each pass's report as JSON")
	fs.BoolVar(&o.plan, "plan", false, "dry run: print what a pass would write (counts, then each write: direction, record ids, field names), write nothing")
	fs.BoolVar(&o.planValues, "plan-values", false, "with -plan, also print the values each write would send (personal data; implies -plan)")
	fs.DurationVar(&o.every, "every", 0, "keep running, one pass every interval (e.g. 5m); Ctrl-C stops")
	fs.StringVar(&o.cron, "cron", "", "keep running on a cron schedule (e.g. \"*/5 * * * *\"), in UTC; Ctrl-C stops")
	fs.StringVar(&o.key, "key", "default", "concurrency key (team or portal) of the sync; one live run per key")
	fs.StringVar(&o.hubspotURL, "hubspot-url", "", "HubSpot API base URL (default: $HUBSPOT_BASE_URL, else the real API with credentials, else an in-process fake)")
	fs.StringVar(&o.salesforceURL, "salesforce-url", "", "Salesforce instance URL (default: $SALESFORCE_INSTANCE_URL, else from OAuth, else an in-process fake)")
	fs.IntVar(&o.seed, "seed", 1000, "contacts to seed on each in-process fake")
	fs.StringVar(&o.sfAPIVersion, "salesforce-api-version", "", "Salesforce REST API version, such as 62.0 (default "+salesforce.DefaultAPIVersion+")")
	fs.StringVar(&o.objects, "objects", "all", "what to sync: all (companies <-> accounts, then contacts <-> Salesforce Leads and Contacts, then deals <-> opportunities, in one run) or contacts (contacts <-> Contacts only)")
	fs.BoolVar(&o.verbose, "v", false, "log at debug level: runs starting and finishing, conflicts, steps replayed, progress")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprintf(stdout, mainHelp, name)
			fs.SetOutput(stdout)
			fs.PrintDefaults()
		}
		return o, err
	}
	if o.planValues {
		o.plan = true
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	switch {
	case o.every < 0:
		return o, fmt.Errorf("-every %s: want a positive interval", o.every)
	case o.every > 0 && o.cron != "":
		return o, errors.New("-every and -cron: give one schedule, not both")
	case o.plan && (o.every > 0 || o.cron != ""):
		return o, errors.New("-plan makes one dry run: drop -every and -cron")
	case o.seed < 0:
		return o, fmt.Errorf("-seed %d: want a number of contacts, 0 or more", o.seed)
	case o.sfAPIVersion != "" && !apiVersion.MatchString(o.sfAPIVersion):
		return o, fmt.Errorf("-salesforce-api-version %q: want a version such as 62.0", o.sfAPIVersion)
	case o.objects != "all" && o.objects != "contacts":
		return o, fmt.Errorf("-objects %q: want all or contacts", o.objects)
	case strings.TrimSpace(o.key) == "":
		return o, errors.New("-key is empty: want a key naming the team or portal")
	}
	if o.every > 0 {
		o.next = func(t time.Time) time.Time { return t.Add(o.every) }
	}
	if o.cron != "" {
		next, err := schedule.Cron(o.cron, nil)
		if err != nil {
			return o, fmt.Errorf("-cron: %w", err)
		}
		if next(time.Now()).IsZero() {
			return o, fmt.Errorf("-cron %q never fires", o.cron)
		}
		o.next = next
	}
	o.store = storespec.Resolve(o.store, getenv)
	if o.store != "" {
		if _, err := storespec.Parse(o.store); err != nil {
			return o, err
		}
	}
	if o.hubspotURL == "" {
		o.hubspotURL = getenv("HUBSPOT_BASE_URL")
	}
	if o.salesforceURL == "" {
		o.salesforceURL = getenv("SALESFORCE_INSTANCE_URL")
	}
	return o, nil
}

// cacheDir is where the demo's default store goes (tests replace it).
var cacheDir = os.UserCacheDir

// DemoStore is the path of the store the main job uses by default against
// its in-process fakes: demo.db in the folder crmsync of the user's cache
// folder (os.UserCacheDir, else the temporary folder). The job replaces it
// at each start and keeps it when it ends.
func DemoStore() string {
	dir, err := cacheDir()
	if err != nil {
		dir = os.TempDir()
	}
	return filepath.Join(dir, "crmsync", "demo.db")
}

// demoStore makes way for a new default store and returns its path.
func demoStore() (string, error) {
	path := DemoStore()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return "", fmt.Errorf("demo store: %w", err)
	}
	// The fakes start afresh: so does their store.
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return "", fmt.Errorf("demo store: %w", err)
		}
	}
	return path, nil
}

func runSync(ctx context.Context, o options, stdout io.Writer, con *console, getenv func(string) string) error {
	level := slog.LevelWarn
	if o.verbose {
		level = slog.LevelDebug
	}
	inProcess := usesInProcessFakes(o, getenv)
	var handler slog.Handler = slog.NewTextHandler(con, &slog.HandlerOptions{Level: level})
	handler = mainHandler{Handler: handler, demo: inProcess, verbose: o.verbose}
	logger := slog.New(handler)

	if o.store == "" {
		if !inProcess {
			return usageError{errors.New("no store: against real or external CRMs name one with -store (sqlite:PATH or a PostgreSQL DSN) or $CRMSYNC_STORE")}
		}
		path, err := demoStore()
		if err != nil {
			return err
		}
		o.store = "sqlite:" + path
	}
	st, spec, err := storespec.Open(ctx, o.store, storespec.Create)
	if err != nil {
		return err
	}
	defer st.Close()
	if inProcess {
		// The fakes start afresh at each start: a store that already holds
		// runs describes records that no longer exist.
		runs, err := st.ListRuns(ctx, "", 1)
		if err != nil {
			return fmt.Errorf("store %s: %w", spec, err)
		}
		if len(runs) > 0 {
			return usageError{fmt.Errorf("store %s already holds runs; the in-process fakes start empty at each start, so the demo needs a new store (another path, or none for the default)", spec)}
		}
	}

	hc, sc, world, closeFakes, err := connect(o, getenv)
	if err != nil {
		return err
	}
	defer closeFakes()

	var handlers []crmsync.ConflictHandler
	if url := getenv("SLACK_WEBHOOK_URL"); url != "" {
		handlers = append(handlers, &crmsync.SlackNotifier{WebhookURL: url, Redact: true})
	}
	var progress func(crmsync.Progress)
	if !o.json && con.tty {
		progress = func(p crmsync.Progress) { con.progress(progressText(p)) }
	}
	s, err := newJob(o, hc, sc, handlers, progress)
	if err != nil {
		return err
	}
	eng, err := crmsync.NewEngine(crmsync.Config{Store: st, Logger: logger, WaitForLease: o.next != nil})
	if err != nil {
		return err
	}
	out := &reportWriter{w: stdout, con: con, json: o.json}

	if o.plan {
		var opts []crmsync.PlanOption
		if o.planValues {
			opts = append(opts, crmsync.PlanValues())
		}
		rep, planned, err := s.Plan(ctx, st, o.key, logger, opts...)
		if err != nil {
			return err
		}
		if err := out.report("plan", rep); err != nil || o.json {
			return err
		}
		return printPlanned(stdout, planned)
	}
	if o.next != nil {
		when := "every " + o.every.String()
		if o.cron != "" {
			when = "on " + o.cron + " (UTC)"
		}
		fmt.Fprintf(stdout, "syncing %s on %s; Ctrl-C stops\n", when, spec)
		err := crmsync.Schedule(ctx, o.next, func(ctx context.Context) error {
			rep, info, err := s.RunOnce(ctx, eng, o.key)
			if err != nil {
				if ctx.Err() != nil {
					return nil // stopped; said below
				}
				con.clear()
				if info.Status == crmsync.RunOpen && !inProcess {
					logger.Error("pass failed; the next tick resumes it", "err", errText(err, info.ID))
				} else {
					logger.Error("pass failed; the next tick starts a new run", "err", errText(err, info.ID))
				}
				return nil
			}
			return out.report(time.Now().UTC().Format(time.RFC3339), rep)
		})
		con.clear()
		if ctx.Err() != nil && !o.json {
			fmt.Fprintf(stdout, "\nstopped; %s\n", storeNote(spec, inProcess))
		}
		return err
	}

	passes := []string{"first pass"}
	if world != nil {
		passes = []string{"first pass (initial sync)", "second pass (after users edited both sides)", "third pass (converged)"}
	}
	for i, title := range passes {
		if i == 1 && world != nil {
			if err := world.simulateEdits(); err != nil {
				return err
			}
			if s.graph != nil {
				if err := world.graphEdits(); err != nil {
					return err
				}
			}
		}
		rep, info, err := s.RunOnce(ctx, eng, o.key)
		if err != nil {
			if ctx.Err() != nil {
				con.clear()
				fmt.Fprintf(stdout, "\nstopped during the %s; %s\n", title, storeNote(spec, inProcess))
				return nil
			}
			return errors.New(errText(err, info.ID))
		}
		if err := out.report(title, rep); err != nil {
			return err
		}
	}
	if !o.json {
		var held []crmsync.Conflict
		for _, k := range s.conflictKeys(o.key) {
			h, _ := st.ListConflicts(ctx, crmsync.ConflictFilter{Key: k, State: crmsync.ConflictHeld})
			held = append(held, h...)
		}
		dead, _ := st.ListDeadLetters(ctx, crmsync.DeadLetterQuery{Key: o.key, Status: crmsync.DeadParked})
		again, _ := st.ListDeadLetters(ctx, crmsync.DeadLetterQuery{Key: o.key, Status: crmsync.DeadFailedAgain})
		fmt.Fprintf(stdout, "\nwaiting for a person: %d held conflict(s), %d dead letter(s)\n%s\n", len(held), len(dead)+len(again), storeNote(spec, inProcess))
	}
	return nil
}

// storeNote says where the store is and how to look into it.
func storeNote(spec storespec.Spec, inProcess bool) string {
	arg := spec.String()
	if strings.ContainsAny(arg, " '\"") {
		arg = "'" + strings.ReplaceAll(arg, "'", `'\''`) + "'"
	}
	s := fmt.Sprintf("the store is %s: crmsync -store %s status (or runs, conflicts list, dlq list)", spec, arg)
	if strings.Contains(arg, "xxxxx") {
		s += " with your password for xxxxx"
	}
	if inProcess {
		s += "; the next start begins a new demo with new fakes"
	} else {
		s += "; the next start resumes from it"
	}
	return s
}

// errText is a pass's error on one line naming its run once: the engine
// names the run, and so may the step error it wraps.
func errText(err error, id crmsync.RunID) string {
	msg := err.Error()
	if id == "" {
		return msg
	}
	first := strings.Index(msg, string(id))
	if first < 0 {
		return fmt.Sprintf("run %s: %s", id, msg)
	}
	head, tail := msg[:first+len(id)], msg[first+len(id):]
	for _, dup := range []string{"crmsync: run " + string(id) + " ", "run " + string(id) + " ", "run " + string(id) + ": "} {
		tail = strings.ReplaceAll(tail, dup, "")
	}
	return head + tail
}

// usesInProcessFakes reports whether the job syncs its own in-process fakes:
// no credentials and no API URL given.
func usesInProcessFakes(o options, getenv func(string) string) bool {
	return getenv("HUBSPOT_TOKEN") == "" && getenv("SALESFORCE_ACCESS_TOKEN") == "" && getenv("SALESFORCE_CLIENT_ID") == "" &&
		o.hubspotURL == "" && o.salesforceURL == ""
}

// mainHandler keeps the engine's logs from saying twice what Main says
// once: without -v, the lines of a run or step that failed or stopped are
// left out, since Main prints the error (on one line) and what happens
// next. For the demo, it tells the truth about a stopped run: the engine
// says an open run resumes on the next start, but the demo's next start
// makes new fakes and a new store.
type mainHandler struct {
	slog.Handler
	demo, verbose bool
}

func (h mainHandler) Handle(ctx context.Context, r slog.Record) error {
	if !h.verbose && (strings.HasPrefix(r.Message, "run failed") || strings.HasPrefix(r.Message, "run stopped") ||
		strings.HasPrefix(r.Message, "step failed")) {
		return nil
	}
	if h.demo && strings.Contains(r.Message, "resumes on the next start") {
		r = slog.NewRecord(r.Time, r.Level, "run stopped; the demo's next start begins a new demo", r.PC)
	}
	return h.Handler.Handle(ctx, r)
}

func (h mainHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return mainHandler{h.Handler.WithAttrs(as), h.demo, h.verbose}
}

func (h mainHandler) WithGroup(g string) slog.Handler {
	return mainHandler{h.Handler.WithGroup(g), h.demo, h.verbose}
}

// reportWriter prints pass reports, clearing the progress line first.
type reportWriter struct {
	w    io.Writer
	con  *console
	json bool
}

func (r *reportWriter) report(title string, rep passReport) error {
	r.con.clear()
	if r.json {
		b, err := json.Marshal(map[string]any{"pass": title, "report": rep})
		if err != nil {
			return err
		}
		_, err = fmt.Fprintln(r.w, string(b))
		return err
	}
	_, err := fmt.Fprintf(r.w, "\n%s: %d written\n%s", title, rep.Writes(), rep.Summary())
	return err
}

// printPlanned lists a plan's writes, one a line: direction, kind, the
// source and target records, and the fields (with their values when the
// plan kept them); a write the target would refuse says why.
func printPlanned(w io.Writer, planned []crmsync.PlannedWrite) error {
	if _, err := fmt.Fprintf(w, "\nwrites planned: %d\n", len(planned)); err != nil {
		return err
	}
	for _, pw := range planned {
		from, to, _ := strings.Cut(pw.Direction, "->")
		target := pw.TargetID
		if target == "" {
			target = "(new)" // a create the target refuses
		}
		fields := strings.Join(pw.Fields, ", ")
		if pw.Values != nil {
			parts := make([]string, len(pw.Fields))
			for i, f := range pw.Fields {
				v, _ := json.Marshal(pw.Values[f])
				parts[i] = f + "=" + string(v)
			}
			fields = strings.Join(parts, ", ")
		}
		kind := pw.Kind
		tail := ""
		if pw.Refused != "" {
			kind, tail = "refused", " ("+pw.Refused+": a dead letter)"
		}
		if _, err := fmt.Fprintf(w, "  %-20s %-7s %s %s -> %s %s: %s%s\n", pw.Direction, kind, from, pw.SourceID, to, target, fields, tail); err != nil {
			return err
		}
	}
	return nil
}

// console is stderr: log lines and, on a terminal, one progress line that
// every other write clears first, so that no log line lands on it.
type console struct {
	mu      sync.Mutex
	w       io.Writer
	tty     bool
	showing bool
}

func newConsole(w io.Writer) *console {
	c := &console{w: w}
	if f, ok := w.(*os.File); ok {
		c.tty = isTerminal(f)
	}
	return c
}

// Write clears the progress line, then writes p.
func (c *console) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.clearLocked()
	return c.w.Write(p)
}

// progress shows line as the progress line.
func (c *console) progress(line string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	fmt.Fprintf(c.w, "\r%s\033[K", line)
	c.showing = true
}

// clear removes the progress line, if one shows.
func (c *console) clear() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.clearLocked()
}

func (c *console) clearLocked() {
	if c.showing {
		fmt.Fprint(c.w, "\r\033[K")
		c.showing = false
	}
}

// progressText is one progress line. The expected total is shown only
// while it is not below what was read (a pass reads more than estimated
// when records change during it).
func progressText(p crmsync.Progress) string {
	read := fmt.Sprintf("read %6d", p.Read)
	if p.Expected >= p.Read && p.Expected > 0 {
		read += fmt.Sprintf("/%-6d", p.Expected)
	} else {
		read += "       "
	}
	eta := ""
	if p.Remaining > 0 && p.Expected > p.Read {
		eta = " ~" + p.Remaining.Round(time.Second).String() + " left"
	}
	return fmt.Sprintf("%-22s %s written %6d  %6.0f rec/s%s", p.Phase, read, p.Written, p.RecordsPerSecond, eta)
}

func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// connect builds both clients: real accounts when credentials are in the
// environment, else in-process fakes with a seeded world.
func connect(o options, getenv func(string) string) (*hubspot.Client, *salesforce.Client, *world, func(), error) {
	hsToken := getenv("HUBSPOT_TOKEN")
	sfToken, sfClientID := getenv("SALESFORCE_ACCESS_TOKEN"), getenv("SALESFORCE_CLIENT_ID")
	if usesInProcessFakes(o, getenv) {
		f, closeFn, err := startFakes(nil, nil)
		if err != nil {
			return nil, nil, nil, nil, err
		}
		w := &world{f: f}
		if err := w.seed(o.seed); err != nil {
			closeFn()
			return nil, nil, nil, nil, err
		}
		if o.objects == "all" {
			if err := w.seedGraph(o.seed); err != nil {
				closeFn()
				return nil, nil, nil, nil, err
			}
		}
		hc, sc, err := f.clients(clientOptions{SalesforceAPIVersion: o.sfAPIVersion})
		if err != nil {
			closeFn()
			return nil, nil, nil, nil, err
		}
		return hc, sc, w, closeFn, nil
	}
	if hsToken == "" {
		return nil, nil, nil, nil, errors.New("HUBSPOT_TOKEN is not set (a private-app token with contacts read and write scopes)")
	}
	hc, err := hubspot.New(hubspot.Config{Token: hsToken, BaseURL: o.hubspotURL})
	if err != nil {
		return nil, nil, nil, nil, err
	}
	sfc := salesforce.Config{InstanceURL: o.salesforceURL, LoginURL: getenv("SALESFORCE_LOGIN_URL"), APIVersion: o.sfAPIVersion}
	switch {
	case sfToken != "":
		sfc.AccessToken = sfToken
		if sfc.InstanceURL == "" {
			sfc.InstanceURL = getenv("SALESFORCE_INSTANCE_URL")
		}
	case sfClientID != "":
		sfc.ClientCredentials = &salesforce.ClientCredentialsAuth{ClientID: sfClientID, ClientSecret: getenv("SALESFORCE_CLIENT_SECRET")}
	default:
		return nil, nil, nil, nil, errors.New("set SALESFORCE_ACCESS_TOKEN (with SALESFORCE_INSTANCE_URL) or SALESFORCE_CLIENT_ID and SALESFORCE_CLIENT_SECRET (with SALESFORCE_LOGIN_URL)")
	}
	sc, err := salesforce.New(sfc)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	return hc, sc, nil, func() {}, nil
}
