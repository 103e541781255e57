//! `session-gateway sessions …`: operator commands over any store URL.

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Runs a `sessions` subcommand.
#[allow(
    clippy::unused_async,
    reason = "placeholder until the operator commands land"
)]
pub async fn run(_args: &[String]) -> Result<(), BoxError> {
    Err("sessions: not built yet".into())
}
