package crmsync_test

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/crmsync/crmsync"
)

// playbookPolicy is the reference workflow's contacts policy: marketing
// fields belong to HubSpot, sales fields to Salesforce, and names and phone
// go to whichever side changed them last.
func playbookPolicy() crmsync.Policy {
	return crmsync.Policy{
		A: "hubspot",
		B: "salesforce",
		// Identity: the zero value matches unlinked contacts on email
		// ("email" ↔ "Email"), trimmed and lower-cased.
		Archived: crmsync.ArchivedFields{A: "crmsync_archived", B: "Archived__c"},
		Rules: []crmsync.FieldRule{
			// Marketing fields: HubSpot owns them.
			{A: "lifecyclestage", B: "Lifecycle_Stage__c", Type: crmsync.TypeEnum, Rule: crmsync.Owner("hubspot"),
				ToB: crmsync.PicklistMap{
					"subscriber": "Subscriber", "lead": "Lead",
					"marketingqualifiedlead": "MQL", "salesqualifiedlead": "SQL",
					"opportunity": "Opportunity", "customer": "Customer",
				}},
			{A: "hubspotscore", B: "Lead_Score__c", Type: crmsync.TypeNumber, Rule: crmsync.Owner("hubspot")},
			{A: "recent_conversion_date", B: "Last_Form_Submission__c", Type: crmsync.TypeDateTime, Rule: crmsync.Owner("hubspot")},

			// Sales fields: Salesforce owns them.
			{A: "hubspot_owner_id", B: "OwnerId", Type: crmsync.TypeReference, Rule: crmsync.Owner("salesforce"),
				ToA: crmsync.OwnerMap{"005000000000001AAA": "41235511", "005000000000002AAA": "41235512"}},
			{A: "sf_deal_stage", B: "Deal_Stage__c", Type: crmsync.TypeEnum, Rule: crmsync.Owner("salesforce")},
			{A: "sf_close_date", B: "Close_Date__c", Type: crmsync.TypeDate, Rule: crmsync.Owner("salesforce")},

			// Shared fields: the latest edit wins.
			{A: "firstname", B: "FirstName", Type: crmsync.TypeString, Rule: crmsync.MostRecent()},
			{A: "lastname", B: "LastName", Type: crmsync.TypeString, Rule: crmsync.MostRecent()},
			{A: "phone", B: "Phone", Type: crmsync.TypeString, Rule: crmsync.MostRecent()},
		},
	}
}

func Example_policy() {
	policy, err := crmsync.NewPolicy(playbookPolicy())
	if err != nil {
		fmt.Println(err)
		return
	}
	t0 := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)

	// The values last synced, in HubSpot's terms, keyed by rule name.
	base := crmsync.Fields{
		"lifecyclestage": "lead", "hubspotscore": 10.0,
		"hubspot_owner_id": "41235511", "sf_close_date": "2026-04-30",
		"firstname": "Ada", "phone": "+44 20 7946 0000",
	}
	hubspot := crmsync.Record{ID: "101", ModifiedAt: t0.Add(time.Hour), Fields: crmsync.Fields{
		"lifecyclestage": "customer",         // marketing moved the stage
		"hubspotscore":   "10",               // unchanged: "10" is 10.0
		"sf_close_date":  "2026-05-31",       // a HubSpot user edited a Salesforce field
		"phone":          "+44 20 7946 1111", // edited on both sides
		"firstname":      "Ada",
	}}
	salesforce := crmsync.Record{ID: "003000000000001AAA", ModifiedAt: t0.Add(2 * time.Hour), Fields: crmsync.Fields{
		"Lifecycle_Stage__c": "Lead",
		"OwnerId":            "005000000000002AAA", // sales reassigned the contact
		"Close_Date__c":      "2026-04-30",
		"Phone":              "+44 20 7946 2222",
		"FirstName":          "Ada",
	}}

	res, err := crmsync.Merge(base, hubspot, salesforce, policy)
	if err != nil {
		fmt.Println(err)
		return
	}
	show("hubspot patch", res.PatchA)
	show("salesforce patch", res.PatchB)
	for _, c := range res.Conflicts {
		fmt.Printf("conflict: %s, %s won by %s\n", c.Field, c.Winner, c.Rule)
	}
	for _, s := range res.Skipped {
		fmt.Printf("skipped: %s: %s\n", s.Field, s.Reason)
	}

	// Once both patches land, merging again writes nothing (no echo).
	for k, v := range res.PatchA {
		hubspot.Fields[k] = v
	}
	for k, v := range res.PatchB {
		salesforce.Fields[k] = v
	}
	again, _ := crmsync.Merge(res.NewBase, hubspot, salesforce, policy)
	fmt.Println("second pass writes nothing:", again.Empty())

	// Output:
	// hubspot patch: hubspot_owner_id="41235512" phone="+44 20 7946 2222" sf_close_date="2026-04-30"
	// salesforce patch: Lifecycle_Stage__c="Customer"
	// conflict: phone, salesforce won by most-recent
	// skipped: sf_close_date: owned by salesforce: change on hubspot reverted
	// second pass writes nothing: true
}

func ExampleNewPolicy_invalid() {
	p := playbookPolicy()
	p.Rules = append(p.Rules,
		crmsync.FieldRule{A: "phone", B: "MobilePhone", Type: crmsync.TypeString, Rule: crmsync.MostRecent()},
		crmsync.FieldRule{A: "industry", B: "Industry", Type: crmsync.TypeEnum, Rule: crmsync.Owner("pipedrive")},
		crmsync.FieldRule{A: "hs_persona", B: "Persona__c", Type: crmsync.TypeEnum, Rule: crmsync.MostRecent(),
			ToB: crmsync.PicklistMap{"persona_1": "Buyer", "persona_2": "Buyer"}},
		crmsync.FieldRule{A: "jobtitle", B: "Title", Type: crmsync.TypeString},
	)
	_, err := crmsync.NewPolicy(p)
	var pe *crmsync.PolicyError
	if errors.As(err, &pe) {
		for _, problem := range pe.Problems {
			fmt.Println(problem)
		}
	}
	// Output:
	// rule 9 (phone): field "phone" on hubspot is also mapped by rule 8
	// rule 9 (phone): name "phone" is also used by rule 8
	// rule 10 (industry): rule owner names "pipedrive", which is neither "hubspot" nor "salesforce"
	// rule 11 (hs_persona): transform to hubspot: not reversible: several values map to "Buyer"
	// rule 12 (jobtitle): no rule
}

// show prints a patch with its keys sorted.
func show(label string, f crmsync.Fields) {
	keys := make([]string, 0, len(f))
	for k := range f {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	fmt.Print(label, ":")
	for _, k := range keys {
		fmt.Printf(" %s=%#v", k, f[k])
	}
	fmt.Println()
}
