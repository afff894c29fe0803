package sqlite_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/store/sqlite"
	"github.com/crmsync/crmsync/store/storetest"
	"github.com/stretchr/testify/require"
)

func open(t testing.TB, path string) *sqlite.Store {
	t.Helper()
	s, err := sqlite.Open(context.Background(), sqlite.Config{Path: path})
	require.NoError(t, err, "Open(%s)", path)
	t.Cleanup(func() { s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) crmsync.Store {
		return open(t, filepath.Join(t.TempDir(), "crmsync.db"))
	})
}

func BenchmarkStep(b *testing.B) {
	storetest.Bench(b, func(b *testing.B) crmsync.Store {
		return open(b, filepath.Join(b.TempDir(), "bench.db"))
	})
}

// BenchmarkStepFull is BenchmarkStep with Synchronous FULL: every commit
// survives power loss, not only a process kill.
func BenchmarkStepFull(b *testing.B) {
	storetest.Bench(b, func(b *testing.B) crmsync.Store {
		s, err := sqlite.Open(context.Background(), sqlite.Config{Path: filepath.Join(b.TempDir(), "bench.db"), Synchronous: "FULL"})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { s.Close() })
		return s
	})
}

// BenchmarkRuns runs short workflows (4 steps each, a new run each time),
// one at a time and 8 in flight, at Synchronous NORMAL.
func BenchmarkRuns(b *testing.B) {
	for _, n := range []int{1, 8} {
		b.Run(fmt.Sprintf("inflight=%d", n), func(b *testing.B) {
			storetest.BenchRuns(b, func(b *testing.B) crmsync.Store {
				return open(b, filepath.Join(b.TempDir(), "bench.db"))
			}, n)
		})
	}
}
