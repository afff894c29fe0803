package playbook

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/hubspot/hubspottest"
	"github.com/crmsync/crmsync/salesforce/salesforcetest"
)

// seedGraph adds, to the contacts seed made, companies and deals: a
// HubSpot company for about every ten contacts, each HubSpot contact with
// a company in a third of cases (its primary company), a deal for about
// every twenty contacts with its company and one or two contacts; on
// Salesforce an account for about every twenty contacts, with some of the
// Salesforce-only contacts in them, and an opportunity for each account.
func (w *world) seedGraph(n int) error {
	rng := rand.New(rand.NewPCG(3, 4))
	hs, sf := w.f.hs, w.f.sf
	ncos := max(1, n/10)
	cos := make([]map[string]string, ncos)
	for i := range cos {
		cos[i] = map[string]string{"name": fmt.Sprintf("Company %d", i), "domain": fmt.Sprintf("company%d.hs.example.com", i),
			"city": []string{"London", "Paris", "Berlin", "Madrid"}[i%4]}
	}
	w.companies = hs.Seed("companies", cos...)
	primary := hubspottest.AssociationType{Category: hubspottest.HubSpotDefined, TypeID: hubspottest.ContactToCompanyPrimary}
	for i, id := range w.hsIDs {
		if i%3 != 0 {
			continue
		}
		if r, ok := hs.Get("contacts", id); !ok || r.Archived {
			continue
		}
		if err := hs.Associate("contacts", id, "companies", w.companies[(i/3)%ncos], primary); err != nil {
			return err
		}
	}
	dealPrimary := hubspottest.AssociationType{Category: hubspottest.HubSpotDefined, TypeID: hubspottest.DealToCompanyPrimary}
	for i := range max(1, n/20) {
		id := hs.Seed("deals", map[string]string{"dealname": fmt.Sprintf("Deal %d", i),
			"dealstage": hubspottest.DealStages[rng.IntN(5)], "amount": fmt.Sprint(1000 * (1 + rng.IntN(50))),
			"closedate": time.Date(2027, time.Month(1+rng.IntN(12)), 1+rng.IntN(28), 0, 0, 0, 0, time.UTC).Format("2006-01-02")})[0]
		c := i * 3 % len(w.hsIDs)
		if err := hs.Associate("deals", id, "companies", w.companies[(c/3)%ncos], dealPrimary); err != nil {
			return err
		}
		for _, k := range []int{c, (c + 3) % len(w.hsIDs)} {
			if r, ok := hs.Get("contacts", w.hsIDs[k]); ok && !r.Archived {
				if err := hs.Associate("deals", id, "contacts", w.hsIDs[k]); err != nil {
					return err
				}
			}
		}
	}
	naccts := max(1, n/20)
	accts := make([]crmsync.Fields, naccts)
	for i := range accts {
		accts[i] = crmsync.Fields{"Name": fmt.Sprintf("Account %d", i), "Website": fmt.Sprintf("account%d.sf.example.com", i), "BillingCity": "Boston"}
	}
	w.accounts = sf.SeedRecords("Account", accts...)
	for i, id := range w.sfIDs {
		if i >= len(w.shared) && i%4 == 0 {
			if err := sf.Edit(id, crmsync.Fields{"AccountId": w.accounts[i%naccts]}); err != nil {
				return err
			}
		}
	}
	for i, a := range w.accounts {
		sf.SeedRecords("Opportunity", crmsync.Fields{"Name": fmt.Sprintf("Opportunity %d", i), "StageName": "Prospecting",
			"CloseDate": "2027-03-31", "Amount": 5000.0, "AccountId": a})
	}
	time.Sleep(5 * time.Millisecond)
	return nil
}

// graphEdits plays sales and marketing on the graph between two passes: a
// contact moved to another account in Salesforce, one moved to another
// company in HubSpot, an opportunity's stage moved in Salesforce, and a
// Lead converted in Salesforce.
func (w *world) graphEdits() error {
	hs, sf := w.f.hs, w.f.sf
	if len(w.shared) > 2 && len(w.accounts) > 0 {
		if err := sf.Edit(w.sfIDs[w.shared[1]], crmsync.Fields{"AccountId": w.accounts[0]}); err != nil {
			return err
		}
	}
	if len(w.companies) > 1 && len(w.shared) > 3 {
		primary := hubspottest.AssociationType{Category: hubspottest.HubSpotDefined, TypeID: hubspottest.ContactToCompanyPrimary}
		if err := hs.Associate("contacts", w.hsIDs[w.shared[3]], "companies", w.companies[1], primary); err != nil {
			return err
		}
	}
	for _, r := range sf.All() {
		if strings.HasPrefix(r.ID, "006") && !r.Archived {
			if err := sf.Edit(r.ID, crmsync.Fields{"StageName": "Closed Won"}); err != nil {
				return err
			}
			break
		}
	}
	for _, r := range sf.All() {
		if strings.HasPrefix(r.ID, "00Q") && !r.Archived && r.Fields["IsConverted"] != true {
			if _, err := sf.ConvertLead(r.ID, salesforcetest.ConvertOptions{DoNotCreateOpportunity: true}); err != nil {
				return err
			}
			break
		}
	}
	time.Sleep(5 * time.Millisecond)
	return nil
}
