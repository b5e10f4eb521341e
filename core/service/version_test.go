package service_test

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/longlink/longlink/core/imapi"

	"github.com/longlink/longlink/core/internal/buswire"
	"github.com/longlink/longlink/core/route"
	"github.com/longlink/longlink/core/service"
	"github.com/longlink/longlink/pkg/waittest"
)

// TestVersionedNodes: a labelled node takes its version's subjects as well
// as the cluster's stable ones, a canary only its version's, and each
// announces itself (then its drain) to the gateways.
func TestVersionedNodes(t *testing.T) {
	for _, tc := range []struct {
		name   string
		canary bool
	}{{"labelled", false}, {"canary", true}} {
		t.Run(tc.name, func(t *testing.T) {
			heard := make(chan route.NodeAnnounce, 16)
			e := newEnv(t, "sqlite", func(c *service.Config) { c.ID, c.Version, c.Canary = "svc-x", "2.0", tc.canary })
			sub, err := e.nc.Subscribe(route.NodeSubject, func(m *nats.Msg) {
				if a, err := route.DecodeNodeAnnounce(m.Data); err == nil {
					heard <- a
				}
			})
			if err != nil {
				t.Fatal(err)
			}
			defer sub.Unsubscribe()
			ask := func(subject string) error {
				body, _ := json.Marshal(&imapi.LoginReq{AppKey: appKey, Account: "nobody", Token: "x", DeviceType: "pc"})
				data, _ := json.Marshal(&buswire.Request{Body: body})
				_, err := e.nc.Request(subject, data, 5*time.Second)
				return err
			}
			rt := route.Route{Cluster: buswire.DefaultCluster, Version: "2.0"}
			if err := ask(rt.Subject(imapi.OpLogin)); err != nil {
				t.Fatalf("version subject: %v", err)
			}
			err = ask(rt.Stable().Subject(imapi.OpLogin))
			if tc.canary != errors.Is(err, nats.ErrNoResponders) {
				t.Fatalf("stable subject of a canary=%v node: %v", tc.canary, err)
			}
			waittest.Until(t, 5*time.Second, "announcement", func() bool {
				select {
				case a := <-heard:
					return a.ID == "svc-x" && a.Version == "2.0" && a.Canary == tc.canary && !a.Draining
				default:
					return false
				}
			})
			if err := e.svc.Shutdown(t.Context()); err != nil {
				t.Fatal(err)
			}
			waittest.Until(t, 5*time.Second, "draining announcement", func() bool {
				select {
				case a := <-heard:
					return a.Draining
				default:
					return false
				}
			})
		})
	}
	cfg := service.Default()
	cfg.Canary = true
	if err := cfg.Validate(); err == nil {
		t.Fatal("a canary without a version validated")
	}
}
