package playbook

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/hubspot"
	"github.com/crmsync/crmsync/hubspot/hubspottest"
	"github.com/crmsync/crmsync/salesforce"
	"github.com/crmsync/crmsync/store/memory"
	"pgregory.net/rapid"
)

// This file holds the machinery of the model-based test (model_test.go): a
// Store that "crashes" the process at a step boundary, a transport that
// loses the responses of writes that went through, and a "process" (both
// clients, the Sync and the Engine) that is rebuilt after each crash on the
// same Store and fakes, as a restarted process would be.

// modelStore wraps a Store. Armed with n, it ends the run's context at its
// nth Commit: after the checkpoint was kept, or instead of keeping it (the
// process died after the step's API calls but before its checkpoint). It
// also keeps every ledger row it committed, for the audit check.
type modelStore struct {
	crmsync.Store

	mu      sync.Mutex
	left    int  // commits until the crash; 0: none armed
	drop    bool // crash instead of committing
	cancel  context.CancelFunc
	crashed bool
	commits int
	ledger  map[string]crmsync.LedgerEntry
}

func newModelStore() *modelStore {
	return &modelStore{Store: memory.New(), ledger: map[string]crmsync.LedgerEntry{}}
}

// arm crashes the process at the nth Commit from now.
func (s *modelStore) arm(n int, drop bool, cancel context.CancelFunc) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.left, s.drop, s.cancel, s.crashed = n, drop, cancel, false
}

// drawCrash draws whether this round's pass crashes (one round in three)
// and, if so, at which of its first maxAt commits and whether the
// checkpoint is lost with it; it arms the crash and describes it for the
// round's log ("" for none).
func (s *modelStore) drawCrash(t *rapid.T, round, maxAt int, cancel context.CancelFunc) string {
	if rapid.IntRange(0, 2).Draw(t, fmt.Sprintf("crash%d", round)) != 0 {
		return ""
	}
	at := rapid.IntRange(1, maxAt).Draw(t, "crash at commit")
	drop := rapid.Bool().Draw(t, "crash before checkpoint")
	s.arm(at, drop, cancel)
	return fmt.Sprintf(" crash at commit %d (checkpoint lost: %v)", at, drop)
}

// disarm drops a crash that did not fire and reports whether one did.
func (s *modelStore) disarm() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	crashed := s.crashed
	s.left, s.cancel, s.crashed = 0, nil, false
	return crashed
}

func (s *modelStore) Commit(ctx context.Context, l crmsync.Lease, cp crmsync.Checkpoint) error {
	s.mu.Lock()
	crash := false
	if s.left > 0 {
		s.left--
		crash = s.left == 0
	}
	drop, cancel := s.drop, s.cancel
	if crash {
		s.crashed = true
	}
	s.mu.Unlock()
	if crash && drop {
		cancel()
		return context.Canceled
	}
	err := s.Store.Commit(ctx, l, cp)
	if err == nil {
		s.mu.Lock()
		s.commits++
		for _, e := range cp.Ledger {
			s.ledger[e.IdemKey] = e
		}
		s.mu.Unlock()
	}
	if crash {
		cancel()
	}
	return err
}

// ledgerRows returns the ledger rows committed so far.
func (s *modelStore) ledgerRows() map[string]crmsync.LedgerEntry {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]crmsync.LedgerEntry, len(s.ledger))
	for k, v := range s.ledger {
		out[k] = v
	}
	return out
}

// lossyTransport loses the response of the next writes that went through:
// the CRM applied the write, the client sees a broken connection. It also
// calls before ahead of every request (the model moves its clock and fires
// users' actions during a pass there) and counts the write calls a CRM
// refused whole (400, 409, 413).
type lossyTransport struct {
	base    http.RoundTripper
	before  func(*http.Request)
	lose    atomic.Int32
	lost    atomic.Int32
	refused atomic.Int32
}

func isWriteRequest(r *http.Request) bool {
	if r.Method == http.MethodGet {
		return false
	}
	p := r.URL.Path
	if strings.Contains(p, "/composite/sobjects") {
		return true
	}
	return strings.Contains(p, "/batch/") && !strings.HasSuffix(p, "/batch/read")
}

func (l *lossyTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if l.before != nil {
		l.before(r)
	}
	resp, err := l.base.RoundTrip(r)
	if err == nil && isWriteRequest(r) && (resp.StatusCode == http.StatusBadRequest || resp.StatusCode == http.StatusConflict || resp.StatusCode == http.StatusRequestEntityTooLarge) {
		l.refused.Add(1)
	}
	if err != nil || !isWriteRequest(r) || resp.StatusCode >= 300 {
		return resp, err
	}
	for {
		n := l.lose.Load()
		if n <= 0 {
			return resp, nil
		}
		if l.lose.CompareAndSwap(n, n-1) {
			break
		}
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	l.lost.Add(1)
	return nil, errors.New("read: connection reset by peer")
}

// process is what a restart rebuilds: clients, Sync and Engine.
type process struct {
	hc   *hubspot.Client
	sc   *salesforce.Client
	sync *crmsync.Sync
	eng  *crmsync.Engine
}

// modelTimeout bounds one HTTP attempt, so that a hung request is a timeout.
const modelTimeout = 400 * time.Millisecond

func noLimits() crmsync.Limiter {
	th, err := crmsync.NewThrottle(crmsync.ThrottleConfig{InFlight: 8})
	if err != nil {
		panic(err)
	}
	return th
}

// startProcess builds a process on the fakes f and the Store st, with the
// clock now for the clients and the sync's windows. Both clients use OAuth
// flows, so expired sessions and tokens are renewed.
func startProcess(f *fakes, st crmsync.Store, tr http.RoundTripper, pageSize int, now func() time.Time) (*process, error) {
	httpc := &http.Client{Transport: tr, Timeout: modelTimeout}
	hc, err := hubspot.New(hubspot.Config{
		OAuth: &hubspot.OAuth{ClientID: hubspottest.DefaultClientID, ClientSecret: hubspottest.DefaultClientSecret,
			RefreshToken: hubspottest.DefaultRefreshToken},
		BaseURL: f.hsURL, HTTPClient: httpc,
		Limiter: noLimits(), SearchLimiter: noLimits(), DailyBudget: -1,
		RetryInitial: 2 * time.Millisecond, RetryMax: 20 * time.Millisecond,
		RateLimitWait: 5 * time.Millisecond, SearchRateLimitWait: 5 * time.Millisecond, Now: now,
	})
	if err != nil {
		return nil, err
	}
	sc, err := salesforce.New(salesforce.Config{
		LoginURL: f.sfURL, HTTPClient: &http.Client{Transport: tr},
		ClientCredentials: &salesforce.ClientCredentialsAuth{ClientID: "fake-client-id", ClientSecret: "fake-client-secret"},
		Limiter:           noLimits(), RetryWait: 2 * time.Millisecond, RequestTimeout: modelTimeout,
		DefaultFields: []string{"Id"}, Now: now,
	})
	if err != nil {
		return nil, err
	}
	pol := contactsPolicy()
	s, err := crmsync.NewSync(crmsync.SyncConfig{A: hc, B: sc, ObjectA: "contacts", ObjectB: "Contact", Policy: &pol,
		LinkFieldA: hubspotLinkField, LinkFieldB: salesforceLinkField, PageSize: pageSize, WriteConcurrency: 2, Now: now})
	if err != nil {
		return nil, err
	}
	eng, err := crmsync.NewEngine(crmsync.Config{Store: st, Logger: slog.New(slog.DiscardHandler),
		Retry: &crmsync.RetryPolicy{MaxAttempts: 4, InitialInterval: time.Millisecond, MaxInterval: 5 * time.Millisecond, Multiplier: 2},
		// Waits for rate limits are short in this test: cap them.
		Sleep: func(ctx context.Context, d time.Duration) error {
			t := time.NewTimer(min(d, 20*time.Millisecond))
			defer t.Stop()
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-t.C:
				return nil
			}
		},
	})
	if err != nil {
		return nil, err
	}
	return &process{hc: hc, sc: sc, sync: s, eng: eng}, nil
}

// ledgerOK reports whether a ledger row records a write that landed.
func ledgerOK(e crmsync.LedgerEntry) bool {
	var o struct {
		Error string `json:"error"`
	}
	_ = json.Unmarshal(e.Result, &o)
	return o.Error == ""
}

// allAudit pages through the audit rows of one kind.
func allAudit(ctx context.Context, st crmsync.Store, key, kind string) ([]crmsync.AuditEntry, error) {
	var out []crmsync.AuditEntry
	var after int64
	for {
		rows, err := st.QueryAudit(ctx, crmsync.AuditQuery{Key: key, Kind: kind, After: after, Limit: 500})
		if err != nil {
			return nil, err
		}
		out = append(out, rows...)
		if len(rows) < 500 {
			return out, nil
		}
		after = rows[len(rows)-1].ID
	}
}

// allDeadLetters pages through the dead letters of key.
func allDeadLetters(ctx context.Context, st crmsync.Store, key string) ([]crmsync.DeadLetter, error) {
	var out []crmsync.DeadLetter
	var after int64
	for {
		rows, err := st.ListDeadLetters(ctx, crmsync.DeadLetterQuery{Key: key, After: after, Limit: 500})
		if err != nil {
			return nil, err
		}
		out = append(out, rows...)
		if len(rows) < 500 {
			return out, nil
		}
		after = rows[len(rows)-1].ID
	}
}
