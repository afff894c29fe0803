package memory

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"

	"github.com/crmsync/crmsync"
)

// AddTrigger implements crmsync.TriggerStore.
func (s *Store) AddTrigger(_ context.Context, t crmsync.PendingTrigger) error {
	if t.Key == "" {
		return errors.New("memory: add trigger: key is empty")
	}
	n := t.Count
	if n <= 0 {
		n = 1
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.triggerSeq++
	id := t.Key + "\x00" + t.System
	p, ok := s.triggers[id]
	if !ok {
		p = &crmsync.PendingTrigger{Key: t.Key, System: t.System, First: t.First}
		s.triggers[id] = p
	}
	p.Full = p.Full || t.Full
	p.Reason = t.Reason
	p.Count += n
	p.Last = t.Last
	p.Seq = s.triggerSeq
	return nil
}

// PendingTriggers implements crmsync.TriggerStore.
func (s *Store) PendingTriggers(_ context.Context, key string, limit int) ([]crmsync.PendingTrigger, error) {
	if limit <= 0 {
		limit = 100
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []crmsync.PendingTrigger
	for _, p := range s.triggers {
		if key == "" || p.Key == key {
			out = append(out, *p)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Seq < out[j].Seq })
	if len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

// ClearTriggers implements crmsync.TriggerStore.
func (s *Store) ClearTriggers(_ context.Context, key string, through int64) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for id, p := range s.triggers {
		if p.Key == key && p.Seq <= through {
			delete(s.triggers, id)
			n++
		}
	}
	return n, nil
}

// GetPosition implements crmsync.PositionStore.
func (s *Store) GetPosition(_ context.Context, stream string) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.positions[stream]
	if !ok {
		return nil, fmt.Errorf("memory: position of %s: %w", stream, crmsync.ErrNotFound)
	}
	return slices.Clone(p), nil
}

// SetPosition implements crmsync.PositionStore.
func (s *Store) SetPosition(_ context.Context, stream string, pos []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.positions[stream] = slices.Clone(pos)
	return nil
}
