package obs_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/sluice-dev/sluice/obs"
)

func TestRedactArgs(t *testing.T) {
	in := []string{"sluice", "run", "--queue-url=nats://u:pw-SECRET@h1:4222,nats://tok-SECRET@h2:4222", "--url", "nats://tok-SECRET@h3", "--socket", "/run/s.sock", "nats://h4:4222"}
	got := obs.RedactArgs(in)
	want := []string{"sluice", "run", "--queue-url=nats://xxxxx@h1:4222,nats://xxxxx@h2:4222", "--url", "nats://xxxxx@h3", "--socket", "/run/s.sock", "nats://h4:4222"}
	if !slices.Equal(got, want) {
		t.Fatalf("RedactArgs =\n%q\nwant\n%q", got, want)
	}
	if strings.Contains(strings.Join(got, " "), "SECRET") {
		t.Fatal("a secret survived")
	}
}
