package schedule_test

import (
	"testing"
	"time"

	"github.com/crmsync/crmsync/schedule"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestCron(t *testing.T) {
	at := time.Date(2026, 3, 2, 9, 7, 30, 0, time.UTC) // a Monday
	tests := []struct {
		expr string
		want time.Time
	}{
		{"*/5 * * * *", time.Date(2026, 3, 2, 9, 10, 0, 0, time.UTC)},
		{"0 * * * *", time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)},
		{"30 6 * * 1-5", time.Date(2026, 3, 3, 6, 30, 0, 0, time.UTC)},
		{"@hourly", time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)},
		{"@every 90s", at.Add(90 * time.Second)},
	}
	for _, tc := range tests {
		next, err := schedule.Cron(tc.expr, nil)
		require.NoError(t, err, "Cron(%q)", tc.expr)
		got := next(at)
		assert.True(t, got.Equal(tc.want), "Cron(%q)(%v) = %v, want %v", tc.expr, at, got, tc.want)
	}
	for _, bad := range []string{"", "* * *", "61 * * * *", "@sometimes"} {
		_, err := schedule.Cron(bad, nil)
		if assert.Error(t, err, "Cron(%q) = %v, want an error naming the expression", bad, err) {
			assert.Contains(t, err.Error(), "cron expression", "Cron(%q) = %v, want an error naming the expression", bad, err)
		}
	}
}
