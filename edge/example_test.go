package edge

import (
	"strings"

	"github.com/longlink/longlink/pkg/config"
	"github.com/longlink/longlink/relay"
)

// decodeRelayExample loads relay-*.yaml and egress-*.yaml examples.
func decodeRelayExample(name string, b []byte) error {
	if strings.Contains(name, "egress") {
		cfg := relay.DefaultEgress()
		return config.Decode(name, b, &cfg)
	}
	cfg := relay.Default()
	return config.Decode(name, b, &cfg)
}
