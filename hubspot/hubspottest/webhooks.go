package hubspottest

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
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Defaults of WebhookConfig.
const (
	DefaultPortalID = 62515
	DefaultAppID    = 54321
)

// WebhookConfig configures the webhooks the fake sends after writes
// (SendWebhooks).
type WebhookConfig struct {
	// URL is the app's target URL. Required.
	URL string
	// Secret signs the requests (v3); "" means the fake's ClientSecret.
	Secret string
	// PortalID and AppID go into every event; zero means DefaultPortalID
	// and DefaultAppID.
	PortalID, AppID int64
	// BatchSize caps the events of one request; zero means 100 (HubSpot
	// sends an array of events and does not document its size).
	BatchSize int
	// Gather is how long events wait for others to share a request; zero
	// means 50ms.
	Gather time.Duration
	// Timeout is how long a request may take before it counts as failed,
	// as HubSpot's 5 s; zero means 5s.
	Timeout time.Duration
	// Attempts caps the tries of one batch (HubSpot: the first and up to
	// 10 retries); zero means 11.
	Attempts int
	// RetryDelay is the wait before the n-th retry (n from 1); nil means
	// 100ms doubling up to 5s (HubSpot spreads its retries over a day).
	RetryDelay func(n int) time.Duration
	// MaxConcurrent caps requests in flight (the app's
	// maxConcurrentRequests); zero means 10.
	MaxConcurrent int
	// Client sends the requests; nil means a new http.Client.
	Client *http.Client
}

// WebhookStats counts what the webhook sender did.
type WebhookStats struct {
	// Events is how many events were queued; Delivered how many a 2xx
	// accepted; Dropped how many gave up after Attempts.
	Events, Delivered, Dropped int
	// Requests counts requests sent, Retries those that were retries.
	Requests, Retries int
}

// webhookEvent is an event as HubSpot sends it (values are not sent: a
// propertyChange event names no property here).
type webhookEvent struct {
	EventID          int64  `json:"eventId"`
	SubscriptionID   int64  `json:"subscriptionId"`
	PortalID         int64  `json:"portalId"`
	AppID            int64  `json:"appId"`
	OccurredAt       int64  `json:"occurredAt"`
	SubscriptionType string `json:"subscriptionType"`
	AttemptNumber    int    `json:"attemptNumber"`
	ObjectID         int64  `json:"objectId"`
	ChangeSource     string `json:"changeSource"`
	SourceID         string `json:"sourceId,omitempty"`
	ChangeFlag       string `json:"changeFlag,omitempty"`
}

// webhookSender queues events and posts them in signed batches.
type webhookSender struct {
	c      WebhookConfig
	ctx    context.Context
	cancel context.CancelFunc
	wake   chan struct{}
	sem    chan struct{}
	wg     sync.WaitGroup

	mu      sync.Mutex
	queue   []webhookEvent
	queued  time.Time // when the oldest queued event came
	nextID  int64
	busy    int // batches in flight or waiting to retry
	stats   WebhookStats
	pending sync.Cond
}

// SendWebhooks makes the fake send signed webhook batches to c.URL after
// every write from then on: contact.creation, contact.propertyChange (one
// per written record, whatever properties changed), contact.deletion and
// contact.restore, and the same for companies and deals; API writes carry
// changeSource INTEGRATION and sourceId "app:<AppID>" (HubSpot's own
// values for an app's writes are unconfirmed), edits through Edit, Seed,
// Archive and Restore changeSource CRM_UI. A request that fails, times
// out or gets a 4xx or 5xx is sent again with attemptNumber one higher.
// Calling it again replaces the configuration; StopWebhooks (or Close)
// stops sending.
func (s *Server) SendWebhooks(c WebhookConfig) error {
	if c.URL == "" {
		return errors.New("hubspottest: WebhookConfig.URL is empty")
	}
	u, err := url.Parse(c.URL)
	if err != nil || u.Host == "" {
		return fmt.Errorf("hubspottest: WebhookConfig.URL %q is not an absolute URL", c.URL)
	}
	if u.Path == "" {
		// The request line says "/": sign what the receiver sees.
		u.Path = "/"
		c.URL = u.String()
	}
	if c.Secret == "" {
		c.Secret = s.cfg.ClientSecret
	}
	if c.PortalID == 0 {
		c.PortalID = DefaultPortalID
	}
	if c.AppID == 0 {
		c.AppID = DefaultAppID
	}
	if c.BatchSize <= 0 {
		c.BatchSize = 100
	}
	if c.Gather <= 0 {
		c.Gather = 50 * time.Millisecond
	}
	if c.Timeout <= 0 {
		c.Timeout = 5 * time.Second
	}
	if c.Attempts <= 0 {
		c.Attempts = 11
	}
	if c.RetryDelay == nil {
		c.RetryDelay = func(n int) time.Duration { return min(100*time.Millisecond<<(n-1), 5*time.Second) }
	}
	if c.MaxConcurrent <= 0 {
		c.MaxConcurrent = 10
	}
	if c.Client == nil {
		c.Client = &http.Client{}
	}
	s.StopWebhooks()
	ctx, cancel := context.WithCancel(context.Background())
	w := &webhookSender{c: c, ctx: ctx, cancel: cancel, wake: make(chan struct{}, 1), sem: make(chan struct{}, c.MaxConcurrent)}
	w.pending.L = &w.mu
	s.mu.Lock()
	s.webhooks = w
	s.mu.Unlock()
	w.wg.Add(1)
	go w.loop()
	return nil
}

// StopWebhooks stops sending webhooks; queued events are dropped.
func (s *Server) StopWebhooks() {
	s.mu.Lock()
	w := s.webhooks
	s.webhooks = nil
	s.mu.Unlock()
	if w != nil {
		w.cancel()
		w.wg.Wait()
	}
}

// WebhookStats reports what the webhook sender did so far.
func (s *Server) WebhookStats() WebhookStats {
	s.mu.Lock()
	w := s.webhooks
	s.mu.Unlock()
	if w == nil {
		return WebhookStats{}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.stats
}

// WaitWebhooks waits until every queued event was delivered or dropped, or
// ctx ends.
func (s *Server) WaitWebhooks(ctx context.Context) error {
	s.mu.Lock()
	w := s.webhooks
	s.mu.Unlock()
	if w == nil {
		return nil
	}
	stop := context.AfterFunc(ctx, func() { w.mu.Lock(); w.pending.Broadcast(); w.mu.Unlock() })
	defer stop()
	w.mu.Lock()
	defer w.mu.Unlock()
	for len(w.queue) > 0 || w.busy > 0 {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		w.pending.Wait()
	}
	return nil
}

// webhookObject names an object type as subscription types do.
func webhookObject(object string) string {
	switch object {
	case "contacts":
		return "contact"
	case "companies":
		return "company"
	case "deals":
		return "deal"
	}
	return strings.TrimSuffix(object, "s")
}

// notify queues a webhook event for a write of r; s.mu is held. kind is
// creation, propertyChange, deletion or restore.
func (s *Server) notify(object, kind string, r *rec) {
	w := s.webhooks
	if w == nil {
		return
	}
	source, sourceID := "INTEGRATION", "app:"+strconv.FormatInt(w.c.AppID, 10)
	if s.uiWrite {
		source, sourceID = "CRM_UI", ""
	}
	e := webhookEvent{
		PortalID: w.c.PortalID, AppID: w.c.AppID, OccurredAt: time.Now().UnixMilli(),
		SubscriptionType: webhookObject(object) + "." + kind, ObjectID: r.num,
		ChangeSource: source, SourceID: sourceID,
	}
	if kind == "creation" {
		e.ChangeFlag = "NEW"
	}
	w.add(e)
}

func (w *webhookSender) add(e webhookEvent) {
	w.mu.Lock()
	w.nextID++
	e.EventID = w.nextID
	e.SubscriptionID = 1000 + int64(len(e.SubscriptionType))
	if len(w.queue) == 0 {
		w.queued = time.Now()
	}
	w.queue = append(w.queue, e)
	w.stats.Events++
	full := len(w.queue) >= w.c.BatchSize
	w.mu.Unlock()
	if full {
		select {
		case w.wake <- struct{}{}:
		default:
		}
	}
}

// loop sends a batch when BatchSize events are queued or the oldest has
// waited Gather.
func (w *webhookSender) loop() {
	defer w.wg.Done()
	t := time.NewTicker(w.c.Gather / 2)
	defer t.Stop()
	for {
		select {
		case <-w.ctx.Done():
			return
		case <-w.wake:
		case <-t.C:
		}
		for {
			w.mu.Lock()
			if len(w.queue) == 0 || (len(w.queue) < w.c.BatchSize && time.Since(w.queued) < w.c.Gather) {
				w.mu.Unlock()
				break
			}
			n := min(len(w.queue), w.c.BatchSize)
			batch := append([]webhookEvent(nil), w.queue[:n]...)
			w.queue = w.queue[n:]
			w.queued = time.Now()
			w.busy++
			w.mu.Unlock()
			select {
			case w.sem <- struct{}{}:
			case <-w.ctx.Done():
				return
			}
			w.wg.Add(1)
			go w.deliver(batch)
		}
	}
}

// deliver sends one batch until a 2xx accepts it or Attempts are spent.
func (w *webhookSender) deliver(batch []webhookEvent) {
	defer w.wg.Done()
	delivered := false
	for attempt := 0; attempt < w.c.Attempts && w.ctx.Err() == nil; attempt++ {
		if attempt > 0 {
			select {
			case <-time.After(w.c.RetryDelay(attempt)):
			case <-w.ctx.Done():
			}
			if w.ctx.Err() != nil {
				break
			}
		}
		for i := range batch {
			batch[i].AttemptNumber = attempt
		}
		w.mu.Lock()
		w.stats.Requests++
		if attempt > 0 {
			w.stats.Retries++
		}
		w.mu.Unlock()
		if w.post(batch) {
			delivered = true
			break
		}
	}
	<-w.sem
	w.mu.Lock()
	if delivered {
		w.stats.Delivered += len(batch)
	} else {
		w.stats.Dropped += len(batch)
	}
	w.busy--
	w.pending.Broadcast()
	w.mu.Unlock()
}

// post sends a batch once, signed as HubSpot signs (v3), and reports
// whether it was accepted in time.
func (w *webhookSender) post(batch []webhookEvent) bool {
	body, err := json.Marshal(batch)
	if err != nil {
		return false
	}
	ctx, cancel := context.WithTimeout(w.ctx, w.c.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.c.URL, bytes.NewReader(body))
	if err != nil {
		return false
	}
	ts := strconv.FormatInt(time.Now().UnixMilli(), 10)
	mac := hmac.New(sha256.New, []byte(w.c.Secret))
	mac.Write([]byte(http.MethodPost + w.c.URL + string(body) + ts))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-HubSpot-Request-Timestamp", ts)
	req.Header.Set("X-HubSpot-Signature-v3", base64.StdEncoding.EncodeToString(mac.Sum(nil)))
	resp, err := w.c.Client.Do(req)
	if err != nil {
		return false
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode >= 200 && resp.StatusCode < 300
}

// asUser marks the writes until the returned func is called as a user's
// (changeSource CRM_UI); s.mu is held throughout.
func (s *Server) asUser() func() {
	s.uiWrite = true
	return func() { s.uiWrite = false }
}

// objectOf returns the object type r belongs to, for a webhook; s.mu is
// held.
func (s *Server) objectOf(r *rec) string {
	if s.webhooks == nil {
		return ""
	}
	for name, st := range s.objects {
		if st.recs[r.id] == r {
			return name
		}
	}
	return ""
}
