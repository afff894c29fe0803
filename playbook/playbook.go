// Package playbook is the reference workflow: it keeps HubSpot and
// Salesforce contacts in step both ways under the playbook's
// field-ownership policy ([Policy]). [Main] is the main job behind
// `go run ./examples/hubspot-salesforce` and `crmsync demo`.
//
// With no credentials, Main starts both CRMs as in-process fakes seeded with
// a realistic data set, syncs them on a SQLite store in a temporary folder,
// lets simulated users edit both sides, syncs again, and shows that a last
// pass writes nothing. With credentials in the environment (HUBSPOT_TOKEN,
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
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/hubspot"
	"github.com/crmsync/crmsync/salesforce"
	"github.com/crmsync/crmsync/schedule"
	"github.com/crmsync/crmsync/store/sqlite"
)

type options struct {
	store         string
	json, plan    bool
	every         time.Duration
	cron          string
	key           string
	hubspotURL    string
	salesforceURL string
	seed          int
	verbose       bool
}

// Main runs the main job with command-line args and returns the exit code:
// 0, 1 for a failed sync, 2 for bad arguments. name names the command in
// usage messages.
func Main(ctx context.Context, name string, args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	fs.StringVar(&o.store, "store", "", "SQLite store file (default: a new file in a temporary folder)")
	fs.BoolVar(&o.json, "json", false, "print each pass's report as JSON")
	fs.BoolVar(&o.plan, "plan", false, "dry run: print the writes a pass would make, make none")
	fs.DurationVar(&o.every, "every", 0, "keep running, one pass every interval (e.g. 5m); 0 runs the demo once")
	fs.StringVar(&o.cron, "cron", "", "keep running on a cron schedule (e.g. \"*/5 * * * *\"), in UTC")
	fs.StringVar(&o.key, "key", "default", "concurrency key (team or portal) of the sync")
	fs.StringVar(&o.hubspotURL, "hubspot-url", "", "HubSpot API base URL (default: the real API with credentials, else an in-process fake)")
	fs.StringVar(&o.salesforceURL, "salesforce-url", "", "Salesforce instance URL (default: from the OAuth response, else an in-process fake)")
	fs.IntVar(&o.seed, "seed", 1000, "contacts to seed on each fake")
	fs.BoolVar(&o.verbose, "v", false, "log each step")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if o.hubspotURL == "" {
		o.hubspotURL = getenv("HUBSPOT_BASE_URL")
	}
	if o.salesforceURL == "" {
		o.salesforceURL = getenv("SALESFORCE_INSTANCE_URL")
	}
	if err := runSync(ctx, o, stdout, stderr, getenv); err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
		return 1
	}
	return 0
}

func runSync(ctx context.Context, o options, stdout, stderr io.Writer, getenv func(string) string) error {
	level := slog.LevelWarn
	if o.verbose {
		level = slog.LevelDebug
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))

	hc, sc, world, closeFakes, err := connect(o, getenv)
	if err != nil {
		return err
	}
	defer closeFakes()

	if o.store == "" {
		dir, err := os.MkdirTemp("", "crmsync-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		o.store = filepath.Join(dir, "crmsync.db")
	}
	st, err := sqlite.Open(ctx, sqlite.Config{Path: o.store})
	if err != nil {
		return err
	}
	defer st.Close()

	var handlers []crmsync.ConflictHandler
	if url := getenv("SLACK_WEBHOOK_URL"); url != "" {
		handlers = append(handlers, &crmsync.SlackNotifier{WebhookURL: url, Redact: true})
	}
	pol := contactsPolicy()
	s, err := crmsync.NewSync(crmsync.SyncConfig{
		A: hc, B: sc, ObjectA: "contacts", ObjectB: "Contact", Policy: &pol,
		LinkFieldA: hubspotLinkField, LinkFieldB: salesforceLinkField,
		OnConflict: handlers,
		Progress:   progressBar(stderr, o.json),
	})
	if err != nil {
		return err
	}
	eng, err := crmsync.NewEngine(crmsync.Config{Store: st, Logger: logger, WaitForLease: o.every > 0 || o.cron != ""})
	if err != nil {
		return err
	}

	if o.plan {
		rep, err := s.Plan(ctx, st, o.key, logger)
		if err != nil {
			return err
		}
		return printReport(stdout, "plan", rep, o.json)
	}
	if o.every > 0 || o.cron != "" {
		next := func(t time.Time) time.Time { return t.Add(o.every) }
		when := "every " + o.every.String()
		if o.cron != "" {
			if next, err = schedule.Cron(o.cron, nil); err != nil {
				return err
			}
			when = "on " + o.cron
		} else if o.every < 0 {
			return fmt.Errorf("-every %s: want a positive interval", o.every)
		}
		fmt.Fprintf(stdout, "syncing %s on %s; Ctrl-C stops\n", when, o.store)
		return crmsync.Schedule(ctx, next, func(ctx context.Context) error {
			rep, info, err := s.RunOnce(ctx, eng, o.key)
			if err != nil {
				if info.Status == crmsync.RunOpen {
					logger.Error("pass failed; the next tick resumes it", "run", info.ID, "err", err)
				} else {
					logger.Error("pass failed; the next tick starts a new run", "run", info.ID, "err", err)
				}
				return nil
			}
			return printReport(stdout, time.Now().Format(time.RFC3339), rep, o.json)
		})
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
		}
		rep, _, err := s.RunOnce(ctx, eng, o.key)
		if err != nil {
			return err
		}
		if err := printReport(stdout, title, rep, o.json); err != nil {
			return err
		}
	}
	if !o.json {
		held, _ := st.ListConflicts(ctx, crmsync.ConflictFilter{Key: o.key, State: crmsync.ConflictHeld})
		dead, _ := st.ListDeadLetters(ctx, crmsync.DeadLetterQuery{Key: o.key, Status: crmsync.DeadParked})
		again, _ := st.ListDeadLetters(ctx, crmsync.DeadLetterQuery{Key: o.key, Status: crmsync.DeadFailedAgain})
		fmt.Fprintf(stdout, "\nwaiting for a person: %d held conflict(s), %d dead letter(s); store %s\n", len(held), len(dead)+len(again), o.store)
	}
	return nil
}

func printReport(w io.Writer, title string, rep *crmsync.SyncReport, asJSON bool) error {
	if asJSON {
		b, err := json.Marshal(map[string]any{"pass": title, "report": rep})
		if err != nil {
			return err
		}
		_, err = fmt.Fprintln(w, string(b))
		return err
	}
	_, err := fmt.Fprintf(w, "\n%s: %d written\n%s", title, rep.Writes(), rep.Summary())
	return err
}

// progressBar draws a one-line progress display on a terminal.
func progressBar(w io.Writer, quiet bool) func(crmsync.Progress) {
	if quiet {
		return nil
	}
	if f, ok := w.(*os.File); !ok || !isTerminal(f) {
		return nil
	}
	return func(p crmsync.Progress) {
		eta := ""
		if p.Remaining > 0 {
			eta = " ~" + p.Remaining.Round(time.Second).String() + " left"
		}
		fmt.Fprintf(w, "\r%-22s read %6d/%-6d written %6d  %6.0f rec/s%s\033[K", p.Phase, p.Read, p.Expected, p.Written, p.RecordsPerSecond, eta)
		if strings.HasSuffix(p.Phase, "archived") {
			fmt.Fprint(w, "\r\033[K")
		}
	}
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
	if hsToken == "" && sfToken == "" && sfClientID == "" && o.hubspotURL == "" && o.salesforceURL == "" {
		f, closeFn, err := startFakes(nil, nil)
		if err != nil {
			return nil, nil, nil, nil, err
		}
		w := &world{f: f}
		if err := w.seed(o.seed); err != nil {
			closeFn()
			return nil, nil, nil, nil, err
		}
		hc, sc, err := f.clients(clientOptions{})
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
	sfc := salesforce.Config{InstanceURL: o.salesforceURL, LoginURL: getenv("SALESFORCE_LOGIN_URL")}
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
