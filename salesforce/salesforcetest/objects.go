package salesforcetest

import (
	"net/http"
	"slices"
	"strings"
)

// sobject is one sObject type the fake holds.
type sobject struct {
	name   string
	plural string
	prefix string // key prefix of its ids: 001, 003, 006, 00Q, 00K
	fields []fieldDef
	byName map[string]fieldDef // lower-case name → def
	// required lists the fields a create must set (beyond Nillable false:
	// those are checked on every write).
	required []string
	// mergeable objects are those SOAP merge takes: Lead, Contact, Account.
	mergeable bool
	// children maps a lower-case child relationship name (as a SOQL
	// subquery names it) to the child object and its reference field.
	children map[string]childRel
	// uniq indexes the unique and external-id fields: field name → fold
	// key of a string value (see foldKey) → the records holding it,
	// deleted ones included.
	uniq map[string]map[string][]*record
}

// childRel is a child relationship: the child object and its field that
// refers to the parent.
type childRel struct {
	object string // child object name
	field  string // the child's reference field
}

// The fake's objects, by name.
const (
	objAccount     = "Account"
	objContact     = "Contact"
	objLead        = "Lead"
	objOpportunity = "Opportunity"
	objContactRole = "OpportunityContactRole"
)

// OpportunityStages are the fake's Opportunity.StageName values, in
// sales-process order, as a default org has them.
var OpportunityStages = []string{"Prospecting", "Qualification", "Needs Analysis", "Value Proposition",
	"Id. Decision Makers", "Perception Analysis", "Proposal/Price Quote", "Negotiation/Review", "Closed Won", "Closed Lost"}

// LeadStatuses are the fake's Lead.Status values; ConvertedLeadStatus is
// the one whose LeadStatus has IsConverted = true.
var LeadStatuses = []string{"Open - Not Contacted", "Working - Contacted", "Closed - Converted", "Closed - Not Converted"}

// ConvertedLeadStatus is the Lead.Status a conversion sets.
const ConvertedLeadStatus = "Closed - Converted"

// ContactRoles are the OpportunityContactRole.Role picklist values.
var ContactRoles = []string{"Business User", "Decision Maker", "Economic Buyer", "Economic Decision Maker",
	"Evaluator", "Executive Sponsor", "Influencer", "Technical Buyer", "Other"}

func newObject(name, plural, prefix string, fields []fieldDef, required ...string) *sobject {
	o := &sobject{name: name, plural: plural, prefix: prefix, fields: fields, byName: map[string]fieldDef{},
		required: required, children: map[string]childRel{}}
	for _, f := range fields {
		o.byName[strings.ToLower(f.Name)] = f
	}
	return o
}

func (o *sobject) addField(fd fieldDef) {
	o.fields = append(o.fields, fd)
	o.byName[strings.ToLower(fd.Name)] = fd
}

// field constructors shared by the objects.
func sysField(name, typ string) fieldDef {
	return fieldDef{Name: name, Type: typ, DefaultedOnCreate: true}
}

func strField(name, typ string, length int) fieldDef {
	return fieldDef{Name: name, Type: typ, Length: length, Nillable: true, Createable: true, Updateable: true}
}

func refField(name, to string) fieldDef {
	f := strField(name, "reference", 18)
	f.RefTo = to
	return f
}

func readOnly(fd fieldDef) fieldDef {
	fd.Createable, fd.Updateable = false, false
	return fd
}

func picklist(name string, restricted bool, values ...string) fieldDef {
	f := strField(name, "picklist", 255)
	f.Restricted, f.Picklist = restricted, values
	return f
}

func extField(ext string) fieldDef {
	f := strField(ext, "string", 255)
	f.Custom, f.ExternalID, f.Unique = true, true, true
	return f
}

func stampFields() []fieldDef {
	return []fieldDef{sysField("CreatedDate", "datetime"), sysField("LastModifiedDate", "datetime"), sysField("LastModifiedById", "reference"), sysField("SystemModstamp", "datetime")}
}

func head() []fieldDef {
	return []fieldDef{sysField("Id", "id"), sysField("IsDeleted", "boolean")}
}

// accountFields returns the fake Account's fields.
func accountFields(ext string) []fieldDef {
	name := strField("Name", "string", 255)
	name.Nillable = false
	fs := append(head(), readOnly(refField("MasterRecordId", objAccount)), name,
		strField("Website", "url", 255), strField("Phone", "phone", 40),
		picklist("Industry", false, "Agriculture", "Banking", "Education", "Manufacturing", "Retail", "Technology", "Other"),
		strField("NumberOfEmployees", "int", 0), strField("AnnualRevenue", "currency", 0),
		strField("BillingCity", "string", 40), strField("BillingCountry", "string", 80),
		strField("Description", "textarea", 32000), extField(ext))
	return append(fs, stampFields()...)
}

// opportunityFields returns the fake Opportunity's fields.
func opportunityFields(ext string) []fieldDef {
	name := strField("Name", "string", 120)
	name.Nillable = false
	stage := picklist("StageName", true, OpportunityStages...)
	stage.Nillable = false
	closeDate := strField("CloseDate", "date", 0)
	closeDate.Nillable = false
	fs := append(head(), name, stage, closeDate, refField("AccountId", objAccount),
		strField("Amount", "currency", 0), strField("Probability", "percent", 0),
		picklist("Type", false, "New Customer", "Existing Customer - Upgrade", "Existing Customer - Replacement", "Existing Customer - Downgrade"),
		picklist("LeadSource", false, "Web", "Phone Inquiry", "Partner Referral", "Purchased List", "Other"),
		readOnly(strField("IsClosed", "boolean", 0)), readOnly(strField("IsWon", "boolean", 0)),
		strField("Description", "textarea", 32000), extField(ext))
	return append(fs, stampFields()...)
}

// leadFields returns the fake Lead's fields.
func leadFields(ext string) []fieldDef {
	last := strField("LastName", "string", 80)
	last.Nillable = false
	company := strField("Company", "string", 255)
	company.Nillable = false
	status := picklist("Status", true, LeadStatuses...)
	status.Nillable, status.DefaultedOnCreate = false, true
	fs := append(head(), readOnly(refField("MasterRecordId", objLead)),
		strField("FirstName", "string", 40), last, company, strField("Email", "email", 80),
		strField("Phone", "phone", 40), strField("Title", "string", 128),
		picklist("LeadSource", false, "Web", "Phone Inquiry", "Partner Referral", "Purchased List", "Other"),
		status, picklist("Industry", false, "Agriculture", "Banking", "Education", "Manufacturing", "Retail", "Technology", "Other"),
		strField("Description", "textarea", 32000),
		readOnly(strField("IsConverted", "boolean", 0)), readOnly(strField("ConvertedDate", "date", 0)),
		readOnly(refField("ConvertedAccountId", objAccount)), readOnly(refField("ConvertedContactId", objContact)),
		readOnly(refField("ConvertedOpportunityId", objOpportunity)), extField(ext))
	return append(fs, stampFields()...)
}

// contactRoleFields returns the fake OpportunityContactRole's fields.
func contactRoleFields() []fieldDef {
	opp := refField("OpportunityId", objOpportunity)
	opp.Nillable, opp.Updateable = false, false
	contact := refField("ContactId", objContact)
	contact.Nillable = false
	primary := strField("IsPrimary", "boolean", 0)
	primary.Nillable, primary.DefaultedOnCreate = false, true
	fs := append(head(), opp, contact, picklist("Role", false, ContactRoles...), primary)
	return append(fs, stampFields()...)
}

// object returns the object named name (any case), or nil.
func (s *Server) object(name string) *sobject { return s.objects[strings.ToLower(name)] }

// objectOr404 returns the object named by the path, or writes Salesforce's
// 404 for an unknown sObject type.
func (s *Server) objectOr404(w http.ResponseWriter, name string) *sobject {
	o := s.object(name)
	if o == nil {
		writeError(w, http.StatusNotFound, "NOT_FOUND", "The requested resource does not exist")
	}
	return o
}

// objOf returns r's object; records made without one are Contacts.
func (s *Server) objOf(r *record) *sobject {
	if r.obj == nil {
		return s.contact
	}
	return r.obj
}

// objectOfID returns the object whose key prefix id has, or nil.
func (s *Server) objectOfID(id string) *sobject {
	if len(id) < 3 {
		return nil
	}
	for _, o := range s.objectList {
		if o.prefix == id[:3] {
			return o
		}
	}
	return nil
}

// hiddenKey is the s.hidden key of a field of an object.
func hiddenKey(o *sobject, field string) string { return strings.ToLower(o.name + "." + field) }

// numericType reports a Salesforce number type (compared and validated as double).
func numericType(typ string) bool {
	switch typ {
	case "double", "currency", "percent", "int":
		return true
	}
	return false
}

// baseType folds the number types into double and reference into id, the
// types the fake compares and validates.
func baseType(typ string) string {
	switch {
	case numericType(typ):
		return "double"
	case typ == "reference":
		return "id"
	}
	return typ
}

// derived returns the value of a field the org computes, and whether name
// is one; s.mu is held.
func derivedValue(o *sobject, r *record, name string) (any, bool) {
	if o == nil || o.name != objOpportunity {
		return nil, false
	}
	stage, _ := r.fields["StageName"].(string)
	switch name {
	case "IsClosed":
		return strings.HasPrefix(stage, "Closed"), true
	case "IsWon":
		return stage == "Closed Won", true
	}
	return nil, false
}

// sortedIDs returns ids sorted, or nil when empty.
func sortedIDs(ids []string) []string {
	if len(ids) == 0 {
		return nil
	}
	slices.Sort(ids)
	return ids
}

// refTo is a field's describe referenceTo: the object a reference field
// refers to.
func refTo(f fieldDef) []string {
	if f.RefTo == "" {
		return []string{}
	}
	return []string{f.RefTo}
}

// relationshipName is a reference field's relationship name (AccountId:
// Account), nil for other fields.
func relationshipName(f fieldDef) any {
	if f.Type != "reference" {
		return nil
	}
	return strings.TrimSuffix(f.Name, "Id")
}
