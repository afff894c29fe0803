// Package webhook receives HubSpot's webhook notifications (v3 signatures)
// and turns them into sync triggers.
//
// A [Handler] is an http.Handler for the target URL of a HubSpot app. It
// refuses, before anything else happens, a request that is not a POST, has
// no or a malformed X-HubSpot-Request-Timestamp, is older than MaxAge (5
// minutes, as HubSpot's SDKs check), has a body over MaxBody, or whose
// X-HubSpot-Signature-v3 is not the base64 HMAC-SHA256, keyed with the
// app's client secret, of method + URI + body + timestamp (compared in
// constant time). A refused request does no work and logs only why and
// the remote address; never the body, its values or the headers.
//
// An accepted batch (a JSON array of events) is mapped to keys through
// Config.Key (portal id to key) and each key gets one trigger for all its
// events; the handler answers 204 at once, without waiting for any pass
// (HubSpot counts a reply slower than 5 seconds as a failure and retries).
// Events are triggers, never data: no value in an event is used, so a
// repeated, late or out-of-order event costs at most an early pass.
package webhook

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sort"
	"strconv"
	"time"

	"github.com/crmsync/crmsync/trigger"
)

// Header names of HubSpot's v3 signatures.
const (
	HeaderSignature = "X-HubSpot-Signature-v3"
	HeaderTimestamp = "X-HubSpot-Request-Timestamp"
)

// System is the system name the handler's triggers carry.
const System = "hubspot"

// Defaults of Config.
const (
	DefaultMaxAge  = 5 * time.Minute
	DefaultMaxBody = 1 << 20
)

// Event is one notification of a webhook batch, as HubSpot sends it. Only
// the fields that route and describe it are read; property values are not.
type Event struct {
	EventID          int64  `json:"eventId"`
	SubscriptionID   int64  `json:"subscriptionId"`
	PortalID         int64  `json:"portalId"`
	AppID            int64  `json:"appId"`
	OccurredAt       int64  `json:"occurredAt"`
	SubscriptionType string `json:"subscriptionType"`
	AttemptNumber    int    `json:"attemptNumber"`
	ObjectID         int64  `json:"objectId"`
	ChangeSource     string `json:"changeSource"`
	SourceID         string `json:"sourceId"`
	PropertyName     string `json:"propertyName"`
}

// Config configures a Handler.
type Config struct {
	// Secret is the app's client secret, which signs every request.
	// Required; never logged.
	Secret string
	// Key maps a portal (HubSpot account) id to the sync key it belongs
	// to; ok false drops the portal's events (an account not synced).
	// Required.
	Key func(portalID int64) (key string, ok bool)
	// Trigger receives one event per key of an accepted batch; a
	// trigger.Coalescer's Record fits. An error makes the handler answer
	// 503 so that HubSpot sends the batch again. Required.
	Trigger func(ctx context.Context, e trigger.Event) error
	// URL returns the URL HubSpot called, as it signed it (scheme, host,
	// path and query); nil means the request's own: https if it came over
	// TLS or X-Forwarded-Proto says so, else http, then Host and the
	// request URI as received. Behind a proxy that rewrites the host or
	// path, return the public URL. HubSpot's note on decoding some
	// percent-encoded characters before signing is not applied: keep the
	// target URL free of them.
	URL func(r *http.Request) string
	// IgnoreSources drops events whose sourceId is listed (the sync's own
	// app, so that its writes do not trigger passes); nil drops none.
	IgnoreSources []string
	// MaxAge refuses requests whose timestamp is older (or further in the
	// future) than this; zero means DefaultMaxAge.
	MaxAge time.Duration
	// MaxBody caps the body in bytes; zero means DefaultMaxBody (1 MiB).
	MaxBody int64
	// Logger receives one line per refused request; nil means slog.Default().
	Logger *slog.Logger
	// Now is the clock for MaxAge; nil means time.Now.
	Now func() time.Time
}

// Handler verifies and routes HubSpot webhook requests. Create it with New.
type Handler struct {
	c      Config
	log    *slog.Logger
	ignore map[string]bool
}

// New validates c and returns a Handler.
func New(c Config) (*Handler, error) {
	switch {
	case c.Secret == "":
		return nil, errors.New("webhook: Config.Secret is empty")
	case c.Key == nil:
		return nil, errors.New("webhook: Config.Key is nil")
	case c.Trigger == nil:
		return nil, errors.New("webhook: Config.Trigger is nil")
	case c.MaxAge < 0 || c.MaxBody < 0:
		return nil, errors.New("webhook: Config.MaxAge and Config.MaxBody must not be negative")
	}
	if c.MaxAge == 0 {
		c.MaxAge = DefaultMaxAge
	}
	if c.MaxBody == 0 {
		c.MaxBody = DefaultMaxBody
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	h := &Handler{c: c, log: c.Logger.With("component", "hubspot-webhook"), ignore: map[string]bool{}}
	for _, s := range c.IgnoreSources {
		h.ignore[s] = true
	}
	return h, nil
}

// Sign returns the v3 signature of a request: base64 (standard, padded)
// of HMAC-SHA256 keyed with secret over method + uri + body + timestamp.
func Sign(secret, method, uri string, body []byte, timestamp string) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(method))
	mac.Write([]byte(uri))
	mac.Write(body)
	mac.Write([]byte(timestamp))
	return base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// refusal is why a request was refused; it names no value.
type refusal struct {
	status int
	why    string
}

func (h *Handler) refuse(w http.ResponseWriter, r *http.Request, f refusal) {
	h.log.Warn("webhook request refused", "reason", f.why, "status", f.status, "remote", r.RemoteAddr)
	http.Error(w, f.why, f.status)
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, f := h.verify(w, r)
	if f != nil {
		h.refuse(w, r, *f)
		return
	}
	var events []Event
	if err := json.Unmarshal(body, &events); err != nil {
		h.refuse(w, r, refusal{http.StatusBadRequest, "body is not a JSON array of events"})
		return
	}
	for _, e := range Triggers(events, h.c.Key, h.ignore) {
		if err := h.c.Trigger(r.Context(), e); err != nil {
			h.log.Error("webhook trigger not recorded; HubSpot will send the batch again", "key", e.Key, "err", err)
			http.Error(w, "trigger not recorded", http.StatusServiceUnavailable)
			return
		}
	}
	w.WriteHeader(http.StatusNoContent)
}

// verify checks everything but the body's shape, and returns the body.
func (h *Handler) verify(w http.ResponseWriter, r *http.Request) ([]byte, *refusal) {
	if r.Method != http.MethodPost {
		return nil, &refusal{http.StatusMethodNotAllowed, "method is not POST"}
	}
	sig := r.Header.Get(HeaderSignature)
	ts := r.Header.Get(HeaderTimestamp)
	if sig == "" || ts == "" {
		return nil, &refusal{http.StatusUnauthorized, "unsigned: " + HeaderSignature + " or " + HeaderTimestamp + " missing"}
	}
	ms, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return nil, &refusal{http.StatusUnauthorized, HeaderTimestamp + " is not epoch milliseconds"}
	}
	age := h.c.Now().Sub(time.UnixMilli(ms))
	if age > h.c.MaxAge || age < -h.c.MaxAge {
		return nil, &refusal{http.StatusUnauthorized, fmt.Sprintf("stale: timestamp is %s away from now, over %s", age.Round(time.Second), h.c.MaxAge)}
	}
	if r.ContentLength > h.c.MaxBody {
		return nil, &refusal{http.StatusRequestEntityTooLarge, fmt.Sprintf("body over %d bytes", h.c.MaxBody)}
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, h.c.MaxBody))
	if err != nil {
		var mb *http.MaxBytesError
		if errors.As(err, &mb) {
			return nil, &refusal{http.StatusRequestEntityTooLarge, fmt.Sprintf("body over %d bytes", h.c.MaxBody)}
		}
		return nil, &refusal{http.StatusBadRequest, "body could not be read"}
	}
	want, err := base64.StdEncoding.DecodeString(sig)
	if err != nil {
		return nil, &refusal{http.StatusUnauthorized, "bad signature: not base64"}
	}
	got, _ := base64.StdEncoding.DecodeString(Sign(h.c.Secret, r.Method, h.url(r), body, ts))
	if !hmac.Equal(got, want) {
		return nil, &refusal{http.StatusUnauthorized, "bad signature"}
	}
	return body, nil
}

func (h *Handler) url(r *http.Request) string {
	if h.c.URL != nil {
		return h.c.URL(r)
	}
	scheme := "http"
	if r.TLS != nil || r.Header.Get("X-Forwarded-Proto") == "https" {
		scheme = "https"
	}
	return scheme + "://" + r.Host + r.URL.RequestURI()
}

// Triggers maps a batch to one trigger per key: Count is the key's events,
// Reason its latest event's subscription type. Events of portals key does
// not know, and events whose sourceId is in ignore, are dropped. Keys come
// out sorted.
func Triggers(events []Event, key func(portalID int64) (string, bool), ignore map[string]bool) []trigger.Event {
	type agg struct {
		n      int
		latest int64
		reason string
	}
	by := map[string]*agg{}
	for _, e := range events {
		if e.SourceID != "" && ignore[e.SourceID] {
			continue
		}
		k, ok := key(e.PortalID)
		if !ok || k == "" {
			continue
		}
		a := by[k]
		if a == nil {
			a = &agg{latest: e.OccurredAt, reason: e.SubscriptionType}
			by[k] = a
		}
		a.n++
		if e.OccurredAt >= a.latest {
			a.latest, a.reason = e.OccurredAt, e.SubscriptionType
		}
	}
	out := make([]trigger.Event, 0, len(by))
	for k, a := range by {
		out = append(out, trigger.Event{Key: k, System: System, Reason: a.reason, Count: a.n})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out
}

// NewRequest returns a POST request to url carrying body, signed with
// secret at time at, as HubSpot would send it: for tests of a handler.
func NewRequest(ctx context.Context, secret, url string, body []byte, at time.Time) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	ts := strconv.FormatInt(at.UnixMilli(), 10)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(HeaderTimestamp, ts)
	req.Header.Set(HeaderSignature, Sign(secret, http.MethodPost, url, body, ts))
	return req, nil
}
