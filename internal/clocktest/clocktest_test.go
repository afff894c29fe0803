package clocktest_test

import (
	"sync"
	"testing"
	"time"

	"github.com/crmsync/crmsync/internal/clocktest"
	"github.com/stretchr/testify/assert"
)

func TestClock(t *testing.T) {
	t0 := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	c := clocktest.New(t0)
	assert.Equal(t, t0, c.Now(), "a new clock reads its start")
	assert.Equal(t, t0, c.Now(), "the clock stands still")
	assert.Equal(t, t0.Add(time.Minute), c.Advance(time.Minute))
	assert.Equal(t, t0.Add(time.Minute), c.Now())
	c.Set(t0)
	assert.Equal(t, t0, c.Now())

	var zero clocktest.Clock
	assert.True(t, zero.Now().IsZero())
}

func TestClockConcurrent(t *testing.T) {
	c := clocktest.New(time.Time{})
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 100 {
				c.Advance(time.Second)
				_ = c.Now()
			}
		}()
	}
	wg.Wait()
	assert.Equal(t, time.Time{}.Add(800*time.Second), c.Now())
}
