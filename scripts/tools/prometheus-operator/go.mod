// prometheus-operator v0.85.0, only for the CRDs of its module (example/prometheus-operator-crd/:
// ServiceMonitor, PodMonitor, PrometheusRule), which scripts/install-test-tools.sh takes with
// `go mod download` to validate the chart's monitoring objects. Nothing is built from it, so
// there is no import and `go mod tidy` would drop the requirement: do not tidy this module.
module stockpulse.local/tools/prometheus-operator

go 1.26.0

require github.com/prometheus-operator/prometheus-operator v0.85.0
