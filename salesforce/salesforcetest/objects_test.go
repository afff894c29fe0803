package salesforcetest

import (
	"net/http"
	"net/url"
	"testing"

	"github.com/crmsync/crmsync"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestObjectsDescribe(t *testing.T) {
	s, _ := newFake(t)
	st, _, v := call(t, s, "GET", "/services/data/v66.0/sobjects/Opportunity/describe", "", nil)
	require.Equal(t, http.StatusOK, st, "%v", v)
	d := v.(map[string]any)
	assert.Equal(t, "Opportunity", d["name"])
	assert.Equal(t, "006", d["keyPrefix"])
	fields := map[string]map[string]any{}
	for _, f := range d["fields"].([]any) {
		m := f.(map[string]any)
		fields[m["name"].(string)] = m
	}
	assert.Equal(t, []any{"Account"}, fields["AccountId"]["referenceTo"])
	assert.Equal(t, "Account", fields["AccountId"]["relationshipName"])
	assert.Equal(t, "date", fields["CloseDate"]["type"])
	assert.Equal(t, "currency", fields["Amount"]["type"])
	assert.Equal(t, false, fields["IsWon"]["updateable"])
	rels := d["childRelationships"].([]any)
	require.Len(t, rels, 1)
	assert.Equal(t, map[string]any{"childSObject": "OpportunityContactRole", "field": "OpportunityId",
		"relationshipName": "OpportunityContactRoles", "cascadeDelete": true}, rels[0])

	st, _, v = call(t, s, "GET", "/services/data/v66.0/sobjects/Case/describe", "", nil)
	assert.Equal(t, http.StatusNotFound, st)
	assert.Equal(t, "NOT_FOUND", errorCode(v))
}

func TestObjectsSubquery(t *testing.T) {
	s, _ := newFake(t)
	contacts := s.SeedContacts(2)
	opps := s.SeedRecords("Opportunity",
		crmsync.Fields{"Name": "A", "StageName": "Prospecting", "CloseDate": "2026-06-30"},
		crmsync.Fields{"Name": "B", "StageName": "Closed Lost", "CloseDate": "2026-06-30"})
	_, err := s.AddContactRole(opps[0], contacts[1], "Influencer", true)
	require.NoError(t, err)
	st, v := query(t, s, "SELECT Id, IsClosed, (SELECT ContactId, Role, IsPrimary FROM OpportunityContactRoles) FROM Opportunity ORDER BY Name")
	require.Equal(t, http.StatusOK, st, "%v", v)
	recs := v.(map[string]any)["records"].([]any)
	require.Len(t, recs, 2)
	a, b := recs[0].(map[string]any), recs[1].(map[string]any)
	assert.Equal(t, false, a["IsClosed"])
	assert.Equal(t, true, b["IsClosed"])
	assert.Nil(t, b["OpportunityContactRoles"], "no children: null, as Salesforce")
	sub := a["OpportunityContactRoles"].(map[string]any)
	assert.Equal(t, true, sub["done"])
	row := sub["records"].([]any)[0].(map[string]any)
	assert.Equal(t, contacts[1], row["ContactId"])
	assert.Equal(t, "Influencer", row["Role"])
	attrs := row["attributes"].(map[string]any)
	assert.Equal(t, "OpportunityContactRole", attrs["type"])
	assert.Regexp(t, "^/services/data/v66.0/sobjects/OpportunityContactRole/00K", attrs["url"])

	st, v = query(t, s, "SELECT Id, (SELECT Id FROM Contacts) FROM Opportunity")
	assert.Equal(t, http.StatusBadRequest, st)
	assert.Equal(t, "INVALID_TYPE", errorCode(v))
	st, v = query(t, s, "SELECT Id, (SELECT Secret FROM OpportunityContactRoles) FROM Opportunity")
	assert.Equal(t, http.StatusBadRequest, st)
	assert.Equal(t, "INVALID_FIELD", errorCode(v))
}

func TestContactRoleDeletedDirectlyIsGone(t *testing.T) {
	s, _ := newFake(t)
	contacts := s.SeedContacts(1)
	opps := s.SeedRecords("Opportunity", crmsync.Fields{"Name": "A", "StageName": "Prospecting", "CloseDate": "2026-06-30"})
	role, err := s.AddContactRole(opps[0], contacts[0], "", false)
	require.NoError(t, err)
	st, _, v := call(t, s, "DELETE", "/services/data/v66.0/composite/sobjects?ids="+role+"&allOrNone=false", "", nil)
	require.Equal(t, http.StatusOK, st, "%v", v)
	assert.Equal(t, true, v.([]any)[0].(map[string]any)["success"])
	st, _, v = call(t, s, "GET", "/services/data/v66.0/queryAll?q="+url.QueryEscape("SELECT Id FROM OpportunityContactRole"), "", nil)
	require.Equal(t, http.StatusOK, st)
	assert.Equal(t, float64(0), v.(map[string]any)["totalSize"], "a role deleted on its own is not in queryAll")
	_, ok := s.Get(role)
	assert.False(t, ok)
}

func TestUpsertPathObjectMustMatch(t *testing.T) {
	s, _ := newFake(t)
	body := `{"allOrNone":false,"records":[{"attributes":{"type":"Contact"},"LastName":"X","HubSpot_Id__c":"1"}]}`
	st, _, v := call(t, s, "PATCH", "/services/data/v66.0/composite/sobjects/Account/HubSpot_Id__c", body, nil)
	assert.Equal(t, http.StatusBadRequest, st)
	assert.Equal(t, "INVALID_TYPE", errorCode(v))
	body = `{"allOrNone":false,"records":[{"attributes":{"type":"Account"},"Name":"X","HubSpot_Id__c":"1"}]}`
	st, _, v = call(t, s, "PATCH", "/services/data/v66.0/composite/sobjects/Account/HubSpot_Id__c", body, nil)
	require.Equal(t, http.StatusOK, st, "%v", v)
	res := v.([]any)[0].(map[string]any)
	assert.Equal(t, true, res["created"])
	assert.Regexp(t, "^001", res["id"])
}

func TestConvertLeadOneStamp(t *testing.T) {
	s, clk := newFake(t)
	leads := s.SeedLeads(1)
	clk.Advance(3600e9)
	res, err := s.ConvertLead(leads[0], ConvertOptions{OpportunityName: "First deal"})
	require.NoError(t, err)
	lead, _ := s.Get(leads[0])
	for _, id := range []string{res.AccountID, res.ContactID, res.OpportunityID} {
		r, ok := s.Get(id)
		require.True(t, ok)
		assert.Equal(t, lead.ModifiedAt, r.ModifiedAt, "one transaction, one stamp: %s", id)
	}
	opp, _ := s.Get(res.OpportunityID)
	assert.Equal(t, "First deal", opp.Fields["Name"])
	assert.Equal(t, res.AccountID, opp.Fields["AccountId"])
	assert.Equal(t, "Prospecting", opp.Fields["StageName"])
	_, err = s.ConvertLead(res.ContactID, ConvertOptions{})
	assert.Error(t, err, "only leads convert")
}
