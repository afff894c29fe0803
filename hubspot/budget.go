package hubspot

import (
	"net/http"
	"strconv"
	"time"

	"github.com/crmsync/crmsync"
)

var _ crmsync.BudgetReporter = (*Client)(nil)

// dailyUsage is the account's daily use as the last response with the
// X-HubSpot-RateLimit-Daily headers said (search responses have none).
type dailyUsage struct {
	limit, used int64
	at          time.Time
	// calls is the client's own day count when the headers were read.
	calls int
	day   string
}

// noteDaily reads the daily headers of a response.
func (c *Client) noteDaily(h http.Header) {
	limit, err1 := strconv.ParseInt(h.Get("X-HubSpot-RateLimit-Daily"), 10, 64)
	left, err2 := strconv.ParseInt(h.Get("X-HubSpot-RateLimit-Daily-Remaining"), 10, 64)
	if err1 != nil || err2 != nil || limit <= 0 {
		return
	}
	c.mu.Lock()
	c.daily = dailyUsage{limit: limit, used: limit - left, at: c.now(), calls: c.dayCalls, day: c.day}
	c.mu.Unlock()
}

// APIBudget reports the account's daily API use: what HubSpot's daily
// headers said last, plus the calls this client made since (searches carry
// no such headers). Without the headers (OAuth apps get none) it is the
// client's own count against its daily budget. ok is false before the
// first call.
func (c *Client) APIBudget() (crmsync.APIBudget, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	d := c.daily
	if d.limit > 0 && d.day == c.day {
		return crmsync.APIBudget{Used: d.used + int64(c.dayCalls-d.calls), Limit: d.limit, At: c.now()}, true
	}
	if c.dayCalls == 0 || c.budget <= 0 {
		return crmsync.APIBudget{}, false
	}
	return crmsync.APIBudget{Used: int64(c.dayCalls), Limit: int64(c.budget), At: c.now()}, true
}
