package playbook

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/store/memory"
)

// TestPassRecordsAPIBudget: a pass over both fakes stores each account's
// daily API use, as the clients learnt it from the response headers, in
// its report, so that operators see the budget over time.
func TestPassRecordsAPIBudget(t *testing.T) {
	w, err := NewWorld(12)
	require.NoError(t, err)
	defer w.Close()
	s, err := w.Sync()
	require.NoError(t, err)
	eng, err := crmsync.NewEngine(crmsync.Config{Store: memory.New()})
	require.NoError(t, err)
	info, err := eng.Run(context.Background(), "team-a", s)
	require.NoError(t, err)

	var rep struct {
		Result crmsync.SyncReport `json:"result"`
	}
	require.NoError(t, json.Unmarshal(info.Report, &rep))
	budget := rep.Result.Budget
	require.Contains(t, budget, "hubspot")
	require.Contains(t, budget, "salesforce")

	hsUsed := int64(w.HubSpot().DailyUsed())
	sfUsed, sfMax := w.Salesforce().APIUsage()
	assert.Equal(t, hsUsed, budget["hubspot"].Used, "hubspot used (as the fake counted it)")
	assert.Positive(t, budget["hubspot"].Limit, "hubspot limit")
	assert.Equal(t, sfUsed, budget["salesforce"].Used, "salesforce used")
	assert.Equal(t, sfMax, budget["salesforce"].Limit, "salesforce limit")
	assert.False(t, budget["salesforce"].At.IsZero(), "salesforce sample time")
}
