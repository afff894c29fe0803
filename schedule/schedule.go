// Package schedule turns cron expressions into the next-time functions that
// crmsync.Schedule runs workflows on. It keeps the cron parser
// (robfig/cron/v3) out of the root package.
package schedule

import (
	"fmt"
	"time"

	"github.com/robfig/cron/v3"
)

var parser = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// Cron parses a standard five-field cron expression ("*/5 * * * *") or a
// descriptor ("@hourly", "@every 5m") and returns a function giving the next
// time after t, for crmsync.Schedule. Times are in loc (nil means UTC).
func Cron(expr string, loc *time.Location) (func(time.Time) time.Time, error) {
	s, err := parser.Parse(expr)
	if err != nil {
		return nil, fmt.Errorf("schedule: cron expression %q: %w", expr, err)
	}
	if loc == nil {
		loc = time.UTC
	}
	return func(t time.Time) time.Time { return s.Next(t.In(loc)) }, nil
}
