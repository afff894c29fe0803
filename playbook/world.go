package playbook

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"time"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/hubspot"
	"github.com/crmsync/crmsync/hubspot/hubspottest"
	"github.com/crmsync/crmsync/salesforce"
	"github.com/crmsync/crmsync/salesforce/salesforcetest"
)

// world seeds the fakes with a realistic data set and plays users editing it.
type world struct {
	f      *fakes
	hsIDs  []string // HubSpot contacts
	sfIDs  []string // Salesforce contacts
	shared []int    // indexes into hsIDs/sfIDs of people on both sides (same index)
	// companies and accounts are the HubSpot companies and Salesforce
	// accounts seedGraph made.
	companies, accounts []string
}

var firstNames = []string{"Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken", "Margaret", "Dennis", "Radia", "Tim"}
var lastNames = []string{"Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Allen", "Thompson", "Hamilton", "Ritchie", "Perlman", "Berners-Lee"}

// seed creates n contacts on each side; about a third are the same people on
// both sides, a few are archived, and a few are invalid for the other side
// (they end in the dead-letter queue).
func (w *world) seed(n int) error {
	rng := rand.New(rand.NewPCG(1, 2))
	sfOwners := []string{"005000000000001AAA", "005000000000002AAA", "005000000000003AAA"}
	shared := n / 3
	hs := make([]map[string]string, n)
	sf := make([]crmsync.Fields, n)
	for i := range n {
		first, last := firstNames[rng.IntN(len(firstNames))], lastNames[rng.IntN(len(lastNames))]
		hsEmail := fmt.Sprintf("%s.%s.%d@hs.example.com", lower(first), lower(last), i)
		sfEmail := fmt.Sprintf("%s.%s.%d@sf.example.com", lower(first), lower(last), i)
		if i < shared {
			hsEmail = fmt.Sprintf("%s.%s.%d@both.example.com", lower(first), lower(last), i)
			sfEmail = hsEmail
		}
		hs[i] = map[string]string{
			"email": hsEmail, "firstname": first, "lastname": last,
			"lifecyclestage": stages[rng.IntN(6)],
			"hubspotscore":   fmt.Sprint(rng.IntN(100)),
		}
		if rng.IntN(3) == 0 {
			hs[i]["recent_conversion_date"] = time.Date(2026, 10, 1+rng.IntN(28), rng.IntN(24), 0, 0, 0, time.UTC).Format("2006-01-02T15:04:05.000Z")
		}
		sf[i] = crmsync.Fields{
			"Email": sfEmail, "FirstName": first, "LastName": last,
			"Phone":         fmt.Sprintf("+1 415 555 %04d", i),
			"OwnerId":       sfOwners[rng.IntN(len(sfOwners))],
			"Deal_Stage__c": dealStages[rng.IntN(len(dealStages))],
			"Close_Date__c": time.Date(2026, 12, 1+rng.IntN(28), 0, 0, 0, 0, time.UTC).Format("2006-01-02"),
		}
		// A few HubSpot contacts that Salesforce will refuse: no last name
		// (required there) or an address it does not accept.
		if i >= shared && i%97 == 5 {
			delete(hs[i], "lastname")
		}
		if i >= shared && i%131 == 7 {
			hs[i]["email"] = fmt.Sprintf("not an email %d", i)
		}
	}
	w.hsIDs = w.f.hs.Seed("contacts", hs...)
	w.sfIDs = w.f.sf.Seed(sf...)
	for i := range shared {
		w.shared = append(w.shared, i)
	}
	// Some contacts were archived in HubSpot before the first sync.
	for i := shared; i < n; i += 53 {
		if err := w.f.hs.Archive("contacts", w.hsIDs[i]); err != nil {
			return err
		}
	}
	// The data set exists a moment before the first pass (or plan) starts:
	// a pass leaves records stamped in the very millisecond its window ends
	// to the next pass.
	time.Sleep(5 * time.Millisecond)
	return nil
}

// simulateEdits plays users on both sides between two passes.
func (w *world) simulateEdits() error {
	hs, sf := w.f.hs, w.f.sf
	for k, i := range w.shared {
		hid, sid := w.hsIDs[i], w.sfIDs[i]
		var err error
		switch k % 10 {
		case 0: // marketing moves the stage in HubSpot: it goes to Salesforce
			err = hs.Edit("contacts", hid, map[string]string{"lifecyclestage": "customer"})
		case 1: // sales moves the deal in Salesforce: it goes to HubSpot
			err = sf.Edit(sid, crmsync.Fields{"Deal_Stage__c": "closedwon"})
		case 2: // a HubSpot user edits a Salesforce-owned field: it is reverted
			err = hs.Edit("contacts", hid, map[string]string{"sf_deal_stage": "negotiation"})
		case 3: // both sides edit the phone: held for a person
			if err = hs.Edit("contacts", hid, map[string]string{"phone": fmt.Sprintf("+44 20 7946 %04d", k)}); err == nil {
				err = sf.Edit(sid, crmsync.Fields{"Phone": fmt.Sprintf("+1 650 555 %04d", k)})
			}
		case 4: // both sides edit the stage: HubSpot owns it, a person is told
			if err = hs.Edit("contacts", hid, map[string]string{"lifecyclestage": "opportunity"}); err == nil {
				err = sf.Edit(sid, crmsync.Fields{"Lifecycle_Stage__c": "other"})
			}
		case 5: // archived in HubSpot: flagged in Salesforce
			if k%20 == 5 {
				err = hs.Archive("contacts", hid)
			}
		case 6: // a name fixed in Salesforce
			err = sf.Edit(sid, crmsync.Fields{"FirstName": "Augusta"})
		}
		if err != nil {
			return err
		}
	}
	// New people on each side.
	w.f.sf.Seed(crmsync.Fields{"Email": "new.lead@sf.example.com", "FirstName": "New", "LastName": "Lead", "Deal_Stage__c": "prospecting"})
	w.f.hs.Seed("contacts", map[string]string{"email": "new.subscriber@hs.example.com", "firstname": "New", "lastname": "Subscriber", "lifecyclestage": "subscriber"})
	// Users edit a moment before the next pass starts: a pass leaves edits
	// made in the very millisecond its window ends to the next pass.
	time.Sleep(5 * time.Millisecond)
	return nil
}

func lower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'A' && c <= 'Z' {
			b[i] = c + 32
		}
	}
	return string(b)
}

// World is the demo's two fake CRMs, seeded, served in this process: for
// tests and tools that need a real sync pass without credentials.
type World struct {
	w       *world
	closeFn func()
}

// NewWorld starts both fakes with contacts seeded on each side, as the demo
// does (a third of them the same people on both sides, a few archived, a
// few that Salesforce refuses). Close it when done.
func NewWorld(contacts int) (*World, error) {
	f, closeFn, err := startFakes(nil, nil)
	if err != nil {
		return nil, err
	}
	w := &world{f: f}
	if err := w.seed(contacts); err != nil {
		closeFn()
		return nil, err
	}
	return &World{w: w, closeFn: closeFn}, nil
}

// Close stops both fakes.
func (w *World) Close() { w.closeFn() }

// HubSpot and Salesforce are the fakes, for inspection and edits.
func (w *World) HubSpot() *hubspottest.Server       { return w.w.f.hs }
func (w *World) Salesforce() *salesforcetest.Server { return w.w.f.sf }

// Sync returns the playbook's sync between the two fakes, with the given
// conflict handlers.
func (w *World) Sync(onConflict ...crmsync.ConflictHandler) (*crmsync.Sync, error) {
	return w.SyncHTTP(nil, nil, onConflict...)
}

// SyncHTTP is Sync with the HubSpot client sending through hs and the
// Salesforce client through sf (instrumented transports, say); nil means
// http.DefaultClient.
func (w *World) SyncHTTP(hs, sf *http.Client, onConflict ...crmsync.ConflictHandler) (*crmsync.Sync, error) {
	return w.syncWith(clientOptions{HTTPClient: hs, SalesforceHTTPClient: sf}, onConflict)
}

func (w *World) syncWith(o clientOptions, onConflict []crmsync.ConflictHandler) (*crmsync.Sync, error) {
	hc, sc, err := w.w.f.clients(o)
	if err != nil {
		return nil, err
	}
	pol := contactsPolicy()
	return crmsync.NewSync(crmsync.SyncConfig{A: hc, B: sc, ObjectA: "contacts", ObjectB: "Contact", Policy: &pol,
		LinkFieldA: hubspotLinkField, LinkFieldB: salesforceLinkField, OnConflict: onConflict})
}

// Clients returns new HubSpot and Salesforce clients of the two fakes.
func (w *World) Clients() (*hubspot.Client, *salesforce.Client, error) {
	return w.w.f.clients(clientOptions{})
}

// SimulateEdits plays users editing both sides, conflicting edits included.
func (w *World) SimulateEdits() error { return w.w.simulateEdits() }
