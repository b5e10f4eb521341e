package bus

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	connected   prometheus.Gauge
	disconnects prometheus.Counter
	reconnects  prometheus.Counter
	asyncErrors prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		connected: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "longlink_bus_connected", Help: "1 while this process's bus connection is up.",
		}),
		disconnects: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "longlink_bus_disconnects_total", Help: "Bus connection losses.",
		}),
		reconnects: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "longlink_bus_reconnects_total", Help: "Bus reconnections after a loss.",
		}),
		asyncErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "longlink_bus_async_errors_total", Help: "Asynchronous bus errors (slow consumers, permission violations).",
		}),
	}
	for _, c := range []prometheus.Collector{m.connected, m.disconnects, m.reconnects, m.asyncErrors} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}
