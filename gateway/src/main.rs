//! The `session-gateway` binary: one gateway node from a config, the
//! `--demo` (two nodes, two demo backends, one store), and the `sessions`
//! operator commands.

use std::process::ExitCode;

use session_gateway::config::{Config, parse_listen, parse_policy};
use session_gateway::{admin, demo, metrics, node};

const USAGE: &str = "\
usage:
  session-gateway --demo [--tour] [--store URL]
  session-gateway [--config FILE] [--backend NAME=URL]... [--listen ADDR] [--store URL]
                  [--store-prefix P] [--policy push|every-access|bounded:DURATION]
  session-gateway sessions list|show ID|terminate ID|expire-backend ID NAME|evict-backend NAME
                  [--store URL] [--store-prefix P] [--json] [--show-values]
  session-gateway demo-backend math|text [--listen ADDR]

Store URLs: memory:// (default), redis://HOST:PORT, postgres://USER@HOST/DB, sqlite:PATH?mode=rwc,
with store options in the query (e.g. redis://HOST:PORT/0?prefix=gw:&ttl=30m; see session-manager's ConnectOptions).
Logs: --log-format text|json (any command; or LOG_FORMAT), RUST_LOG (default info,rmcp=warn,session_manager=warn).";

fn main() -> ExitCode {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    if let Err(e) = init_logs(&mut args) {
        eprintln!("session-gateway: {e}");
        return ExitCode::FAILURE;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match rt.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // The whole chain: the top error says what failed, its sources why.
            eprintln!("session-gateway: {}", session_core::display_chain(&*e));
            ExitCode::FAILURE
        }
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How log lines are written to stderr.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LogFormat {
    /// Human-readable lines (the default).
    Text,
    /// One JSON object per line (for log collectors).
    Json,
}

fn parse_log_format(s: &str) -> Result<LogFormat, String> {
    match s {
        "text" => Ok(LogFormat::Text),
        "json" => Ok(LogFormat::Json),
        other => Err(format!(
            "invalid log format {other:?}: expected text or json"
        )),
    }
}

/// Installs the log subscriber: `--log-format text|json` (taken out of
/// `args`, any position) or else `LOG_FORMAT`; filter from `RUST_LOG`.
fn init_logs(args: &mut Vec<String>) -> Result<(), String> {
    let mut format = match std::env::var("LOG_FORMAT") {
        Ok(v) if !v.is_empty() => parse_log_format(&v).map_err(|e| format!("LOG_FORMAT: {e}"))?,
        _ => LogFormat::Text,
    };
    if let Some(i) = args.iter().position(|a| a == "--log-format") {
        let v = args
            .get(i + 1)
            .ok_or("--log-format needs a value (text or json)")?;
        format = parse_log_format(v)?;
        args.drain(i..=i + 1);
    }
    // session_manager=warn by default: the manager opens an info span per
    // request (`get_for`), which the fmt layer would format on every call.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("info,rmcp=warn,session_manager=warn")
    });
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().init(),
    }
    Ok(())
}

async fn run(args: Vec<String>) -> Result<(), BoxError> {
    match args.first().map(String::as_str) {
        Some("sessions") => return admin::run(&args[1..]).await,
        Some("demo-backend") => return demo_backend(&args[1..]).await,
        _ => {}
    }
    let mut cfg: Option<Config> = None;
    let mut backends = Vec::new();
    let (mut listen, mut store, mut policy, mut prefix) = (None, None, None, None);
    let (mut demo_mode, mut tour) = (false, false);
    let mut it = args.into_iter();
    while let Some(arg) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .ok_or_else(|| BoxError::from(format!("{name} needs a value\n\n{USAGE}")))
        };
        match arg.as_str() {
            "--demo" => demo_mode = true,
            "--tour" => tour = true,
            "--config" => cfg = Some(Config::load(&value("--config")?)?),
            "--backend" => backends.push(value("--backend")?),
            "--listen" => listen = Some(parse_listen(&value("--listen")?)?),
            "--store" => store = Some(value("--store")?),
            "--store-prefix" => prefix = Some(value("--store-prefix")?),
            "--policy" => policy = Some(parse_policy(&value("--policy")?)?),
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            other => return Err(format!("unknown argument {other:?}\n\n{USAGE}").into()),
        }
    }
    if tour && !demo_mode {
        return Err("--tour needs --demo".into());
    }
    let mut cfg = cfg.unwrap_or_default();
    for b in &backends {
        cfg.add_backend_arg(b)?;
    }
    if let Some(l) = listen {
        cfg.listen = l;
    }
    if let Some(s) = store {
        cfg.store = s;
    }
    if prefix.is_some() {
        cfg.store_prefix = prefix;
    }
    if policy.is_some() {
        cfg.policy = policy;
    }
    let recorder = metrics::install();
    if demo_mode {
        return demo::run(cfg, tour, recorder).await;
    }
    if cfg.backends.is_empty() {
        return Err(
            format!("no backends: give --backend NAME=URL or a --config file\n\n{USAGE}").into(),
        );
    }
    let store =
        session_gateway::config::connect_store(&cfg.store, cfg.store_prefix.as_deref()).await?;
    let running = node::start(cfg, store, recorder).await?;
    println!("session-gateway listening on {}", running.url());
    shutdown_signal().await;
    eprintln!("shutting down: closing every live session of this node");
    running.shutdown().await;
    Ok(())
}

/// `demo-backend NAME [--listen ADDR]`: one demo backend as its own process
/// (for end-to-end runs with separate gateway processes).
async fn demo_backend(args: &[String]) -> Result<(), BoxError> {
    let name: &'static str = match args.first().map(String::as_str) {
        Some("math") => "math",
        Some("text") => "text",
        _ => return Err("usage: session-gateway demo-backend math|text [--listen ADDR]".into()),
    };
    let listen = match args.get(1).map(String::as_str) {
        Some("--listen") => parse_listen(args.get(2).ok_or("--listen needs a value")?)?,
        _ => parse_listen("127.0.0.1:0")?,
    };
    let backend = demo::DemoBackend::start(name, listen).await?;
    println!("demo backend {name} listening on {}", backend.url());
    shutdown_signal().await;
    backend.stop().await;
    Ok(())
}

/// SIGINT or SIGTERM.
pub(crate) async fn shutdown_signal() {
    demo::shutdown_signal().await;
}
