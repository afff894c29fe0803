package memory_test

import (
	"testing"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/store/memory"
	"github.com/crmsync/crmsync/store/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) crmsync.Store { return memory.New() })
}

func BenchmarkStep(b *testing.B) {
	storetest.Bench(b, func(b *testing.B) crmsync.Store { return memory.New() })
}
