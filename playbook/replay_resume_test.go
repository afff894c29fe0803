package playbook

import (
	"context"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/crmsync/crmsync"
	"github.com/stretchr/testify/require"
)

// lettersFor returns the key's dead letters whose record is the HubSpot
// contact id (a create parks the source id).
func lettersFor(t *testing.T, h *harness, id string) []crmsync.DeadLetter {
	t.Helper()
	all, err := h.st.ListDeadLetters(context.Background(), crmsync.DeadLetterQuery{Key: h.key, Limit: 1000})
	require.NoError(t, err)
	var out []crmsync.DeadLetter
	for _, d := range all {
		if d.RecordID == id {
			out = append(out, d)
		}
	}
	return out
}

// wroteIn reports whether run wrote to Salesforce for the HubSpot contact id.
func wroteIn(t *testing.T, h *harness, run crmsync.RunID, id string) bool {
	t.Helper()
	rows, err := h.st.QueryAudit(context.Background(), crmsync.AuditQuery{Run: run, Kind: crmsync.AuditWrite, Limit: 1000})
	require.NoError(t, err)
	for _, r := range rows {
		if r.System == "salesforce" && slices.Contains(r.RecordIDs, id) {
			return true
		}
	}
	return false
}

// TestReplayMarkedWhileRunOpen: a letter marked for replay while a run of its
// key is open (the run crashed and is resumed later) is tried by the run
// that claims it: a letter never reads "replayed" unless that run wrote its
// record.
func TestReplayMarkedWhileRunOpen(t *testing.T) {
	blip := &blipTransport{base: http.DefaultTransport, pathPart: "/composite/sobjects/Contact/"}
	o := fast(t)
	o.clients.HTTPClient = &http.Client{Transport: blip}
	h := newHarness(t, o)
	ctx := context.Background()
	ids := h.f.hs.Seed("contacts",
		map[string]string{"email": "ok@example.com", "firstname": "Ok", "lastname": "Fine"},
		map[string]string{"email": "a@example.com", "firstname": "A"}, // Salesforce requires LastName
		map[string]string{"email": "b@example.com", "firstname": "B"})
	h.pass()
	la, lb := lettersFor(t, h, ids[1]), lettersFor(t, h, ids[2])
	require.Len(t, la, 1)
	require.Len(t, lb, 1)

	// A person fixes A and replays its letter; the run crashes right after
	// the replay's write to Salesforce, so it stays open.
	must(t, h.f.hs.Edit("contacts", ids[1], map[string]string{"lastname": "Alpha"}))
	must(t, h.st.SetDeadLetterStatus(ctx, la[0].ID, crmsync.DeadReplay, time.Now()))
	time.Sleep(3 * time.Millisecond)
	crashCtx, crash := context.WithCancel(ctx)
	blip.onWrite = func(*http.Response) { crash() }
	first, err := h.eng.Run(crashCtx, h.key, h.sync)
	require.Error(t, err, "the crashed run reported success")
	blip.onWrite = nil

	// While it is open, the person fixes B (after the open run's window) and
	// replays B's letter too. The run resumes.
	must(t, h.f.hs.Edit("contacts", ids[2], map[string]string{"lastname": "Beta"}))
	must(t, h.st.SetDeadLetterStatus(ctx, lb[0].ID, crmsync.DeadReplay, time.Now()))
	time.Sleep(3 * time.Millisecond)
	resumed, err := h.eng.Run(ctx, h.key, h.sync)
	require.NoError(t, err)
	require.Equal(t, first.ID, resumed.ID, "the crashed run was not resumed")

	check := func(when string) {
		for _, id := range ids[1:] {
			for _, d := range lettersFor(t, h, id) {
				if d.Status == crmsync.DeadReplayed && !wroteIn(t, h, d.ClaimedBy, id) {
					t.Errorf("%s: letter %d reads replayed by run %s, which never wrote its record %s", when, d.ID, d.ClaimedBy, id)
				}
			}
		}
	}
	check("after the resumed run")
	h.pass()
	check("after the next run")
	sf := h.sfByEmail()
	for _, e := range []string{"a@example.com", "b@example.com"} {
		require.Len(t, sf[e], 1, "Salesforce contacts with email %s", e)
	}
	for _, d := range append(lettersFor(t, h, ids[1]), lettersFor(t, h, ids[2])...) {
		require.Equal(t, crmsync.DeadReplayed, d.Status, "letter %d", d.ID)
	}
	h.checkNoDuplicates()
}

// TestReplayFailingAgain: a replayed letter whose write is refused again is
// left failed again, not "replayed", and no second letter is parked for the
// same record; a person can fix the record and replay it once more.
func TestReplayFailingAgain(t *testing.T) {
	h := newHarness(t, fast(t))
	ctx := context.Background()
	ids := h.f.hs.Seed("contacts", map[string]string{"email": "a@example.com", "firstname": "A"}) // no LastName
	h.pass()
	dl := lettersFor(t, h, ids[0])
	require.Len(t, dl, 1)

	must(t, h.st.SetDeadLetterStatus(ctx, dl[0].ID, crmsync.DeadReplay, time.Now()))
	h.pass() // the record is still invalid
	again := lettersFor(t, h, ids[0])
	require.Len(t, again, 1, "a second letter was parked for the same record")
	require.Equal(t, crmsync.DeadFailedAgain, again[0].Status, "the replay failed again; the letter must say so")
	require.Contains(t, again[0].Error, "REQUIRED_FIELD_MISSING")

	// Fixed and replayed once more, it goes through.
	must(t, h.f.hs.Edit("contacts", ids[0], map[string]string{"lastname": "Alpha"}))
	must(t, h.st.SetDeadLetterStatus(ctx, dl[0].ID, crmsync.DeadReplay, time.Now()))
	h.pass()
	final := lettersFor(t, h, ids[0])
	require.Len(t, final, 1)
	require.Equal(t, crmsync.DeadReplayed, final[0].Status)
	require.Len(t, h.sfByEmail()["a@example.com"], 1)
}
