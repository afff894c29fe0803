package pubsub_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/store/sqlite"
)

// A subscriber that keeps its replay id in a SQLite store, closed and opened
// again as a restarted process would, resumes after the last event it handled.
func TestRestartResumesFromASQLiteStore(t *testing.T) {
	t.Parallel()
	b := setup(t)
	path := filepath.Join(t.TempDir(), "crmsync.db")
	open := func() *sqlite.Store {
		st, err := sqlite.Open(context.Background(), sqlite.Config{Path: path})
		require.NoError(t, err)
		return st
	}
	cfg := b.config()
	cfg.BatchSize = 1
	cfg.Stream = "cdc-contacts"

	st := open()
	cfg.Positions = st
	stop := b.run(t, cfg)
	waitPosition := func(st *sqlite.Store, not []byte) []byte {
		var pos []byte
		require.Eventually(t, func() bool {
			p, err := st.GetPosition(context.Background(), cfg.Stream)
			if err != nil {
				return false
			}
			pos = p
			return string(p) != string(not)
		}, 10*time.Second, 5*time.Millisecond, "the subscription never stored a replay id")
		return pos
	}
	waitPosition(st, nil)
	first := b.srv.SeedContacts(1)
	assert.Equal(t, trigger{objects: []string{"Contact"}}, b.next(t))
	require.ErrorIs(t, stop(), context.Canceled)
	ids := b.replayIDs(t, 1)
	require.Eventually(t, func() bool {
		p, err := st.GetPosition(context.Background(), cfg.Stream)
		return err == nil && string(p) == string(ids[first[0]])
	}, 10*time.Second, 5*time.Millisecond, "the handled event's replay id is stored")
	require.NoError(t, st.Close())

	later := b.srv.SeedContacts(1) // written while the process was down
	st = open()
	t.Cleanup(func() { _ = st.Close() })
	got, err := st.GetPosition(context.Background(), cfg.Stream)
	require.NoError(t, err)
	assert.Equal(t, ids[first[0]], got, "the position outlived the process")
	cfg.Positions = st
	b.run(t, cfg)
	assert.Equal(t, trigger{objects: []string{"Contact"}}, b.next(t), "the event written while down arrives after the restart")
	ids = b.replayIDs(t, 2)
	require.Eventually(t, func() bool {
		p, err := st.GetPosition(context.Background(), cfg.Stream)
		return err == nil && string(p) == string(ids[later[0]])
	}, 10*time.Second, 5*time.Millisecond)
	_, err = st.GetPosition(context.Background(), "another stream")
	assert.ErrorIs(t, err, crmsync.ErrNotFound)
}
