//! The `ginx` command: parse arguments, set up logging and the runtime, run.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use tracing_subscriber::{fmt, prelude::*, reload, EnvFilter};

/// jemalloc, with the decay `.cargo/config.toml` compiles in: see Cargo.toml.
#[cfg(all(target_os = "linux", not(target_env = "musl")))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// A config-file-driven HTTP reverse proxy and load balancer.
#[derive(Debug, Parser)]
#[command(name = "ginx", version, about)]
struct Cli {
    /// The main configuration file.
    #[arg(
        short,
        long,
        value_name = "PATH",
        default_value = "ginx.toml",
        env = "GINX_CONFIG"
    )]
    config: PathBuf,
    /// Load and validate the configuration (all includes), then exit.
    #[arg(short = 't', long)]
    check: bool,
    /// How --check reports: located lines with the source shown (text) or
    /// one JSON document on stdout (json).
    #[arg(long, value_enum, default_value_t, requires = "check")]
    format: ginx::check::Format,
    /// With --check: print what applying this configuration would change in
    /// the running ginx (read from its admin endpoint).
    #[arg(long, requires = "check")]
    diff: bool,
    /// With --diff: the running ginx's admin address (HOST:PORT), instead of
    /// the configuration's [admin] bind.
    #[arg(long, value_name = "ADDR", requires = "diff")]
    admin: Option<String>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Print the JSON Schema of configuration files (for editors), then exit.
    Schema,
    /// Replace the running ginx of this configuration by the binary now at
    /// its path (SIGUSR2 to the process named by `[global] pid_file`, or by
    /// the admin endpoint), and report the outcome: exit 1 with the reason
    /// if the running ginx kept serving.
    Upgrade {
        /// The main configuration file (as `ginx -c`).
        #[arg(short, long, value_name = "PATH")]
        config: Option<PathBuf>,
        /// The running ginx's admin address (HOST:PORT), instead of the
        /// configuration's [admin] bind: where the outcome is read.
        #[arg(long, value_name = "ADDR")]
        admin: Option<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Schema) => return ginx::check::print_schema(),
        Some(Command::Upgrade { config, admin }) => {
            return ginx::upgrade_running(config.as_ref().unwrap_or(&cli.config), admin.as_deref())
        }
        None => {}
    }
    if cli.check {
        return ginx::check::run(&ginx::check::Options {
            config: &cli.config,
            format: cli.format,
            diff: cli.diff,
            admin: cli.admin.as_deref(),
        });
    }
    let log = init_logging();
    match run(cli, log) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            match error.downcast_ref::<ginx::ConfigErrors>() {
                Some(errors) => {
                    for error in errors.iter() {
                        eprintln!("{error}");
                    }
                    eprintln!(
                        "ginx: not started: the configuration has {} error(s)",
                        errors.len()
                    );
                }
                None => eprintln!("ginx: {error:#}"),
            }
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli, log: ginx::LogControl) -> anyhow::Result<()> {
    let workers = match std::env::var("GINX_WORKERS") {
        Ok(n) => n
            .parse::<usize>()
            .ok()
            .filter(|&n| n > 0)
            .with_context(|| format!("GINX_WORKERS={n}: expected a positive number of worker threads"))?,
        Err(_) => std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    // The control plane (signals, reloads) runs here; requests run on the
    // workers' own runtimes.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("creating the control runtime")?;
    let options = ginx::RunOptions {
        config: cli.config,
        workers,
    };
    runtime.block_on(ginx::run(options, log, shutdown_signal()))
}

/// Resolves on SIGINT or SIGTERM. (SIGHUP belongs to reload.)
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut terminate = signal(SignalKind::terminate()).expect("installing a SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
        _ = terminate.recv() => tracing::info!("SIGTERM received"),
    }
}

/// Logs go to stderr. `RUST_LOG` fixes the filter; otherwise the
/// configuration's `log_level` applies, and reloads may change it, as they
/// may change `log_format`.
fn init_logging() -> ginx::LogControl {
    let json = Arc::new(AtomicBool::new(false));
    if let Ok(filter) = EnvFilter::try_from_default_env() {
        tracing_subscriber::registry()
            .with(filter)
            .with(format_layer(json.clone()))
            .init();
        return ginx::LogControl::new(None, json);
    }
    let (filter, handle) = reload::Layer::new(level_filter("info"));
    tracing_subscriber::registry()
        .with(filter)
        .with(format_layer(json.clone()))
        .init();
    let set_level = move |level: &str| {
        let _ = handle.modify(|filter| *filter = level_filter(level));
    };
    ginx::LogControl::new(Some(Box::new(set_level)), json)
}

/// `log_level`, except for rustls, which only reports errors: it warns once
/// per handshake about clients' mistakes (an IP address sent as the server
/// name, as wrk does), at a rate any client controls.
fn level_filter(level: &str) -> EnvFilter {
    EnvFilter::new(format!("{level},rustls=error"))
}

fn format_layer<S>(json: Arc<AtomicBool>) -> impl tracing_subscriber::Layer<S>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    // ANSI colours only for a terminal, and never inside JSON.
    let ansi = std::io::stderr().is_terminal();
    fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .event_format(SwitchableFormat {
            json,
            text: fmt::format(),
            json_format: fmt::format().json().flatten_event(true).with_current_span(false),
        })
}

/// Text or JSON lines, as `log_format` says at the moment of each event.
struct SwitchableFormat {
    json: Arc<AtomicBool>,
    text: fmt::format::Format,
    json_format: fmt::format::Format<fmt::format::Json>,
}

impl<S, N> fmt::FormatEvent<S, N> for SwitchableFormat
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    N: for<'a> fmt::FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &fmt::FmtContext<'_, S, N>,
        writer: fmt::format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        if self.json.load(Ordering::Relaxed) {
            self.json_format.format_event(ctx, writer, event)
        } else {
            self.text.format_event(ctx, writer, event)
        }
    }
}
