package crmsync_test

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"
	"pgregory.net/rapid"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/internal/rapidtest"
)

// TestGraphModel drives the three pairs with random companies, contacts
// and deals created on either side, references set and changed on either
// side (re-parenting, a deal's contacts), and companies archived while
// their children live, with passes in between. After the edits stop and a
// few passes settle, it checks: no duplicate (each record linked at most
// once, no record created twice); no dangling reference (every reference
// written names a live or archived record of the right object on its own
// side); every linked pair's references point at counterparts of each
// other; nothing dead-lettered.
func TestGraphModel(t *testing.T) {
	rapid.Check(t, graphModelCase(t))
}

// graphModelSeeds are cases of TestGraphModel that failed once (each
// case's own seed, as rapid prints it after "or -rapid.seed="), run by
// TestGraphModelSeeds besides the random ones. Replay one with
//
//	go test . -run '^TestGraphModel$' -rapid.checks=1 -rapid.seed=N
var graphModelSeeds = []uint64{
	// A reference to a record archived or deleted before it was ever
	// linked made its record wait for ever: a contact never created, a
	// deal never given that contact, the other side's move never carried
	// (graph_gone_test.go).
	9619964723077939890, 10090051966031162967, 14147745893588323263, 16785695816838263504,
	17009949005190043870, 17053855294137515175, 18440925018587915392, 3763585105316929218,
	439906887450831875, 9333546232923259415,
	// A contact whose Salesforce account was archived before it synced
	// moved, on HubSpot, to a company out of the inclusion: Salesforce
	// keeps the archived account, which the check took for dangling (a
	// model fix).
	9435284994824702169,
}

func TestGraphModelSeeds(t *testing.T) {
	for _, seed := range graphModelSeeds {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			rapidtest.Replay(t, seed, 1, graphModelCase(t))
		})
	}
}

// graphModelCase is one case of TestGraphModel; t is the test whose world
// it builds.
func graphModelCase(t *testing.T) func(*rapid.T) {
	return func(rt *rapid.T) {
		// Companies marked hidden on HubSpot are outside the inclusion
		// until a user unhides them: their children wait meanwhile.
		w := newGraphWorld(t, graphOpts{includeCompanyA: func(r crmsync.Record) bool { return r.Fields["tier"] != "hidden" }})
		sides := map[string]*memCRM{"hubspot": w.hs, "salesforce": w.sf}
		obj := map[string]map[string]string{
			"hubspot":    {"company": "companies", "contact": "contacts", "deal": "deals"},
			"salesforce": {"company": "Account", "contact": "Contact", "deal": "Opportunity"},
		}
		companyField := map[string]string{"hubspot": "associations.companies", "salesforce": "AccountId"}
		contactsField := map[string]string{"hubspot": "associations.contacts", "salesforce": "OpportunityContactRoles"}
		live := func(sys, kind string) []string {
			var ids []string
			for _, r := range sides[sys].all(obj[sys][kind]) {
				if !r.Archived {
					ids = append(ids, r.ID)
				}
			}
			return ids
		}
		maybeCompany := func(rt *rapid.T, sys string) any {
			ids := live(sys, "company")
			if len(ids) == 0 || rapid.Bool().Draw(rt, "no company") {
				return nil
			}
			return rapid.SampledFrom(ids).Draw(rt, "company")
		}
		someContacts := func(rt *rapid.T, sys string) []string {
			ids := live(sys, "contact")
			var out []string
			for _, id := range ids {
				if rapid.Bool().Draw(rt, "in deal") {
					out = append(out, id)
				}
			}
			slices.Sort(out)
			return out
		}
		n := 0
		steps := rapid.IntRange(1, 25).Draw(rt, "steps")
		for range steps {
			sys := rapid.SampledFrom([]string{"hubspot", "salesforce"}).Draw(rt, "side")
			m := sides[sys]
			n++
			switch rapid.IntRange(0, 8).Draw(rt, "action") {
			case 8:
				var hidden []string
				for _, r := range w.hs.all("companies") {
					if r.Fields["tier"] == "hidden" {
						hidden = append(hidden, r.ID)
					}
				}
				if len(hidden) > 0 {
					w.hs.edit("companies", rapid.SampledFrom(hidden).Draw(rt, "unhide"), crmsync.Fields{"tier": "gold"})
				}
			case 0:
				f := crmsync.Fields{"name": fmt.Sprintf("Co %d", n), "domain": fmt.Sprintf("co%d.test", n)}
				if rapid.Bool().Draw(rt, "hidden") {
					f["tier"] = "hidden"
				}
				if sys == "salesforce" {
					f = crmsync.Fields{"Name": f["name"], "Website": f["domain"]}
				}
				m.put(obj[sys]["company"], f)
			case 1:
				f := crmsync.Fields{"email": fmt.Sprintf("p%d@x.test", n), "firstname": "P", "associations.companies": maybeCompany(rt, sys)}
				if sys == "salesforce" {
					f = crmsync.Fields{"Email": f["email"], "FirstName": "P", "AccountId": f["associations.companies"]}
				}
				m.put(obj[sys]["contact"], f)
			case 2:
				f := crmsync.Fields{"dealname": fmt.Sprintf("D %d", n), companyField["hubspot"]: maybeCompany(rt, sys), contactsField["hubspot"]: someContacts(rt, sys)}
				if sys == "salesforce" {
					f = crmsync.Fields{"Name": f["dealname"], "AccountId": f[companyField["hubspot"]], "OpportunityContactRoles": f[contactsField["hubspot"]]}
				}
				m.put(obj[sys]["deal"], f)
			case 3, 4:
				if ids := live(sys, "contact"); len(ids) > 0 {
					m.edit(obj[sys]["contact"], rapid.SampledFrom(ids).Draw(rt, "contact"), crmsync.Fields{companyField[sys]: maybeCompany(rt, sys)})
				}
			case 5:
				if ids := live(sys, "deal"); len(ids) > 0 {
					m.edit(obj[sys]["deal"], rapid.SampledFrom(ids).Draw(rt, "deal"), crmsync.Fields{contactsField[sys]: someContacts(rt, sys), companyField[sys]: maybeCompany(rt, sys)})
				}
			case 6:
				if ids := live(sys, "company"); len(ids) > 0 {
					m.archive(obj[sys]["company"], rapid.SampledFrom(ids).Draw(rt, "archived company"))
				}
			case 7:
				w.pass()
			}
		}
		for range 3 {
			w.pass()
		}

		ctx := context.Background()
		links := func(pair string, kind string) map[string]string { // hubspot id -> salesforce id
			var ids []string
			for _, r := range w.hs.all(obj["hubspot"][kind]) {
				ids = append(ids, r.ID)
			}
			ls, err := w.st.LinksByA(ctx, crmsync.PairKey(w.key, pair), ids)
			require.NoError(rt, err)
			out := map[string]string{}
			seen := map[string]bool{}
			for a, l := range ls {
				require.False(rt, seen[l.BID], "%s %s linked twice", pair, l.BID)
				seen[l.BID] = true
				out[a] = l.BID
			}
			return out
		}
		coLinks, ctLinks, dlLinks := links("companies", "company"), links("contacts", "contact"), links("deals", "deal")
		exists := func(sys, kind, id string) bool {
			return sides[sys].get(obj[sys][kind], id).ID != ""
		}
		// No duplicate: every Salesforce record that came from HubSpot (its
		// external id set) is the one its HubSpot record is linked to.
		for _, kind := range []string{"company", "contact", "deal"} {
			byHS := map[string]int{}
			for _, r := range w.sf.all(obj["salesforce"][kind]) {
				if h, _ := r.Fields["HubSpot_Id__c"].(string); h != "" {
					byHS[h]++
					require.Equal(rt, 1, byHS[h], "%s: two Salesforce records for HubSpot %s", kind, h)
				}
			}
		}
		check := func(kind string, pairLinks map[string]string) {
			for hsID, sfID := range pairLinks {
				h, s := w.hs.get(obj["hubspot"][kind], hsID), w.sf.get(obj["salesforce"][kind], sfID)
				if h.Archived || s.Archived {
					continue
				}
				// The company reference.
				hc, _ := h.Fields[companyField["hubspot"]].(string)
				sc, _ := s.Fields[companyField["salesforce"]].(string)
				if hc != "" {
					require.True(rt, exists("hubspot", "company", hc), "hubspot %s %s names a company that does not exist", kind, hsID)
				}
				if sc != "" {
					require.True(rt, exists("salesforce", "company", sc), "salesforce %s %s names an account that does not exist (dangling)", kind, sfID)
				}
				if cp, ok := coLinks[hc]; hc != "" && ok && !w.hs.get("companies", hc).Archived {
					require.Equal(rt, cp, sc, "%s %s/%s: references do not point at counterparts", kind, hsID, sfID)
				}
				if hc == "" && sc != "" {
					// Salesforce names an account HubSpot's record does not
					// name: only while that account has no live counterpart
					// (archived before it was ever synced), so the
					// reference waits.
					hsCo, linked := "", false
					for a, bid := range coLinks {
						if bid == sc {
							hsCo, linked = a, true
						}
					}
					live := linked && !w.hs.get("companies", hsCo).Archived && !w.sf.get("Account", sc).Archived
					require.False(rt, live, "%s %s/%s: Salesforce has a company HubSpot has not", kind, hsID, sfID)
				}
				if hc != "" && !w.hs.get("companies", hc).Archived {
					if _, ok := coLinks[hc]; !ok {
						// The company is out of the inclusion: the child keeps
						// what it had, never a HubSpot id or an unknown record.
						// What it had may be an account a Salesforce user
						// archived before it was ever synced (it reads as
						// none, and the sync writes no such id).
						had := sc == "" || slices.Contains(slices.Collect(maps.Values(coLinks)), sc)
						gone := sc != "" && w.sf.get("Account", sc).Archived && !slices.Contains(slices.Collect(maps.Values(coLinks)), sc)
						require.True(rt, had || gone, "%s %s/%s: dangling account", kind, hsID, sfID)
					}
				}
				if kind != "deal" {
					continue
				}
				var want []string
				hcs, _ := h.Fields[contactsField["hubspot"]].([]string)
				linked := true
				for _, c := range hcs {
					if b, ok := ctLinks[c]; ok {
						want = append(want, b)
					} else {
						linked = false
					}
				}
				slices.Sort(want)
				got, _ := s.Fields[contactsField["salesforce"]].([]string)
				for _, c := range got {
					require.True(rt, exists("salesforce", "contact", c), "deal %s names a contact that does not exist (dangling)", sfID)
				}
				if linked {
					require.Equal(rt, len(want), len(got), "deal %s/%s: contact sets differ", hsID, sfID)
					if len(want) > 0 {
						require.Equal(rt, want, got, "deal %s/%s: contact sets differ", hsID, sfID)
					}
				}
			}
		}
		check("contact", ctLinks)
		check("deal", dlLinks)
		require.Empty(rt, w.deadLetters())
	}
}
