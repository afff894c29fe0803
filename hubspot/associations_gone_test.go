package hubspot_test

import (
	"context"
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/hubspot"
)

// A record written with an association to an archived company keeps its
// id: the record exists, only the association was refused, and the error
// says so (a ReferenceError naming the field and the archived id, inside a
// PartialWriteError naming the field), so the sync links the record and
// parks nothing.
func TestWriteAssociationToArchivedRecordIsAReferenceError(t *testing.T) {
	srv := fastFake(t)
	c := newClient(t, srv)
	g := srv.SeedGraph(2, 0, 0)
	require.NoError(t, srv.Archive("companies", g.Companies[1]))
	live := srv.Seed("contacts", map[string]string{"email": "grace@example.com"})[0]
	gone := srv.Seed("contacts", map[string]string{"email": "ada@example.com"})[0]
	require.NoError(t, srv.Archive("contacts", gone))
	deal := srv.Seed("deals", map[string]string{"dealname": "Renewal"})[0]

	res, err := c.Write(context.Background(), "contacts", []crmsync.WriteOp{
		{Kind: crmsync.Create, Fields: crmsync.Fields{"email": "bill@example.com", hubspot.FieldCompanies: g.Companies[1]}},
		{Kind: crmsync.Create, Fields: crmsync.Fields{"email": "joan@example.com", hubspot.FieldCompanies: g.Companies[0]}},
	})
	require.NoError(t, err)
	require.Len(t, res, 2)
	require.Error(t, res[0].Err)
	assert.NotEmpty(t, res[0].ID, "the contact was made")
	assert.True(t, res[0].Created)
	rec, ok := srv.Get("contacts", res[0].ID)
	require.True(t, ok)
	assert.Equal(t, "bill@example.com", rec.Properties["email"])
	var re *crmsync.ReferenceError
	require.ErrorAs(t, res[0].Err, &re)
	assert.Equal(t, []string{hubspot.FieldCompanies}, re.Fields)
	assert.Equal(t, []string{g.Companies[1]}, re.IDs)
	var pe *crmsync.PartialWriteError
	require.ErrorAs(t, res[0].Err, &pe)
	assert.Equal(t, []string{hubspot.FieldCompanies}, pe.Fields)
	var ae *hubspot.AssociationError
	require.ErrorAs(t, res[0].Err, &ae, "the client's own error is kept")
	assert.True(t, crmsync.IsPermanent(res[0].Err))
	require.NoError(t, res[1].Err)
	assert.Equal(t, g.Companies[0], srv.PrimaryCompany("contacts", res[1].ID))

	// A deal's contacts: the live one is associated, the archived one named.
	res, err = c.Write(context.Background(), "deals", []crmsync.WriteOp{
		{Kind: crmsync.Update, ID: deal, Fields: crmsync.Fields{"dealname": "Renewal 2027", hubspot.FieldContacts: []string{gone, live}}},
	})
	require.NoError(t, err)
	require.ErrorAs(t, res[0].Err, &re)
	assert.Equal(t, []string{hubspot.FieldContacts}, re.Fields)
	assert.Equal(t, []string{gone}, re.IDs)
	assert.Equal(t, deal, res[0].ID)
	d, _ := srv.Get("deals", deal)
	assert.Equal(t, "Renewal 2027", d.Properties["dealname"])
}

// Any other refused association leaves the record written too: the error
// is a PartialWriteError naming the field, and no ReferenceError.
func TestWriteAssociationFailureIsAPartialWrite(t *testing.T) {
	srv := fastFake(t)
	c := newClient(t, srv)
	g := srv.SeedGraph(1, 1, 0)
	srv.FailAssociations("VALIDATION_ERROR", g.Contacts[0])
	other := srv.Seed("companies", map[string]string{"name": "Other"})[0]
	res, err := c.Write(context.Background(), "contacts", []crmsync.WriteOp{
		{Kind: crmsync.Update, ID: g.Contacts[0], Fields: crmsync.Fields{"firstname": "Grace", hubspot.FieldCompanies: other}},
	})
	require.NoError(t, err)
	var pe *crmsync.PartialWriteError
	require.ErrorAs(t, res[0].Err, &pe)
	assert.Equal(t, []string{hubspot.FieldCompanies}, pe.Fields)
	var re *crmsync.ReferenceError
	assert.False(t, errors.As(res[0].Err, &re), "not a reference to an archived record")
	assert.True(t, crmsync.IsPermanent(res[0].Err))
	assert.Equal(t, g.Contacts[0], res[0].ID)
}

// An update of a record archived since it was read fails with an error
// matching crmsync.ErrRecordGone.
func TestWriteToArchivedRecordIsRecordGone(t *testing.T) {
	srv := fastFake(t)
	c := newClient(t, srv)
	id := srv.Seed("contacts", map[string]string{"email": "ada@example.com"})[0]
	require.NoError(t, srv.Archive("contacts", id))
	res, err := c.Write(context.Background(), "contacts", []crmsync.WriteOp{
		{Kind: crmsync.Update, ID: id, Fields: crmsync.Fields{"firstname": "Ada"}},
	})
	require.NoError(t, err)
	require.ErrorIs(t, res[0].Err, crmsync.ErrRecordGone)
	assert.True(t, crmsync.IsPermanent(res[0].Err))
	assert.Empty(t, res[0].ID)
}
