package playbook

import (
	"strings"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/hubspot/hubspottest"
)

// The link fields of companies and deals: HubSpot unique properties
// holding the Salesforce id (contacts use hubspotLinkField), and the
// Salesforce external-id field holding the HubSpot id, the same on every
// object.
const (
	hubspotCompanyLinkField = "salesforce_account_id"
	hubspotDealLinkField    = "salesforce_opportunity_id"
)

// dealStageMap maps HubSpot's default pipeline stages to Salesforce
// opportunity stages (reversible: one stage each).
var dealStageMap = crmsync.PicklistMap{
	"appointmentscheduled":  "Prospecting",
	"qualifiedtobuy":        "Qualification",
	"presentationscheduled": "Value Proposition",
	"decisionmakerboughtin": "Id. Decision Makers",
	"contractsent":          "Negotiation/Review",
	"closedwon":             "Closed Won",
	"closedlost":            "Closed Lost",
}

// salesforceStageExtra are the Salesforce default stages HubSpot's default
// pipeline has no stage for, each carried to the HubSpot stage nearest
// before it. They travel one way: a HubSpot stage goes back as the one
// Salesforce stage dealStageMap names, which Salesforce never takes
// (the stage is Salesforce's unless blank), so nothing flaps.
var salesforceStageExtra = map[string]string{
	"Needs Analysis":       "qualifiedtobuy",
	"Perception Analysis":  "decisionmakerboughtin",
	"Proposal/Price Quote": "contractsent",
}

// stageToHubSpot carries a Salesforce stage to HubSpot: dealStageMap read
// backwards, then salesforceStageExtra; any other stage has no mapping.
var stageToHubSpot = crmsync.TransformFunc(func(v any) (any, error) {
	s, ok := v.(string)
	if !ok || s == "" {
		return v, nil
	}
	for hs, sf := range dealStageMap {
		if sf == s {
			return hs, nil
		}
	}
	if hs, ok := salesforceStageExtra[s]; ok {
		return hs, nil
	}
	return nil, crmsync.ErrUnmapped
})

// CompaniesPolicy is the playbook's policy for HubSpot companies and
// Salesforce accounts: every field to the most recent edit (they are
// identity fields). A company on both sides before the first pass is
// matched on its domain: HubSpot's domain and Salesforce's Website, each
// taken as a bare host (BareHost). HubSpot finds companies by domain with
// the search API (domain is not a unique property); Salesforce finds
// accounts with a SOQL IN over the forms a website of that host takes
// (WebsiteForms: with or without scheme and "www."). A Website in another
// form (with a path, say) is matched when the account is read, not when a
// HubSpot company looks for it. A domain two records share on a side
// (Identity.Strict) links nothing and creates nothing: the records are
// reported as skips until a person links one by hand (its link property).
func CompaniesPolicy() crmsync.Policy {
	return crmsync.Policy{
		A: "hubspot", B: "salesforce",
		Identity: crmsync.Identity{A: "domain", B: "Website", Normalize: BareHost,
			ValuesA: func(k string) []string { return []string{k, "www." + k} },
			ValuesB: WebsiteForms, Strict: true},
		Rules: []crmsync.FieldRule{
			{A: "name", B: "Name", Type: crmsync.TypeString, Rule: crmsync.MostRecent()},
			{A: "domain", B: "Website", Type: crmsync.TypeString, Rule: crmsync.MostRecent()},
			{A: "phone", B: "Phone", Type: crmsync.TypeString, Rule: crmsync.MostRecent()},
			{A: "city", B: "BillingCity", Type: crmsync.TypeString, Rule: crmsync.MostRecent()},
			{A: "country", B: "BillingCountry", Type: crmsync.TypeString, Rule: crmsync.MostRecent()},
		},
	}
}

// PeoplePolicy is the playbook's contacts policy (see Policy) with the
// contact's company: HubSpot's primary company association and
// Salesforce's AccountId, references to the companies pair, to the most
// recent edit.
func PeoplePolicy() crmsync.Policy {
	p := contactsPolicy()
	p.Rules = append(p.Rules, crmsync.FieldRule{Name: "company", A: "associations.companies", B: "AccountId",
		Type: crmsync.TypeReference, Ref: "companies", Rule: crmsync.MostRecent()})
	return p
}

// DealsPolicy is the playbook's policy for HubSpot deals and Salesforce
// opportunities. Salesforce owns the sales fields (stage, amount, close
// date): its value wins unless it is blank, so a deal created in HubSpot
// reaches Salesforce with HubSpot's values, and from then on a HubSpot edit
// is reverted. The name goes to the most recent edit, and so do the
// references: the deal's company (Opportunity.AccountId) and its contacts
// (OpportunityContactRole). Deals have no identity to match on: the
// identity fields are the link fields, which never hold each other's value.
func DealsPolicy() crmsync.Policy {
	return crmsync.Policy{
		A: "hubspot", B: "salesforce",
		Identity: crmsync.Identity{A: hubspotDealLinkField, B: salesforceLinkField},
		Rules: []crmsync.FieldRule{
			{A: "dealname", B: "Name", Type: crmsync.TypeString, Rule: crmsync.MostRecent()},
			{A: "dealstage", B: "StageName", Type: crmsync.TypeEnum, ToB: dealStageMap, ToA: stageToHubSpot, Rule: crmsync.PreferUnlessBlank("salesforce")},
			{A: "amount", B: "Amount", Type: crmsync.TypeNumber, Rule: crmsync.PreferUnlessBlank("salesforce")},
			{A: "closedate", B: "CloseDate", Type: crmsync.TypeDate, Rule: crmsync.PreferUnlessBlank("salesforce")},
			{Name: "company", A: "associations.companies", B: "AccountId", Type: crmsync.TypeReference, Ref: "companies", Rule: crmsync.MostRecent()},
			{Name: "contacts", A: "associations.contacts", B: "OpportunityContactRoles", Type: crmsync.TypeReferences, Ref: "contacts", Rule: crmsync.MostRecent()},
		},
	}
}

// leadOnly are the people policy's Salesforce fields a Lead does not have
// (the org's custom fields are on Contact, and a Lead has no account).
var leadOnly = []string{"AccountId", "OwnerId", "Lifecycle_Stage__c", "Lead_Score__c", "Last_Form_Submission__c",
	"Deal_Stage__c", "Close_Date__c", "Archived__c"}

// leadStages are the HubSpot lifecycle stages of people who are not
// customers yet: a new HubSpot contact at one of them becomes a
// Salesforce Lead, any other a Contact.
var leadStages = map[string]bool{"subscriber": true, "lead": true, "marketingqualifiedlead": true}

// RouteByLifecycleStage is the playbook's routing rule: a new HubSpot
// contact that is a subscriber, a lead or a marketing-qualified lead goes
// to Salesforce as a Lead, anyone else as a Contact.
func RouteByLifecycleStage(src crmsync.Record) string {
	if s, _ := src.Fields["lifecyclestage"].(string); leadStages[s] {
		return "Lead"
	}
	return "Contact"
}

// People returns the playbook's Salesforce people object: Leads (read
// first, so a conversion relinks before its Contact is read) and Contacts,
// new HubSpot contacts routed by RouteByLifecycleStage.
func People(sf crmsync.CRM) (*crmsync.Routed, error) {
	lead := crmsync.RoutedObject{Name: "Lead", Fields: map[string]string{},
		Defaults: crmsync.Fields{"Company": "[not provided]"}, Unreferenced: true}
	for _, f := range leadOnly {
		lead.Fields[f] = ""
	}
	return crmsync.NewRouted(crmsync.RoutedConfig{CRM: sf,
		Objects: []crmsync.RoutedObject{lead, {Name: "Contact"}},
		Route:   RouteByLifecycleStage})
}

// GraphConfig tunes the playbook's graph.
type GraphConfig struct {
	// OnConflict and Progress are handed to every pair's Sync.
	OnConflict []crmsync.ConflictHandler
	Progress   func(crmsync.Progress)
	// Edit, if set, may change each pair's SyncConfig (by pair name) before
	// the Sync is made.
	Edit func(pair string, c *crmsync.SyncConfig)
}

// NewGraph returns the playbook's three pairs between hs and sf, run
// parents first: companies <-> Account, contacts <-> Lead and Contact,
// deals <-> Opportunity. The contacts pair adopts the links the main job
// made under the plain key with -objects contacts (GraphPair.AdoptKeyLinks),
// so a store switching to the graph keeps its contacts' links and bases.
func NewGraph(hs, sf crmsync.CRM, c GraphConfig) (*crmsync.Graph, error) {
	people, err := People(sf)
	if err != nil {
		return nil, err
	}
	mk := func(name string, b crmsync.CRM, objA, objB, linkA string, pol crmsync.Policy) (*crmsync.Sync, error) {
		sc := crmsync.SyncConfig{A: hs, B: b, ObjectA: objA, ObjectB: objB, Policy: &pol,
			LinkFieldA: linkA, LinkFieldB: salesforceLinkField, OnConflict: c.OnConflict, Progress: c.Progress}
		if c.Edit != nil {
			c.Edit(name, &sc)
		}
		return crmsync.NewSync(sc)
	}
	companies, err := mk("companies", sf, "companies", "Account", hubspotCompanyLinkField, CompaniesPolicy())
	if err != nil {
		return nil, err
	}
	contacts, err := mk("contacts", people, "contacts", people.Object(), hubspotLinkField, PeoplePolicy())
	if err != nil {
		return nil, err
	}
	deals, err := mk("deals", sf, "deals", "Opportunity", hubspotDealLinkField, DealsPolicy())
	if err != nil {
		return nil, err
	}
	return crmsync.NewGraph(crmsync.GraphConfig{Pairs: []crmsync.GraphPair{
		{Name: "companies", Sync: companies}, {Name: "contacts", Sync: contacts, AdoptKeyLinks: true}, {Name: "deals", Sync: deals},
	}})
}

// GraphProperties are the portal's custom company and deal properties the
// graph's policies use (the link properties), by object, for a fake
// HubSpot (crmsync fake defines them).
func GraphProperties() map[string][]hubspottest.Property { return graphProperties() }

// graphProperties are the portal's custom company and deal properties the
// graph's policies use: the link properties.
func graphProperties() map[string][]hubspottest.Property {
	return map[string][]hubspottest.Property{
		"companies": {{Name: hubspotCompanyLinkField, Type: "string", FieldType: "text", Unique: true}},
		"deals":     {{Name: hubspotDealLinkField, Type: "string", FieldType: "text", Unique: true}},
	}
}

// BareHost turns a domain or website into its bare host: lower case, no
// scheme, no "www.", no port, path, query or trailing dot.
func BareHost(s string) string {
	s = strings.ToLower(strings.TrimSpace(s))
	if i := strings.Index(s, "://"); i >= 0 {
		s = s[i+3:]
	}
	if i := strings.IndexAny(s, "/?#"); i >= 0 {
		s = s[:i]
	}
	if i := strings.LastIndex(s, "@"); i >= 0 {
		s = s[i+1:]
	}
	if i := strings.LastIndex(s, ":"); i >= 0 {
		s = s[:i]
	}
	s = strings.TrimSuffix(strings.TrimPrefix(s, "www."), ".")
	return s
}

// WebsiteForms are the Website values whose bare host is host, as people
// type or paste them: with or without http:// or https:// and "www.", and
// the https forms with a trailing slash (as browsers copy them). Other
// forms (a path, http with a trailing slash) are matched when the account
// itself is read, not when a HubSpot company looks for it. Each form is one
// more value in the SOQL IN lists: eight keep a first sync of 500 new
// companies within the graph's call budget.
func WebsiteForms(host string) []string {
	return []string{host, "www." + host, "https://" + host, "https://www." + host,
		"http://" + host, "http://www." + host, "https://" + host + "/", "https://www." + host + "/"}
}
