package bus

import "github.com/prometheus/client_golang/prometheus"

// serverInfo exports longlink_bus_server_info{server,cluster}: 1 for the
// NATS server this process is connected to now, with that server's
// cluster name, read at each scrape. With one NATS cluster per site (a
// super-cluster, docs/cluster.md "Two sites") the cluster is the site
// whose servers the node uses: a node of site a on a server of cluster b
// shows it.
type serverInfo struct {
	b    *Bus
	desc *prometheus.Desc
}

func newServerInfo(b *Bus) *serverInfo {
	return &serverInfo{b: b, desc: prometheus.NewDesc("longlink_bus_server_info",
		"1 for the NATS server this process is connected to: its server name and cluster (with a cluster per site, the site).",
		[]string{"server", "cluster"}, nil)}
}

func (s *serverInfo) Describe(ch chan<- *prometheus.Desc) { ch <- s.desc }

func (s *serverInfo) Collect(ch chan<- prometheus.Metric) {
	nc := s.b.Conn()
	if nc == nil || !nc.IsConnected() {
		return
	}
	ch <- prometheus.MustNewConstMetric(s.desc, prometheus.GaugeValue, 1, nc.ConnectedServerName(), nc.ConnectedClusterName())
}
