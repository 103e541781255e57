//! `/metrics` in Prometheus text: the manager's metrics (`session_manager_*`)
//! and the gateway's per-backend call counts and latencies
//! (`gateway_backend_calls_total{backend,outcome}`,
//! `gateway_backend_call_seconds{backend}`, `gateway_backend_expired_total`,
//! `gateway_backend_heal_lost_total`).

use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// Renders the process-wide recorder's metrics.
#[derive(Clone)]
pub struct Render(PrometheusHandle);

impl Render {
    /// The current metrics in Prometheus text format.
    pub fn render(&self) -> String {
        self.0.render()
    }
}

/// Installs the Prometheus recorder once per process (before building
/// managers, so their hot-path counters register with it).
pub fn install() -> Option<Render> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| PrometheusBuilder::new().install_recorder().ok())
        .clone()
        .map(Render)
}
