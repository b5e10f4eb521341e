package nodeclient

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/longlink/longlink/lbs/lbsapi"
	"github.com/longlink/longlink/pkg/config"
	"github.com/longlink/longlink/pkg/turncred"
)

// maxTurnSecretsBytes bounds the secrets reply the client reads.
const maxTurnSecretsBytes = 256 << 10

// syncTurnSecrets fetches the LBS's live TURN secrets and hands them to
// Deps.OnTurnSecrets when the set differs from the one last handed over.
//
// The rule for an empty set: the LBS holding no TURN secrets (none added
// yet, or all removed) never wipes the node's working set; the node keeps
// what it has (its configured start-up set or the last set from the LBS)
// until the LBS holds at least one secret again. A failed fetch likewise
// changes nothing.
//
// The order is the LBS's, oldest first: the first secret is the current
// one (it signs), so a rotation (add the new secret, wait for every node to
// pick it up, remove the old one) switches signing only once every TURN
// server already accepts the new secret. Secret values are never logged;
// only their ids are.
//
// Only the heartbeat goroutine calls it.
func (c *Client) syncTurnSecrets(ctx context.Context) error {
	list, err := c.fetchTurnSecrets(ctx)
	if err != nil {
		return err
	}
	if len(list) == 0 {
		if !c.turnEmptyWarned {
			c.log.Warn("the LBS holds no TURN secrets; keeping the current set")
			c.turnEmptyWarned = true
		}
		return nil
	}
	c.turnEmptyWarned = false
	h := sha256.New()
	secrets := make([]turncred.Secret, 0, len(list))
	ids := make([]string, 0, len(list))
	for _, s := range list {
		fmt.Fprintf(h, "%d:%s%d:%s", len(s.ID), s.ID, len(s.Secret), s.Secret)
		secrets = append(secrets, turncred.Secret{ID: s.ID, Value: config.NewSecret(s.Secret)})
		ids = append(ids, s.ID)
	}
	var sum [sha256.Size]byte
	copy(sum[:], h.Sum(nil))
	if c.turnHave && sum == c.turnSum {
		return nil
	}
	c.turnSum, c.turnHave = sum, true
	if err := c.deps.OnTurnSecrets(secrets); err != nil {
		// recorded anyway: the same set would fail the same way on every beat
		c.log.Warn("TURN secrets from the LBS refused", "ids", ids, "err", err)
		return nil
	}
	c.turnUpdates.Add(1)
	c.log.Info("TURN secrets updated from the LBS", "ids", ids)
	return nil
}

// fetchTurnSecrets GETs the secrets, starting with the member that last
// answered a heartbeat.
func (c *Client) fetchTurnSecrets(ctx context.Context) ([]lbsapi.TurnSecret, error) {
	var last error
	n := len(c.cfg.Servers)
	for i := range n {
		idx := int((c.next.Load() + int64(i)) % int64(n))
		list, err := c.getTurnSecrets(ctx, c.cfg.Servers[idx]+lbsapi.PathTurnSecrets)
		if err == nil {
			return list, nil
		}
		last = err
		if ctx.Err() != nil {
			break
		}
	}
	return nil, fmt.Errorf("%w: turn secrets: %v", ErrAllServersFailed, last)
}

func (c *Client) getTurnSecrets(ctx context.Context, url string) ([]lbsapi.TurnSecret, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.cfg.Token.Reveal())
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxTurnSecretsBytes+1))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		// the body is the LBS's error text, never secrets
		if len(b) > 512 {
			b = b[:512]
		}
		return nil, fmt.Errorf("%s: %s: %s", url, resp.Status, strings.TrimSpace(string(b)))
	}
	if len(b) > maxTurnSecretsBytes {
		return nil, fmt.Errorf("%s: reply larger than %d bytes", url, maxTurnSecretsBytes)
	}
	var list []lbsapi.TurnSecret
	if err := json.Unmarshal(b, &list); err != nil {
		return nil, fmt.Errorf("%s: decoding the secrets: %w", url, err)
	}
	for i, s := range list {
		if s.ID == "" || s.Secret == "" {
			return nil, fmt.Errorf("%s: secret %d without id or value", url, i)
		}
	}
	return list, nil
}

// TurnSecretUpdates is how many times a changed set of TURN secrets from the
// LBS was handed to Deps.OnTurnSecrets and accepted.
func (c *Client) TurnSecretUpdates() int64 { return c.turnUpdates.Load() }
