package storetest

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/crmsync/crmsync"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// exerciseTriggers checks crmsync.TriggerStore, for a Store that has it:
// triggers merge per key and system, and a clear keeps what came after
// the read it was based on.
func exerciseTriggers(t *testing.T, newStore func(t *testing.T) crmsync.Store) {
	ctx := context.Background()
	open := func(t *testing.T) crmsync.TriggerStore {
		s, ok := newStore(t).(crmsync.TriggerStore)
		if !ok {
			t.Skip("the store has no TriggerStore")
		}
		return s
	}
	add := func(t *testing.T, s crmsync.TriggerStore, tr crmsync.PendingTrigger) {
		t.Helper()
		require.NoError(t, s.AddTrigger(ctx, tr), "AddTrigger(%s, %s)", tr.Key, tr.System)
	}
	pending := func(t *testing.T, s crmsync.TriggerStore, key string) []crmsync.PendingTrigger {
		t.Helper()
		got, err := s.PendingTriggers(ctx, key, 0)
		require.NoError(t, err, "PendingTriggers(%q)", key)
		return got
	}

	t.Run("Merge", func(t *testing.T) {
		s := open(t)
		assert.Empty(t, pending(t, s, "k"))
		add(t, s, crmsync.PendingTrigger{Key: "k", System: "hubspot", Reason: "contact.creation", Count: 3, First: t0, Last: t0})
		add(t, s, crmsync.PendingTrigger{Key: "k", System: "hubspot", Full: true, Reason: "gap", First: t0.Add(time.Second), Last: t0.Add(time.Second)})
		add(t, s, crmsync.PendingTrigger{Key: "k", System: "hubspot", Reason: "contact.propertyChange", First: t0.Add(2 * time.Second), Last: t0.Add(2 * time.Second)})
		got := pending(t, s, "k")
		require.Len(t, got, 1)
		p := got[0]
		assert.Equal(t, "k", p.Key)
		assert.Equal(t, "hubspot", p.System)
		assert.True(t, p.Full, "Full stays set once one trigger asked for it")
		assert.Equal(t, "contact.propertyChange", p.Reason)
		assert.Equal(t, int64(5), p.Count)
		assert.True(t, p.First.Equal(t0), "First = %v, want %v", p.First, t0)
		assert.True(t, p.Last.Equal(t0.Add(2*time.Second)), "Last = %v", p.Last)
		assert.Positive(t, p.Seq)
	})
	t.Run("KeysAndSystems", func(t *testing.T) {
		s := open(t)
		add(t, s, crmsync.PendingTrigger{Key: "a", System: "hubspot", First: t0, Last: t0})
		add(t, s, crmsync.PendingTrigger{Key: "b", System: "salesforce", First: t0, Last: t0})
		add(t, s, crmsync.PendingTrigger{Key: "a", System: "salesforce", First: t0, Last: t0})
		a := pending(t, s, "a")
		require.Len(t, a, 2)
		assert.Equal(t, "hubspot", a[0].System)
		assert.Equal(t, "salesforce", a[1].System)
		assert.Less(t, a[0].Seq, a[1].Seq, "Seq order")
		all := pending(t, s, "")
		require.Len(t, all, 3)
		assert.Equal(t, []string{"a", "b", "a"}, []string{all[0].Key, all[1].Key, all[2].Key})
		limited, err := s.PendingTriggers(ctx, "", 2)
		require.NoError(t, err)
		assert.Len(t, limited, 2)
	})
	t.Run("ClearKeepsLater", func(t *testing.T) {
		s := open(t)
		add(t, s, crmsync.PendingTrigger{Key: "k", System: "hubspot", First: t0, Last: t0})
		add(t, s, crmsync.PendingTrigger{Key: "k", System: "salesforce", First: t0, Last: t0})
		add(t, s, crmsync.PendingTrigger{Key: "other", System: "hubspot", First: t0, Last: t0})
		read := pending(t, s, "k")
		require.Len(t, read, 2)
		through := read[len(read)-1].Seq
		// A trigger arrives while the pass runs.
		add(t, s, crmsync.PendingTrigger{Key: "k", System: "hubspot", Reason: "late", First: t0.Add(time.Second), Last: t0.Add(time.Second)})
		n, err := s.ClearTriggers(ctx, "k", through)
		require.NoError(t, err)
		assert.Equal(t, 1, n, "cleared only the row not touched since the read")
		left := pending(t, s, "k")
		require.Len(t, left, 1, "the late trigger stays pending")
		assert.Equal(t, "late", left[0].Reason)
		assert.Greater(t, left[0].Seq, through)
		assert.Len(t, pending(t, s, "other"), 1, "another key's trigger is untouched")
		n, err = s.ClearTriggers(ctx, "k", left[0].Seq)
		require.NoError(t, err)
		assert.Equal(t, 1, n)
		assert.Empty(t, pending(t, s, "k"))
		// Seq keeps growing after a clear.
		add(t, s, crmsync.PendingTrigger{Key: "k", System: "hubspot", First: t0, Last: t0})
		again := pending(t, s, "k")
		require.Len(t, again, 1)
		assert.Greater(t, again[0].Seq, left[0].Seq)
	})
	t.Run("KeyRequired", func(t *testing.T) {
		s := open(t)
		assert.Error(t, s.AddTrigger(ctx, crmsync.PendingTrigger{System: "hubspot"}))
	})
	t.Run("Concurrent", func(t *testing.T) {
		s := open(t)
		var wg sync.WaitGroup
		for w := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range 25 {
					key := fmt.Sprintf("k%d", i%3)
					assert.NoError(t, s.AddTrigger(ctx, crmsync.PendingTrigger{Key: key, System: "hubspot", Reason: fmt.Sprint(w), First: t0, Last: t0}))
				}
			}()
		}
		wg.Wait()
		var total int64
		for _, p := range pending(t, s, "") {
			total += p.Count
		}
		assert.Equal(t, int64(100), total, "every add counted once")
	})
}

// exercisePositions checks crmsync.PositionStore, for a Store that has it.
func exercisePositions(t *testing.T, newStore func(t *testing.T) crmsync.Store) {
	ctx := context.Background()
	s, ok := newStore(t).(crmsync.PositionStore)
	if !ok {
		t.Skip("the store has no PositionStore")
	}
	_, err := s.GetPosition(ctx, "/data/ContactChangeEvent")
	require.ErrorIs(t, err, crmsync.ErrNotFound)
	pos := []byte{0, 1, 2, 0xff, 0}
	require.NoError(t, s.SetPosition(ctx, "/data/ContactChangeEvent", pos))
	got, err := s.GetPosition(ctx, "/data/ContactChangeEvent")
	require.NoError(t, err)
	assert.Equal(t, pos, got, "binary position round-trips")
	require.NoError(t, s.SetPosition(ctx, "/data/ContactChangeEvent", []byte("next")))
	got, err = s.GetPosition(ctx, "/data/ContactChangeEvent")
	require.NoError(t, err)
	assert.Equal(t, []byte("next"), got, "SetPosition replaces")
	_, err = s.GetPosition(ctx, "/data/AccountChangeEvent")
	assert.ErrorIs(t, err, crmsync.ErrNotFound, "streams are independent")
}
