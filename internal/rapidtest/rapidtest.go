// Package rapidtest replays fixed seeds of a rapid property, so that a
// seed a hunt found keeps running in CI beside the random ones.
package rapidtest

import (
	"flag"
	"fmt"
	"testing"

	"pgregory.net/rapid"
)

// Replay runs prop as rapid.Check would with -rapid.seed=seed and
// -rapid.checks=checks, restoring both flags when t ends. The seed is a
// case's own seed, the one rapid prints after "or -rapid.seed=" when a
// case fails: with checks 1 it is exactly that case.
func Replay(t *testing.T, seed uint64, checks int, prop func(*rapid.T)) {
	t.Helper()
	set(t, "rapid.seed", fmt.Sprint(seed))
	set(t, "rapid.checks", fmt.Sprint(checks))
	rapid.Check(t, prop)
}

func set(t *testing.T, name, value string) {
	t.Helper()
	fl := flag.Lookup(name)
	if fl == nil {
		t.Fatalf("rapidtest: rapid registered no -%s flag", name)
	}
	old := fl.Value.String()
	if err := fl.Value.Set(value); err != nil {
		t.Fatalf("rapidtest: -%s: %v", name, err)
	}
	t.Cleanup(func() {
		if err := fl.Value.Set(old); err != nil {
			t.Errorf("rapidtest: restore -%s: %v", name, err)
		}
	})
}
