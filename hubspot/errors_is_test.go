package hubspot

import (
	"errors"
	"testing"

	"github.com/crmsync/crmsync"
)

func TestAPIErrorIsUnauthorized(t *testing.T) {
	for _, tc := range []struct {
		status int
		want   bool
	}{{401, true}, {403, true}, {400, false}, {429, false}, {500, false}} {
		err := crmsync.Permanent(&APIError{Call: "batch/upsert contacts", Status: tc.status})
		if got := errors.Is(err, crmsync.ErrUnauthorized); got != tc.want {
			t.Errorf("errors.Is(status %d, ErrUnauthorized) = %v, want %v", tc.status, got, tc.want)
		}
	}
}
