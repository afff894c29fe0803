package playbook

import (
	"context"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/hubspot"
	"github.com/crmsync/crmsync/hubspot/hubspottest"
	"github.com/crmsync/crmsync/salesforce"
	"github.com/crmsync/crmsync/salesforce/salesforcetest"
	"github.com/crmsync/crmsync/store/sqlite"
	"github.com/stretchr/testify/require"
)

// harness is the reference workflow wired to both fakes and a SQLite store.
type harness struct {
	t    *testing.T
	f    *fakes
	hc   *hubspot.Client
	sc   *salesforce.Client
	st   *sqlite.Store
	sync *crmsync.Sync
	eng  *crmsync.Engine
	key  string
}

type harnessOpts struct {
	hs        []hubspottest.Option
	sf        []func(*salesforcetest.Config)
	clients   clientOptions
	engine    func(*crmsync.Config)
	sync      func(*crmsync.SyncConfig)
	storePath string
}

func newHarness(t *testing.T, o harnessOpts) *harness {
	t.Helper()
	f, closeFn, err := startFakes(o.hs, o.sf)
	require.NoError(t, err)
	t.Cleanup(closeFn)
	h := &harness{t: t, f: f, key: "team-1"}
	h.hc, h.sc, err = f.clients(o.clients)
	require.NoError(t, err)
	path := o.storePath
	if path == "" {
		path = filepath.Join(t.TempDir(), "crmsync.db")
	}
	h.st, err = sqlite.Open(context.Background(), sqlite.Config{Path: path})
	require.NoError(t, err)
	t.Cleanup(func() { h.st.Close() })
	pol := contactsPolicy()
	sc := crmsync.SyncConfig{A: h.hc, B: h.sc, ObjectA: "contacts", ObjectB: "Contact", Policy: &pol,
		LinkFieldA: hubspotLinkField, LinkFieldB: salesforceLinkField}
	if o.sync != nil {
		o.sync(&sc)
	}
	h.sync, err = crmsync.NewSync(sc)
	require.NoError(t, err)
	ec := crmsync.Config{Store: h.st, Logger: slog.New(slog.DiscardHandler)}
	if o.engine != nil {
		o.engine(&ec)
	}
	h.eng, err = crmsync.NewEngine(ec)
	require.NoError(t, err)
	return h
}

// pass runs one sync pass and fails the test on error.
func (h *harness) pass() *crmsync.SyncReport {
	h.t.Helper()
	time.Sleep(3 * time.Millisecond) // edits before this land inside the pass's window
	rep, _, err := h.sync.RunOnce(context.Background(), h.eng, h.key)
	require.NoError(h.t, err, "pass")
	time.Sleep(3 * time.Millisecond) // edits after this land after the pass's window
	return rep
}

// hsByEmail and sfByEmail index the fakes' live records by email.
func (h *harness) hsByEmail() map[string]hubspottest.Record {
	out := map[string]hubspottest.Record{}
	for _, r := range h.f.hs.All("contacts") {
		if !r.Archived {
			out[r.Properties["email"]] = r
		}
	}
	return out
}

func (h *harness) sfByEmail() map[string][]crmsync.Record {
	out := map[string][]crmsync.Record{}
	for _, r := range h.f.sf.All() {
		if !r.Archived {
			e, _ := r.Fields["Email"].(string)
			out[e] = append(out[e], r)
		}
	}
	return out
}

// checkNoDuplicates fails if a HubSpot id is held by two Salesforce contacts
// or an email appears twice on Salesforce.
func (h *harness) checkNoDuplicates() {
	h.t.Helper()
	seen := map[string]string{}
	for _, r := range h.f.sf.All() {
		if v, _ := r.Fields[salesforceLinkField].(string); v != "" {
			if other, dup := seen[v]; dup {
				h.t.Errorf("HubSpot contact %s has two Salesforce contacts: %s and %s", v, other, r.ID)
			}
			seen[v] = r.ID
		}
	}
	for e, rs := range h.sfByEmail() {
		if e != "" && len(rs) > 1 {
			h.t.Errorf("email of Salesforce contact %s appears %d times", rs[0].ID, len(rs))
		}
	}
}

func sumCalls(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}
