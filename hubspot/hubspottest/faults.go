package hubspottest

import (
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// FaultKind is what an injected fault does to a request.
type FaultKind int

// The fault kinds.
const (
	// RateLimit answers 429 with policy TEN_SECONDLY_ROLLING (SECONDLY on
	// search) and Retry-After when Fault.RetryAfter is set.
	RateLimit FaultKind = iota + 1
	// DailyLimit answers 429 with policy DAILY.
	DailyLimit
	// ServerError answers Fault.Status (default 500) with an error body; use
	// it for 5xx, 423 and 477 too.
	ServerError
	// Latency delays the request by Fault.Latency, then serves it.
	Latency
	// Hang holds the request until the client gives up or the server closes.
	Hang
	// Reset closes the connection without a response.
	Reset
	// Unauthorized answers 401 as for an expired or invalid token.
	Unauthorized
	// Raw answers Fault.Status (default 200) with Fault.Body and
	// Fault.ContentType, for malformed, HTML, error or huge bodies.
	Raw
	// BatchRefusal refuses a whole batch before any input is processed, as
	// HubSpot does: Fault.Status 400 (VALIDATION_ERROR, the default), 409
	// (CONFLICT) or 413 (payload too large). Nothing is written.
	BatchRefusal
)

// Fault is one injected failure, applied to the next Count requests (zero
// means 1) to Endpoint ("" means any endpoint; names as in CallCounts).
type Fault struct {
	// Kind is what the fault does.
	Kind FaultKind
	// Endpoint limits the fault to one endpoint; "" means any.
	Endpoint string
	// Count is how many requests the fault applies to; zero means 1.
	Count int
	// Status is the HTTP status of ServerError and Raw faults.
	Status int
	// RetryAfter, if positive, is sent as Retry-After (whole seconds,
	// rounded up) by RateLimit and ServerError faults.
	RetryAfter time.Duration
	// Latency is the delay of a Latency fault.
	Latency time.Duration
	// AfterServe serves the request first (its writes land) and then
	// answers with the fault instead of the response, as when a response
	// is lost to a dropped connection (Reset) or a proxy's 5xx
	// (ServerError, Raw). Latency and Hang ignore it.
	AfterServe bool
	// Body and ContentType are a Raw fault's response.
	Body        []byte
	ContentType string
}

// Fail queues faults; each applies to its next Count matching requests, in
// the order queued.
func (s *Server) Fail(faults ...Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, f := range faults {
		f := f
		if f.Count <= 0 {
			f.Count = 1
		}
		s.faults = append(s.faults, &f)
	}
}

// ClearFaults drops queued faults and record failures.
func (s *Server) ClearFaults() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = nil
	s.failRecords = map[string]string{}
	s.failAssoc = nil
}

// FailRecords makes batch writes of the records with the given ids, emails
// or idProperty values fail with a per-record error of category (for
// instance "VALIDATION_ERROR", or "INTERNAL_ERROR" for a transient failure)
// until ClearFaults.
func (s *Server) FailRecords(category string, keys ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, k := range keys {
		s.failRecords[strings.ToLower(k)] = category
	}
}

// takeFault pops the next fault matching endpoint; s.mu is held.
func (s *Server) takeFault(endpoint string) *Fault {
	for i, f := range s.faults {
		if f.Endpoint != "" && f.Endpoint != endpoint {
			continue
		}
		f.Count--
		if f.Count <= 0 {
			s.faults = append(s.faults[:i:i], s.faults[i+1:]...)
		}
		c := *f
		return &c
	}
	return nil
}

// applyFault carries out f; it reports whether the request goes on to be
// served normally.
func (s *Server) applyFault(w http.ResponseWriter, r *http.Request, f *Fault, endpoint string) bool {
	switch f.Kind {
	case RateLimit:
		if endpoint == "search" {
			writeRateLimit(w, "SECONDLY", "You have reached your secondly limit.", f.RetryAfter)
		} else {
			writeRateLimit(w, "TEN_SECONDLY_ROLLING", "You have reached your ten_secondly_rolling limit.", f.RetryAfter)
		}
	case DailyLimit:
		writeRateLimit(w, "DAILY", "You have reached your daily limit.", 0)
	case ServerError:
		status := f.Status
		if status == 0 {
			status = http.StatusInternalServerError
		}
		if f.RetryAfter > 0 {
			w.Header().Set("Retry-After", strconv.Itoa(int((f.RetryAfter+time.Second-1)/time.Second)))
		}
		category := "INTERNAL_ERROR"
		switch status {
		case http.StatusLocked:
			category = "LOCKED"
		case 477:
			category = "MIGRATION_IN_PROGRESS"
		}
		writeError(w, status, category, "injected failure")
	case Latency:
		t := time.NewTimer(f.Latency)
		defer t.Stop()
		select {
		case <-t.C:
			return true
		case <-r.Context().Done():
		case <-s.done:
		}
	case Hang:
		select {
		case <-r.Context().Done():
		case <-s.done:
		}
	case Reset:
		hj, ok := w.(http.Hijacker)
		if !ok {
			writeError(w, http.StatusInternalServerError, "INTERNAL_ERROR", "connection reset")
			return false
		}
		conn, _, err := hj.Hijack()
		if err != nil {
			return false
		}
		if tc, ok := conn.(*net.TCPConn); ok {
			_ = tc.SetLinger(0)
		}
		_ = conn.Close()
	case Unauthorized:
		writeError(w, http.StatusUnauthorized, "EXPIRED_AUTHENTICATION", "The token used to make this call expired.")
	case BatchRefusal:
		switch f.Status {
		case http.StatusConflict:
			writeError(w, f.Status, "CONFLICT", "batch refused: conflicting inputs")
		case http.StatusRequestEntityTooLarge:
			writeError(w, f.Status, "VALIDATION_ERROR", "request payload too large")
		default:
			writeError(w, http.StatusBadRequest, "VALIDATION_ERROR", "batch refused: invalid input")
		}
	case Raw:
		status := f.Status
		if status == 0 {
			status = http.StatusOK
		}
		if f.ContentType != "" {
			w.Header().Set("Content-Type", f.ContentType)
		}
		w.WriteHeader(status)
		_, _ = w.Write(f.Body)
	default:
		return true
	}
	return false
}
