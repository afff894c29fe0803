package salesforcetest

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/crmsync/crmsync"
)

// cascades lists, per object, the children Salesforce deletes with a
// record: an Account takes its Contacts and Opportunities along, a
// Contact or an Opportunity its contact roles.
var cascades = map[string][]childRel{
	objAccount:     {{objContact, "AccountId"}, {objOpportunity, "AccountId"}},
	objContact:     {{objContactRole, "ContactId"}},
	objOpportunity: {{objContactRole, "OpportunityId"}},
}

// deleteLocked moves r to the recycle bin with its cascade; s.mu is held.
// A contact role deleted on its own is gone for good: Salesforce keeps
// IsDeleted on one only when its parent took it along.
func (s *Server) deleteLocked(r *record, now time.Time) {
	s.publish(change{typ: "DELETE", recs: []*record{r}})
	if s.objOf(r).name == objContactRole && !r.deleted {
		s.removeLocked(r)
		return
	}
	r.deleted, r.deletedAt, r.stamp = true, now, now
	s.cascadeLocked(r, now)
}

func (s *Server) cascadeLocked(parent *record, now time.Time) {
	rels := cascades[s.objOf(parent).name]
	if len(rels) == 0 {
		return
	}
	for _, id := range s.order {
		c := s.records[id]
		if c.deleted {
			continue
		}
		for _, rel := range rels {
			if s.objOf(c).name == rel.object && c.fields[rel.field] == parent.id {
				c.deleted, c.deletedAt, c.stamp, c.cascadeOf = true, now, now, parent.id
				s.publish(change{typ: "DELETE", recs: []*record{c}})
				s.cascadeLocked(c, now)
			}
		}
	}
}

// undeleteLocked restores r and what its deletion took along; s.mu is held.
func (s *Server) undeleteLocked(r *record, now time.Time) {
	r.deleted, r.master, r.cascadeOf, r.stamp, r.modifiedBy = false, "", "", now, PersonUserID
	s.publish(change{typ: "UNDELETE", recs: []*record{r}})
	for _, id := range s.order {
		if c := s.records[id]; c.deleted && c.cascadeOf == r.id {
			s.undeleteLocked(c, now)
		}
	}
}

// removeLocked drops r for good; s.mu is held.
func (s *Server) removeLocked(r *record) {
	s.unindexRecord(r)
	delete(s.records, r.id)
	s.order = slices.DeleteFunc(s.order, func(x string) bool { return x == r.id })
}

// Merge merges up to two losers into master, as SOAP merge does (a request
// holds at most 3 records of one object: Lead, Contact or Account): the
// losers are deleted (IsDeleted, in queryAll and getDeleted) with
// MasterRecordId = master, their children are re-parented to master
// (Contacts and Opportunities of an Account, contact roles of a Contact)
// without a stamp of their own, as re-parenting fires nothing, and master
// is updated (LastModifiedDate and SystemModstamp bumped). Field values
// are not moved; Edit the master first to keep a loser's values.
func (s *Server) Merge(master string, losers ...string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(losers) == 0 || len(losers) > 2 {
		return fmt.Errorf("salesforcetest: merge: %d losers, want 1 or 2", len(losers))
	}
	m, ok := s.records[master]
	if !ok || m.deleted {
		return fmt.Errorf("salesforcetest: merge: no live master record %s", master)
	}
	o := s.objOf(m)
	if !o.mergeable {
		return fmt.Errorf("salesforcetest: merge: %s records cannot be merged", o.name)
	}
	seen := map[string]bool{master: true}
	for _, id := range losers {
		r, ok := s.records[id]
		if !ok || r.deleted || seen[id] || s.objOf(r) != o {
			return fmt.Errorf("salesforcetest: merge: no live, distinct %s loser record %s", o.name, id)
		}
		seen[id] = true
	}
	now := s.stamp()
	for _, id := range losers {
		r := s.records[id]
		for _, rel := range cascades[o.name] {
			for _, cid := range s.order {
				c := s.records[cid]
				if s.objOf(c).name == rel.object && c.fields[rel.field] == id {
					c.fields[rel.field] = master
				}
			}
		}
		r.deleted, r.deletedAt, r.stamp, r.master = true, now, now, master
	}
	m.modified, m.stamp, m.modifiedBy = now, now, PersonUserID
	s.publish(change{typ: "UPDATE", recs: []*record{m}}, change{typ: "DELETE", recs: s.recordsOf(losers)})
	return nil
}

// SeedRecords creates records of object (Account, Contact, Lead,
// Opportunity or OpportunityContactRole) with the given fields, all with
// one stamp, and returns their ids. Values are not validated; references
// should name live records. It panics on an unknown object or field, which
// is a bug in the test.
func (s *Server) SeedRecords(object string, fields ...crmsync.Fields) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	o := s.object(object)
	if o == nil {
		panic("salesforcetest: SeedRecords: unknown object " + object)
	}
	return s.seedLocked(o, s.stamp(), fields)
}

// SeedAccounts creates n generated accounts (Account K, accountK.example.com)
// and returns their ids.
func (s *Server) SeedAccounts(n int) []string {
	s.mu.Lock()
	base := s.seq
	s.mu.Unlock()
	fs := make([]crmsync.Fields, n)
	for i := range fs {
		k := base + i + 1
		fs[i] = crmsync.Fields{"Name": fmt.Sprintf("Account %d", k), "Website": fmt.Sprintf("account%d.example.com", k)}
	}
	return s.SeedRecords(objAccount, fs...)
}

// SeedLeads creates n generated open leads (FirstK, LastK, Company K,
// leadK@example.com) and returns their ids.
func (s *Server) SeedLeads(n int) []string {
	s.mu.Lock()
	base := s.seq
	s.mu.Unlock()
	fs := make([]crmsync.Fields, n)
	for i := range fs {
		k := base + i + 1
		fs[i] = crmsync.Fields{"FirstName": fmt.Sprintf("First%d", k), "LastName": fmt.Sprintf("Last%d", k),
			"Company": fmt.Sprintf("Company %d", k), "Email": fmt.Sprintf("lead%d@example.com", k)}
	}
	return s.SeedRecords(objLead, fs...)
}

// SeedStorm creates accounts generated accounts and contacts generated
// contacts spread over them round robin (Contact.AccountId set), as a bulk
// load does, and returns both id lists. It is the data of the storm
// benchmark: many new children arriving with their new parents.
func (s *Server) SeedStorm(accounts, contacts int) (accountIDs, contactIDs []string) {
	accountIDs = s.SeedAccounts(accounts)
	if accounts == 0 {
		return accountIDs, s.SeedContacts(contacts)
	}
	s.mu.Lock()
	base := s.seq
	s.mu.Unlock()
	fs := make([]crmsync.Fields, contacts)
	for i := range fs {
		k := base + i + 1
		fs[i] = crmsync.Fields{"FirstName": fmt.Sprintf("First%d", k), "LastName": fmt.Sprintf("Last%d", k),
			"Email": fmt.Sprintf("contact%d@example.com", k), "AccountId": accountIDs[i%accounts]}
	}
	return accountIDs, s.SeedRecords(objContact, fs...)
}

// AddContactRole gives a contact a role on an opportunity, as a user does
// in the Contact Roles related list, and returns the role's id. It stamps
// the role only: the opportunity's own stamps do not move.
func (s *Server) AddContactRole(opportunityID, contactID, role string, primary bool) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r := s.lookupID(opportunityID); r == nil || r.deleted || s.objOf(r).name != objOpportunity {
		return "", fmt.Errorf("salesforcetest: add contact role: no live opportunity %s", opportunityID)
	}
	if r := s.lookupID(contactID); r == nil || r.deleted || s.objOf(r).name != objContact {
		return "", fmt.Errorf("salesforcetest: add contact role: no live contact %s", contactID)
	}
	f := crmsync.Fields{"OpportunityId": opportunityID, "ContactId": contactID, "IsPrimary": primary}
	if role != "" {
		f["Role"] = role
	}
	return s.seedLocked(s.object(objContactRole), s.stamp(), []crmsync.Fields{f})[0], nil
}

// ContactRoles returns the sorted ids of the contacts with a live role on
// an opportunity (nil when none).
func (s *Server) ContactRoles(opportunityID string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, id := range s.order {
		r := s.records[id]
		if !r.deleted && s.objOf(r).name == objContactRole && r.fields["OpportunityId"] == opportunityID {
			c, _ := r.fields["ContactId"].(string)
			out = append(out, c)
		}
	}
	return sortedIDs(out)
}

// ConvertOptions are the choices of a lead conversion (SOAP LeadConvert).
type ConvertOptions struct {
	// AccountID and ContactID merge the lead into existing records, whose
	// empty fields only are filled; "" creates new ones. A ContactID needs
	// an AccountID, the contact's account.
	AccountID, ContactID string
	// OpportunityName names the opportunity conversion creates; "" means
	// the company's name and a dash.
	OpportunityName string
	// DoNotCreateOpportunity skips the opportunity.
	DoNotCreateOpportunity bool
	// OverwriteLeadSource sets the contact's LeadSource even when it has one.
	OverwriteLeadSource bool
	// FieldMap maps further lead fields to contact fields, as an admin's
	// lead field mapping does for custom fields (standard fields map on
	// their own).
	FieldMap map[string]string
}

// ConvertResult is what a conversion made (SOAP LeadConvertResult).
type ConvertResult struct {
	AccountID, ContactID, OpportunityID string
}

// leadToContact, leadToAccount and leadToOpportunity are Salesforce's
// standard lead field mapping.
var (
	leadToContact = map[string]string{"FirstName": "FirstName", "LastName": "LastName", "Email": "Email",
		"Phone": "Phone", "Title": "Title", "Description": "Description"}
	leadToAccount = map[string]string{"Company": "Name", "Phone": "Phone", "Industry": "Industry"}
)

// ConvertLead converts a lead as Salesforce's convertLead does, in one
// transaction with one stamp: it creates an Account (Name from Company)
// and a Contact (name, email, phone, title, lead source; with AccountId)
// or fills the empty fields of the ones named in opts, creates an
// Opportunity on the account with the contact as its primary contact role
// unless told not to, and stamps the lead: IsConverted, ConvertedDate (a
// date), ConvertedAccountId, ConvertedContactId, ConvertedOpportunityId
// and Status = ConvertedLeadStatus. From then on the lead is read-only:
// writes to it fail with CANNOT_UPDATE_CONVERTED_LEAD.
func (s *Server) ConvertLead(leadID string, opts ConvertOptions) (ConvertResult, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	lead := s.lookupID(leadID)
	if lead == nil || lead.deleted || s.objOf(lead).name != objLead {
		return ConvertResult{}, fmt.Errorf("salesforcetest: convert lead: no live lead %s", leadID)
	}
	if lead.fields["IsConverted"] == true {
		return ConvertResult{}, errors.New("salesforcetest: convert lead: CANNOT_UPDATE_CONVERTED_LEAD: the lead is converted already")
	}
	if opts.ContactID != "" && opts.AccountID == "" {
		return ConvertResult{}, errors.New("salesforcetest: convert lead: a ContactID needs its AccountID")
	}
	existing := func(id, object string) (*record, error) {
		r := s.lookupID(id)
		if r == nil || r.deleted || s.objOf(r).name != object {
			return nil, fmt.Errorf("salesforcetest: convert lead: no live %s %s", strings.ToLower(object), id)
		}
		return r, nil
	}
	var acct, contact *record
	var err error
	if opts.AccountID != "" {
		if acct, err = existing(opts.AccountID, objAccount); err != nil {
			return ConvertResult{}, err
		}
	}
	if opts.ContactID != "" {
		if contact, err = existing(opts.ContactID, objContact); err != nil {
			return ConvertResult{}, err
		}
	}
	now := s.stamp()
	tx := []change{{typ: "UPDATE", recs: []*record{acct}}, {typ: "UPDATE", recs: []*record{contact}}}
	fill := func(r *record, mapping map[string]string, overwrite func(string) bool) {
		for from, to := range mapping {
			v := lead.fields[from]
			if v == nil {
				continue
			}
			if cur := r.fields[to]; cur == nil || cur == "" || overwrite(to) {
				s.setField(r, to, v)
			}
		}
	}
	never := func(string) bool { return false }
	if acct == nil {
		acct = s.newRecordOf(s.object(objAccount), now)
		tx[0].typ = "CREATE"
	} else {
		acct.modified, acct.stamp, acct.modifiedBy = now, now, PersonUserID
	}
	fill(acct, leadToAccount, never)
	if contact == nil {
		contact = s.newRecordOf(s.contact, now)
		tx[1].typ = "CREATE"
	} else {
		contact.modified, contact.stamp, contact.modifiedBy = now, now, PersonUserID
	}
	toContact := map[string]string{}
	for k, v := range leadToContact {
		toContact[k] = v
	}
	for k, v := range opts.FieldMap {
		toContact[k] = v
	}
	fill(contact, toContact, never)
	fill(contact, map[string]string{"LeadSource": "LeadSource"}, func(string) bool { return opts.OverwriteLeadSource })
	if contact.fields["AccountId"] == nil {
		s.setField(contact, "AccountId", acct.id)
	}
	res := ConvertResult{AccountID: acct.id, ContactID: contact.id}
	if !opts.DoNotCreateOpportunity {
		opp := s.newRecordOf(s.object(objOpportunity), now)
		name := opts.OpportunityName
		if name == "" {
			company, _ := lead.fields["Company"].(string)
			name = company + "-"
		}
		s.setField(opp, "Name", name)
		s.setField(opp, "StageName", OpportunityStages[0])
		s.setField(opp, "CloseDate", now.AddDate(0, 0, 30).Format("2006-01-02"))
		s.setField(opp, "AccountId", acct.id)
		if v := lead.fields["LeadSource"]; v != nil {
			s.setField(opp, "LeadSource", v)
		}
		role := s.newRecordOf(s.object(objContactRole), now)
		s.setField(role, "OpportunityId", opp.id)
		s.setField(role, "ContactId", contact.id)
		s.setField(role, "IsPrimary", true)
		res.OpportunityID = opp.id
		tx = append(tx, change{typ: "CREATE", recs: []*record{opp}}, change{typ: "CREATE", recs: []*record{role}})
	}
	s.setField(lead, "IsConverted", true)
	s.setField(lead, "ConvertedDate", now.Format("2006-01-02"))
	s.setField(lead, "ConvertedAccountId", acct.id)
	s.setField(lead, "ConvertedContactId", contact.id)
	if res.OpportunityID != "" {
		s.setField(lead, "ConvertedOpportunityId", res.OpportunityID)
	}
	s.setField(lead, "Status", ConvertedLeadStatus)
	lead.modified, lead.stamp, lead.modifiedBy = now, now, PersonUserID
	tx[0].recs[0], tx[1].recs[0] = acct, contact
	s.publish(append(tx, change{typ: "UPDATE", recs: []*record{lead}})...)
	return res, nil
}
