package console

import (
	"bytes"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"net/url"
	"path"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/crmsync/crmsync"
)

//go:embed templates/*.html
var templateFS embed.FS

type pages struct {
	t map[string]*template.Template
}

var funcs = template.FuncMap{
	"when": func(t time.Time) string {
		if t.IsZero() {
			return "—"
		}
		return t.UTC().Format("2006-01-02 15:04:05Z")
	},
	"dur": func(d time.Duration) string {
		if d < 0 {
			return "—"
		}
		return d.Round(time.Millisecond).String()
	},
	"value": func(v any) string {
		if v == nil {
			return "(empty)"
		}
		b, err := json.Marshal(v)
		if err != nil {
			return "?"
		}
		return string(b)
	},
	"pretty": func(raw json.RawMessage) string {
		var buf bytes.Buffer
		if len(raw) == 0 {
			return ""
		}
		if json.Indent(&buf, raw, "", "  ") != nil {
			return string(raw)
		}
		return buf.String()
	},
	"pct": func(used, limit int64) string {
		if limit <= 0 {
			return "0"
		}
		return strconv.FormatFloat(min(100, float64(used)*100/float64(limit)), 'f', 1, 64)
	},
	"sub": func(a, b int64) int64 { return a - b },
}

func loadPages() (*pages, error) {
	p := &pages{t: map[string]*template.Template{}}
	names, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		return nil, err
	}
	for _, n := range names {
		base := strings.TrimSuffix(path.Base(n), ".html")
		if base == "layout" {
			continue
		}
		t, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html", n)
		if err != nil {
			return nil, fmt.Errorf("console: template %s: %w", base, err)
		}
		p.t[base] = t
	}
	return p, nil
}

// render writes page name with data; sess, if set, adds the user and the
// CSRF token for the page's forms.
func (s *Server) render(w http.ResponseWriter, r *http.Request, name string, sess *session, data map[string]any, code ...int) {
	if data == nil {
		data = map[string]any{}
	}
	data["Page"] = name
	if sess != nil {
		data["User"] = sess.user
		data["CSRF"] = sess.csrf
	}
	var buf bytes.Buffer
	if err := s.pages.t[name].Execute(&buf, data); err != nil {
		s.log.Error("console: render", "page", name, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	if len(code) > 0 {
		w.WriteHeader(code[0])
	}
	_, _ = w.Write(buf.Bytes())
}

func mustJSON(v any) json.RawMessage {
	b, _ := json.Marshal(v)
	return b
}

// storeFail reports a Store error without its text (which may name a DSN).
func (s *Server) storeFail(w http.ResponseWriter, r *http.Request, what string, err error) {
	if errors.Is(err, crmsync.ErrNotFound) {
		s.fail(w, r, http.StatusNotFound, what+" not found")
		return
	}
	s.log.Error("console: store", "what", what, "err", err)
	s.fail(w, r, http.StatusInternalServerError, "the store did not answer ("+what+")")
}

// keyView is one key on the overview.
type keyView struct {
	Key        string
	Health     string // ok, attention, failing
	Why        string
	Runs       []runView
	Cursors    []cursorView
	Lease      string
	NextRun    string
	Held       int
	Chosen     int
	DeadLetter int
}

type runView struct {
	crmsync.RunInfo
	Duration time.Duration
	Counters crmsync.Counters
	Writes   int
	Held     int
	Digest   bool
}

type cursorView struct {
	Name, Value string
	Lag         time.Duration
}

func viewRun(ri crmsync.RunInfo) runView {
	v := runView{RunInfo: ri, Duration: -1}
	if !ri.FinishedAt.IsZero() {
		v.Duration = ri.FinishedAt.Sub(ri.StartedAt)
	}
	var rep struct {
		Counters crmsync.Counters `json:"counters"`
		Result   struct {
			Directions map[string]struct {
				Created int `json:"created"`
				Updated int `json:"updated"`
			} `json:"directions"`
			Held int `json:"held"`
		} `json:"result"`
	}
	if json.Unmarshal(ri.Report, &rep) == nil {
		v.Counters = rep.Counters
		for _, d := range rep.Result.Directions {
			v.Writes += d.Created + d.Updated
		}
		v.Held = rep.Result.Held
	}
	v.Digest = ri.Workflow == crmsync.DigestWorkflow
	return v
}

// keys lists the keys with runs, sorted.
func (s *Server) keys(r *http.Request) ([]string, error) {
	runs, err := s.st.ListRuns(r.Context(), "", 10000)
	if err != nil {
		return nil, err
	}
	var keys []string
	for _, ri := range runs {
		if !slices.Contains(keys, ri.Key) {
			keys = append(keys, ri.Key)
		}
	}
	sort.Strings(keys)
	return keys, nil
}

func (s *Server) overview(w http.ResponseWriter, r *http.Request, sess *session) {
	keys, err := s.keys(r)
	if err != nil {
		s.storeFail(w, r, "runs", err)
		return
	}
	var views []keyView
	healthy := true
	for _, k := range keys {
		kv, err := s.keyView(r, k)
		if err != nil {
			s.storeFail(w, r, "key "+k, err)
			return
		}
		if kv.Health != "ok" {
			healthy = false
		}
		views = append(views, kv)
	}
	s.render(w, r, "overview", sess, map[string]any{"Keys": views, "Healthy": healthy})
}

func (s *Server) keyView(r *http.Request, key string) (keyView, error) {
	ctx, now := r.Context(), s.cfg.Now()
	kv := keyView{Key: key, Health: "ok"}
	runs, err := s.st.ListRuns(ctx, key, 5)
	if err != nil {
		return kv, err
	}
	for _, ri := range runs {
		kv.Runs = append(kv.Runs, viewRun(ri))
	}
	cur, err := s.st.ListCursors(ctx, key)
	if err != nil {
		return kv, err
	}
	for name, v := range cur {
		cv := cursorView{Name: name, Value: v, Lag: -1}
		if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
			cv.Lag = now.Sub(t)
		} else if len(v) > 80 {
			cv.Value = fmt.Sprintf("%s… (%d bytes)", v[:40], len(v)) // a workflow's state, not a time
		}
		kv.Cursors = append(kv.Cursors, cv)
	}
	sort.Slice(kv.Cursors, func(i, j int) bool { return kv.Cursors[i].Name < kv.Cursors[j].Name })
	l, err := s.st.GetLease(ctx, key)
	live := false
	switch {
	case errors.Is(err, crmsync.ErrNotFound), err == nil && (l.Holder == "" || l.Run == ""):
		kv.Lease = "free"
	case err != nil:
		return kv, err
	case l.Expires.After(now):
		live = true
		kv.Lease = fmt.Sprintf("held by %s until %s (run %s)", l.Holder, l.Expires.UTC().Format(time.RFC3339), l.Run)
	default:
		kv.Lease = fmt.Sprintf("expired (last holder %s)", l.Holder)
	}
	for _, st := range []crmsync.ConflictState{crmsync.ConflictHeld, crmsync.ConflictChosen} {
		cs, err := s.st.ListConflicts(ctx, crmsync.ConflictFilter{Key: key, State: st})
		if err != nil {
			return kv, err
		}
		if st == crmsync.ConflictHeld {
			kv.Held = len(cs)
		} else {
			kv.Chosen = len(cs)
		}
	}
	for _, st := range []crmsync.DeadLetterStatus{crmsync.DeadParked, crmsync.DeadFailedAgain} {
		ds, err := s.st.ListDeadLetters(ctx, crmsync.DeadLetterQuery{Key: key, Status: st, Limit: 1000})
		if err != nil {
			return kv, err
		}
		kv.DeadLetter += len(ds)
	}
	// Health: the last run, then what waits for a person.
	switch {
	case len(runs) == 0:
	case runs[0].Status == crmsync.RunFailed:
		kv.Health, kv.Why = "failing", "the last run failed: "+firstLine(runs[0].Error)
	case runs[0].Status == crmsync.RunOpen && runs[0].Error != "":
		kv.Health, kv.Why = "failing", "the last run stopped and will resume: "+firstLine(runs[0].Error)
	case kv.Held > 0 || kv.DeadLetter > 0:
		kv.Health, kv.Why = "attention", fmt.Sprintf("%d held conflict(s), %d dead letter(s) wait for a person", kv.Held, kv.DeadLetter)
	}
	switch {
	case live:
		kv.NextRun = "running now"
	case len(runs) > 0 && runs[0].Status == crmsync.RunOpen:
		kv.NextRun = "the next start resumes the open run"
	case s.cfg.Interval > 0 && len(runs) > 0 && !runs[0].FinishedAt.IsZero():
		next := runs[0].FinishedAt.Add(s.cfg.Interval)
		if next.Before(now) {
			kv.NextRun = "due now"
		} else {
			kv.NextRun = next.UTC().Format(time.RFC3339) + " (in " + next.Sub(now).Round(time.Second).String() + ")"
		}
	default:
		kv.NextRun = "on the scheduler's next tick"
	}
	return kv, nil
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	if len(s) > 240 {
		s = s[:240] + "…"
	}
	return s
}

func (s *Server) runPage(w http.ResponseWriter, r *http.Request, sess *session) {
	ri, err := s.st.GetRun(r.Context(), crmsync.RunID(r.PathValue("id")))
	if err != nil {
		s.storeFail(w, r, "run", err)
		return
	}
	s.render(w, r, "run", sess, map[string]any{"Run": viewRun(ri)})
}

// budgetSample is one system's daily API use at the end of one run.
type budgetSample struct {
	System string
	Key    string
	Run    crmsync.RunID
	crmsync.APIBudget
}

func (s *Server) budget(w http.ResponseWriter, r *http.Request, sess *session) {
	runs, err := s.st.ListRuns(r.Context(), "", 500)
	if err != nil {
		s.storeFail(w, r, "runs", err)
		return
	}
	var samples []budgetSample
	latest := map[string]budgetSample{}
	for _, ri := range runs {
		var rep struct {
			Result struct {
				Budget map[string]crmsync.APIBudget `json:"budget"`
			} `json:"result"`
		}
		if json.Unmarshal(ri.Report, &rep) != nil {
			continue
		}
		for sys, b := range rep.Result.Budget {
			if b.At.IsZero() {
				b.At = ri.FinishedAt
			}
			sm := budgetSample{System: sys, Key: ri.Key, Run: ri.ID, APIBudget: b}
			samples = append(samples, sm)
			if cur, ok := latest[sys]; !ok || b.At.After(cur.At) {
				latest[sys] = sm
			}
		}
	}
	sort.Slice(samples, func(i, j int) bool { return samples[i].At.After(samples[j].At) })
	var now []budgetSample
	for _, sm := range latest {
		now = append(now, sm)
	}
	sort.Slice(now, func(i, j int) bool { return now[i].System < now[j].System })
	s.render(w, r, "budget", sess, map[string]any{"Latest": now, "Samples": samples})
}

// errorGroup is the errors of one type, with the records they hit.
type errorGroup struct {
	Type    string
	Source  string
	Count   int
	Records []string
	Letters []int64
	Runs    []crmsync.RunID
}

var (
	quoted   = regexp.MustCompile(`"[^"]*"|'[^']*'`)
	longID   = regexp.MustCompile(`\b[0-9A-Za-z]{15,18}\b`)
	numbers  = regexp.MustCompile(`[0-9]+`)
	runIDs   = regexp.MustCompile(`run_[0-9]+_[0-9a-f]+`)
	emailish = regexp.MustCompile(`\S+@\S+`)
)

// errorType is an error message with what varies from record to record
// (ids, numbers, quoted values, addresses) taken out, so that errors of one
// kind group together.
func errorType(msg string) string {
	msg = firstLine(msg)
	msg = runIDs.ReplaceAllString(msg, "run_…")
	msg = emailish.ReplaceAllString(msg, "…")
	msg = quoted.ReplaceAllString(msg, "…")
	msg = longID.ReplaceAllStringFunc(msg, func(s string) string {
		if strings.ContainsAny(s, "0123456789") {
			return "…"
		}
		return s
	})
	return numbers.ReplaceAllString(msg, "N")
}

func (s *Server) errorsPage(w http.ResponseWriter, r *http.Request, sess *session) {
	ctx := r.Context()
	groups := map[string]*errorGroup{}
	add := func(source, msg string) *errorGroup {
		t := errorType(msg)
		g := groups[source+"\x00"+t]
		if g == nil {
			g = &errorGroup{Type: t, Source: source}
			groups[source+"\x00"+t] = g
		}
		g.Count++
		return g
	}
	// Open letters only: a replayed one was taken by a run that wrote it
	// (or it would be failed-again).
	for _, st := range []crmsync.DeadLetterStatus{crmsync.DeadParked, crmsync.DeadFailedAgain, crmsync.DeadReplay} {
		q := crmsync.DeadLetterQuery{Status: st, Limit: 500}
		for {
			page, err := s.st.ListDeadLetters(ctx, q)
			if err != nil {
				s.storeFail(w, r, "dead letters", err)
				return
			}
			for _, d := range page {
				g := add("dead letter ("+d.System+")", d.Error)
				if d.RecordID != "" && !slices.Contains(g.Records, d.RecordID) {
					g.Records = append(g.Records, d.RecordID)
				}
				g.Letters = append(g.Letters, d.ID)
			}
			if len(page) < q.Limit {
				break
			}
			q.After = page[len(page)-1].ID
		}
	}
	runs, err := s.st.ListRuns(ctx, "", 500)
	if err != nil {
		s.storeFail(w, r, "runs", err)
		return
	}
	for _, ri := range runs {
		if ri.Error != "" {
			g := add("run", ri.Error)
			g.Runs = append(g.Runs, ri.ID)
		}
	}
	var out []*errorGroup
	for _, g := range groups {
		out = append(out, g)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Count != out[j].Count {
			return out[i].Count > out[j].Count
		}
		return out[i].Type < out[j].Type
	})
	s.render(w, r, "errors", sess, map[string]any{"Groups": out})
}

func (s *Server) conflicts(w http.ResponseWriter, r *http.Request, sess *session) {
	var open []crmsync.Conflict
	for _, st := range []crmsync.ConflictState{crmsync.ConflictHeld, crmsync.ConflictChosen} {
		cs, err := s.st.ListConflicts(r.Context(), crmsync.ConflictFilter{State: st})
		if err != nil {
			s.storeFail(w, r, "conflicts", err)
			return
		}
		open = append(open, cs...)
	}
	s.render(w, r, "conflicts", sess, map[string]any{"Conflicts": open})
}

func (s *Server) conflict(w http.ResponseWriter, r *http.Request, sess *session) {
	x, err := s.st.GetConflict(r.Context(), r.PathValue("id"))
	if err != nil {
		s.storeFail(w, r, "conflict", err)
		return
	}
	open := x.State == crmsync.ConflictHeld || x.State == crmsync.ConflictChosen
	s.render(w, r, "conflict", sess, map[string]any{"C": x, "Open": open, "Flash": r.URL.Query().Get("done")})
}

func (s *Server) resolve(w http.ResponseWriter, r *http.Request, sess *session) {
	ctx, id := r.Context(), r.PathValue("id")
	x, err := s.st.GetConflict(ctx, id)
	if err != nil {
		s.storeFail(w, r, "conflict", err)
		return
	}
	if x.State != crmsync.ConflictHeld && x.State != crmsync.ConflictChosen {
		s.fail(w, r, http.StatusConflict, fmt.Sprintf("conflict %s is %s: only held or chosen conflicts can be resolved", id, x.State))
		return
	}
	var res crmsync.Resolution
	switch pick := r.PostForm.Get("pick"); pick {
	case x.SystemA, x.SystemB:
		res = crmsync.Resolution{Pick: pick}
	case crmsync.PickValue:
		v, err := crmsync.Normalize(x.Type, r.PostForm.Get("value"))
		if err != nil {
			// The message names the field and type, never the value.
			s.fail(w, r, http.StatusBadRequest, fmt.Sprintf("the value is not a valid %s for field %s", x.Type, x.Field))
			return
		}
		res = crmsync.Resolution{Pick: crmsync.PickValue, Value: v}
	default:
		s.fail(w, r, http.StatusBadRequest, fmt.Sprintf("pick must be %s, %s or %s", x.SystemA, x.SystemB, crmsync.PickValue))
		return
	}
	if err := s.st.ResolveConflict(ctx, id, res, s.cfg.Now()); err != nil {
		s.storeFail(w, r, "conflict", err)
		return
	}
	if err := s.audit(ctx, sess, x.Key, []string{x.RecordA, x.RecordB},
		map[string]any{"action": "resolve-conflict", "conflict": id, "field": x.Field, "pick": res.Pick}); err != nil {
		s.storeFail(w, r, "audit", err)
		return
	}
	http.Redirect(w, r, "/conflicts/"+url.PathEscape(id)+"?done=chosen", http.StatusSeeOther)
}

func (s *Server) deadLetters(w http.ResponseWriter, r *http.Request, sess *session) {
	var ls []crmsync.DeadLetter
	for _, st := range []crmsync.DeadLetterStatus{crmsync.DeadParked, crmsync.DeadFailedAgain, crmsync.DeadReplay, crmsync.DeadReplayed} {
		page, err := s.st.ListDeadLetters(r.Context(), crmsync.DeadLetterQuery{Status: st, Limit: 500})
		if err != nil {
			s.storeFail(w, r, "dead letters", err)
			return
		}
		ls = append(ls, page...)
	}
	sort.Slice(ls, func(i, j int) bool { return ls[i].ID < ls[j].ID })
	s.render(w, r, "deadletters", sess, map[string]any{"Letters": ls, "Flash": r.URL.Query().Get("done")})
}

func letterID(r *http.Request) (int64, bool) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	return id, err == nil && id > 0
}

func (s *Server) deadLetter(w http.ResponseWriter, r *http.Request, sess *session) {
	id, ok := letterID(r)
	if !ok {
		s.fail(w, r, http.StatusNotFound, "no such dead letter")
		return
	}
	d, err := s.st.GetDeadLetter(r.Context(), id)
	if err != nil {
		s.storeFail(w, r, "dead letter", err)
		return
	}
	s.render(w, r, "deadletter", sess, map[string]any{"D": d, "Actionable": actionable(d.Status)})
}

func actionable(st crmsync.DeadLetterStatus) bool {
	return st == crmsync.DeadParked || st == crmsync.DeadReplayed || st == crmsync.DeadFailedAgain
}

func (s *Server) letterAction(w http.ResponseWriter, r *http.Request, sess *session) {
	id, ok := letterID(r)
	if !ok {
		s.fail(w, r, http.StatusNotFound, "no such dead letter")
		return
	}
	var to crmsync.DeadLetterStatus
	switch r.PathValue("action") {
	case "replay":
		to = crmsync.DeadReplay
	case "discard":
		to = crmsync.DeadDiscarded
	default:
		s.fail(w, r, http.StatusNotFound, "unknown action: want replay or discard")
		return
	}
	ctx := r.Context()
	d, err := s.st.GetDeadLetter(ctx, id)
	if err != nil {
		s.storeFail(w, r, "dead letter", err)
		return
	}
	if !actionable(d.Status) {
		s.fail(w, r, http.StatusConflict, fmt.Sprintf("dead letter %d is %s: only parked, replayed or failed-again letters can be replayed or discarded", id, d.Status))
		return
	}
	if err := s.st.SetDeadLetterStatus(ctx, id, to, s.cfg.Now()); err != nil {
		s.storeFail(w, r, "dead letter", err)
		return
	}
	var recs []string
	if d.RecordID != "" {
		recs = []string{d.RecordID}
	}
	if err := s.audit(ctx, sess, d.Key, recs, map[string]any{"action": r.PathValue("action") + "-dead-letter", "dead_letter": id}); err != nil {
		s.storeFail(w, r, "audit", err)
		return
	}
	http.Redirect(w, r, "/deadletters?done="+r.PathValue("action"), http.StatusSeeOther)
}

func (s *Server) record(w http.ResponseWriter, r *http.Request, sess *session) {
	id := strings.TrimSpace(r.URL.Query().Get("id"))
	data := map[string]any{"ID": id}
	if id != "" {
		after, _ := strconv.ParseInt(r.URL.Query().Get("after"), 10, 64)
		rows, err := s.st.QueryAudit(r.Context(), crmsync.AuditQuery{RecordID: id, After: after, Limit: 200})
		if err != nil {
			s.storeFail(w, r, "audit", err)
			return
		}
		data["Rows"] = rows
		if len(rows) == 200 {
			data["More"] = rows[len(rows)-1].ID
		}
	}
	s.render(w, r, "record", sess, data)
}

func (s *Server) digest(w http.ResponseWriter, r *http.Request, sess *session) {
	runs, err := s.st.ListRuns(r.Context(), "", 1000)
	if err != nil {
		s.storeFail(w, r, "runs", err)
		return
	}
	var digests []map[string]any
	for _, ri := range runs {
		if ri.Workflow != crmsync.DigestWorkflow || len(digests) >= 30 {
			continue
		}
		var rep struct {
			Result crmsync.SchemaDigestReport `json:"result"`
		}
		_ = json.Unmarshal(ri.Report, &rep)
		digests = append(digests, map[string]any{"Run": ri, "D": rep.Result})
	}
	s.render(w, r, "digest", sess, map[string]any{"Digests": digests})
}
