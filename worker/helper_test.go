package worker_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/hubspot"
	"github.com/crmsync/crmsync/limit/redislimit"
	"github.com/crmsync/crmsync/playbook"
	"github.com/crmsync/crmsync/salesforce"
	"github.com/crmsync/crmsync/store/postgres"
	"github.com/crmsync/crmsync/worker"
	"github.com/redis/go-redis/v9"
)

// helperEnv, when set to a config file, makes the test binary a worker
// process of TestWorkers instead of running tests.
const helperEnv = "CRMSYNC_WORKER_HELPER_CONFIG"

func TestMain(m *testing.M) {
	if path := os.Getenv(helperEnv); path != "" {
		os.Exit(helperMain(path))
	}
	os.Exit(m.Run())
}

// helperConfig is what the parent test tells each worker process.
type helperConfig struct {
	ID          string       `json:"id"`
	DSN         string       `json:"dsn"`
	Schema      string       `json:"schema"`
	RedisAddr   string       `json:"redis_addr"`
	RedisPrefix string       `json:"redis_prefix"`
	Teams       []teamConfig `json:"teams"`
	Events      string       `json:"events"` // the shared O_APPEND event log

	Interval    time.Duration `json:"interval"`
	Tick        time.Duration `json:"tick"`
	LeaseTTL    time.Duration `json:"lease_ttl"`
	Heartbeat   time.Duration `json:"heartbeat"`
	Concurrency int           `json:"concurrency"`
	PageSize    int           `json:"page_size"`

	// The shared HubSpot limits, per team: Rate per Every with Burst, for
	// the general and the search limit.
	Rate, Burst             int
	Every                   time.Duration
	SearchRate, SearchBurst int
	SearchEvery             time.Duration
}

type teamConfig struct {
	Key     string `json:"key"`
	HSURL   string `json:"hs_url"`
	HSToken string `json:"hs_token"`
	SFURL   string `json:"sf_url"`
	SFToken string `json:"sf_token"`
}

// event is one line of the shared event log.
type event struct {
	Ev     string        `json:"ev"` // start, end, kill
	Key    string        `json:"key,omitempty"`
	Gen    int64         `json:"gen,omitempty"`
	Run    crmsync.RunID `json:"run,omitempty"`
	Holder string        `json:"holder,omitempty"`
	PID    int           `json:"pid"`
	Killed int           `json:"killed,omitempty"` // the pid a kill event killed
	T      int64         `json:"t"`                // wall clock, Unix ns
}

// eventLog appends events to a file opened with O_APPEND: each line is one
// write, so the file's order is the order the events happened in, across
// processes.
type eventLog struct {
	mu sync.Mutex
	f  *os.File
}

func openEventLog(path string) (*eventLog, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	return &eventLog{f: f}, nil
}

func (l *eventLog) add(e event) error {
	e.PID, e.T = os.Getpid(), time.Now().UnixNano()
	b, _ := json.Marshal(e)
	l.mu.Lock()
	defer l.mu.Unlock()
	_, err := l.f.Write(append(b, '\n'))
	return err
}

// helperMain is a worker process: it syncs every team's key with a Worker
// until SIGTERM.
func helperMain(path string) int {
	fail := func(err error) int {
		fmt.Fprintln(os.Stderr, "worker helper:", err)
		return 2
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return fail(err)
	}
	var c helperConfig
	if err := json.Unmarshal(raw, &c); err != nil {
		return fail(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo})).With("worker", c.ID)

	st, err := postgres.Open(ctx, postgres.Config{DSN: c.DSN, Schema: c.Schema, MaxConns: 8})
	if err != nil {
		return fail(err)
	}
	defer st.Close()
	rdb := redis.NewClient(&redis.Options{Addr: c.RedisAddr})
	defer rdb.Close()
	events, err := openEventLog(c.Events)
	if err != nil {
		return fail(err)
	}

	syncs := map[string]*crmsync.Sync{}
	var keys []string
	for _, tm := range c.Teams {
		lim, err := redislimit.New(redislimit.Config{Client: rdb, Prefix: c.RedisPrefix + ":" + tm.Key + ":hubspot",
			Rate: c.Rate, Every: c.Every, Burst: c.Burst, InFlight: 4, LeaseTTL: 10 * time.Second, Logger: logger})
		if err != nil {
			return fail(err)
		}
		slim, err := redislimit.New(redislimit.Config{Client: rdb, Prefix: c.RedisPrefix + ":" + tm.Key + ":hubspot-search",
			Rate: c.SearchRate, Every: c.SearchEvery, Burst: c.SearchBurst, LeaseTTL: 10 * time.Second, Logger: logger})
		if err != nil {
			return fail(err)
		}
		hc, err := hubspot.New(hubspot.Config{Token: tm.HSToken, BaseURL: tm.HSURL, Limiter: lim, SearchLimiter: slim,
			RetryInitial: 10 * time.Millisecond, RetryMax: 500 * time.Millisecond})
		if err != nil {
			return fail(err)
		}
		sfLim, err := crmsync.NewThrottle(crmsync.ThrottleConfig{InFlight: 4})
		if err != nil {
			return fail(err)
		}
		sc, err := salesforce.New(salesforce.Config{AccessToken: tm.SFToken, InstanceURL: tm.SFURL, Limiter: sfLim,
			RetryWait: 10 * time.Millisecond, DefaultFields: []string{"Id"}})
		if err != nil {
			return fail(err)
		}
		pol := contactsPolicy()
		s, err := crmsync.NewSync(crmsync.SyncConfig{A: hc, B: sc, ObjectA: "contacts", ObjectB: "Contact", Policy: &pol,
			LinkFieldA: hubspotLinkField, LinkFieldB: salesforceLinkField, PageSize: c.PageSize})
		if err != nil {
			return fail(err)
		}
		syncs[tm.Key] = s
		keys = append(keys, tm.Key)
	}

	holder := fmt.Sprintf("%s:%d", c.ID, os.Getpid())
	eng, err := crmsync.NewEngine(crmsync.Config{Store: st, Holder: holder, LeaseTTL: c.LeaseTTL, Heartbeat: c.Heartbeat,
		Logger: logger, Retry: &crmsync.RetryPolicy{MaxAttempts: 8, InitialInterval: 20 * time.Millisecond, MaxInterval: 500 * time.Millisecond, Multiplier: 2, Jitter: 0.3}})
	if err != nil {
		return fail(err)
	}
	w, err := worker.New(worker.Config{
		Engine: eng, Keys: keys, Interval: c.Interval, Tick: c.Tick, Concurrency: c.Concurrency,
		Workflow: func(key string) crmsync.Workflow {
			s := syncs[key]
			return crmsync.WorkflowFunc(func(ctx context.Context, run *crmsync.Run) error {
				l := run.Lease()
				if err := events.add(event{Ev: "start", Key: key, Gen: l.Generation, Run: run.ID, Holder: holder}); err != nil {
					return err
				}
				err := s.Run(ctx, run)
				if eerr := events.add(event{Ev: "end", Key: key, Gen: l.Generation, Run: run.ID, Holder: holder}); eerr != nil && err == nil {
					err = eerr
				}
				return err
			})
		},
	})
	if err != nil {
		return fail(err)
	}
	if err := w.Run(ctx); err != nil {
		return fail(err)
	}
	return 0
}

// The reference workflow's policy and fields (package playbook).
var (
	hubspotLinkField, salesforceLinkField = playbook.LinkFields()

	stages     = []string{"subscriber", "lead", "marketingqualifiedlead", "salesqualifiedlead", "opportunity", "customer", "evangelist", "other"}
	dealStages = []string{"prospecting", "qualification", "proposal", "negotiation", "closedwon", "closedlost"}
)

func contactsPolicy() crmsync.Policy { return playbook.Policy() }

// holderID returns the worker id of a lease holder ("w0:1234" → "w0").
func holderID(holder string) string {
	id, _, _ := strings.Cut(holder, ":")
	return id
}
