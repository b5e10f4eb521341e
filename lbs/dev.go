package lbs

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"github.com/longlink/longlink/lbs/internal/state"
	"os"
	"path/filepath"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/longlink/longlink/geo/mmdbbuild"
	"github.com/longlink/longlink/lbs/internal/model"
	"github.com/longlink/longlink/pkg/config"
)

// DevConfig is a single-member configuration for `longlink dev`: data and CA
// under dir, the default ports, a demonstration geo database built from
// mmdbbuild.DemoWorld, and an admin token and a node token that are generated
// once and kept in dir/tokens.json (mode 0600).
func DevConfig(dir string) (Config, error) {
	c := Default()
	c.NodeID = "lbs-dev"
	c.DataDir = dir
	c.TLS.CADir = filepath.Join(dir, "ca")
	c.Cluster.Bootstrap = true
	c.DNS.Sockets = 1
	type tokens struct{ Admin, Node string }
	var tk tokens
	p := filepath.Join(dir, "tokens.json")
	if b, err := os.ReadFile(p); err == nil {
		if err := json.Unmarshal(b, &tk); err != nil {
			return c, fmt.Errorf("lbs: %s: %w", p, err)
		}
	}
	if tk.Admin == "" || tk.Node == "" {
		tk = tokens{Admin: randHex(20), Node: randHex(20)}
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return c, err
		}
		b, _ := json.Marshal(tk)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			return c, err
		}
	}
	// a demonstration geo database, so that explain shows locations
	city, asn := filepath.Join(dir, "geo-city.mmdb"), filepath.Join(dir, "geo-asn.mmdb")
	recs, err := mmdbbuild.ParseCSV(bytes.NewReader(mmdbbuild.DemoWorld))
	if err != nil {
		return c, err
	}
	if err := mmdbbuild.Build(recs, city, asn); err != nil {
		return c, err
	}
	c.Geo.CityDB, c.Geo.ASNDB = city, asn
	c.AdminToken = config.NewSecret(tk.Admin)
	c.NodeToken = config.NewSecret(tk.Node)
	return c, nil
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// DevEntryPoint describes one entry point of the demo policy.
type DevEntryPoint struct {
	ID   string // e.g. "core-gw" or "edge-1"
	Kind string // "gateway" or "edge"
	Link string // host:port of Link TCP
	// LinkQUIC is the host:port (UDP) of Link over QUIC, optional.
	LinkQUIC string
	WebLink  string // URL of WebLink, optional
	TURN     string // host:port, optional
	KeyIDs   []string
	Lat      float64 // optional
	Lon      float64
}

// DevPolicy renders the demo routing document for app appkey: the edges
// (each its own site) are the candidates and the first gateway is the app's
// fallback, appended last; without edges the gateways are the candidates.
func DevPolicy(appkey string, eps ...DevEntryPoint) ([]byte, error) {
	doc := model.Document{Description: "longlink dev demo policy", Defaults: model.Defaults{Count: 3}}
	var edges, gateways []string
	fallback := ""
	for _, e := range eps {
		doc.EntryPoints = append(doc.EntryPoints, model.EntryPoint{ID: e.ID, Kind: e.Kind, Site: e.ID, Lat: e.Lat, Lon: e.Lon,
			Link: e.Link, LinkQUIC: e.LinkQUIC, WebLink: e.WebLink, TURN: e.TURN, KeyIDs: e.KeyIDs})
		if e.Kind == "gateway" {
			gateways = append(gateways, e.ID)
			if fallback == "" {
				fallback = e.ID
			}
		} else {
			edges = append(edges, e.ID)
		}
	}
	ids := edges
	if len(ids) == 0 {
		ids = gateways
	}
	doc.Pools = []model.Pool{{Name: "dev", EntryPoints: ids}}
	doc.Apps = []model.App{{AppKey: appkey, Pools: []string{"dev"}, Fallback: fallback}}
	if err := doc.Validate(); err != nil {
		return nil, fmt.Errorf("lbs: dev policy: %w", err)
	}
	return yaml.Marshal(&doc)
}

// WriteCtlConfig writes what `longlink ctl` needs to reach this member's
// admin API (server URL, admin token, CA file) to path, mode 0600.
func (l *LBS) WriteCtlConfig(path string) error {
	caPath := filepath.Join(filepath.Dir(path), "ctl-ca.pem")
	var pem []byte
	if l.cfg.TLS.CADir != "" {
		b, err := os.ReadFile(filepath.Join(l.cfg.TLS.CADir, "ca.pem"))
		if err != nil {
			return err
		}
		pem = b
	} else {
		b, err := os.ReadFile(l.cfg.TLS.CAFile)
		if err != nil {
			return err
		}
		pem = b
	}
	if err := os.WriteFile(caPath, pem, 0o644); err != nil {
		return err
	}
	host := l.AdminAddr().String()
	if strings.HasPrefix(host, "[::]") || strings.HasPrefix(host, "0.0.0.0") {
		host = "127.0.0.1" + host[strings.LastIndex(host, ":"):]
	}
	out, _ := yaml.Marshal(map[string]string{"server": "https://" + host, "token": l.config().AdminToken.Reveal(), "ca_file": caPath})
	return os.WriteFile(path, out, 0o600)
}

// PolicyVersion is the policy version once every committed change is
// applied (a restarted member has replayed its log): 0 means no policy was
// ever applied.
func (l *LBS) PolicyVersion(ctx context.Context) (uint64, error) {
	if err := l.cl.ReadIndex(ctx); err != nil {
		return 0, err
	}
	return l.fsm.Current().State.Version, nil
}

// AddTurnSecret adds a TURN shared secret to the replicated state unless it
// holds one already (dev mode: the nodes then fetch the dev secret from the
// LBS as they would in a cluster).
func (l *LBS) AddTurnSecret(ctx context.Context, id, secret, who string) error {
	if len(l.fsm.Current().State.TurnSecrets) > 0 {
		return nil
	}
	_, err := l.propose(ctx, &state.Command{Op: state.OpTurnSecretAdd, Who: who,
		Secret: &state.TurnSecret{ID: id, Secret: secret, Created: time.Now().UTC()}})
	return err
}
