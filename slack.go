package crmsync

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/crmsync/crmsync/internal/retry"
)

// SlackNotifier is a [ConflictHandler] that posts one message per call to a
// Slack incoming webhook: the engine calls it once per run, so a storm of
// conflicts makes one message. It retries 5xx and 429 answers (honouring
// Retry-After) with exponential backoff. The zero value with WebhookURL set
// is ready to use.
type SlackNotifier struct {
	// WebhookURL is the incoming webhook's URL. It is a secret: errors never
	// include it.
	WebhookURL string
	// HTTPClient sends the requests; nil means http.DefaultClient.
	HTTPClient *http.Client
	// Redact leaves every value out of the message: only record ids, field
	// names, winners and rules are posted.
	Redact bool
	// RedactFields leaves the values of these fields out (rule names, or a
	// field's name on either side).
	RedactFields []string
	// MaxAttempts caps the attempts per call; zero means 5.
	MaxAttempts int
	// MinBackoff is the first retry's wait, doubled each time up to
	// MaxBackoff; zero means 500ms and 30s.
	MinBackoff, MaxBackoff time.Duration
	// MaxLines caps the conflicts listed one per line; zero means 50. The rest
	// are counted.
	MaxLines int
}

// SlackError is a webhook answer that is not a success.
type SlackError struct {
	// Status is the HTTP status; Body is Slack's short error code
	// ("invalid_payload", "no_service"), cut to 100 bytes.
	Status int
	Body   string
}

func (e *SlackError) Error() string {
	return fmt.Sprintf("crmsync: slack webhook: status %d: %s", e.Status, e.Body)
}

var _ ConflictHandler = (*SlackNotifier)(nil)

// HandleConflicts implements [ConflictHandler]. It posts nothing for no
// conflicts. An answer no retry can fix (4xx other than 429) is Permanent.
func (s *SlackNotifier) HandleConflicts(ctx context.Context, run RunID, conflicts []Conflict) error {
	if len(conflicts) == 0 {
		return nil
	}
	return s.PostText(ctx, s.Message(run, conflicts))
}

// PostText posts text as one message, retrying as HandleConflicts does.
// An answer no retry can fix (4xx other than 429) is Permanent.
func (s *SlackNotifier) PostText(ctx context.Context, text string) error {
	if s.WebhookURL == "" {
		return Permanent(errors.New("crmsync: slack webhook: no URL"))
	}
	body, err := json.Marshal(map[string]string{"text": text})
	if err != nil {
		return fmt.Errorf("crmsync: slack webhook: encode message: %w", err)
	}
	client := s.HTTPClient
	if client == nil {
		client = http.DefaultClient
	}
	attempts := s.MaxAttempts
	if attempts <= 0 {
		attempts = 5
	}
	minB, maxB := s.MinBackoff, s.MaxBackoff
	if minB <= 0 {
		minB = 500 * time.Millisecond
	}
	if maxB <= 0 {
		maxB = 30 * time.Second
	}
	policy := retry.Policy{InitialInterval: minB, MaxInterval: maxB, Multiplier: 2, Jitter: 0.25, MaxAttempts: attempts}
	var last error
	err = retry.Do(ctx, policy, func(int) error {
		last = s.post(ctx, client, body)
		return last
	}, func(err error) retry.Verdict {
		if IsPermanent(err) {
			return retry.Stop(nil)
		}
		var rl *RateLimitError
		if errors.As(err, &rl) {
			return retry.Retry(rl.RetryAfter)
		}
		return retry.Retry(0)
	}, nil)
	var ex *retry.ExhaustedError
	switch {
	case err == nil:
		return nil
	case ctx.Err() != nil:
		return fmt.Errorf("crmsync: slack webhook: %w (last: %v)", ctx.Err(), last)
	case errors.As(err, &ex):
		return ex.Err
	}
	return err
}

// post sends the message once; a 429 is a *RateLimitError carrying its Retry-After.
func (s *SlackNotifier) post(ctx context.Context, client *http.Client, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.WebhookURL, bytes.NewReader(body))
	if err != nil {
		return Permanent(errors.New("crmsync: slack webhook: bad URL"))
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // the url.Error would print the secret URL
		}
		return fmt.Errorf("crmsync: slack webhook: post: %w", err)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 100))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return nil
	}
	serr := &SlackError{Status: resp.StatusCode, Body: strings.TrimSpace(strings.ToValidUTF8(string(msg), ""))}
	switch {
	case resp.StatusCode == http.StatusTooManyRequests:
		var d time.Duration
		if n, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && n >= 0 {
			d = time.Duration(n) * time.Second
		}
		return RetryAfter(d, serr)
	case resp.StatusCode >= 500:
		return serr
	default:
		return Permanent(serr)
	}
}

// Message is the text HandleConflicts posts: one line per conflict (up to
// MaxLines) with the record ids, field, winner and rule, and the values
// unless redacted.
func (s *SlackNotifier) Message(run RunID, conflicts []Conflict) string {
	maxLines := s.MaxLines
	if maxLines <= 0 {
		maxLines = 50
	}
	var held int
	for _, c := range conflicts {
		if c.Held {
			held++
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "crmsync run %s: %d conflicting edit", slackEscape(string(run)), len(conflicts))
	if len(conflicts) != 1 {
		b.WriteString("s")
	}
	if held > 0 {
		fmt.Fprintf(&b, ", %d held for a person", held)
	}
	for i, c := range conflicts {
		if i == maxLines {
			fmt.Fprintf(&b, "\n…and %d more", len(conflicts)-maxLines)
			break
		}
		fmt.Fprintf(&b, "\n• %s on %s %s / %s %s: ", slackEscape(c.Field), slackEscape(c.SystemA), slackEscape(c.RecordA), slackEscape(c.SystemB), slackEscape(c.RecordB))
		switch {
		case c.Held:
			b.WriteString("held")
		case c.Winner != "":
			fmt.Fprintf(&b, "%s won", c.Winner)
		default:
			b.WriteString("set by rule")
		}
		fmt.Fprintf(&b, " (%s)", c.Rule)
		if !s.redacts(c) {
			fmt.Fprintf(&b, " — %s: %s, %s: %s, was %s", c.SystemA, showValue(c.A), c.SystemB, showValue(c.B), showValue(c.Base))
		}
		fmt.Fprintf(&b, " [%s]", c.ID)
	}
	return b.String()
}

func (s *SlackNotifier) redacts(c Conflict) bool {
	if s.Redact {
		return true
	}
	return slices.ContainsFunc(s.RedactFields, func(f string) bool {
		return f == c.Field || f == c.FieldA || f == c.FieldB
	})
}

// showValue quotes a value for the message, cut to 80 characters.
func showValue(v any) string {
	if v == nil {
		return "(blank)"
	}
	s := fmt.Sprint(v)
	if utf8.RuneCountInString(s) > 80 {
		r := []rune(s)
		s = string(r[:80]) + "…"
	}
	return slackEscape(strconv.Quote(s))
}

// slackEscape escapes the characters Slack reads as markup ("<!channel>").
var slackEscaper = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;")

func slackEscape(s string) string { return slackEscaper.Replace(s) }
