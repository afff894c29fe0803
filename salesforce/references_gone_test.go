package salesforce_test

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/salesforce"
	"github.com/crmsync/crmsync/salesforce/salesforcetest"
)

// A lookup naming a deleted account refuses the record for that reference
// alone: the error is a ReferenceError naming the field (the sync writes
// the record again without it), still a permanent *RecordError.
func TestWriteReferenceToDeletedRecordIsAReferenceError(t *testing.T) {
	f := setup(t, nil, nil)
	accts := f.srv.SeedAccounts(1)
	require.NoError(t, f.srv.Delete(accts[0]))
	res, err := f.c.Write(ctx, "Contact", []crmsync.WriteOp{
		{Kind: crmsync.Create, Fields: crmsync.Fields{"LastName": "Lovelace", "AccountId": accts[0]}},
	})
	require.NoError(t, err)
	var re *crmsync.ReferenceError
	require.ErrorAs(t, res[0].Err, &re)
	assert.Equal(t, []string{"AccountId"}, re.Fields)
	assert.Equal(t, "ENTITY_IS_DELETED", recordCode(t, res[0].Err))
	assert.True(t, crmsync.IsPermanent(res[0].Err))
	assert.Empty(t, res[0].ID, "nothing was written")
	assert.NotErrorIs(t, res[0].Err, crmsync.ErrRecordGone, "the record itself is not gone")
}

// An Opportunity written while its contact roles are refused keeps its id
// and Created: the error is a PartialWriteError naming ContactRolesField.
// A role naming a deleted contact is a ReferenceError naming that contact;
// the roles of live contacts are made.
func TestContactRolesRefusedLeaveTheOpportunityWritten(t *testing.T) {
	f := setup(t, nil, nil)
	contacts := f.srv.SeedContacts(3)
	require.NoError(t, f.srv.Delete(contacts[2]))
	opps := f.srv.SeedRecords("Opportunity", crmsync.Fields{"Name": "Renewal", "StageName": "Prospecting", "CloseDate": "2026-06-30"})

	res, err := f.c.Write(ctx, "Opportunity", []crmsync.WriteOp{
		{Kind: crmsync.Update, ID: opps[0], Fields: crmsync.Fields{"Amount": 100.0,
			salesforce.ContactRolesField: []string{contacts[0], contacts[2]}}},
	})
	require.NoError(t, err)
	assert.Equal(t, opps[0], res[0].ID)
	var re *crmsync.ReferenceError
	require.ErrorAs(t, res[0].Err, &re)
	assert.Equal(t, []string{salesforce.ContactRolesField}, re.Fields)
	assert.Equal(t, []string{contacts[2]}, re.IDs)
	var pe *crmsync.PartialWriteError
	require.ErrorAs(t, res[0].Err, &pe)
	assert.Equal(t, []string{salesforce.ContactRolesField}, pe.Fields)
	assert.Equal(t, []string{contacts[0]}, f.srv.ContactRoles(opps[0]))
	got, _ := f.srv.Get(opps[0])
	assert.Equal(t, 100.0, got.Fields["Amount"])

	// The role call refused whole: the new Opportunity is made all the same.
	f.srv.Inject(salesforcetest.Fault{Endpoint: "create", Status: 400, ErrorCode: "JSON_PARSER_ERROR"})
	res, err = f.c.Write(ctx, "Opportunity", []crmsync.WriteOp{
		{Kind: crmsync.Upsert, MatchField: "HubSpot_Id__c", MatchValue: "7001", Fields: crmsync.Fields{"Name": "New", "StageName": "Prospecting",
			"CloseDate": "2026-06-30", salesforce.ContactRolesField: []string{contacts[1]}}},
	})
	require.NoError(t, err)
	require.Error(t, res[0].Err)
	assert.NotEmpty(t, res[0].ID, "the upsert made the Opportunity")
	assert.True(t, res[0].Created)
	require.ErrorAs(t, res[0].Err, &pe)
	assert.Equal(t, []string{salesforce.ContactRolesField}, pe.Fields)
	assert.False(t, errors.As(res[0].Err, &re), "not a reference to a deleted record")
	assert.True(t, crmsync.IsPermanent(res[0].Err))
}

// An update of a deleted record fails with an error matching
// crmsync.ErrRecordGone (ENTITY_IS_DELETED naming no field).
func TestWriteToDeletedRecordIsRecordGone(t *testing.T) {
	f := setup(t, nil, nil)
	contacts := f.srv.SeedContacts(1)
	require.NoError(t, f.srv.Delete(contacts[0]))
	res, err := f.c.Write(ctx, "Contact", []crmsync.WriteOp{
		{Kind: crmsync.Update, ID: contacts[0], Fields: crmsync.Fields{"LastName": "Lovelace"}},
	})
	require.NoError(t, err)
	require.ErrorIs(t, res[0].Err, crmsync.ErrRecordGone)
	assert.True(t, crmsync.IsPermanent(res[0].Err))
	var re *crmsync.ReferenceError
	assert.False(t, errors.As(res[0].Err, &re))
}
