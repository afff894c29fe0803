package playbook

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/salesforce/salesforcetest"
	"github.com/stretchr/testify/require"
)

// stepCrashStore wraps a Store and "crashes" the process at the first
// Commit of a step whose id starts with prefix: it ends the pass's context
// after keeping the checkpoint, or instead of keeping it (drop).
type stepCrashStore struct {
	crmsync.Store

	mu     sync.Mutex
	prefix string
	drop   bool
	cancel context.CancelFunc
	fired  bool
}

// crashRun runs one pass through run with the crash armed, requires that
// it died (why says where) and that the crash fired, and disarms it. It
// returns the dead run.
func (s *stepCrashStore) crashRun(t *testing.T, why string, run func(ctx context.Context) (crmsync.RunInfo, error)) crmsync.RunInfo {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	s.mu.Lock()
	s.cancel = cancel
	s.mu.Unlock()
	info, err := run(ctx)
	cancel()
	require.Error(t, err, why)
	s.mu.Lock()
	defer s.mu.Unlock()
	require.True(t, s.fired, "the crash fired")
	s.cancel = nil
	return info
}

// crashCases are the ways a pass meets a crash at a step: none, the run
// dying after the step's checkpoint, or instead of it; the next pass
// resumes the run.
var crashCases = []struct {
	name        string
	crash, drop bool
}{
	{name: "no crash"},
	{name: "crash after checkpoint", crash: true},
	{name: "crash before checkpoint", crash: true, drop: true},
}

// withCrashStore puts cs between the engine and its store.
func withCrashStore(o harnessOpts, cs *stepCrashStore) harnessOpts {
	o.engine = func(c *crmsync.Config) {
		cs.Store = c.Store
		c.Store = cs
	}
	return o
}

// passOrCrash runs a pass that dies at the step cs is armed for, when
// crash, and a pass (resuming the run, if it died) in any case.
func (h *harness) passOrCrash(cs *stepCrashStore, crash bool) {
	h.t.Helper()
	if crash {
		time.Sleep(3 * time.Millisecond)
		cs.crashRun(h.t, "the pass dies at "+cs.prefix, func(ctx context.Context) (crmsync.RunInfo, error) {
			_, info, err := h.sync.RunOnce(ctx, h.eng, h.key)
			return info, err
		})
	}
	h.pass()
}

func (s *stepCrashStore) Commit(ctx context.Context, l crmsync.Lease, cp crmsync.Checkpoint) error {
	s.mu.Lock()
	crash := s.cancel != nil && !s.fired && strings.HasPrefix(cp.Step.Step, s.prefix)
	if crash {
		s.fired = true
	}
	drop, cancel := s.drop, s.cancel
	s.mu.Unlock()
	if crash && drop {
		cancel()
		return context.Canceled
	}
	err := s.Store.Commit(ctx, l, cp)
	if crash {
		cancel()
	}
	return err
}

// TestReplayRefusedAgainAfterTargetCreated: Salesforce refuses the create
// of a HubSpot contact whole, so its letter names the HubSpot id (there is
// no target yet). A later change creates the counterpart. A person replays
// the letter and Salesforce refuses the replay's update whole: the refused
// write names the Salesforce id, and the letter, updated in place as failed
// again, keeps its first record id. The refusal is still accounted for,
// whether or not the process dies at the replay's write step (after its
// checkpoint or before it) and the run resumes: a ledger row with the
// error, the letter carries the refused write, and a dead-letter audit row
// of the same run and step names the record and the letter.
// (Found by TestModel, seed 10120510013884818669: its check matched a
// refused write to its letter by record id only.)
func TestReplayRefusedAgainAfterTargetCreated(t *testing.T) {
	for _, tc := range []struct {
		name         string
		crash, drop  bool
		refusedCalls int
	}{
		{name: "no crash", refusedCalls: 1},
		{name: "crash after checkpoint", crash: true, refusedCalls: 1},
		{name: "crash before checkpoint", crash: true, drop: true, refusedCalls: 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cs := &stepCrashStore{prefix: "write:replay:", drop: tc.drop}
			o := fast(t)
			o.engine = func(c *crmsync.Config) {
				cs.Store = c.Store
				c.Store = cs
			}
			h := newHarness(t, o)
			ctx := context.Background()
			ids := h.f.hs.Seed("contacts", map[string]string{"email": "ada@example.com", "firstname": "Ada", "lastname": "Lovelace"})
			hsID := ids[0]
			h.f.sf.Inject(salesforcetest.Fault{Endpoint: "upsert", Status: 400, ErrorCode: "JSON_PARSER_ERROR"})
			h.pass()
			letters := lettersFor(t, h, hsID)
			require.Len(t, letters, 1, "the refused create is parked")
			letter := letters[0]
			require.Equal(t, "salesforce", letter.System)
			require.Equal(t, hsID, letter.RecordID, "a refused create's letter names its source record")

			must(t, h.f.hs.Edit("contacts", hsID, map[string]string{"firstname": "Augusta"}))
			h.pass()
			sf := h.sfByEmail()["ada@example.com"]
			require.Len(t, sf, 1, "the later change creates the counterpart")
			sfID := sf[0].ID

			must(t, h.st.SetDeadLetterStatus(ctx, letter.ID, crmsync.DeadReplay, time.Now()))
			must(t, h.f.hs.Edit("contacts", hsID, map[string]string{"firstname": "Ada"}))
			h.f.sf.Inject(salesforcetest.Fault{Endpoint: "update", Status: 400, ErrorCode: "JSON_PARSER_ERROR", Times: tc.refusedCalls})
			var crashed crmsync.RunID
			if tc.crash {
				time.Sleep(3 * time.Millisecond)
				crashed = cs.crashRun(t, "the pass dies at the replay's write step", func(ctx context.Context) (crmsync.RunInfo, error) {
					_, info, err := h.sync.RunOnce(ctx, h.eng, h.key)
					return info, err
				}).ID
			}
			h.pass() // a new pass, or the dead one resumed with its id

			got, err := h.st.GetDeadLetter(ctx, letter.ID)
			require.NoError(t, err)
			require.Equal(t, crmsync.DeadFailedAgain, got.Status, "the replay was refused again")
			require.Equal(t, hsID, got.RecordID, "the letter updated in place keeps its first record id")
			require.Len(t, h.deadLetters(), 1, "no second letter for the same source record")
			var pl struct {
				Op *crmsync.WriteOp `json:"op"`
			}
			require.NoError(t, json.Unmarshal(got.Payload, &pl))
			require.NotNil(t, pl.Op)
			require.Equal(t, sfID, pl.Op.ID, "the letter carries the refused update of the counterpart")

			rows, err := h.st.LookupWrites(ctx, []string{pl.Op.Key})
			require.NoError(t, err)
			row, ok := rows[pl.Op.Key]
			require.True(t, ok, "the refused write has a ledger row")
			require.Equal(t, sfID, row.RecordID)
			require.True(t, strings.HasPrefix(row.Step, "write:replay:"), "refused by the replay, step %s", row.Step)
			if tc.crash {
				require.Equal(t, crashed, row.Run, "the dead run resumed with its id")
			}
			var res struct {
				Error string `json:"error"`
			}
			require.NoError(t, json.Unmarshal(row.Result, &res))
			require.NotEmpty(t, res.Error, "the ledger row records the refusal")

			named := 0
			for _, a := range auditRows(t, h, crmsync.AuditDeadLetter, sfID) {
				var det struct {
					Letter int64 `json:"dead_letter"`
					Again  bool  `json:"replay_failed_again"`
				}
				require.NoError(t, json.Unmarshal(a.Detail, &det))
				if a.Run == row.Run && a.Step == row.Step && det.Again && det.Letter == letter.ID {
					named++
				}
			}
			require.Equal(t, 1, named, "dead-letter audit rows of the refused write naming letter %d", letter.ID)
		})
	}
}
