package salesforce

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/crmsync/crmsync"
)

// ContactRolesField is a pseudo-field of Opportunity: the sorted ids of
// the Contacts with an OpportunityContactRole on the opportunity (nil when
// none), of type crmsync.TypeReferences. Changes and Lookup read it with
// a child subquery in the same query; Write sets it by creating and
// deleting OpportunityContactRole records with sObject Collections, in
// batches. Roles it creates have no Role and are not primary; roles it
// keeps are left as they are.
const ContactRolesField = "OpportunityContactRoles"

// contactRoleObject is the junction object behind ContactRolesField.
const contactRoleObject = "OpportunityContactRole"

// defaultFields are the fields Changes and Lookup fetch per object when the
// caller names none and Config.DefaultFields is nil; other objects
// (Contact) get Config.DefaultFields' own default.
var defaultFields = map[string][]string{
	"account":     {"Id", "Name", "Website", "SystemModstamp", "CreatedDate", "IsDeleted"},
	"lead":        {"Id", "FirstName", "LastName", "Email", "Company", "Status", "IsConverted", "ConvertedContactId", "SystemModstamp", "CreatedDate", "IsDeleted"},
	"opportunity": {"Id", "Name", "StageName", "CloseDate", "Amount", "AccountId", ContactRolesField, "SystemModstamp", "CreatedDate", "IsDeleted"},
}

// isOpportunity reports the object that has ContactRolesField.
func isOpportunity(object string) bool { return strings.EqualFold(object, "Opportunity") }

// mustFields are the fields a read of object always selects: a Lead's
// conversion fields, so that a converted Lead always names its Contact.
func mustFields(object string, fields ...string) []string {
	if strings.EqualFold(object, "Lead") {
		fields = append(fields, "IsConverted", "ConvertedContactId")
	}
	return fields
}

// selectList returns the select list of a read of object: fields (or the
// defaults) plus must, validated, with ContactRolesField as a child
// subquery on Opportunity. The pseudo-field on another object fails with a
// permanent error holding a *crmsync.FieldError.
func (c *Client) selectList(object string, fields []string, must ...string) ([]string, error) {
	if fields == nil {
		fields = c.fields
		if c.cfg.DefaultFields == nil {
			if d, ok := defaultFields[strings.ToLower(object)]; ok {
				fields = d
			}
		}
	}
	roles := false
	rest := make([]string, 0, len(fields))
	for _, f := range fields {
		if strings.EqualFold(f, ContactRolesField) {
			roles = true
			continue
		}
		rest = append(rest, f)
	}
	if roles && !isOpportunity(object) {
		return nil, permanent(fmt.Errorf("salesforce: %s has no field %s: %w", object, ContactRolesField,
			&crmsync.FieldError{System: "salesforce", Object: object, Fields: []string{ContactRolesField}}))
	}
	sel, err := c.fieldList(rest, must...)
	if err != nil {
		return nil, err
	}
	if roles {
		sel = append(sel, "(SELECT ContactId FROM "+ContactRolesField+")")
	}
	return sel, nil
}

// followRoles completes the contact roles of records whose subquery result
// went on in another page.
func (c *Client) followRoles(ctx context.Context, res *queryResult) error {
	for i, next := range res.RolesNext {
		ids, _ := res.Records[i].Fields[ContactRolesField].([]string)
		for next != "" {
			more, err := c.queryMore(ctx, next, nil)
			if err != nil {
				return err
			}
			for _, r := range more.Records {
				if id, ok := r.Fields["ContactId"].(string); ok {
					ids = append(ids, id)
				}
			}
			next = ""
			if !more.Done {
				next = more.NextRecordsURL
			}
		}
		res.Records[i].Fields[ContactRolesField] = rolesField(sortIDs(ids))
	}
	res.RolesNext = nil
	return nil
}

// rolesField is the ContactRolesField value of ids: an untyped nil when
// there are none, so that it equals a cleared value of any other field.
func rolesField(ids []string) any {
	if len(ids) == 0 {
		return nil
	}
	return ids
}

// sortIDs sorts ids and drops repeats; empty means nil.
func sortIDs(ids []string) []string {
	if len(ids) == 0 {
		return nil
	}
	slices.Sort(ids)
	return slices.Compact(ids)
}

// rolesValue reads a ContactRolesField value to write: nil, []string or
// []any of record ids.
func rolesValue(v any) ([]string, error) {
	var ids []string
	switch x := v.(type) {
	case nil:
	case []string:
		ids = append(ids, x...)
	case []any:
		for _, e := range x {
			s, ok := e.(string)
			if !ok {
				return nil, fmt.Errorf("salesforce: write: field %s: %T in the list, want contact ids", ContactRolesField, e)
			}
			ids = append(ids, s)
		}
	default:
		return nil, fmt.Errorf("salesforce: write: field %s: %T, want a list of contact ids", ContactRolesField, v)
	}
	for _, id := range ids {
		if !idPattern.MatchString(id) {
			return nil, fmt.Errorf("salesforce: write: field %s: a value is not a record id", ContactRolesField)
		}
	}
	return sortIDs(ids), nil
}

// roleRow is an existing OpportunityContactRole.
type roleRow struct{ id, opp, contact string }

// writeRoles makes the contact roles of the opportunities written by ops
// match want (by op index), for the ops whose results succeeded: one
// query per 200 opportunities for the roles they have (none for created
// ones), then the missing roles created and the extra ones deleted with
// sObject Collections, 200 per call. A failure is recorded in the result
// of each op concerned as a *crmsync.PartialWriteError naming
// ContactRolesField; the result keeps its ID and Created: repeating it as
// an update (or upsert) is safe. Roles refused for naming deleted
// contacts are a *crmsync.ReferenceError naming those contacts.
func (c *Client) writeRoles(ctx context.Context, ops []crmsync.WriteOp, want map[int][]string, results []crmsync.WriteResult) {
	oppOf := map[string][]int{} // opportunity id → op indexes
	var order, read []string    // opportunities in op order; those to read
	for i := range ops {
		if _, ok := want[i]; !ok || results[i].Err != nil || results[i].ID == "" {
			continue
		}
		id := results[i].ID
		if len(oppOf[id]) == 0 {
			order = append(order, id)
			if ops[i].Kind != crmsync.Create && !results[i].Created {
				read = append(read, id)
			}
		}
		oppOf[id] = append(oppOf[id], i)
	}
	if len(oppOf) == 0 {
		return
	}
	// fail records err against the ops of opp: the opportunity was
	// written, its contact roles were not (a PartialWriteError). Roles
	// refused for naming deleted contacts add up in one ReferenceError;
	// any other failure takes its place, so the op is parked.
	fail := func(opp string, err error) {
		var ref *crmsync.ReferenceError
		isRef := errors.As(err, &ref)
		for _, i := range oppOf[opp] {
			var pr *crmsync.ReferenceError
			prev := results[i].Err
			prevRef := prev != nil && errors.As(prev, &pr)
			switch {
			case prev != nil && isRef && prevRef:
				for _, id := range ref.IDs {
					if !slices.Contains(pr.IDs, id) {
						pr.IDs = append(pr.IDs, id)
					}
				}
				continue
			case prev != nil && (isRef || !prevRef):
				continue // the first failure that parks stays
			}
			e := err
			if isRef {
				// Each op its own copy: the ids add up per op.
				cp := *ref
				cp.IDs = slices.Clone(ref.IDs)
				e = permanent(&cp)
			}
			results[i].Err = &crmsync.PartialWriteError{Fields: []string{ContactRolesField}, Err: e}
		}
	}
	have := map[string][]roleRow{}
	for start := 0; start < len(read); start += MaxBatch {
		chunk := read[start:min(start+MaxBatch, len(read))]
		rows, err := c.readRoles(ctx, chunk)
		if err != nil {
			for _, opp := range chunk {
				fail(opp, err)
			}
			continue
		}
		for _, r := range rows {
			have[r.opp] = append(have[r.opp], r)
		}
	}
	var creates []map[string]any
	var createOpp, createContact, deletes, deleteOpp []string
	for _, opp := range order {
		idx := oppOf[opp]
		if results[idx[0]].Err != nil {
			continue
		}
		w := want[idx[len(idx)-1]] // the last op on an opportunity wins
		kept := map[string]bool{}
		for _, r := range have[opp] {
			if slices.Contains(w, r.contact) && !kept[r.contact] {
				kept[r.contact] = true
				continue
			}
			deletes, deleteOpp = append(deletes, r.id), append(deleteOpp, opp)
		}
		for _, contact := range w {
			if !kept[contact] {
				creates = append(creates, map[string]any{"attributes": map[string]string{"type": contactRoleObject},
					"OpportunityId": opp, "ContactId": contact})
				createOpp, createContact = append(createOpp, opp), append(createContact, contact)
			}
		}
	}
	g := &writeGroup{kind: crmsync.Create}
	for start := 0; start < len(creates); start += MaxBatch {
		end := min(start+MaxBatch, len(creates))
		rs, err := c.writeBatch(ctx, contactRoleObject, g, creates[start:end])
		c.roleOutcomes(createOpp[start:end], createContact[start:end], rs, err, fail)
	}
	for start := 0; start < len(deletes); start += MaxBatch {
		end := min(start+MaxBatch, len(deletes))
		rs, err := c.deleteBatch(ctx, deletes[start:end])
		c.roleOutcomes(deleteOpp[start:end], nil, rs, err, fail)
	}
}

// roleOutcomes records the failures of a batch of role writes against the
// opportunities concerned; contacts holds the contact of each role
// created (nil for deletes). A role refused for naming a deleted contact
// is a *crmsync.ReferenceError naming ContactRolesField and that contact.
func (c *Client) roleOutcomes(opps, contacts []string, rs []collResult, err error, fail func(string, error)) {
	if err != nil {
		for _, opp := range opps {
			fail(opp, fmt.Errorf("salesforce: contact roles: %w", err))
		}
		return
	}
	for j, r := range rs {
		if r.Success {
			continue
		}
		wr := toWriteResult(contactRoleObject, crmsync.Create, r)
		err := fmt.Errorf("salesforce: contact roles: %w", wr.Err)
		var ref *crmsync.ReferenceError
		if j < len(contacts) && errors.As(wr.Err, &ref) && slices.Contains(ref.Fields, "ContactId") {
			err = permanent(&crmsync.ReferenceError{System: "salesforce", Object: "Opportunity", Fields: []string{ContactRolesField},
				IDs: []string{contacts[j]}, Err: err})
		}
		fail(opps[j], err)
	}
}

// readRoles queries the contact roles of up to 200 opportunities.
func (c *Client) readRoles(ctx context.Context, opps []string) ([]roleRow, error) {
	quoted := make([]string, len(opps))
	for i, id := range opps {
		quoted[i] = QuoteSOQL(id)
	}
	soql := "SELECT Id, OpportunityId, ContactId FROM " + contactRoleObject + " WHERE OpportunityId IN (" + strings.Join(quoted, ", ") + ")"
	res, err := c.query(ctx, "contact roles", "/query", soql, http.Header{})
	var out []roleRow
	for {
		if err != nil {
			return nil, withFieldError(err, contactRoleObject)
		}
		for _, r := range res.Records {
			opp, _ := r.Fields["OpportunityId"].(string)
			contact, _ := r.Fields["ContactId"].(string)
			out = append(out, roleRow{id: r.ID, opp: opp, contact: contact})
		}
		if res.Done {
			return out, nil
		}
		res, err = c.queryMore(ctx, res.NextRecordsURL, nil)
	}
}

// deleteBatch deletes up to 200 records with sObject Collections (DELETE
// /composite/sobjects?ids=...&allOrNone=false), with per-record results.
func (c *Client) deleteBatch(ctx context.Context, ids []string) ([]collResult, error) {
	if len(ids) == 0 || len(ids) > MaxBatch {
		return nil, errors.New("salesforce: delete: 1 to 200 ids")
	}
	resp, err := c.do(ctx, call{name: "delete", endpoint: "composite/sobjects", method: http.MethodDelete,
		path: "/composite/sobjects?ids=" + strings.Join(ids, ",") + "&allOrNone=false", idempotent: true})
	if err != nil {
		return nil, err
	}
	rs, err := decodeCollection("delete", resp.status, resp.body, len(ids))
	if err != nil {
		return nil, err
	}
	// A role already gone is what was wanted.
	for i := range rs {
		if !rs[i].Success && len(rs[i].Errors) > 0 &&
			(rs[i].Errors[0].StatusCode == "ENTITY_IS_DELETED" || rs[i].Errors[0].StatusCode == "INVALID_CROSS_REFERENCE_KEY") {
			rs[i].Success = true
		}
	}
	return rs, nil
}
