package crmsync

import (
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"slices"
	"testing"
)

func playbookSchemas() (Schema, Schema) {
	hsSchema := Schema{Object: "contacts", Fields: []FieldSchema{
		{Name: "email", Type: TypeString, Unique: true},
		{Name: "crmsync_archived", Type: TypeBool},
		{Name: "lifecyclestage", Type: TypeEnum, Options: []string{"subscriber", "lead", "marketingqualifiedlead", "salesqualifiedlead", "opportunity", "customer", "evangelist"}},
		{Name: "hubspotscore", Type: TypeNumber, ReadOnly: true},
		{Name: "recent_conversion_date", Type: TypeDateTime},
		{Name: "hubspot_owner_id", Type: TypeEnum, Options: []string{"41235511", "41235512"}},
		{Name: "sf_deal_stage", Type: TypeEnum, Options: []string{"Prospecting", "Closed Won"}},
		{Name: "sf_close_date", Type: TypeDate},
		{Name: "firstname", Type: TypeString},
		{Name: "lastname", Type: TypeString},
		{Name: "phone", Type: TypeString},
		{Name: "hs_object_id", Type: TypeNumber},
		{Name: "jobtitle", Type: TypeString},
	}}
	sfSchema := Schema{Object: "Contact", Fields: []FieldSchema{
		{Name: "Id", Type: TypeReference},
		{Name: "Email", Type: TypeString},
		{Name: "Archived__c", Type: TypeBool},
		{Name: "Lifecycle_Stage__c", Type: TypeEnum, Options: []string{"Subscriber", "Lead", "MQL", "SQL", "Opportunity", "Customer"}},
		{Name: "Lead_Score__c", Type: TypeString}, // drifted: was a number
		{Name: "Last_Form_Submission__c", Type: TypeDateTime},
		{Name: "OwnerId", Type: TypeReference},
		{Name: "Deal_Stage__c", Type: TypeEnum, Options: []string{"Prospecting", "Closed Won", "Closed Lost"}, Restricted: true},
		// Close_Date__c was deleted
		{Name: "FirstName", Type: TypeString},
		{Name: "LastName", Type: TypeString},
		{Name: "Phone", Type: TypeString},
	}}
	return hsSchema, sfSchema
}

func TestSchemaDiff(t *testing.T) {
	p, err := NewPolicy(playbook())
	require.NoError(t, err)
	a, b := playbookSchemas()
	got := SchemaDiff(a, b, p)
	want := Diff{
		UnmappedA: []string{"hs_object_id", "jobtitle"},
		UnmappedB: []string{"Id"},
		MissingB:  []string{"Close_Date__c"},
		TypeMismatches: []TypeMismatch{
			{Field: "hubspotscore", Side: sf, Name: "Lead_Score__c", Want: TypeNumber, Got: TypeString},
		},
		UnmappedOptions: []UnmappedOption{
			{Field: "lifecyclestage", Side: hs, Value: "evangelist"},
			{Field: "sf_deal_stage", Side: sf, Value: "Closed Lost"},
		},
	}
	assert.Equal(t, want, got, "SchemaDiff =\n%+v\nwant\n%+v", got, want)
	assert.False(t, got.Empty(), "Empty() = true for a diff with findings")

	// Naming fields in Never rules marks them known.
	pol := playbook()
	pol.Rules = append(pol.Rules, FieldRule{A: "hs_object_id", Rule: Never()}, FieldRule{A: "jobtitle", B: "Title", Rule: Never()})
	p2, err := NewPolicy(pol)
	require.NoError(t, err)
	got = SchemaDiff(a, b, p2)
	assert.Empty(t, got.UnmappedA, "with Never rules: UnmappedA %v MissingB %v", got.UnmappedA, got.MissingB)
	assert.True(t, slices.Equal(got.MissingB, []string{"Close_Date__c", "Title"}), "with Never rules: UnmappedA %v MissingB %v", got.UnmappedA, got.MissingB)

	// Matching schemas give an empty diff.
	fixed := b
	fixed.Fields = append(slices.Clone(b.Fields), FieldSchema{Name: "Close_Date__c", Type: TypeDate})
	for i := range fixed.Fields {
		switch fixed.Fields[i].Name {
		case "Lead_Score__c":
			fixed.Fields[i].Type = TypeNumber
		case "Deal_Stage__c":
			fixed.Fields[i].Options = []string{"Prospecting", "Closed Won"}
		}
	}
	fixedA := a
	fixedA.Fields = slices.DeleteFunc(slices.Clone(a.Fields), func(f FieldSchema) bool {
		return f.Name == "hs_object_id" || f.Name == "jobtitle"
	})
	for i := range fixedA.Fields {
		if fixedA.Fields[i].Name == "lifecyclestage" {
			fixedA.Fields[i].Options = fixedA.Fields[i].Options[:6]
		}
	}
	fixed.Fields = slices.DeleteFunc(fixed.Fields, func(f FieldSchema) bool { return f.Name == "Id" })
	d := SchemaDiff(fixedA, fixed, p)
	assert.True(t, d.Empty(), "SchemaDiff of matching schemas = %+v, want empty", d)
}

func TestUnknownFields(t *testing.T) {
	p, _ := NewPolicy(playbook())
	rec := Record{ID: "101", Fields: Fields{"email": "a@b.c", "firstname": "Ada", "hs_object_id": "101", "zz_new": "x", "crmsync_archived": "false"}}
	got := UnknownFields(rec, hs, p)
	assert.True(t, slices.Equal(got, []string{"hs_object_id", "zz_new"}), "UnknownFields(hubspot) = %v", got)
	rec = Record{ID: "003", Fields: Fields{"Email": "a@b.c", "Phone": "1", "Archived__c": false, "Title": "CTO"}}
	got = UnknownFields(rec, sf, p)
	assert.True(t, slices.Equal(got, []string{"Title"}), "UnknownFields(salesforce) = %v", got)
}
