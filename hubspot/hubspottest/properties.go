package hubspottest

import (
	"fmt"
	"net/http"
	"slices"
)

// propertyTypes are the property types the fake knows.
var propertyTypes = []string{"string", "number", "enumeration", "datetime", "date", "bool", "phone_number"}

// servePropertyGet is GET /crm/v3/properties/{type}/{name}.
func (s *Server) servePropertyGet(w http.ResponseWriter, object, name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.store(object).prop(name)
	if p == nil {
		writeError(w, http.StatusNotFound, "OBJECT_NOT_FOUND", fmt.Sprintf("Unable to find property %q for object type %s", name, object))
		return
	}
	writeJSON(w, http.StatusOK, p.json())
}

// servePropertyCreate is POST /crm/v3/properties/{type} with a
// PropertyCreate body: 201 with the property, 409 if the name is taken.
func (s *Server) servePropertyCreate(w http.ResponseWriter, r *http.Request, object string) {
	var in struct {
		Name, Label, Type, FieldType, GroupName, Description string
		HasUniqueValue                                       bool
		Options                                              []struct{ Label, Value string }
	}
	if _, ok := readBody(w, r, &in); !ok {
		return
	}
	for _, f := range []struct{ name, v string }{{"name", in.Name}, {"label", in.Label}, {"type", in.Type}, {"fieldType", in.FieldType}, {"groupName", in.GroupName}} {
		if f.v == "" {
			writeError(w, http.StatusBadRequest, "VALIDATION_ERROR", "Property create is missing required field "+f.name)
			return
		}
	}
	if !slices.Contains(propertyTypes, in.Type) {
		writeError(w, http.StatusBadRequest, "VALIDATION_ERROR", fmt.Sprintf("Property type %q is not one of %v", in.Type, propertyTypes))
		return
	}
	p := Property{Name: in.Name, Label: in.Label, Type: in.Type, FieldType: in.FieldType, GroupName: in.GroupName,
		Description: in.Description, Unique: in.HasUniqueValue}
	for _, o := range in.Options {
		p.Options = append(p.Options, o.Value)
	}
	s.mu.Lock()
	taken := s.store(object).prop(in.Name) != nil
	s.mu.Unlock()
	if taken {
		writeError(w, http.StatusConflict, "OBJECT_ALREADY_EXISTS", fmt.Sprintf("Property named %q already exists.", in.Name))
		return
	}
	s.DefineProperty(object, p)
	s.servePropertyGetStatus(w, object, in.Name, http.StatusCreated)
}

func (s *Server) servePropertyGetStatus(w http.ResponseWriter, object, name string, status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	writeJSON(w, status, s.store(object).prop(name).json())
}

// servePropertyArchive is DELETE /crm/v3/properties/{type}/{name}: the
// property leaves the schema as with DeleteProperty; HubSpot's own
// properties cannot be archived.
func (s *Server) servePropertyArchive(w http.ResponseWriter, object, name string) {
	s.mu.Lock()
	p := s.store(object).prop(name)
	s.mu.Unlock()
	switch {
	case p == nil:
		writeError(w, http.StatusNotFound, "OBJECT_NOT_FOUND", fmt.Sprintf("Unable to find property %q for object type %s", name, object))
		return
	case p.HubspotDefined:
		writeError(w, http.StatusBadRequest, "VALIDATION_ERROR", fmt.Sprintf("Property %q is defined by HubSpot and cannot be archived", name))
		return
	}
	_ = s.DeleteProperty(object, name)
	w.WriteHeader(http.StatusNoContent)
}
