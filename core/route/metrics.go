package route

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	grayscale     *prometheus.CounterVec // version
	fallbacks     *prometheus.CounterVec // version
	noResponders  *prometheus.CounterVec // cluster
	rules         prometheus.Gauge
	policyVersion prometheus.Gauge
	refusedRules  prometheus.Counter
	nodes         *prometheus.GaugeVec // cluster, version
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		grayscale: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "longlink_route_grayscale_requests_total", Help: "Requests a grayscale rule sent to service nodes of a version, by version."}, []string{"version"}),
		fallbacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "longlink_route_grayscale_fallbacks_total", Help: "Grayscale requests re-sent to the stable nodes because no node of their version was live, by version."}, []string{"version"}),
		noResponders: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "longlink_route_no_live_node_total", Help: "Requests that found no live service node of their cluster, by cluster."}, []string{"cluster"}),
		rules: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "longlink_route_grayscale_rules", Help: "Grayscale rules in force."}),
		policyVersion: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "longlink_route_grayscale_policy_version", Help: "LBS policy version of the grayscale rules in force (0: none received)."}),
		refusedRules: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "longlink_route_grayscale_refused_total", Help: "Grayscale rule lists refused (they did not compile); the previous rules stay."}),
		nodes: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "longlink_route_service_nodes", Help: "Live app service nodes heard announcing, by cluster and version."}, []string{"cluster", "version"}),
	}
	for _, c := range []prometheus.Collector{m.grayscale, m.fallbacks, m.noResponders, m.rules, m.policyVersion, m.refusedRules, m.nodes} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}
