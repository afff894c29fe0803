package salesforce

import "github.com/crmsync/crmsync"

var _ crmsync.BudgetReporter = (*Client)(nil)

// APIBudget reports the org's daily API usage and allocation from the last
// Sforce-Limit-Info header; ok is false before the first response.
func (c *Client) APIBudget() (crmsync.APIBudget, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.max == 0 {
		return crmsync.APIBudget{}, false
	}
	return crmsync.APIBudget{Used: c.used, Limit: c.max, At: c.usageAt}, true
}
