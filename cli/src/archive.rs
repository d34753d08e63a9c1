//! `switchyard archive export`: a source's archived events, decrypted, as JSON lines.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use switchyard_archive::KeyRing;

use crate::config::Config;

#[derive(Debug, clap::Subcommand)]
pub enum ArchiveCommand {
    /// Writes a source's archived events received in [--from, --to) as JSON lines.
    Export(ExportArgs),
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
    }
}

fn export(args: ExportArgs) -> anyhow::Result<()> {
    let config = Config::load(&args.config)?;
    let Some(archive) = config.archive else {
        bail!(
            "{}: no [archive] section, so nothing is archived",
            args.config.display()
        );
    };
    if !config.sources.iter().any(|entry| entry.source.id == args.source) {
        bail!("--source {:?} is not a configured source", args.source);
    }
    let store = archive.store()?;
    let keys = KeyRing::new(&archive.key_dir);
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
        args.from,
        args.to,
        &mut out,
    ))?;
    out.flush()?;
    eprintln!("exported {count} events of source {}", args.source);
    Ok(())
}
