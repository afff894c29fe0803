package worker_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/hubspot/hubspottest"
	"github.com/crmsync/crmsync/playbook"
	"github.com/crmsync/crmsync/salesforce/salesforcetest"
	"github.com/crmsync/crmsync/store/postgres"
	"github.com/crmsync/crmsync/worker"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// testEnv returns the PostgreSQL DSN and Redis address, or skips (fails in CI).
func testEnv(t *testing.T) (dsn, addr string) {
	t.Helper()
	dsn, addr = os.Getenv("CRMSYNC_TEST_POSTGRES_DSN"), os.Getenv("CRMSYNC_TEST_REDIS_ADDR")
	if dsn == "" || addr == "" {
		require.NotEqual(t, "true", os.Getenv("CI"), "CRMSYNC_TEST_POSTGRES_DSN or CRMSYNC_TEST_REDIS_ADDR is unset and CI=true: TestWorkers must run in CI")
		t.Skip("TestWorkers needs PostgreSQL and Redis: set CRMSYNC_TEST_POSTGRES_DSN " +
			"(e.g. postgres://postgres@127.0.0.1:5432/test?sslmode=disable) and CRMSYNC_TEST_REDIS_ADDR (e.g. 127.0.0.1:6379)")
	}
	return dsn, addr
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Scaled limits. Each team's HubSpot fake allows hsLimit calls per rolling
// hsWindow (and searchLimit searches per searchWindow). The workers share
// one Redis limiter per team that grants at most hsBurst + hsRate per hsEvery
// over the window, 14 of the fake's 16 per 3 s. The window is longer than the
// Interval, so several passes of a team, run by different workers, fall in
// one window; three workers each pacing on its own bucket at this rate could
// grant three times what the fake allows. (A key has one live run, so a
// team's calls come from one worker at a time: at this test's demand the
// fakes stay under their limits even with per-process limiters; the
// limiter's cross-process bound is tested in limit/redislimit.)
const (
	hsLimit      = 16
	hsWindow     = 3 * time.Second
	hsRate       = 3
	hsEvery      = time.Second
	hsBurst      = 5
	searchLimit  = 5
	searchWindow = time.Second
	searchRate   = 3
	searchBurst  = 1

	nTeams   = 12
	nWorkers = 3
	interval = time.Second
	leaseTTL = 2 * time.Second
)

// team is one team's pair of fakes and the edits made to them.
type team struct {
	key string
	n   int // the team's number
	hs  *hubspottest.Server
	sf  *salesforcetest.Server
	// want are the values the parent's edits set, by email, keyed by the
	// HubSpot property name.
	want map[string]map[string]string
	// emails are every contact's email: both sides must end with exactly these.
	emails map[string]bool
}

// sfField maps the HubSpot properties the edits touch to Salesforce fields.
var sfField = map[string]string{"firstname": "FirstName", "lastname": "LastName", "lifecyclestage": "Lifecycle_Stage__c", "sf_deal_stage": "Deal_Stage__c"}

func newTeam(t *testing.T, n int) (*team, teamConfig) {
	key := fmt.Sprintf("team-%02d", n)
	t.Helper()
	hs, err := hubspottest.New(hubspottest.Config{RateLimit: hsLimit, RateWindow: hsWindow, SearchRateLimit: searchLimit, SearchWindow: searchWindow})
	require.NoError(t, err)
	for _, p := range playbook.HubSpotProperties() {
		hs.DefineProperty("contacts", p)
	}
	sf, err := salesforcetest.New(salesforcetest.Config{ExternalIDField: salesforceLinkField, Fields: playbook.SalesforceFields()})
	require.NoError(t, err)
	hsSrv, sfSrv := httptest.NewServer(hs.Handler()), httptest.NewServer(sf.Handler())
	t.Cleanup(func() { hsSrv.Close(); sfSrv.Close(); sf.Close(); hs.Close() })
	tm := &team{key: key, n: n, hs: hs, sf: sf, want: map[string]map[string]string{}, emails: map[string]bool{}}

	// Seed: contacts only in HubSpot, only in Salesforce, and in both.
	var hsRecs []map[string]string
	var sfRecs []crmsync.Fields
	for i := range 10 {
		e := fmt.Sprintf("hs%d.%s@hs.example.com", i, key)
		hsRecs = append(hsRecs, map[string]string{"email": e, "firstname": "Hs", "lastname": fmt.Sprintf("Only%d", i), "lifecyclestage": stages[i%6]})
		tm.emails[e] = true
	}
	for i := range 10 {
		e := fmt.Sprintf("sf%d.%s@sf.example.com", i, key)
		sfRecs = append(sfRecs, crmsync.Fields{"Email": e, "FirstName": "Sf", "LastName": fmt.Sprintf("Only%d", i), "Deal_Stage__c": dealStages[i%6]})
		tm.emails[e] = true
	}
	for i := range 6 {
		e := fmt.Sprintf("both%d.%s@both.example.com", i, key)
		hsRecs = append(hsRecs, map[string]string{"email": e, "firstname": "Both", "lastname": fmt.Sprintf("Person%d", i), "lifecyclestage": "lead"})
		sfRecs = append(sfRecs, crmsync.Fields{"Email": e, "FirstName": "Both", "LastName": fmt.Sprintf("Person%d", i), "Deal_Stage__c": "prospecting"})
		tm.emails[e] = true
	}
	hs.Seed("contacts", hsRecs...)
	sf.Seed(sfRecs...)
	return tm, teamConfig{Key: key, HSURL: hsSrv.URL, HSToken: hubspottest.DefaultToken, SFURL: sfSrv.URL, SFToken: sf.Token()}
}

// hsByEmail and sfByEmail index live records by email.
func (tm *team) hsByEmail() map[string][]hubspottest.Record {
	out := map[string][]hubspottest.Record{}
	for _, r := range tm.hs.All("contacts") {
		if !r.Archived {
			out[r.Properties["email"]] = append(out[r.Properties["email"]], r)
		}
	}
	return out
}

func (tm *team) sfByEmail() map[string][]crmsync.Record {
	out := map[string][]crmsync.Record{}
	for _, r := range tm.sf.All() {
		if !r.Archived {
			e, _ := r.Fields["Email"].(string)
			out[e] = append(out[e], r)
		}
	}
	return out
}

// edit plays users: in round r each contact gets one edit on one side, and
// one new contact appears on each side.
func (tm *team) edit(t *testing.T, r int) {
	t.Helper()
	hsBy, sfBy := tm.hsByEmail(), tm.sfByEmail()
	emails := make([]string, 0, len(tm.emails))
	for e := range tm.emails {
		emails = append(emails, e)
	}
	sort.Strings(emails)
	set := func(e, prop, v string) {
		if tm.want[e] == nil {
			tm.want[e] = map[string]string{}
		}
		tm.want[e][prop] = v
	}
	for j, e := range emails {
		hsr, sfr := hsBy[e], sfBy[e]
		var err error
		switch (j + r) % 4 {
		case 0: // a HubSpot user fixes a first name
			if len(hsr) == 1 {
				v := fmt.Sprintf("Hsfirst%d-%s", r, tm.key)
				err = tm.hs.Edit("contacts", hsr[0].ID, map[string]string{"firstname": v})
				set(e, "firstname", v)
			}
		case 1: // a Salesforce user fixes a last name
			if len(sfr) == 1 {
				v := fmt.Sprintf("Sflast%d-%s", r, tm.key)
				err = tm.sf.Edit(sfr[0].ID, crmsync.Fields{"LastName": v})
				set(e, "lastname", v)
			}
		case 2: // marketing moves the stage in HubSpot, which owns it
			if len(hsr) == 1 {
				v := stages[(j+r+tm.n)%len(stages)]
				err = tm.hs.Edit("contacts", hsr[0].ID, map[string]string{"lifecyclestage": v})
				set(e, "lifecyclestage", v)
			}
		case 3: // sales moves the deal in Salesforce, which owns it
			if len(sfr) == 1 {
				v := dealStages[(j+r+tm.n)%len(dealStages)]
				err = tm.sf.Edit(sfr[0].ID, crmsync.Fields{"Deal_Stage__c": v})
				set(e, "sf_deal_stage", v)
			}
		}
		require.NoError(t, err, "team %s: edit", tm.key)
	}
	he := fmt.Sprintf("new%d.%s@hs.example.com", r, tm.key)
	se := fmt.Sprintf("new%d.%s@sf.example.com", r, tm.key)
	tm.hs.Seed("contacts", map[string]string{"email": he, "firstname": "New", "lastname": fmt.Sprintf("Hs%d", r), "lifecyclestage": "subscriber"})
	tm.sf.Seed(crmsync.Fields{"Email": se, "FirstName": "New", "LastName": fmt.Sprintf("Sf%d", r), "Deal_Stage__c": "prospecting"})
	tm.emails[he], tm.emails[se] = true, true
}

// check reports how the team's two sides disagree.
func (tm *team) check() []string {
	var probs []string
	hsBy, sfBy := tm.hsByEmail(), tm.sfByEmail()
	hsByID := map[string]hubspottest.Record{}
	for _, rs := range hsBy {
		for _, r := range rs {
			hsByID[r.ID] = r
		}
	}
	if len(hsBy) != len(tm.emails) || len(sfBy) != len(tm.emails) {
		probs = append(probs, fmt.Sprintf("%d emails in HubSpot and %d in Salesforce, want %d", len(hsBy), len(sfBy), len(tm.emails)))
	}
	sfLinks, hsLinks := map[string]string{}, map[string]string{}
	for e := range tm.emails {
		hsr, sfr := hsBy[e], sfBy[e]
		if len(hsr) != 1 || len(sfr) != 1 {
			probs = append(probs, fmt.Sprintf("%d HubSpot and %d Salesforce contacts for one email, want 1 each", len(hsr), len(sfr)))
			continue
		}
		h, s := hsr[0], sfr[0]
		link, _ := s.Fields[salesforceLinkField].(string)
		if link != h.ID || h.Properties[hubspotLinkField] != s.ID {
			probs = append(probs, fmt.Sprintf("HubSpot %s and Salesforce %s are not linked to each other", h.ID, s.ID))
		}
		if prev, dup := sfLinks[link]; dup {
			probs = append(probs, fmt.Sprintf("Salesforce %s and %s both hold HubSpot id %s", prev, s.ID, link))
		}
		sfLinks[link] = s.ID
		if prev, dup := hsLinks[h.Properties[hubspotLinkField]]; dup {
			probs = append(probs, fmt.Sprintf("HubSpot %s and %s both hold Salesforce id %s", prev, h.ID, s.ID))
		}
		hsLinks[h.Properties[hubspotLinkField]] = h.ID
		for _, p := range []string{"firstname", "lastname"} {
			if sv, _ := s.Fields[sfField[p]].(string); h.Properties[p] != sv {
				probs = append(probs, fmt.Sprintf("%s differs: HubSpot %s, Salesforce %s", p, h.ID, s.ID))
			}
		}
		for p, v := range tm.want[e] {
			sv, _ := s.Fields[sfField[p]].(string)
			if h.Properties[p] != v || sv != v {
				probs = append(probs, fmt.Sprintf("edit of %s lost: HubSpot %s, Salesforce %s", p, h.ID, s.ID))
			}
		}
	}
	// Archived or not, no two records on a side hold the same link.
	seen := map[string]bool{}
	for _, r := range tm.sf.All() {
		if v, _ := r.Fields[salesforceLinkField].(string); v != "" {
			if seen[v] {
				probs = append(probs, fmt.Sprintf("two Salesforce contacts hold HubSpot id %s", v))
			}
			seen[v] = true
		}
	}
	return probs
}

// proc is a worker process.
type proc struct {
	id   string
	cmd  *exec.Cmd
	logf string
	done chan error
}

func startWorker(t *testing.T, dir, id string, c helperConfig) *proc {
	t.Helper()
	c.ID = id
	raw, _ := json.Marshal(c)
	cfgPath := filepath.Join(dir, id+".json")
	require.NoError(t, os.WriteFile(cfgPath, raw, 0o600))
	logf := filepath.Join(dir, id+".log")
	out, err := os.Create(logf)
	require.NoError(t, err)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"="+cfgPath)
	cmd.Stdout, cmd.Stderr = out, out
	require.NoError(t, cmd.Start())
	p := &proc{id: id, cmd: cmd, logf: logf, done: make(chan error, 1)}
	go func() { p.done <- cmd.Wait(); out.Close() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			b, _ := os.ReadFile(logf)
			if len(b) > 6000 {
				b = b[len(b)-6000:]
			}
			t.Logf("log of worker %s (tail):\n%s", id, b)
		}
	})
	return p
}

// TestWorkers: three worker processes share twelve team keys through one
// PostgreSQL store and one Redis limit per team's HubSpot account; the
// parent edits both sides between scheduled ticks and kills one worker with
// SIGKILL mid-run. No key runs twice at once, the fakes never see their rate
// limits exceeded, the killed worker's runs are resumed by the others after
// the lease TTL, and every team's two sides end up the same.
func TestWorkers(t *testing.T) {
	dsn, addr := testEnv(t)
	ctx := context.Background()
	start := time.Now()
	dir := t.TempDir()
	schema := "crmsync_workers_" + randomHex(4)
	st, err := postgres.Open(ctx, postgres.Config{DSN: dsn, Schema: schema, MaxConns: 4})
	require.NoError(t, err)
	t.Cleanup(func() {
		if _, err := st.Pool().Exec(context.Background(), `DROP SCHEMA IF EXISTS `+schema+` CASCADE`); err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
		}
		st.Close()
	})

	teams := map[string]*team{}
	var keys []string
	cfg := helperConfig{
		DSN: dsn, Schema: schema, RedisAddr: addr, RedisPrefix: "crmsync:test:workers:" + randomHex(6),
		Events:   filepath.Join(dir, "events.log"),
		Interval: interval, Tick: 100 * time.Millisecond, LeaseTTL: leaseTTL, Heartbeat: 300 * time.Millisecond, Concurrency: 3, PageSize: 10,
		Rate: hsRate, Burst: hsBurst, Every: hsEvery, SearchRate: searchRate, SearchBurst: searchBurst, SearchEvery: searchWindow,
	}
	for i := range nTeams {
		tm, tc := newTeam(t, i)
		teams[tm.key] = tm
		keys = append(keys, tm.key)
		cfg.Teams = append(cfg.Teams, tc)
	}
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	t.Cleanup(func() {
		// The limiters' keys expire by themselves; remove them now anyway.
		bg := context.Background()
		it := rdb.Scan(bg, 0, "{"+cfg.RedisPrefix+":*", 100).Iterator()
		for it.Next(bg) {
			rdb.Del(bg, it.Val())
		}
		rdb.Close()
	})
	events, err := openEventLog(cfg.Events)
	require.NoError(t, err)

	procs := make([]*proc, nWorkers)
	for i := range procs {
		procs[i] = startWorker(t, dir, fmt.Sprintf("w%d", i), cfg)
	}

	// poll calls cond until it is true, failing after limit.
	poll := func(what string, limit time.Duration, cond func() (bool, error)) {
		t.Helper()
		deadline := time.Now().Add(limit)
		for {
			ok, err := cond()
			require.NoError(t, err, "%s", what)
			if ok {
				return
			}
			for _, p := range procs {
				select {
				case err := <-p.done:
					p.done <- err
					require.Equal(t, "w0", p.id, "%s: worker %s exited: %v", what, p.id, err)
				default:
				}
			}
			require.False(t, time.Now().After(deadline), "%s: not done after %s", what, limit)
			time.Sleep(20 * time.Millisecond)
		}
	}

	// 1. Kill w0 with SIGKILL while it holds a lease on a run that has
	// completed at least one step.
	var killedAt time.Time
	poll("worker w0 holds a lease mid-run", 30*time.Second, func() (bool, error) {
		for _, k := range keys {
			l, err := st.GetLease(ctx, k)
			if errors.Is(err, crmsync.ErrNotFound) {
				continue
			}
			if err != nil {
				return false, err
			}
			if holderID(l.Holder) != "w0" || l.Run == "" || !l.Expires.After(time.Now()) {
				continue
			}
			steps, err := st.LoadSteps(ctx, l.Run)
			if err != nil {
				return false, err
			}
			if len(steps) > 0 {
				return true, procs[0].cmd.Process.Signal(syscall.SIGKILL)
			}
		}
		return false, nil
	})
	<-procs[0].done
	procs[0].done <- errors.New("killed")
	killedAt = time.Now()
	require.NoError(t, events.add(event{Ev: "kill", Holder: "w0", Killed: procs[0].cmd.Process.Pid}))
	// The runs w0 left open under its lease.
	type victim struct {
		lease crmsync.Lease
		steps int // steps the run had completed when w0 died
	}
	var victims []victim
	for _, k := range keys {
		l, err := st.GetLease(ctx, k)
		if err != nil {
			continue
		}
		if holderID(l.Holder) == "w0" && l.Run != "" {
			steps, err := st.LoadSteps(ctx, l.Run)
			require.NoError(t, err)
			victims = append(victims, victim{lease: l, steps: len(steps)})
		}
	}
	require.NotEqual(t, 0, len(victims), "w0 was killed holding a lease, but no lease of w0 is left: the store lost it")
	t.Logf("killed w0 at %s holding %d key(s)", killedAt.Sub(start).Round(time.Millisecond), len(victims))

	// 2. Another worker resumes each of them once the lease expired.
	for _, v := range victims {
		poll("resume of "+v.lease.Key, 30*time.Second, func() (bool, error) {
			info, err := st.GetRun(ctx, v.lease.Run)
			return err == nil && info.Status == crmsync.RunFinished, err
		})
		info, _ := st.GetRun(ctx, v.lease.Run)
		var rep crmsync.Report
		_ = json.Unmarshal(info.Report, &rep)
		assert.GreaterOrEqual(t, info.Attempts, 2, "key %s: run %s finished with %d attempt(s) and %d replayed step(s); want it resumed with its %d completed steps replayed", v.lease.Key, info.ID, info.Attempts, rep.Counters.Replays, v.steps)
		assert.GreaterOrEqual(t, rep.Counters.Replays, v.steps, "key %s: run %s finished with %d attempt(s) and %d replayed step(s); want it resumed with its %d completed steps replayed", v.lease.Key, info.ID, info.Attempts, rep.Counters.Replays, v.steps)
	}

	// 3. Scheduled ticks with user edits between them: each round waits
	// until every key has finished a run that started after the edits.
	hasRunAfter := func(since time.Time) func() (bool, error) {
		return func() (bool, error) {
			for _, k := range keys {
				runs, err := st.ListRuns(ctx, k, 30)
				if err != nil {
					return false, err
				}
				if !slices.ContainsFunc(runs, func(r crmsync.RunInfo) bool {
					return r.Status == crmsync.RunFinished && !worker.IsSkip(r) && r.StartedAt.After(since)
				}) {
					return false, nil
				}
			}
			return true, nil
		}
	}
	since := killedAt
	const rounds = 3
	for r := 1; r <= rounds; r++ {
		poll(fmt.Sprintf("a pass of every key before edit round %d", r), 30*time.Second, hasRunAfter(since))
		for _, k := range keys {
			teams[k].edit(t, r)
		}
		time.Sleep(5 * time.Millisecond) // the edits land before the next passes' windows
		since = time.Now()
	}
	// A pass after the last edits, then a quiet pass that writes nothing.
	poll("a pass of every key after the last edits", 30*time.Second, hasRunAfter(since))
	since = time.Now()
	poll("a quiet pass of every key", 30*time.Second, hasRunAfter(since))

	// 4. Stop the survivors cleanly.
	for _, p := range procs[1:] {
		require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	}
	for _, p := range procs[1:] {
		select {
		case err := <-p.done:
			p.done <- err
			assert.NoError(t, err, "worker %s exited with %v after SIGTERM, want 0", p.id, err)
		case <-time.After(20 * time.Second):
			t.Fatalf("worker %s did not stop after SIGTERM", p.id)
		}
	}

	// The quiet pass of every key (its first finished run that started
	// after the passes that followed the last edits) wrote nothing: the
	// sides had converged.
	for _, k := range keys {
		runs, err := st.ListRuns(ctx, k, 30)
		require.NoError(t, err)
		var quiet *crmsync.RunInfo
		for i := range runs { // newest first
			r := &runs[i]
			if r.Status == crmsync.RunFinished && !worker.IsSkip(*r) && r.StartedAt.After(since) {
				quiet = r
			}
		}
		if quiet == nil {
			t.Errorf("key %s: no quiet pass", k)
			continue
		}
		rep, err := crmsync.DecodeSyncReport(*quiet)
		if err != nil {
			t.Errorf("key %s: %v", k, err)
		} else if rep.Writes() != 0 || rep.DeadLetters() != 0 {
			t.Errorf("key %s: the quiet pass wrote %d record(s) and parked %d: %s", k, rep.Writes(), rep.DeadLetters(), rep.Summary())
		}
	}

	// No key ran twice in one interval: each finished run started at least
	// Interval after the one before it finished. Claims found not due
	// under the lease are counted.
	skips := 0
	for _, k := range keys {
		runs, err := st.ListRuns(ctx, k, 100)
		require.NoError(t, err)
		var prev *crmsync.RunInfo
		for i := len(runs) - 1; i >= 0; i-- { // oldest first
			r := &runs[i]
			if worker.IsSkip(*r) {
				skips++
				continue
			}
			if r.Status != crmsync.RunFinished {
				continue
			}
			if prev != nil && r.StartedAt.Before(prev.FinishedAt.Add(interval)) {
				t.Errorf("key %s: run %s started %s after run %s finished, within the interval of %s",
					k, r.ID, r.StartedAt.Sub(prev.FinishedAt), prev.ID, interval)
			}
			prev = r
		}
	}
	t.Logf("claims skipped under the lease as no longer due: %d", skips)

	// 5. No key ever ran twice at once: in the event log's order, a key's
	// run starts only after the previous one ended (or its process was
	// killed), with a newer lease generation.
	victimLeases := map[string]crmsync.Lease{}
	for _, v := range victims {
		victimLeases[v.lease.Key] = v.lease
	}
	checkEvents(t, cfg.Events, procs[0].cmd.Process.Pid, victimLeases)

	// 6. The fakes never saw their limits exceeded, and the two sides agree.
	for _, k := range keys {
		tm := teams[k]
		n := tm.hs.RateLimited()
		assert.Equal(t, 0, n, "team %s: the HubSpot fake refused %d call(s) for rate: the workers did not share its limit", k, n)
		n = tm.sf.RefusedInFlight()
		assert.Equal(t, 0, n, "team %s: the Salesforce fake refused %d call(s) over its in-flight cap", k, n)
		for _, p := range tm.check() {
			t.Errorf("team %s: %s", k, p)
		}
	}
	t.Logf("HubSpot calls of %s: %v", keys[0], teams[keys[0]].hs.CallCounts())
	t.Logf("TestWorkers took %s", time.Since(start).Round(time.Millisecond))
}

// checkEvents reads the shared event log and checks that runs of one key
// never overlapped, that lease generations only grew, and that each run the
// killed worker left was resumed only after its lease expired.
func checkEvents(t *testing.T, path string, killedPID int, victims map[string]crmsync.Lease) {
	t.Helper()
	raw, err := os.ReadFile(path)
	require.NoError(t, err)
	open := map[string]event{}
	lastGen := map[string]int64{}
	starts := map[string]int{}
	resumedAt := map[crmsync.RunID]int64{}
	sc := bufio.NewScanner(bytes.NewReader(raw))
	for sc.Scan() {
		var e event
		require.NoError(t, json.Unmarshal(sc.Bytes(), &e), "event log line %q", sc.Text())
		switch e.Ev {
		case "start":
			prev, ok := open[e.Key]
			assert.False(t, ok, "key %s: run %s (gen %d, %s) started while run %s (gen %d, %s) had not ended", e.Key, e.Run, e.Gen, e.Holder, prev.Run, prev.Gen, prev.Holder)
			assert.Greater(t, e.Gen, lastGen[e.Key], "key %s: lease generation %d after %d: fencing violated", e.Key, e.Gen, lastGen[e.Key])
			lastGen[e.Key] = e.Gen
			open[e.Key] = e
			starts[e.Key]++
			if l, ok := victims[e.Key]; ok && e.Run == l.Run && e.PID != killedPID {
				if _, seen := resumedAt[e.Run]; !seen {
					resumedAt[e.Run] = e.T
				}
			}
		case "end":
			prev, ok := open[e.Key]
			assert.True(t, ok, "key %s: end of run %s (gen %d) that was not the running one", e.Key, e.Run, e.Gen)
			assert.Equal(t, e.Run, prev.Run, "key %s: end of run %s (gen %d) that was not the running one", e.Key, e.Run, e.Gen)
			assert.Equal(t, e.Gen, prev.Gen, "key %s: end of run %s (gen %d) that was not the running one", e.Key, e.Run, e.Gen)
			assert.Equal(t, e.PID, prev.PID, "key %s: end of run %s (gen %d) that was not the running one", e.Key, e.Run, e.Gen)
			delete(open, e.Key)
		case "kill":
			for k, o := range open {
				if o.PID == e.Killed {
					delete(open, k)
				}
			}
		}
	}
	require.NoError(t, sc.Err())
	var summary []string
	for k, n := range starts {
		summary = append(summary, fmt.Sprintf("%s:%d", k, n))
	}
	sort.Strings(summary)
	t.Logf("runs started per key: %s", strings.Join(summary, " "))
	for k, l := range victims {
		at, ok := resumedAt[l.Run]
		if !ok {
			t.Errorf("key %s: no other worker resumed run %s", k, l.Run)
			continue
		}
		assert.False(t, time.Unix(0, at).Before(l.Expires.Add(-time.Millisecond)), "key %s: run %s resumed %s before the killed worker's lease expired", k, l.Run, l.Expires.Sub(time.Unix(0, at)))
	}
}
