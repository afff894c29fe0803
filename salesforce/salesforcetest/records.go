package salesforcetest

import (
	"encoding/json"
	"fmt"
	"math/big"
	"strconv"
	"strings"
	"time"
)

// dateTimeLayout is Salesforce's JSON datetime form.
const dateTimeLayout = "2006-01-02T15:04:05.000-0700"

// fieldDef is one Contact field of the fake's describe.
type fieldDef struct {
	Name              string
	Type              string // Salesforce type: id, string, email, phone, textarea, picklist, boolean, double, date, datetime
	Label             string
	Length            int
	Nillable          bool
	Createable        bool
	Updateable        bool
	Calculated        bool
	Unique            bool
	ExternalID        bool
	DefaultedOnCreate bool
	Custom            bool
	Restricted        bool
	Picklist          []string
	// RefTo is the object a reference field refers to.
	RefTo string
}

// contactFields returns the fake Contact's fields; ext is the external-id field.
func contactFields(ext string) []fieldDef {
	sys := func(name, typ string) fieldDef {
		return fieldDef{Name: name, Type: typ, DefaultedOnCreate: true}
	}
	str := func(name, typ string, length int) fieldDef {
		return fieldDef{Name: name, Type: typ, Length: length, Nillable: true, Createable: true, Updateable: true}
	}
	last := str("LastName", "string", 80)
	last.Nillable = false
	lead := str("LeadSource", "picklist", 255)
	lead.Picklist = []string{"Web", "Phone Inquiry", "Partner Referral", "Purchased List", "Other"}
	stage := str("Lifecycle_Stage__c", "picklist", 255)
	stage.Custom, stage.Restricted = true, true
	stage.Picklist = []string{"subscriber", "lead", "marketingqualifiedlead", "salesqualifiedlead", "opportunity", "customer", "evangelist", "other"}
	dnc := str("DoNotCall", "boolean", 0)
	dnc.Nillable, dnc.DefaultedOnCreate = false, true
	score := str("Score__c", "double", 0)
	score.Custom = true
	synced := str("Last_Synced__c", "datetime", 0)
	synced.Custom = true
	extID := str(ext, "string", 255)
	extID.Custom, extID.ExternalID, extID.Unique = true, true, true
	return []fieldDef{
		sys("Id", "id"),
		sys("IsDeleted", "boolean"),
		{Name: "MasterRecordId", Type: "reference", Nillable: true, RefTo: objContact},
		str("FirstName", "string", 40),
		last,
		refField("AccountId", objAccount),
		str("Email", "email", 80),
		str("Phone", "phone", 40),
		str("Title", "string", 128),
		str("Description", "textarea", 32000),
		lead,
		stage,
		dnc,
		score,
		str("Birthdate", "date", 0),
		synced,
		extID,
		sys("CreatedDate", "datetime"),
		sys("LastModifiedDate", "datetime"),
		sys("LastModifiedById", "reference"),
		sys("SystemModstamp", "datetime"),
	}
}

// record is one stored Contact.
type record struct {
	id  string
	seq int // creation order
	// obj is the record's object; nil means Contact.
	obj *sobject

	fields    map[string]any // writable fields by canonical name: string, float64, bool
	created   time.Time
	modified  time.Time
	stamp     time.Time
	deleted   bool
	deletedAt time.Time
	// master is the winner's id when a merge deleted this record.
	master string
	// cascadeOf is the id of the parent whose deletion deleted this
	// record too; undeleting the parent restores it.
	cascadeOf string
	// modifiedBy is the LastModifiedById: Config.UserID for API writes,
	// PersonUserID ("" here) for the test helpers' edits.
	modifiedBy string
}

func (r *record) clone() *record {
	c := *r
	c.fields = make(map[string]any, len(r.fields))
	for k, v := range r.fields {
		c.fields[k] = v
	}
	return &c
}

// value returns a field's JSON value.
func (r *record) value(name string) any {
	switch name {
	case "Id":
		return r.id
	case "IsDeleted":
		return r.deleted
	case "MasterRecordId":
		if r.master == "" {
			return nil
		}
		return r.master
	case "CreatedDate":
		return r.created.UTC().Format(dateTimeLayout)
	case "LastModifiedDate":
		return r.modified.UTC().Format(dateTimeLayout)
	case "LastModifiedById":
		if r.modifiedBy == "" {
			return PersonUserID
		}
		return r.modifiedBy
	case "SystemModstamp":
		return r.stamp.UTC().Format(dateTimeLayout)
	}
	if v, ok := derivedValue(r.obj, r, name); ok {
		return v
	}
	v, ok := r.fields[name]
	if !ok {
		return nil
	}
	return v
}

// id18 returns the 18-character form of a 15-character Salesforce id.
func id18(id15 string) string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
	var suffix [3]byte
	for chunk := 0; chunk < 3; chunk++ {
		n := 0
		for i := 0; i < 5; i++ {
			c := id15[chunk*5+i]
			if c >= 'A' && c <= 'Z' {
				n |= 1 << i
			}
		}
		suffix[chunk] = alphabet[n]
	}
	return id15 + string(suffix[:])
}

// newID makes the n-th Contact id: prefix 003, a fake pod and instance, and a
// base-62 counter, in 18-character form.
func newID(n int) string { return newIDFor("003", n) }

// newIDFor makes the n-th id with an object's key prefix.
func newIDFor(prefix string, n int) string {
	s := big.NewInt(int64(n)).Text(62)
	return id18(prefix + "Fk" + strings.Repeat("0", 10-len(s)) + s)
}

// compareValues orders two JSON values of a field of type typ; ok is false when
// they cannot be compared.
func compareValues(typ string, a, b any) (int, bool) {
	switch baseType(typ) {
	case "datetime":
		ta, err1 := parseAnyTime(a)
		tb, err2 := parseAnyTime(b)
		if err1 != nil || err2 != nil {
			return 0, false
		}
		return ta.Compare(tb), true
	case "double":
		fa, ok1 := numberValue(a)
		fb, ok2 := numberValue(b)
		if !ok1 || !ok2 {
			return 0, false
		}
		return fa.Cmp(fb), true
	case "boolean":
		ba, ok1 := a.(bool)
		bb, ok2 := b.(bool)
		if !ok1 || !ok2 {
			return 0, false
		}
		if ba == bb {
			return 0, true
		}
		if !ba {
			return -1, true
		}
		return 1, true
	case "id":
		sa, ok1 := a.(string)
		sb, ok2 := b.(string)
		if !ok1 || !ok2 {
			return 0, false
		}
		return strings.Compare(sa, sb), true
	default:
		sa, ok1 := a.(string)
		sb, ok2 := b.(string)
		if !ok1 || !ok2 {
			return 0, false
		}
		return strings.Compare(strings.ToLower(sa), strings.ToLower(sb)), true
	}
}

// numberValue reads a double field's value (float64, or json.Number for a
// number float64 cannot hold exactly) as an exact rational.
func numberValue(v any) (*big.Rat, bool) {
	switch x := v.(type) {
	case float64:
		r := new(big.Rat)
		if r.SetFloat64(x) == nil {
			return nil, false
		}
		return r, true
	case json.Number:
		return new(big.Rat).SetString(string(x))
	}
	return nil, false
}

// exactNumber returns a JSON number as float64 when float64 holds its
// digits (its shortest form reads back as the same value), else as
// json.Number: Salesforce keeps up to 18 digits, more than float64 does.
func exactNumber(n json.Number) any {
	f, err := strconv.ParseFloat(string(n), 64)
	if err != nil {
		return n
	}
	want, ok := new(big.Rat).SetString(string(n))
	got, ok2 := new(big.Rat).SetString(strconv.FormatFloat(f, 'g', -1, 64))
	if ok && ok2 && want.Cmp(got) == 0 {
		return f
	}
	return n
}

func parseAnyTime(v any) (time.Time, error) {
	switch x := v.(type) {
	case time.Time:
		return x, nil
	case string:
		if t, err := time.Parse(dateTimeLayout, x); err == nil {
			return t, nil
		}
		return time.Parse(time.RFC3339Nano, x)
	}
	return time.Time{}, fmt.Errorf("not a time")
}

// literal converts a SOQL literal to a JSON-like value for a field of type typ.
func literal(typ string, t tok) (any, error) {
	typ = baseType(typ)
	switch t.kind {
	case tString:
		switch typ {
		case "double", "boolean", "datetime":
			return nil, fmt.Errorf("value of filter criterion for a %s field must not be quoted", typ)
		}
		return t.str, nil
	case tNumber:
		if typ != "double" {
			return nil, fmt.Errorf("a number is not a %s", typ)
		}
		return t.num, nil
	case tDateTime:
		if typ != "datetime" {
			return nil, fmt.Errorf("a datetime is not a %s", typ)
		}
		return t.t, nil
	case tDate:
		if typ != "date" {
			return nil, fmt.Errorf("a date is not a %s", typ)
		}
		return t.text, nil
	case tIdent:
		switch t.text {
		case "null":
			return nil, nil
		case "true", "false":
			if typ != "boolean" {
				return nil, fmt.Errorf("a boolean is not a %s", typ)
			}
			return t.text == "true", nil
		}
	}
	return nil, fmt.Errorf("bad literal %q", t.text)
}
