package bus_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/longlink/longlink/core/bus"
	"github.com/longlink/longlink/core/bus/bustest"
	"github.com/longlink/longlink/core/clustertest"
	"github.com/longlink/longlink/pkg/config"
)

// exercise checks request/reply with a queue group and a JetStream stream.
func exercise(t *testing.T, b *bus.Bus, subject string) {
	t.Helper()
	nc := b.Conn()
	sub, err := nc.QueueSubscribe(subject, "svc", func(m *nats.Msg) { _ = m.Respond(append([]byte("echo:"), m.Data...)) })
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	other, err := b.Connect("second")
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	resp, err := other.Request(subject, []byte("hi"), 2*time.Second)
	if err != nil || string(resp.Data) != "echo:hi" {
		t.Fatalf("request: %v %v", resp, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	js := b.JetStream()
	name := "T" + strings.ReplaceAll(subject, ".", "_")
	s, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: name, Subjects: []string{subject + ".js"}, Storage: jetstream.MemoryStorage})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = js.DeleteStream(context.Background(), name) }()
	// On a cluster the new stream's server may not listen yet when the
	// create is answered (CI: "no response from stream"): publish again
	// until it takes it. Msg-Id dedupes a publish stored but not acked.
	for {
		_, err := js.Publish(ctx, subject+".js", []byte("durable"), jetstream.WithMsgID("exercise"))
		if err == nil {
			break
		}
		if !errors.Is(err, jetstream.ErrNoStreamResponse) || ctx.Err() != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	info, err := s.Info(ctx)
	if err != nil || info.State.Msgs != 1 {
		t.Fatalf("stream info %+v %v", info, err)
	}
}

func TestEmbedded(t *testing.T) {
	cfg := bus.Default()
	cfg.Listen = "127.0.0.1:0"
	cfg.StoreDir = t.TempDir()
	cfg.Password = config.NewSecret("test-password-123")
	b := bustest.Start(t, cfg)
	exercise(t, b, "ll.test.embedded")
	url := b.ClientURL()
	if url == "" {
		t.Fatal("no client URL")
	}
	t.Run("listener requires credentials", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			opts []nats.Option
			ok   bool
		}{
			{"anonymous", nil, false},
			{"wrong password", []nats.Option{nats.UserInfo("longlink", "nope")}, false},
			{"right credentials", []nats.Option{nats.UserInfo("longlink", "test-password-123")}, true},
		} {
			nc, err := nats.Connect(url, append(tc.opts, nats.MaxReconnects(0), nats.Timeout(2*time.Second))...)
			if (err == nil) != tc.ok {
				t.Errorf("%s: err = %v", tc.name, err)
			}
			if nc != nil {
				nc.Close()
			}
		}
	})
	if err := b.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := net.DialTimeout("tcp", strings.TrimPrefix(url, "nats://"), time.Second); err == nil {
		t.Fatal("listener still open after shutdown")
	}
}

func TestEmbeddedNoListener(t *testing.T) {
	cfg := bus.Default()
	cfg.Listen = ""
	b := bustest.Start(t, cfg)
	if b.ClientURL() != "" {
		t.Fatal("no listener expected")
	}
	exercise(t, b, "ll.test.private")
}

// TestExternal joins a cluster of three real nats-server processes that
// take clients only on TLS with a client certificate and a password, and
// creates a stream with the default replica count of the external mode.
func TestExternal(t *testing.T) {
	clustertest.Require(t)
	env := clustertest.New(t)
	n := env.StartNATS(clustertest.NATSOptions{})
	cfg := bus.Default()
	cfg.Mode = bus.ModeExternal
	cfg.URLs = n.URLs()
	cfg.User, cfg.Password = n.User, config.NewSecret(n.Password)
	cfg.TLS = bus.TLSConfig{CAFile: env.CAFile, CertFile: n.ClientCert, KeyFile: n.ClientKey}
	b := bustest.Start(t, cfg)
	exercise(t, b, "ll.test.external")
	if b.Replicas() != 3 {
		t.Fatalf("replicas = %d, want 3 on a cluster", b.Replicas())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	s, err := b.JetStream().CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: "R3", Subjects: []string{"ll.test.r3"}, Replicas: b.Replicas()})
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil || info.Cluster == nil || len(info.Cluster.Replicas) != 2 {
		t.Fatalf("stream cluster info %+v, %v: want a leader and two replicas", info, err)
	}

	// Without the client certificate the servers refuse the connection.
	noCert := cfg
	noCert.TLS = bus.TLSConfig{CAFile: env.CAFile}
	noCert.ConnectTimeout = config.Duration(2 * time.Second)
	if b, err := bus.New(noCert, bus.Deps{}); err != nil {
		t.Fatal(err)
	} else if err := b.Start(ctx); err == nil {
		_ = b.Shutdown(ctx)
		t.Fatal("connected without a client certificate")
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		mut  func(*bus.Config)
		want string
	}{
		{"bad mode", func(c *bus.Config) { c.Mode = "cloud" }, "bus.mode"},
		{"external needs urls", func(c *bus.Config) { c.Mode = bus.ModeExternal }, "bus.urls"},
		{"url scheme", func(c *bus.Config) { c.Mode = bus.ModeExternal; c.URLs = []string{"10.0.0.1:4222"} }, "scheme"},
		{"bad listen", func(c *bus.Config) { c.Listen = "7714" }, "bus.listen"},
		{"embedded needs user", func(c *bus.Config) { c.User = "" }, "bus.user"},
		{"embedded replicas", func(c *bus.Config) { c.JetStreamReplicas = 3 }, "bus.jetstream_replicas"},
		{"embedded tls", func(c *bus.Config) { c.TLS.CAFile = "ca.pem" }, "bus.tls"},
		{"replicas range", func(c *bus.Config) {
			c.Mode, c.URLs, c.JetStreamReplicas = bus.ModeExternal, []string{"tls://10.0.0.1:4222"}, 7
		}, "bus.jetstream_replicas"},
		{"cert without key", func(c *bus.Config) {
			c.Mode, c.URLs, c.TLS.CertFile = bus.ModeExternal, []string{"tls://10.0.0.1:4222"}, "client.pem"
		}, "bus.tls.cert_file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := bus.Default()
			tc.mut(&c)
			err := c.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
			if _, err := bus.New(c, bus.Deps{}); err == nil {
				t.Fatal("New accepted an invalid config")
			}
		})
	}
}

// TestExternalSingleServer: on one nats-server (no cluster) the streams
// and buckets get one replica, and asking for three is a clear start error.
func TestExternalSingleServer(t *testing.T) {
	clustertest.Require(t)
	env := clustertest.New(t)
	n := env.StartNATS(clustertest.NATSOptions{Nodes: 1})
	cfg := bus.Default()
	cfg.Mode = bus.ModeExternal
	cfg.URLs = n.URLs()
	cfg.User, cfg.Password = n.User, config.NewSecret(n.Password)
	cfg.TLS = bus.TLSConfig{CAFile: env.CAFile, CertFile: n.ClientCert, KeyFile: n.ClientKey}
	if b := bustest.Start(t, cfg); b.Replicas() != 1 {
		t.Fatalf("replicas = %d on one server, want 1", b.Replicas())
	}
	cfg.JetStreamReplicas = 3
	b, err := bus.New(cfg, bus.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	err = b.Start(context.Background())
	if err == nil {
		_ = b.Shutdown(context.Background())
		t.Fatal("started with 3 replicas on one server")
	}
	if !strings.Contains(err.Error(), "jetstream_replicas") {
		t.Fatalf("error %q does not name jetstream_replicas", err)
	}
}

func TestReplicasEmbedded(t *testing.T) {
	cfg := bus.Default()
	cfg.Listen = ""
	if b := bustest.Start(t, cfg); b.Replicas() != 1 {
		t.Fatalf("embedded: %d replicas, want 1", b.Replicas())
	}
}
