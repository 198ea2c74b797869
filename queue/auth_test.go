package queue_test

import (
	"errors"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/sluice-dev/sluice/queue"
)

// With a token or a user, the embedded server refuses a client without the
// credential or with a wrong one, and lets in one that presents it; sluice's
// own in-process connection (Connect) presents it by itself. Without either,
// anyone may connect: that is queue.auth none, chosen explicitly.
func TestEmbedded_Auth(t *testing.T) {
	for _, tc := range []struct {
		name       string
		set        func(*queue.EmbeddedOptions)
		good, bad  []nats.Option
		anyoneGets bool
	}{
		{"token", func(o *queue.EmbeddedOptions) { o.Token = "s3cret-token" },
			[]nats.Option{nats.Token("s3cret-token")}, []nats.Option{nats.Token("guess")}, false},
		{"user", func(o *queue.EmbeddedOptions) { o.User, o.Password = "sluice", "pw-1" },
			[]nats.Option{nats.UserInfo("sluice", "pw-1")}, []nats.Option{nats.UserInfo("sluice", "pw-2")}, false},
		{"none", func(*queue.EmbeddedOptions) {}, nil, nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			eo := testConfig(t)
			tc.set(&eo)
			emb := startServer(t, eo)
			connect(t, emb) // the in-process client: credentials from emb

			for _, opts := range [][]nats.Option{nil, tc.bad} {
				nc, err := nats.Connect(emb.ClientURL(), opts...)
				if tc.anyoneGets {
					if err != nil {
						t.Fatalf("no authentication: a client was refused: %v", err)
					}
					nc.Close()
					continue
				}
				if err == nil {
					nc.Close()
					t.Fatalf("a client with %d wrong or missing credentials was let in", len(opts))
				}
				if !errors.Is(err, nats.ErrAuthorization) {
					t.Fatalf("refusal = %v, want an authorization violation", err)
				}
			}
			if tc.good != nil {
				nc, err := nats.Connect(emb.ClientURL(), tc.good...)
				if err != nil {
					t.Fatalf("the right credentials were refused: %v", err)
				}
				nc.Close()
			}
		})
	}
	eo := testConfig(t)
	eo.Token, eo.User = "t", "u"
	if _, err := queue.StartEmbedded(eo); !errors.Is(err, queue.ErrBadConfig) {
		t.Errorf("a token and a user together: %v, want ErrBadConfig", err)
	}
}
