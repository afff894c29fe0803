package playbook

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/hubspot"
	"github.com/crmsync/crmsync/hubspot/hubspottest"
	"github.com/crmsync/crmsync/salesforce"
	"github.com/crmsync/crmsync/salesforce/salesforcetest"
)

// The link fields: a HubSpot unique property holding the Salesforce id, and a
// Salesforce external-id field holding the HubSpot id.
const (
	hubspotLinkField    = "salesforce_contact_id"
	salesforceLinkField = "HubSpot_Id__c"
)

// owners maps Salesforce user ids to HubSpot owner ids.
var owners = crmsync.OwnerMap{
	"005000000000001AAA": "41235511",
	"005000000000002AAA": "41235512",
	"005000000000003AAA": "41235513",
}

// Policy returns the playbook's policy; see contactsPolicy.
func Policy() crmsync.Policy { return contactsPolicy() }

// LinkFields are the unique fields holding the other side's id: a HubSpot
// property and a Salesforce external-id field.
func LinkFields() (hubspot, salesforce string) { return hubspotLinkField, salesforceLinkField }

// contactsPolicy is the playbook's policy: HubSpot owns the marketing fields,
// Salesforce owns the sales fields, and the identity fields (email, names,
// phone) go to the most recent edit. Conflicts on owned fields are settled
// by the owner and a person is told; conflicts on the shared fields are held
// for a person to choose.
func contactsPolicy() crmsync.Policy {
	return crmsync.Policy{
		A: "hubspot",
		B: "salesforce",
		// Unlinked contacts match on email, trimmed and lower-cased.
		Identity: crmsync.Identity{A: "email", B: "Email"},
		// Archiving on one side sets a flag on the other; nothing is deleted.
		Archived: crmsync.ArchivedFields{A: "crmsync_archived", B: "Archived__c"},
		Rules: []crmsync.FieldRule{
			// Marketing: HubSpot owns them.
			{A: "lifecyclestage", B: "Lifecycle_Stage__c", Type: crmsync.TypeEnum, Rule: crmsync.Owner("hubspot")},
			{A: "hubspotscore", B: "Lead_Score__c", Type: crmsync.TypeNumber, Rule: crmsync.Owner("hubspot")},
			{A: "recent_conversion_date", B: "Last_Form_Submission__c", Type: crmsync.TypeDateTime, Rule: crmsync.Owner("hubspot")},

			// Sales: Salesforce owns them.
			{A: "hubspot_owner_id", B: "OwnerId", Type: crmsync.TypeReference, Rule: crmsync.Owner("salesforce"), ToA: owners},
			{A: "sf_deal_stage", B: "Deal_Stage__c", Type: crmsync.TypeEnum, Rule: crmsync.Owner("salesforce")},
			{A: "sf_close_date", B: "Close_Date__c", Type: crmsync.TypeDate, Rule: crmsync.Owner("salesforce")},

			// Identity: the most recent edit wins; a conflict waits for a person.
			{A: "email", B: "Email", Type: crmsync.TypeString, Rule: crmsync.MostRecent(), HoldConflicts: true},
			{A: "firstname", B: "FirstName", Type: crmsync.TypeString, Rule: crmsync.MostRecent(), HoldConflicts: true},
			{A: "lastname", B: "LastName", Type: crmsync.TypeString, Rule: crmsync.MostRecent(), HoldConflicts: true},
			{A: "phone", B: "Phone", Type: crmsync.TypeString, Rule: crmsync.MostRecent(), HoldConflicts: true},
		},
	}
}

var (
	stages     = []string{"subscriber", "lead", "marketingqualifiedlead", "salesqualifiedlead", "opportunity", "customer", "evangelist", "other"}
	dealStages = []string{"prospecting", "qualification", "proposal", "negotiation", "closedwon", "closedlost"}
)

// HubSpotProperties are the portal's custom contact properties the policy
// uses, for a fake HubSpot (crmsync fake defines them).
func HubSpotProperties() []hubspottest.Property { return hubspotProperties() }

// SalesforceFields are the org's custom Contact fields the policy uses, for
// a fake Salesforce.
func SalesforceFields() []salesforcetest.Field { return salesforceFields() }

// hubspotProperties are the portal's custom contact properties the policy uses.
func hubspotProperties() []hubspottest.Property {
	return []hubspottest.Property{
		{Name: hubspotLinkField, Type: "string", FieldType: "text", Unique: true},
		{Name: "crmsync_archived", Type: "bool", FieldType: "booleancheckbox"},
		{Name: "hubspotscore", Type: "number", FieldType: "number"},
		{Name: "recent_conversion_date", Type: "datetime", FieldType: "date"},
		{Name: "hubspot_owner_id", Type: "enumeration", FieldType: "select", Options: []string{"41235511", "41235512", "41235513"}},
		{Name: "sf_deal_stage", Type: "enumeration", FieldType: "select", Options: dealStages},
		{Name: "sf_close_date", Type: "date", FieldType: "date"},
	}
}

// salesforceFields are the org's custom Contact fields the policy uses.
func salesforceFields() []salesforcetest.Field {
	return []salesforcetest.Field{
		{Name: "OwnerId", Type: "reference"},
		{Name: "Lead_Score__c", Type: "double"},
		{Name: "Last_Form_Submission__c", Type: "datetime"},
		{Name: "Deal_Stage__c", Type: "picklist", Picklist: dealStages, Restricted: true},
		{Name: "Close_Date__c", Type: "date"},
		{Name: "Archived__c", Type: "boolean"},
	}
}

// fakes are both CRMs served in process.
type fakes struct {
	hs           *hubspottest.Server
	sf           *salesforcetest.Server
	hsURL, sfURL string
	hsToken      string
}

// startFakes starts both fakes on loopback httptest servers.
func startFakes(hsOpts []hubspottest.Option, sfOpts []func(*salesforcetest.Config)) (*fakes, func(), error) {
	hsCfg := hubspottest.Config{}
	for _, o := range hsOpts {
		o(&hsCfg)
	}
	hs, err := hubspottest.New(hsCfg)
	if err != nil {
		return nil, nil, err
	}
	for _, p := range hubspotProperties() {
		hs.DefineProperty("contacts", p)
	}
	for object, props := range graphProperties() {
		for _, p := range props {
			hs.DefineProperty(object, p)
		}
	}
	sfCfg := salesforcetest.Config{ExternalIDField: salesforceLinkField, Fields: salesforceFields()}
	for _, o := range sfOpts {
		o(&sfCfg)
	}
	sf, err := salesforcetest.New(sfCfg)
	if err != nil {
		return nil, nil, err
	}
	hsSrv, sfSrv := httptest.NewServer(hs.Handler()), httptest.NewServer(sf.Handler())
	f := &fakes{hs: hs, sf: sf, hsURL: hsSrv.URL, sfURL: sfSrv.URL, hsToken: hsCfg.Token}
	if f.hsToken == "" {
		f.hsToken = hubspottest.DefaultToken
	}
	return f, func() { hsSrv.Close(); sfSrv.Close() }, nil
}

// clientOptions tune the clients (tests scale their limits).
type clientOptions struct {
	HTTPClient *http.Client
	// SalesforceHTTPClient, if set, is the Salesforce client's (HTTPClient
	// is then the HubSpot client's only).
	SalesforceHTTPClient *http.Client
	HubSpotLimiter       crmsync.Limiter
	HubSpotSearch        crmsync.Limiter
	SalesforceLimiter    crmsync.Limiter
	RetryMax             time.Duration
	// SalesforceAPIVersion is the Salesforce client's API version; "" is its default.
	SalesforceAPIVersion string
}

func (f *fakes) clients(o clientOptions) (*hubspot.Client, *salesforce.Client, error) {
	hc, err := hubspot.New(hubspot.Config{Token: f.hsToken, BaseURL: f.hsURL, HTTPClient: o.HTTPClient,
		Limiter: o.HubSpotLimiter, SearchLimiter: o.HubSpotSearch, RetryMax: o.RetryMax, RetryInitial: 10 * time.Millisecond})
	if err != nil {
		return nil, nil, fmt.Errorf("hubspot client: %w", err)
	}
	sfHTTP := o.HTTPClient
	if o.SalesforceHTTPClient != nil {
		sfHTTP = o.SalesforceHTTPClient
	}
	sc, err := salesforce.New(salesforce.Config{AccessToken: f.sf.Token(), InstanceURL: f.sfURL, HTTPClient: sfHTTP,
		Limiter: o.SalesforceLimiter, RetryWait: 10 * time.Millisecond, DefaultFields: []string{"Id"}, APIVersion: o.SalesforceAPIVersion,
		SkipOwnWrites: true})
	if err != nil {
		return nil, nil, fmt.Errorf("salesforce client: %w", err)
	}
	return hc, sc, nil
}
