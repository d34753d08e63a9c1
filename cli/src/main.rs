//! The `switchyard` binary: every role by subcommand. Wiring only; the work lives in
//! the library crates.

mod actors;
mod archive;
mod config;
mod control;
mod dead_letters;
mod files;
mod live;
mod local_broker;
mod logging;
mod replay;
mod serve;
mod signals;
mod sink;
mod topic;

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};

/// Ingest allocates and frees many small JSON values per request across threads;
/// mimalloc measured about twice the throughput of glibc malloc on the ingest benchmark.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(name = "switchyard", version, about = "Self-hosted customer-data router")]
struct Cli {
    /// Log format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, env = "SWITCHYARD_LOG_FORMAT", global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, clap::Args)]
struct Common {
    /// Configuration file (TOML).
    #[arg(long, short, env = "SWITCHYARD_CONFIG", default_value = "examples/switchyard.toml")]
    config: PathBuf,
    /// Kafka bootstrap servers; overrides the file's [kafka] brokers.
    #[arg(long, env = "SWITCHYARD_KAFKA_BROKERS")]
    kafka_brokers: Option<String>,
}

#[derive(Debug, clap::Args)]
struct CheckConfigArgs {
    #[command(flatten)]
    common: Common,
    /// The process the file is for: a router on its own needs no ingest listener.
    #[arg(long, value_enum, default_value = "run")]
    role: Role,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Role {
    Run,
    Ingest,
    Router,
}

impl Role {
    fn roles(self) -> serve::Roles {
        match self {
            Role::Run => serve::Roles::ALL,
            Role::Ingest => serve::Roles::INGEST,
            Role::Router => serve::Roles::ROUTER,
        }
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Ingest and router in one process. Without a Kafka cluster configured, starts an
    /// in-memory local broker (not durable) so it runs with nothing installed.
    Run(Common),
    /// The collection API only (needs a Kafka cluster).
    Ingest(Common),
    /// The router only (needs a Kafka cluster).
    Router(Common),
    /// Checks a configuration file and exits.
    CheckConfig(CheckConfigArgs),
    /// Creates the ingest topic on a Kafka cluster.
    CreateTopic(topic::CreateTopic),
    /// An in-memory Kafka broker (librdkafka's mock cluster) for local runs of separate
    /// ingest and router processes; nothing survives its exit.
    LocalBroker(local_broker::LocalBrokerArgs),
    /// A local webhook receiver that prints what it gets (for trying destinations out).
    Sink(sink::SinkArgs),
    /// The running actors of a process (from its ops port), as a table.
    Actors(actors::ActorsArgs),
    /// What was dead-lettered and why, from the dead-letter topic, as JSON lines.
    DeadLetters(dead_letters::DeadLettersArgs),
    /// Delivery per source and destination, with recent errors (from the ops port).
    Overview(actors::ActorsArgs),
    /// The archive: export a source's events.
    #[command(subcommand)]
    Archive(archive::ArchiveCommand),
    /// Sends a source's archived events again through its destinations.
    Replay(replay::ReplayArgs),
    /// The control plane: metadata database, first owner, admin API.
    #[command(subcommand)]
    Control(control::ControlCommand),
    /// The audit log of administrative changes.
    #[command(subcommand)]
    Audit(control::AuditCommand),
    /// Writes an encrypted backup of the control plane's metadata to [control.backup].
    Backup(control::ConfigArgs),
    /// Restores a backup (the newest unless --from) into the control database.
    Restore(control::RestoreArgs),
    /// Makes a workspace's sources and destinations match a YAML file (GitOps).
    Apply(control::ApplyArgs),
    /// Writes a workspace's sources and destinations as YAML, without secrets.
    ExportConfig(control::ExportConfigArgs),
    /// Makes a new master key file (an age identity, mode 0600), for
    /// SWITCHYARD_MASTER_KEY_FILE or [control] master_key_file; never overwrites one.
    MasterKey(archive::MasterKeyArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let telemetry = logging::init(cli.log_format);
    exit_on_panic();
    let result = run(cli.command);
    telemetry.shutdown();
    result
}

fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Run(common) => serve::start(common.config, common.kafka_brokers, serve::Roles::ALL),
        Command::Ingest(common) => serve::start(common.config, common.kafka_brokers, serve::Roles::INGEST),
        Command::Router(common) => serve::start(common.config, common.kafka_brokers, serve::Roles::ROUTER),
        Command::CheckConfig(args) => {
            let path = &args.common.config;
            let config = config::Config::load(path)?;
            config
                .check_serving(args.role.roles().ingest)
                .with_context(|| format!("config file {} is not valid", path.display()))?;
            println!("{}: valid, {} source(s)", path.display(), config.sources.len());
            Ok(())
        }
        Command::CreateTopic(args) => topic::create(args),
        Command::LocalBroker(args) => local_broker::serve(args),
        Command::Sink(args) => sink::run(args),
        Command::DeadLetters(args) => dead_letters::run(args),
        Command::Actors(args) => actors::run(args),
        Command::Overview(args) => actors::overview(args),
        Command::Archive(command) => archive::run(command),
        Command::Replay(args) => replay::run(args),
        Command::Control(command) => control::run(command),
        Command::Audit(command) => control::audit(command),
        Command::Backup(args) => control::take_backup(args),
        Command::Restore(args) => control::restore(args),
        Command::Apply(args) => control::apply(args),
        Command::ExportConfig(args) => control::export_config(args),
        Command::MasterKey(args) => archive::master_key(&args),
    }
}

/// A panic ends the process, unless it is inside an actor's boundary (a destination's
/// client or transforms, see `switchyard_actors::supervise`), where it is caught and
/// becomes that call's failure. Actors run on shared threads, so any other panic would
/// leave a half-dead actor system holding offsets uncommitted forever; a restarted
/// process (Kubernetes, systemd) redelivers everything uncommitted instead.
fn exit_on_panic() {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if switchyard_actors::supervise::contained() {
            tracing::error!(%info, "panic caught at an actor's boundary; the actor goes on");
            return;
        }
        report(info);
        tracing::error!(%info, "panic: exiting so that a restart redelivers what was in flight");
        std::process::exit(101);
    }));
}
