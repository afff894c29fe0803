package hubspot

import (
	"context"
	"errors"
	"net/http"
	"net/url"

	"github.com/crmsync/crmsync"
)

// Property is a HubSpot property definition (the fields the client uses).
type Property struct {
	// Name is the internal name used in records and filters.
	Name string `json:"name"`
	// Label and Description are for people.
	Label string `json:"label"`
	// Type is the value type: string, number, bool, date, datetime,
	// enumeration, object_coordinates or json.
	Type string `json:"type"`
	// FieldType is the UI control: text, select, radio, checkbox,
	// booleancheckbox, number, date, ...
	FieldType   string `json:"fieldType"`
	GroupName   string `json:"groupName"`
	Description string `json:"description"`
	// Options are an enumeration's values.
	Options []Option `json:"options"`
	// HasUniqueValue marks a unique property, usable as idProperty.
	HasUniqueValue bool `json:"hasUniqueValue"`
	Hidden         bool `json:"hidden"`
	// Calculated marks a property HubSpot computes.
	Calculated     bool `json:"calculated"`
	HubspotDefined bool `json:"hubspotDefined"`
	// ReferencedObjectType names the object a reference property points at
	// ("OWNER").
	ReferencedObjectType string `json:"referencedObjectType,omitempty"`
	// ModificationMetadata says what may change; nil if HubSpot sent none.
	ModificationMetadata *ModificationMetadata `json:"modificationMetadata,omitempty"`
	Archived             bool                  `json:"archived"`
}

// Option is one value of an enumeration property.
type Option struct {
	// Label is shown to people; Value is stored in records.
	Label        string `json:"label"`
	Value        string `json:"value"`
	Hidden       bool   `json:"hidden"`
	DisplayOrder int    `json:"displayOrder"`
}

// ModificationMetadata says what of a property may change.
type ModificationMetadata struct {
	// ReadOnlyValue marks a property whose value cannot be written.
	Archivable         bool `json:"archivable"`
	ReadOnlyDefinition bool `json:"readOnlyDefinition"`
	ReadOnlyValue      bool `json:"readOnlyValue"`
	ReadOnlyOptions    bool `json:"readOnlyOptions,omitempty"`
}

type propertiesResponse struct {
	Results []Property `json:"results"`
}

// Properties returns the object's property definitions
// (GET /crm/v3/properties/{object}).
func (c *Client) Properties(ctx context.Context, object string) ([]Property, error) {
	if object == "" {
		return nil, crmsync.Permanent(errors.New("hubspot: properties: object is required"))
	}
	call := "properties " + object
	status, raw, err := c.do(ctx, request{endpoint: "properties", call: call, method: http.MethodGet,
		path: "/crm/v3/properties/" + url.PathEscape(object)})
	if err != nil {
		return nil, err
	}
	var resp propertiesResponse
	if err := decode(call, status, raw, &resp); err != nil {
		return nil, err
	}
	for _, p := range resp.Results {
		if p.Name == "" {
			return nil, &DecodeError{Call: call, Status: status, Reason: "property without name"}
		}
	}
	return resp.Results, nil
}

// Schema implements crmsync.CRM from the object's properties. Enumerations
// are restricted to their options; checkbox enumerations are multi-valued;
// properties referencing another object are references; a property is read
// only when HubSpot says its value is, or it is calculated. Contacts' email
// is unique although HubSpot does not flag it with hasUniqueValue. The
// association pseudo-fields follow the properties: FieldCompanies on
// contacts and deals (TypeReference to companies) and FieldContacts on
// deals (TypeReferences to contacts).
func (c *Client) Schema(ctx context.Context, object string) (crmsync.Schema, error) {
	props, err := c.Properties(ctx, object)
	if err != nil {
		return crmsync.Schema{}, err
	}
	s := crmsync.Schema{Object: object, Fields: make([]crmsync.FieldSchema, 0, len(props))}
	for _, p := range props {
		if p.Archived {
			continue
		}
		s.Fields = append(s.Fields, fieldSchema(object, p))
	}
	s.Fields = append(s.Fields, assocSchema(object)...)
	return s, nil
}

func fieldSchema(object string, p Property) crmsync.FieldSchema {
	f := crmsync.FieldSchema{
		Name:     p.Name,
		Type:     fieldType(p),
		Unique:   p.HasUniqueValue || (modifiedProperty(object) == "lastmodifieddate" && p.Name == "email"),
		ReadOnly: p.Calculated || (p.ModificationMetadata != nil && p.ModificationMetadata.ReadOnlyValue),
	}
	if f.Type == crmsync.TypeEnum || f.Type == crmsync.TypeMultiEnum {
		f.Restricted = true
		for _, o := range p.Options {
			if !o.Hidden {
				f.Options = append(f.Options, o.Value)
			}
		}
	}
	return f
}

func fieldType(p Property) crmsync.FieldType {
	if p.ReferencedObjectType != "" {
		return crmsync.TypeReference
	}
	switch p.Type {
	case "string", "phone_number":
		return crmsync.TypeString
	case "number":
		return crmsync.TypeNumber
	case "bool":
		return crmsync.TypeBool
	case "date":
		return crmsync.TypeDate
	case "datetime":
		return crmsync.TypeDateTime
	case "enumeration":
		switch p.FieldType {
		case "checkbox":
			return crmsync.TypeMultiEnum
		case "booleancheckbox":
			return crmsync.TypeBool
		}
		return crmsync.TypeEnum
	}
	return crmsync.TypeOther
}
