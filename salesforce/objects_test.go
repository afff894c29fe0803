package salesforce_test

import (
	"errors"
	"fmt"
	"sort"
	"testing"
	"time"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/salesforce"
	"github.com/crmsync/crmsync/salesforce/salesforcetest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// changesAll reads every page of a change query from since.
func changesAll(t *testing.T, c *salesforce.Client, object string, since time.Time, archived bool, fields []string) []crmsync.Record {
	t.Helper()
	var out []crmsync.Record
	q := crmsync.ChangeQuery{Object: object, Since: since, Archived: archived, Fields: fields}
	for {
		p, err := c.Changes(ctx, q)
		require.NoError(t, err, "Changes(%s)", object)
		out = append(out, p.Records...)
		if p.Next == "" {
			return out
		}
		q.PageToken = p.Next
	}
}

func byID(recs []crmsync.Record) map[string]crmsync.Record {
	m := map[string]crmsync.Record{}
	for _, r := range recs {
		m[r.ID] = r
	}
	return m
}

// writeOK writes ops and requires every one to succeed.
func writeOK(t *testing.T, c *salesforce.Client, object string, ops ...crmsync.WriteOp) []crmsync.WriteResult {
	t.Helper()
	res, err := c.Write(ctx, object, ops)
	require.NoError(t, err, "Write(%s)", object)
	require.Len(t, res, len(ops))
	for i, r := range res {
		require.NoError(t, r.Err, "Write(%s) op %d", object, i)
	}
	return res
}

func TestObjectsCRUD(t *testing.T) {
	f := setup(t, nil, nil)
	since := f.clk.Now().Add(-time.Minute)
	acct := writeOK(t, f.c, "Account", crmsync.WriteOp{Kind: crmsync.Create, Fields: crmsync.Fields{"Name": "Acme", "Website": "acme.example.com"}})[0]
	require.True(t, acct.Created)
	opp := writeOK(t, f.c, "Opportunity", crmsync.WriteOp{Kind: crmsync.Create, Fields: crmsync.Fields{
		"Name": "Acme renewal", "StageName": "Prospecting", "CloseDate": "2026-06-30", "Amount": 1200.5, "AccountId": acct.ID}})[0]
	lead := writeOK(t, f.c, "Lead", crmsync.WriteOp{Kind: crmsync.Upsert, MatchField: "HubSpot_Id__c", MatchValue: "hs-1",
		Fields: crmsync.Fields{"LastName": "Lovelace", "Company": "Analytical", "Email": "ada@example.com"}})[0]
	require.True(t, lead.Created)
	contact := writeOK(t, f.c, "Contact", crmsync.WriteOp{Kind: crmsync.Create, Fields: crmsync.Fields{"LastName": "Byron", "AccountId": acct.ID}})[0]

	// Default fields fit each object.
	for object, id := range map[string]string{"Account": acct.ID, "Opportunity": opp.ID, "Lead": lead.ID, "Contact": contact.ID} {
		recs := changesAll(t, f.c, object, since, false, nil)
		require.Len(t, recs, 1, "Changes(%s)", object)
		assert.Equal(t, id, recs[0].ID, "Changes(%s)", object)
	}
	recs, err := f.c.Lookup(ctx, "Opportunity", "id", []string{opp.ID}, []string{"Name", "StageName", "CloseDate", "Amount", "AccountId", "IsClosed"})
	require.NoError(t, err)
	require.Len(t, recs, 1)
	assert.Equal(t, crmsync.Fields{"Id": opp.ID, "Name": "Acme renewal", "StageName": "Prospecting", "CloseDate": "2026-06-30",
		"Amount": 1200.5, "AccountId": acct.ID, "IsClosed": false, "IsDeleted": false}, without(recs[0].Fields, "SystemModstamp"))

	f.clk.Advance(time.Second)
	writeOK(t, f.c, "Opportunity", crmsync.WriteOp{Kind: crmsync.Update, ID: opp.ID, Fields: crmsync.Fields{"StageName": "Closed Won"}})
	writeOK(t, f.c, "Lead", crmsync.WriteOp{Kind: crmsync.Upsert, MatchField: "HubSpot_Id__c", MatchValue: "hs-1", Fields: crmsync.Fields{"Title": "Countess"}})
	writeOK(t, f.c, "Account", crmsync.WriteOp{Kind: crmsync.Update, ID: acct.ID, Fields: crmsync.Fields{"Industry": "Technology"}})
	recs, err = f.c.Lookup(ctx, "Opportunity", "id", []string{opp.ID}, []string{"StageName", "IsClosed", "IsWon"})
	require.NoError(t, err)
	assert.Equal(t, true, recs[0].Fields["IsWon"])
	recs, err = f.c.Lookup(ctx, "Lead", "HubSpot_Id__c", []string{"hs-1"}, []string{"Title", "Status", "IsConverted"})
	require.NoError(t, err)
	require.Len(t, recs, 1)
	assert.Equal(t, lead.ID, recs[0].ID)
	assert.Equal(t, "Countess", recs[0].Fields["Title"])
	assert.Equal(t, "Open - Not Contacted", recs[0].Fields["Status"])
	assert.Empty(t, recs[0].MergedInto)

	// Required fields and picklists per object are refused per record.
	res, err := f.c.Write(ctx, "Opportunity", []crmsync.WriteOp{
		{Kind: crmsync.Create, Fields: crmsync.Fields{"Name": "No stage", "CloseDate": "2026-06-30"}},
		{Kind: crmsync.Create, Fields: crmsync.Fields{"Name": "Bad stage", "StageName": "Dreaming", "CloseDate": "2026-06-30"}},
		{Kind: crmsync.Create, Fields: crmsync.Fields{"Name": "Fine", "StageName": "Qualification", "CloseDate": "2026-07-01"}},
	})
	require.NoError(t, err)
	assert.Equal(t, "REQUIRED_FIELD_MISSING", recordCode(t, res[0].Err))
	assert.Equal(t, "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST", recordCode(t, res[1].Err))
	assert.NoError(t, res[2].Err)
	res, err = f.c.Write(ctx, "Lead", []crmsync.WriteOp{{Kind: crmsync.Create, Fields: crmsync.Fields{"LastName": "No company"}}})
	require.NoError(t, err)
	assert.Equal(t, "REQUIRED_FIELD_MISSING", recordCode(t, res[0].Err))
}

func without(f crmsync.Fields, keys ...string) crmsync.Fields {
	out := crmsync.Fields{}
	for k, v := range f {
		out[k] = v
	}
	for _, k := range keys {
		delete(out, k)
	}
	return out
}

// recordCode returns the Salesforce status code of a per-record error.
func recordCode(t *testing.T, err error) string {
	t.Helper()
	var re *salesforce.RecordError
	require.True(t, errors.As(err, &re), "error %v is not a *RecordError", err)
	return re.StatusCode
}

func TestReferencesChecked(t *testing.T) {
	f := setup(t, nil, nil)
	accts := f.srv.SeedAccounts(2)
	require.NoError(t, f.srv.Delete(accts[1]))
	contacts := f.srv.SeedContacts(1)
	res, err := f.c.Write(ctx, "Contact", []crmsync.WriteOp{
		{Kind: crmsync.Create, Fields: crmsync.Fields{"LastName": "A", "AccountId": accts[0]}},
		{Kind: crmsync.Create, Fields: crmsync.Fields{"LastName": "B", "AccountId": accts[1]}},
		{Kind: crmsync.Create, Fields: crmsync.Fields{"LastName": "C", "AccountId": contacts[0]}},
		{Kind: crmsync.Create, Fields: crmsync.Fields{"LastName": "D", "AccountId": "001Fk00000000zzAAA"}},
		{Kind: crmsync.Create, Fields: crmsync.Fields{"LastName": "E", "AccountId": accts[0][:15]}},
	})
	require.NoError(t, err)
	assert.NoError(t, res[0].Err)
	assert.Equal(t, "ENTITY_IS_DELETED", recordCode(t, res[1].Err))
	assert.Equal(t, "FIELD_INTEGRITY_EXCEPTION", recordCode(t, res[2].Err))
	assert.Equal(t, "INVALID_CROSS_REFERENCE_KEY", recordCode(t, res[3].Err))
	require.NoError(t, res[4].Err)
	for i := 1; i <= 3; i++ {
		assert.True(t, crmsync.IsPermanent(res[i].Err), "op %d: %v", i, res[i].Err)
	}
	got, ok := f.srv.Get(res[4].ID)
	require.True(t, ok)
	assert.Equal(t, accts[0], got.Fields["AccountId"], "a 15-character reference is stored in its 18-character form")
}

func TestSchemaReferences(t *testing.T) {
	f := setup(t, nil, nil)
	field := func(s crmsync.Schema, name string) crmsync.FieldSchema {
		t.Helper()
		for _, fs := range s.Fields {
			if fs.Name == name {
				return fs
			}
		}
		t.Fatalf("Schema(%s) has no field %s", s.Object, name)
		return crmsync.FieldSchema{}
	}
	contact, err := f.c.Schema(ctx, "Contact")
	require.NoError(t, err)
	assert.Equal(t, crmsync.FieldSchema{Name: "AccountId", Type: crmsync.TypeReference, RefObject: "Account"}, field(contact, "AccountId"))
	opp, err := f.c.Schema(ctx, "Opportunity")
	require.NoError(t, err)
	assert.Equal(t, crmsync.FieldSchema{Name: "AccountId", Type: crmsync.TypeReference, RefObject: "Account"}, field(opp, "AccountId"))
	assert.Equal(t, crmsync.FieldSchema{Name: salesforce.ContactRolesField, Type: crmsync.TypeReferences, RefObject: "Contact"},
		field(opp, salesforce.ContactRolesField))
	stage := field(opp, "StageName")
	assert.True(t, stage.Required && stage.Restricted, "StageName = %+v", stage)
	assert.Equal(t, salesforcetest.OpportunityStages, stage.Options)
	lead, err := f.c.Schema(ctx, "Lead")
	require.NoError(t, err)
	assert.Equal(t, crmsync.FieldSchema{Name: "ConvertedContactId", Type: crmsync.TypeReference, RefObject: "Contact", ReadOnly: true},
		field(lead, "ConvertedContactId"))
	assert.True(t, field(lead, "IsConverted").ReadOnly)
	assert.True(t, field(lead, "Company").Required)
	acct, err := f.c.Schema(ctx, "Account")
	require.NoError(t, err)
	assert.Equal(t, crmsync.FieldSchema{Name: "Name", Type: crmsync.TypeString, Required: true}, field(acct, "Name"))
}

func TestContactRolesRead(t *testing.T) {
	f := setup(t, nil, nil)
	since := f.clk.Now().Add(-time.Minute)
	accts := f.srv.SeedAccounts(1)
	contacts := f.srv.SeedContacts(3)
	opps := f.srv.SeedRecords("Opportunity",
		crmsync.Fields{"Name": "One", "StageName": "Prospecting", "CloseDate": "2026-06-30", "AccountId": accts[0]},
		crmsync.Fields{"Name": "Two", "StageName": "Prospecting", "CloseDate": "2026-06-30"})
	for _, c := range []string{contacts[2], contacts[0]} {
		_, err := f.srv.AddContactRole(opps[0], c, "Decision Maker", c == contacts[0])
		require.NoError(t, err)
	}
	before := f.srv.Calls()
	fields := []string{"Name", "AccountId", salesforce.ContactRolesField}
	recs := byID(changesAll(t, f.c, "Opportunity", since, false, fields))
	want := []string{contacts[0], contacts[2]}
	sort.Strings(want)
	assert.Equal(t, want, recs[opps[0]].Fields[salesforce.ContactRolesField])
	v, ok := recs[opps[1]].Fields[salesforce.ContactRolesField]
	assert.True(t, ok, "an opportunity without roles has the field")
	assert.True(t, v == nil, "no roles: an untyped nil, got %#v", v)
	after := f.srv.Calls()
	assert.Equal(t, 1, after["query"]-before["query"], "one query per page, roles included")

	got, err := f.c.Lookup(ctx, "Opportunity", "AccountId", []string{accts[0]}, fields)
	require.NoError(t, err)
	require.Len(t, got, 1)
	assert.Equal(t, want, got[0].Fields[salesforce.ContactRolesField])
	assert.Equal(t, 2, f.srv.Calls()["query"]-before["query"])

	// Other objects do not know the pseudo-field.
	_, err = f.c.Lookup(ctx, "Account", "id", accts, []string{salesforce.ContactRolesField})
	var fe *crmsync.FieldError
	require.ErrorAs(t, err, &fe)
}

func TestContactRolesWriteBatched(t *testing.T) {
	f := setup(t, nil, nil)
	contacts := f.srv.SeedContacts(4)
	const n = 250
	fs := make([]crmsync.Fields, n)
	for i := range fs {
		fs[i] = crmsync.Fields{"Name": fmt.Sprintf("Deal %d", i), "StageName": "Prospecting", "CloseDate": "2026-06-30"}
	}
	opps := f.srv.SeedRecords("Opportunity", fs...)
	// Every opportunity starts with a role for contact 3, to be removed.
	for _, o := range opps {
		_, err := f.srv.AddContactRole(o, contacts[3], "", false)
		require.NoError(t, err)
	}
	ops := make([]crmsync.WriteOp, n)
	for i, o := range opps {
		ops[i] = crmsync.WriteOp{Kind: crmsync.Update, ID: o, Fields: crmsync.Fields{
			"Amount": float64(i), salesforce.ContactRolesField: []string{contacts[1], contacts[0]}}}
	}
	before := f.srv.Calls()
	writeOK(t, f.c, "Opportunity", ops...)
	after := f.srv.Calls()
	want := []string{contacts[0], contacts[1]}
	sort.Strings(want)
	for _, o := range opps {
		require.Equal(t, want, f.srv.ContactRoles(o), "roles of %s", o)
	}
	// 250 opportunities: 2 updates, 2 role queries, 500 new roles in 3
	// creates, 250 old ones in 2 deletes.
	assert.Equal(t, 2, after["update"]-before["update"], "update calls")
	assert.Equal(t, 2, after["query"]-before["query"], "role queries")
	assert.Equal(t, 3, after["create"]-before["create"], "role creates")
	assert.Equal(t, 2, after["delete"]-before["delete"], "role deletes")

	// Writing the same roles again changes nothing; clearing removes them.
	before = f.srv.Calls()
	writeOK(t, f.c, "Opportunity", crmsync.WriteOp{Kind: crmsync.Update, ID: opps[0], Fields: crmsync.Fields{salesforce.ContactRolesField: []any{contacts[0], contacts[1]}}})
	after = f.srv.Calls()
	assert.Equal(t, 0, after["create"]-before["create"]+after["delete"]-before["delete"])
	writeOK(t, f.c, "Opportunity", crmsync.WriteOp{Kind: crmsync.Update, ID: opps[0], Fields: crmsync.Fields{salesforce.ContactRolesField: nil}})
	assert.Nil(t, f.srv.ContactRoles(opps[0]))

	// A new opportunity gets its roles in the same Write; a bad contact id
	// fails that op alone.
	res, err := f.c.Write(ctx, "Opportunity", []crmsync.WriteOp{
		{Kind: crmsync.Create, Fields: crmsync.Fields{"Name": "New", "StageName": "Prospecting", "CloseDate": "2026-06-30",
			salesforce.ContactRolesField: []string{contacts[2]}}},
		{Kind: crmsync.Update, ID: opps[1], Fields: crmsync.Fields{salesforce.ContactRolesField: []string{"not an id"}}},
		{Kind: crmsync.Update, ID: opps[2], Fields: crmsync.Fields{salesforce.ContactRolesField: []string{opps[3]}}},
	})
	require.NoError(t, err)
	require.NoError(t, res[0].Err)
	assert.True(t, res[0].Created)
	assert.Equal(t, []string{contacts[2]}, f.srv.ContactRoles(res[0].ID))
	require.Error(t, res[1].Err)
	assert.True(t, crmsync.IsPermanent(res[1].Err))
	assert.Equal(t, want, f.srv.ContactRoles(opps[1]), "a refused op leaves the roles alone")
	assert.Equal(t, "FIELD_INTEGRITY_EXCEPTION", recordCode(t, res[2].Err))
	assert.True(t, crmsync.IsPermanent(res[2].Err))
}

func TestConvertedLead(t *testing.T) {
	f := setup(t, nil, nil)
	since := f.clk.Now().Add(-time.Minute)
	leads := f.srv.SeedRecords("Lead",
		crmsync.Fields{"LastName": "Hopper", "FirstName": "Grace", "Company": "Navy", "Email": "grace@example.com", "HubSpot_Id__c": "hs-7", "LeadSource": "Web"},
		crmsync.Fields{"LastName": "Open", "Company": "Still"})
	f.clk.Advance(time.Second)
	conv, err := f.srv.ConvertLead(leads[0], salesforcetest.ConvertOptions{})
	require.NoError(t, err)
	require.NotEmpty(t, conv.ContactID)
	require.NotEmpty(t, conv.OpportunityID)

	// The conversion as Salesforce reports it.
	contact, ok := f.srv.Get(conv.ContactID)
	require.True(t, ok)
	assert.Equal(t, "grace@example.com", contact.Fields["Email"])
	assert.Equal(t, conv.AccountID, contact.Fields["AccountId"])
	assert.Equal(t, []string{conv.ContactID}, f.srv.ContactRoles(conv.OpportunityID))
	acct, _ := f.srv.Get(conv.AccountID)
	assert.Equal(t, "Navy", acct.Fields["Name"])

	fields := []string{"LastName", "Email", "IsConverted", "ConvertedContactId", "ConvertedAccountId", "ConvertedOpportunityId", "ConvertedDate", "Status"}
	recs := byID(changesAll(t, f.c, "Lead", since, false, fields))
	got := recs[leads[0]]
	assert.Equal(t, conv.ContactID, got.MergedInto, "a converted lead reads as merged into its contact")
	assert.False(t, got.Archived)
	assert.Equal(t, true, got.Fields["IsConverted"])
	assert.Equal(t, conv.AccountID, got.Fields["ConvertedAccountId"])
	assert.Equal(t, conv.OpportunityID, got.Fields["ConvertedOpportunityId"])
	assert.Equal(t, "2026-03-02", got.Fields["ConvertedDate"])
	assert.Equal(t, salesforcetest.ConvertedLeadStatus, got.Fields["Status"])
	assert.Empty(t, recs[leads[1]].MergedInto)
	// Even when the caller does not ask for the conversion fields.
	looked, err := f.c.Lookup(ctx, "Lead", "HubSpot_Id__c", []string{"hs-7"}, []string{"LastName"})
	require.NoError(t, err)
	require.Len(t, looked, 1)
	assert.Equal(t, conv.ContactID, looked[0].MergedInto)
	assert.Equal(t, true, looked[0].Fields["IsConverted"])

	// Writes to the converted lead are refused per record; the rest go on.
	res, err := f.c.Write(ctx, "Lead", []crmsync.WriteOp{
		{Kind: crmsync.Update, ID: leads[0], Fields: crmsync.Fields{"Title": "Admiral"}},
		{Kind: crmsync.Upsert, MatchField: "HubSpot_Id__c", MatchValue: "hs-7", Fields: crmsync.Fields{"Title": "Admiral"}},
		{Kind: crmsync.Update, ID: leads[1], Fields: crmsync.Fields{"Title": "Boss"}},
	})
	require.NoError(t, err)
	for i := range 2 {
		assert.Equal(t, "CANNOT_UPDATE_CONVERTED_LEAD", recordCode(t, res[i].Err), "op %d", i)
		assert.True(t, crmsync.IsPermanent(res[i].Err), "op %d", i)
		assert.ErrorIs(t, res[i].Err, salesforce.ErrConvertedLead, "op %d", i)
		assert.ErrorIs(t, res[i].Err, crmsync.ErrRecordGone, "op %d: the Lead lives on as its Contact", i)
	}
	assert.NoError(t, res[2].Err)
	lead, _ := f.srv.Get(leads[0])
	assert.Nil(t, lead.Fields["Title"])

	// Conversion into an existing contact fills its empty fields only.
	acctIDs := f.srv.SeedAccounts(1)
	existing := f.srv.SeedRecords("Contact", crmsync.Fields{"LastName": "Kept", "AccountId": acctIDs[0]})
	conv2, err := f.srv.ConvertLead(leads[1], salesforcetest.ConvertOptions{AccountID: acctIDs[0], ContactID: existing[0], DoNotCreateOpportunity: true})
	require.NoError(t, err)
	assert.Equal(t, existing[0], conv2.ContactID)
	assert.Empty(t, conv2.OpportunityID)
	kept, _ := f.srv.Get(existing[0])
	assert.Equal(t, "Kept", kept.Fields["LastName"])
	assert.Equal(t, "Boss", kept.Fields["Title"])
	_, err = f.srv.ConvertLead(leads[1], salesforcetest.ConvertOptions{})
	assert.Error(t, err, "a lead converts once")
}

func TestDeletedPerObject(t *testing.T) {
	f := setup(t, nil, nil)
	accts := f.srv.SeedAccounts(3)
	_, contacts := f.srv.SeedStorm(0, 0)
	require.Empty(t, contacts)
	cs := f.srv.SeedRecords("Contact", crmsync.Fields{"LastName": "Child", "AccountId": accts[0]}, crmsync.Fields{"LastName": "Moved", "AccountId": accts[2]})
	opps := f.srv.SeedRecords("Opportunity", crmsync.Fields{"Name": "Child deal", "StageName": "Prospecting", "CloseDate": "2026-06-30", "AccountId": accts[0]})
	_, err := f.srv.AddContactRole(opps[0], cs[0], "", true)
	require.NoError(t, err)
	leads := f.srv.SeedLeads(1)
	f.clk.Advance(time.Minute)
	since := f.clk.Now()
	f.clk.Advance(time.Second)

	// Deleting an account takes its contacts and opportunities along.
	require.NoError(t, f.srv.Delete(accts[0]))
	require.NoError(t, f.srv.Delete(leads[0]))
	// Merging accounts re-parents the loser's contacts.
	require.NoError(t, f.srv.Merge(accts[1], accts[2]))
	f.clk.Advance(time.Second)

	gone := map[string][]string{"Account": {accts[0], accts[2]}, "Contact": {cs[0]}, "Opportunity": {opps[0]}, "Lead": {leads[0]}}
	for object, want := range gone {
		recs := changesAll(t, f.c, object, since, true, nil)
		var ids []string
		for _, r := range recs {
			assert.True(t, r.Archived, "%s %s", object, r.ID)
			ids = append(ids, r.ID)
		}
		assert.ElementsMatch(t, want, ids, "deleted %s", object)
	}
	recs := byID(changesAll(t, f.c, "Account", since, true, nil))
	assert.Equal(t, accts[1], recs[accts[2]].MergedInto)
	assert.Empty(t, recs[accts[0]].MergedInto)
	moved, err := f.c.Lookup(ctx, "Contact", "id", []string{cs[1]}, []string{"AccountId"})
	require.NoError(t, err)
	require.Len(t, moved, 1)
	assert.Equal(t, accts[1], moved[0].Fields["AccountId"])
	assert.Nil(t, f.srv.ContactRoles(opps[0]))

	// Undelete brings the cascade back.
	require.NoError(t, f.srv.Undelete(accts[0]))
	got, _ := f.srv.Get(cs[0])
	assert.False(t, got.Archived)
	assert.Equal(t, []string{cs[0]}, f.srv.ContactRoles(opps[0]))
}

func TestObjectsUnderHostility(t *testing.T) {
	f := setup(t, func(c *salesforcetest.Config) { salesforcetest.Hostile(7)(c) }, nil)
	since := f.clk.Now().Add(-salesforcetest.MaxSkew - time.Second)
	ops := make([]crmsync.WriteOp, 450)
	for i := range ops {
		ops[i] = crmsync.WriteOp{Kind: crmsync.Upsert, MatchField: "HubSpot_Id__c", MatchValue: fmt.Sprintf("co-%d", i),
			Fields: crmsync.Fields{"Name": fmt.Sprintf("Company %d", i)}}
	}
	f.srv.FailRecords("UNABLE_TO_LOCK_ROW", "unable to obtain exclusive access to this record", 1, "co-3")
	ids := map[string]bool{}
	pending := ops
	for round := 0; len(pending) > 0; round++ {
		require.Less(t, round, 20, "writes never settled")
		before := f.srv.Calls()["upsert"]
		res, err := f.c.Write(ctx, "Account", pending)
		require.NoError(t, err)
		assert.LessOrEqual(t, f.srv.Calls()["upsert"]-before, (len(pending)+199)/200+8, "batches of 200 (and retries)")
		var again []crmsync.WriteOp
		for i, r := range res {
			if r.Err != nil {
				again = append(again, pending[i])
				continue
			}
			ids[r.ID] = true
		}
		pending = again
	}
	assert.Len(t, ids, 450)
	f.clk.Advance(salesforcetest.MaxSkew + time.Second)
	recs := changesAll(t, f.c, "Account", since, false, []string{"Name"})
	assert.Len(t, byID(recs), 450)
	st := f.c.Stats()
	assert.Positive(t, st.APIUsed, "usage learnt from Sforce-Limit-Info")
}

func TestContactRolesAcrossSubqueryPages(t *testing.T) {
	f := setup(t, func(c *salesforcetest.Config) { c.SubqueryPageSize = 2 }, nil)
	since := f.clk.Now().Add(-time.Minute)
	contacts := f.srv.SeedContacts(5)
	opps := f.srv.SeedRecords("Opportunity", crmsync.Fields{"Name": "Big", "StageName": "Prospecting", "CloseDate": "2026-06-30"})
	for _, c := range contacts {
		_, err := f.srv.AddContactRole(opps[0], c, "", false)
		require.NoError(t, err)
	}
	recs := changesAll(t, f.c, "Opportunity", since, false, []string{salesforce.ContactRolesField})
	require.Len(t, recs, 1)
	want := append([]string(nil), contacts...)
	sort.Strings(want)
	assert.Equal(t, want, recs[0].Fields[salesforce.ContactRolesField])
	assert.Equal(t, 2, f.srv.Calls()["queryMore"], "5 roles in pages of 2: two more pages")
}

func TestHiddenFieldPerObject(t *testing.T) {
	f := setup(t, nil, nil)
	since := f.clk.Now().Add(-time.Minute)
	f.srv.SeedAccounts(1)
	f.srv.SeedContacts(1)
	require.NoError(t, f.srv.HideObjectField("Account", "Website"))
	_, err := f.c.Changes(ctx, crmsync.ChangeQuery{Object: "Account", Since: since, Fields: []string{"Name", "Website"}})
	var fe *crmsync.FieldError
	require.ErrorAs(t, err, &fe)
	assert.Equal(t, crmsync.FieldError{System: "salesforce", Object: "Account", Fields: []string{"Website"}}, *fe)
	assert.Len(t, changesAll(t, f.c, "Contact", since, false, []string{"Email"}), 1, "Contact is not affected")
	s, err := f.c.Schema(ctx, "Account")
	require.NoError(t, err)
	for _, fs := range s.Fields {
		assert.NotEqual(t, "Website", fs.Name, "describe is filtered by field-level security")
	}
	f.srv.RestoreObjectField("Account", "Website")
	assert.Len(t, changesAll(t, f.c, "Account", since, false, []string{"Website"}), 1)
}
