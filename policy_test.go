package crmsync

import (
	"errors"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"slices"
	"strings"
	"testing"
)

// playbook is the reference contacts policy (see Example_policy).
func playbook() Policy {
	return Policy{
		A: hs, B: sf,
		Archived: ArchivedFields{A: "crmsync_archived", B: "Archived__c"},
		Rules: []FieldRule{
			{A: "lifecyclestage", B: "Lifecycle_Stage__c", Type: TypeEnum, Rule: Owner(hs),
				ToB: PicklistMap{"subscriber": "Subscriber", "lead": "Lead", "marketingqualifiedlead": "MQL",
					"salesqualifiedlead": "SQL", "opportunity": "Opportunity", "customer": "Customer"}},
			{A: "hubspotscore", B: "Lead_Score__c", Type: TypeNumber, Rule: Owner(hs)},
			{A: "recent_conversion_date", B: "Last_Form_Submission__c", Type: TypeDateTime, Rule: Owner(hs)},
			{A: "hubspot_owner_id", B: "OwnerId", Type: TypeReference, Rule: Owner(sf),
				ToA: OwnerMap{"005000000000001AAA": "41235511", "005000000000002AAA": "41235512"}},
			{A: "sf_deal_stage", B: "Deal_Stage__c", Type: TypeEnum, Rule: Owner(sf)},
			{A: "sf_close_date", B: "Close_Date__c", Type: TypeDate, Rule: Owner(sf)},
			{A: "firstname", B: "FirstName", Type: TypeString, Rule: MostRecent()},
			{A: "lastname", B: "LastName", Type: TypeString, Rule: MostRecent()},
			{A: "phone", B: "Phone", Type: TypeString, Rule: MostRecent()},
		},
	}
}

func TestValidateListsEveryProblem(t *testing.T) {
	tests := []struct {
		name string
		edit func(*Policy)
		want []string // substrings, one per problem, in order
	}{
		{"valid", func(*Policy) {}, nil},
		{"no systems", func(p *Policy) { p.A, p.B = "", "" }, []string{"both systems must be named", "rule owner names \"hubspot\"", "rule owner names \"hubspot\"", "rule owner names \"hubspot\"", "rule owner names \"salesforce\""}},
		{"same systems", func(p *Policy) { p.B = hs }, []string{"both named \"hubspot\""}},
		{"field twice on A", func(p *Policy) {
			p.Rules = append(p.Rules, FieldRule{Name: "phone2", A: "phone", B: "MobilePhone", Type: TypeString, Rule: MostRecent()})
		}, []string{"field \"phone\" on hubspot is also mapped by rule 8"}},
		{"field twice on B", func(p *Policy) {
			p.Rules = append(p.Rules, FieldRule{A: "mobilephone", B: "Phone", Type: TypeString, Rule: MostRecent()})
		}, []string{"field \"Phone\" on salesforce is also mapped by rule 8"}},
		{"archived field mapped", func(p *Policy) {
			p.Rules = append(p.Rules, FieldRule{A: "crmsync_archived", B: "X__c", Type: TypeBool, Rule: MostRecent()})
		}, []string{"is also the archived field"}},
		{"owner missing", func(p *Policy) { p.Rules[0].Rule = Rule{Kind: RuleOwner} }, []string{"rule owner names no system"}},
		{"owner unknown", func(p *Policy) { p.Rules[1].Rule = OneWay("pipedrive") }, []string{"names \"pipedrive\", which is neither"}},
		{"no rule", func(p *Policy) { p.Rules[2].Rule = Rule{} }, []string{"rule 2 (recent_conversion_date): no rule"}},
		{"nil func", func(p *Policy) { p.Rules[2].Rule = Func(nil) }, []string{"func rule has no func"}},
		{"empty names", func(p *Policy) { p.Rules[6].B = ""; p.Rules[7].A = "" }, []string{"no field named on side B", "no field named on side A"}},
		{"no type", func(p *Policy) { p.Rules[6].Type = "" }, []string{"no field type"}},
		{"picklist not reversible on a two-way rule", func(p *Policy) {
			p.Rules[0].Rule = MostRecent()
			p.Rules[0].ToB = PicklistMap{"lead": "Lead", "mql": "Lead"}
		}, []string{"not reversible: several values map to \"Lead\""}},
		{"func transform one way only on a two-way rule", func(p *Policy) {
			p.Rules[6].ToB = TransformFunc(func(v any) (any, error) { return v, nil })
		}, []string{"no transform to hubspot, and the other direction is not reversible"}},
		{"owner map needs the owner's direction", func(p *Policy) {
			p.Rules[3].ToA, p.Rules[3].ToB = nil, TransformFunc(func(v any) (any, error) { return v, nil })
		}, []string{"no transform to hubspot"}},
		{"several problems at once", func(p *Policy) {
			p.Rules[0].A = ""
			p.Rules[4].Rule = Owner("")
			p.Rules[5].Rule = PreferUnlessBlank("zoho")
		}, []string{"no field named on side A", "names no system", "\"zoho\""}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := playbook()
			tt.edit(&p)
			err := p.Validate()
			_, err2 := NewPolicy(p)
			require.Equal(t, err2 == nil, err == nil, "Validate = %v but NewPolicy = %v", err, err2)
			if tt.want == nil {
				require.NoError(t, err, "Validate = %v, want nil", err)
				return
			}
			var pe *PolicyError
			require.ErrorAs(t, err, &pe, "Validate = %v, want a *PolicyError", err)
			for _, w := range tt.want {
				assert.True(t, slices.ContainsFunc(pe.Problems, func(s string) bool { return strings.Contains(s, w) }), "Validate problems %q, want one containing %q", pe.Problems, w)
			}
		})
	}
}

func TestValidateDoesNotChangePolicy(t *testing.T) {
	p := playbook()
	require.NoError(t, p.Validate())
	assert.False(t, p.ready, "Validate changed its receiver")
	assert.Empty(t, p.Identity.A, "Validate changed its receiver")
	q, err := NewPolicy(p)
	require.NoError(t, err)
	if q.Identity.A != "email" || q.Identity.B != "Email" {
		t.Errorf("identity defaults %q/%q, want email/Email", q.Identity.A, q.Identity.B)
	}
	// An unbuilt policy works in Merge too.
	_, err = Merge(nil, Record{ID: "1"}, Record{ID: "2"}, &p)
	assert.NoError(t, err, "Merge with an unbuilt policy")
	bad := playbook()
	bad.A = ""
	_, err = Merge(nil, Record{}, Record{}, &bad)
	assert.Error(t, err, "Merge with an invalid policy succeeded")
}

func TestIdentityKey(t *testing.T) {
	p, _ := NewPolicy(playbook())
	tests := []struct {
		side   string
		fields Fields
		want   string
		ok     bool
	}{
		{hs, Fields{"email": "  Ada@Example.COM "}, "ada@example.com", true},
		{sf, Fields{"Email": "ADA@example.com"}, "ada@example.com", true},
		{sf, Fields{"email": "ada@example.com"}, "", false},
		{hs, Fields{"email": ""}, "", false},
		{hs, Fields{"email": nil}, "", false},
		{hs, Fields{}, "", false},
	}
	for _, tt := range tests {
		got, ok := p.IdentityKey(Record{Fields: tt.fields}, tt.side)
		assert.Equal(t, tt.want, got, "IdentityKey(%v, %s) = %q, %v, want %q, %v", tt.fields, tt.side, got, ok, tt.want, tt.ok)
		assert.Equal(t, tt.ok, ok, "IdentityKey(%v, %s) = %q, %v, want %q, %v", tt.fields, tt.side, got, ok, tt.want, tt.ok)
	}
	custom := playbook()
	custom.Identity = Identity{A: "sf_contact_id", B: "Id", Normalize: strings.TrimSpace}
	q, _ := NewPolicy(custom)
	got, ok := q.IdentityKey(Record{Fields: Fields{"Id": " 003ABC "}}, sf)
	assert.Equal(t, "003ABC", got, "custom IdentityKey = %q, %v", got, ok)
	assert.True(t, ok, "custom IdentityKey = %q, %v", got, ok)
}

func TestPicklistMap(t *testing.T) {
	m := PicklistMap{"a": "A", "b": "B", "c": "C"}
	if got, err := m.Transform("b"); got != "B" || err != nil {
		t.Errorf("Transform(b) = %v, %v", got, err)
	}
	if got, err := m.Transform("c;a"); got != "A;C" || err != nil {
		t.Errorf("Transform(c;a) = %v, %v", got, err)
	}
	if _, err := m.Transform("z"); !errors.Is(err, ErrUnmapped) {
		t.Errorf("Transform(z) error %v, want ErrUnmapped", err)
	}
	if _, err := m.Transform("a;z"); !errors.Is(err, ErrUnmapped) {
		t.Errorf("Transform(a;z) error %v, want ErrUnmapped", err)
	}
	inv, err := m.Inverse()
	require.NoError(t, err)
	got, _ := inv.Transform("C")
	assert.Equal(t, "c", got, "Inverse().Transform(C) = %v, want c", got)
	_, err = (OwnerMap{"1": "x", "2": "x"}).Inverse()
	assert.Error(t, err, "Inverse of a many-to-one map succeeded")
}

func TestSwappedPolicy(t *testing.T) {
	p, _ := NewPolicy(playbook())
	s := p.Swapped()
	assert.Equal(t, sf, s.A, "Swapped = %+v", s)
	assert.Equal(t, hs, s.B, "Swapped = %+v", s)
	assert.Equal(t, "Email", s.Identity.A, "Swapped = %+v", s)
	assert.Equal(t, "Archived__c", s.Archived.A, "Swapped = %+v", s)
	if s.Rules[0].A != "Lifecycle_Stage__c" || s.Rules[0].Key() != "lifecyclestage" || s.Rules[0].Rule.String() != p.Rules[0].Rule.String() {
		t.Errorf("Swapped rule 0 = %+v", s.Rules[0])
	}
	assert.NoError(t, s.Validate(), "Swapped policy invalid")
}
