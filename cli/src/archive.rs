//! `switchyard archive export`: a source's archived events, decrypted, as JSON lines.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use switchyard_archive::KeyRing;
use switchyard_archive::keys::master_from_env;

use crate::config::Config;

#[derive(Debug, clap::Subcommand)]
pub enum ArchiveCommand {
    /// Writes a source's archived events received in [--from, --to) as JSON lines.
    Export(ExportArgs),
    /// Gives a source a new key for its new objects; old objects stay readable.
    /// Restart the routers to start using it.
    RotateKey(KeyArgs),
    /// Writes a source's keys in `age-keygen` form, for `age -d -i FILE`.
    ExportKey(KeyArgs),
    /// Compares the primary store with the replica and copies what either lacks.
    Verify(VerifyArgs),
}

#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    #[arg(long, short, env = "SWITCHYARD_CONFIG", default_value = "examples/switchyard.toml")]
    config: PathBuf,
    /// Report only; copy nothing.
    #[arg(long)]
    dry_run: bool,
}

#[derive(Debug, clap::Args)]
pub struct KeyArgs {
    #[arg(long, short, env = "SWITCHYARD_CONFIG", default_value = "examples/switchyard.toml")]
    config: PathBuf,
    #[arg(long)]
    source: String,
    /// A file to write (created with mode 0600); standard output when absent.
    #[arg(long, short)]
    output: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    #[arg(long, short, env = "SWITCHYARD_CONFIG", default_value = "examples/switchyard.toml")]
    config: PathBuf,
    #[arg(long)]
    source: String,
    /// RFC 3339 time, e.g. 2026-11-29T00:00:00Z (inclusive).
    #[arg(long)]
    from: Option<DateTime<Utc>>,
    /// RFC 3339 time (exclusive).
    #[arg(long)]
    to: Option<DateTime<Utc>>,
    /// A file to write; standard output when absent.
    #[arg(long, short)]
    output: Option<PathBuf>,
}

pub fn run(command: ArchiveCommand) -> anyhow::Result<()> {
    match command {
        ArchiveCommand::Export(args) => export(args),
        ArchiveCommand::Verify(args) => verify(args),
        ArchiveCommand::RotateKey(args) => {
            let (keys, _) = keys(&args.config, &args.source)?;
            let fresh = keys.rotate(&args.source)?;
            eprintln!(
                "source {} now encrypts new objects to {}",
                args.source,
                fresh.to_public()
            );
            Ok(())
        }
        ArchiveCommand::ExportKey(args) => {
            let (keys, _) = keys(&args.config, &args.source)?;
            let text = keys.export(&args.source)?;
            match &args.output {
                Some(path) => {
                    use std::os::unix::fs::OpenOptionsExt;
                    let mut file = std::fs::OpenOptions::new()
                        .write(true)
                        .create_new(true)
                        .mode(0o600)
                        .open(path)
                        .with_context(|| format!("cannot create {}", path.display()))?;
                    file.write_all(text.as_bytes())?;
                }
                None => print!("{text}"),
            }
            Ok(())
        }
    }
}

/// The archive settings of a file that configures `source`, and its key ring.
fn keys(config_path: &std::path::Path, source: &str) -> anyhow::Result<(KeyRing, switchyard_archive::ArchiveConfig)> {
    let config = Config::load(config_path)?;
    let archive = config.archive_section(config_path)?;
    config.check_source(source)?;
    Ok((key_ring(&archive)?, archive))
}

/// The archive's keys, under the master key from the environment when there is one.
pub fn key_ring(archive: &switchyard_archive::ArchiveConfig) -> anyhow::Result<KeyRing> {
    Ok(KeyRing::new(&archive.key_dir, master_from_env()?))
}

fn export(args: ExportArgs) -> anyhow::Result<()> {
    let (keys, archive) = keys(&args.config, &args.source)?;
    let store = archive.store()?;
    let mut out: Box<dyn Write> = match &args.output {
        Some(path) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    let count = actix_web::rt::System::new().block_on(switchyard_archive::export::export(
        store.as_ref(),
        &keys,
        &archive.prefix,
        &args.source,
        switchyard_archive::export::Range {
            from: args.from,
            to: args.to,
        },
        &mut out,
    ))?;
    out.flush()?;
    eprintln!("exported {count} events of source {}", args.source);
    Ok(())
}

fn verify(args: VerifyArgs) -> anyhow::Result<()> {
    let archive = Config::load(&args.config)?.archive_section(&args.config)?;
    let Some(replica) = archive.replica()? else {
        bail!("{}: [archive] has no replica to compare with", args.config.display());
    };
    let primary = archive.store()?;
    let report = actix_web::rt::System::new().block_on(switchyard_archive::verify::verify(
        primary.as_ref(),
        replica.as_ref(),
        &archive.prefix,
        args.dry_run,
    ))?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    let verb = if args.dry_run { "missing" } else { "copied" };
    eprintln!(
        "primary {} objects, replica {}; {verb}: {} to the replica, {} to the primary; {} differ in size",
        report.primary_objects,
        report.replica_objects,
        report.copied_to_replica.len(),
        report.copied_to_primary.len(),
        report.mismatched.len()
    );
    if !report.mismatched.is_empty() {
        bail!("objects differ between the stores: {:?}", report.mismatched);
    }
    Ok(())
}
