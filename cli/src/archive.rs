//! `switchyard archive ...`: export, keys, replica repair and deletion.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use switchyard_archive::config::StoreConfig;
use switchyard_archive::keys::{keygen_text, master_from_env, parse_identities};
use switchyard_archive::{ArchiveConfig, KeyRing, delete};

use crate::config::{Config, ConfigArgs};
use crate::files::write_private;

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
    /// Deletes one user's events from a source's archive (objects rewritten without
    /// them, in both stores) and drops the user's new events from then on.
    DeleteUser(DeleteUserArgs),
    /// Deletes a source's whole archive: keys, objects and suppression list, in both
    /// stores. Remove the source from the configuration first.
    DeleteSource(DeleteSourceArgs),
    /// Lists the deletion records (JSON lines), oldest first.
    Deletions(ConfigArgs),
}

#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// Report only; copy nothing.
    #[arg(long)]
    dry_run: bool,
}

#[derive(Debug, clap::Args)]
pub struct KeyArgs {
    #[command(flatten)]
    config: ConfigArgs,
    #[arg(long)]
    source: String,
    /// A file to write (created with mode 0600); standard output when absent.
    #[arg(long, short)]
    output: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct DeleteUserArgs {
    #[command(flatten)]
    config: ConfigArgs,
    #[arg(long)]
    source: String,
    /// The user's id, matched against both `userId` and `anonymousId`.
    #[arg(long)]
    user: String,
    /// Seconds to wait between listing the user as suppressed and rewriting objects,
    /// so running routers stop archiving the user first; defaults to the
    /// configuration's suppression refresh plus 5.
    #[arg(long)]
    settle: Option<u64>,
}

#[derive(Debug, clap::Args)]
pub struct DeleteSourceArgs {
    #[command(flatten)]
    config: ConfigArgs,
    #[arg(long)]
    source: String,
    /// Delete even though the configuration still lists the source (its routers would
    /// go on archiving it under a new key).
    #[arg(long)]
    force: bool,
}

#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    #[command(flatten)]
    config: ConfigArgs,
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
    let runtime = actix_web::rt::System::new();
    match command {
        ArchiveCommand::Export(args) => runtime.block_on(export(args)),
        ArchiveCommand::Verify(args) => runtime.block_on(verify(args)),
        ArchiveCommand::RotateKey(args) => runtime.block_on(async {
            let (keys, _) = keys(&args.config.config, &args.source).await?;
            let fresh = keys.rotate(&args.source).await?;
            eprintln!(
                "source {} now encrypts new objects to {}",
                args.source,
                fresh.to_public()
            );
            Ok(())
        }),
        ArchiveCommand::ExportKey(args) => runtime.block_on(async {
            let (keys, _) = keys(&args.config.config, &args.source).await?;
            let text = keys.export(&args.source).await?;
            match &args.output {
                Some(path) => write_private(path, text.as_bytes()),
                None => {
                    print!("{text}");
                    Ok(())
                }
            }
        }),
        ArchiveCommand::DeleteUser(args) => runtime.block_on(delete_user(args)),
        ArchiveCommand::DeleteSource(args) => runtime.block_on(delete_source(args)),
        ArchiveCommand::Deletions(args) => runtime.block_on(async {
            let config = Config::load(&args.config)?;
            let archive = config.archive_section(&args.config)?;
            let keys = key_ring(&config, &archive)?;
            for record in delete::records(keys.primary().as_ref(), &archive.prefix).await? {
                println!("{}", serde_json::to_string(&record)?);
            }
            Ok(())
        }),
    }
}

#[derive(Debug, clap::Args)]
pub struct MasterKeyArgs {
    /// The file to create (it must not exist).
    #[arg(long, short)]
    pub output: PathBuf,
}

/// `switchyard master-key -o FILE`: every process of one deployment must share it
/// (a Kubernetes Secret), so it is made once, here, never by a process on first use.
pub fn master_key(args: &MasterKeyArgs) -> anyhow::Result<()> {
    let identity = age::x25519::Identity::generate();
    write_private(&args.output, keygen_text(std::slice::from_ref(&identity)).as_bytes())?;
    eprintln!(
        "master key written to {} (public key {}): keep a copy safe",
        args.output.display(),
        identity.to_public()
    );
    Ok(())
}

/// The archive settings of a file that configures `source` (itself or in the
/// control-plane workspace it names), and its key ring.
async fn keys(config_path: &Path, source: &str) -> anyhow::Result<(KeyRing, ArchiveConfig)> {
    let config = Config::load(config_path)?;
    let archive = config.archive_section(config_path)?;
    if !is_configured(&config, source).await? {
        bail!("--source {source:?} is not a configured source");
    }
    Ok((key_ring(&config, &archive)?, archive))
}

/// Whether the file, or the control-plane workspace it names, configures `source`.
async fn is_configured(config: &Config, source: &str) -> anyhow::Result<bool> {
    if config.has_source(source) {
        return Ok(true);
    }
    match crate::live::Live::open(config).await? {
        Some(live) => Ok(live.fetch().await?.sources.iter().any(|s| s.id == source)),
        None => Ok(false),
    }
}

/// The archive's stores and keys, under the master key from the environment when
/// there is one.
/// The archive's keys, under the master key: from the environment, else the file
/// `[control] master_key_file` names when it exists (the same key the control plane
/// uses, for every command, the router included). An S3 store is refused without
/// one: its key objects could not be authenticated, and whoever can write to the
/// bucket could plant a key of their own.
pub fn key_ring(config: &Config, archive: &ArchiveConfig) -> anyhow::Result<KeyRing> {
    let master = match master_from_env()? {
        Some(master) => Some(master),
        None => {
            let path = config.control.clone().unwrap_or_default().master_key_file;
            match std::fs::read_to_string(&path) {
                Ok(text) => Some(
                    parse_identities(&text)
                        .map_err(anyhow::Error::msg)
                        .and_then(|identities| identities.into_iter().next_back().context("no identity"))
                        .with_context(|| format!("{}: no age identity in it", path.display()))?,
                ),
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => None,
                Err(error) => return Err(error).with_context(|| format!("cannot read {}", path.display())),
            }
        }
    };
    let remote = |store: &StoreConfig| matches!(store, StoreConfig::S3 { .. });
    if master.is_none() && (remote(&archive.store) || archive.replica.as_ref().is_some_and(remote)) {
        bail!(
            "[archive] on S3 needs a master key: set SWITCHYARD_MASTER_KEY or SWITCHYARD_MASTER_KEY_FILE, or [control] master_key_file"
        );
    }
    Ok(KeyRing::new(
        archive.store()?,
        archive.replica()?,
        &archive.prefix,
        master,
    ))
}

async fn export(args: ExportArgs) -> anyhow::Result<()> {
    let (keys, archive) = keys(&args.config.config, &args.source).await?;
    let mut out: Box<dyn Write> = match &args.output {
        Some(path) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    let range = switchyard_archive::export::Range {
        from: args.from,
        to: args.to,
    };
    let count = switchyard_archive::export::export(
        keys.primary().as_ref(),
        &keys,
        &archive.prefix,
        &args.source,
        range,
        &mut out,
    )
    .await?;
    out.flush()?;
    eprintln!("exported {count} events of source {}", args.source);
    Ok(())
}

async fn verify(args: VerifyArgs) -> anyhow::Result<()> {
    let path = &args.config.config;
    let config = Config::load(path)?;
    let archive = config.archive_section(path)?;
    let keys = key_ring(&config, &archive)?;
    let Some(replica) = keys.replica() else {
        bail!("{}: [archive] has no replica to compare with", path.display());
    };
    let report =
        switchyard_archive::verify::verify(keys.primary().as_ref(), replica.as_ref(), &archive.prefix, args.dry_run)
            .await?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    let verb = if args.dry_run { "missing" } else { "copied" };
    eprintln!(
        "primary {} objects, replica {}; {verb}: {} to the replica, {} to the primary; {} left by deletions removed; {} differ in size",
        report.primary_objects,
        report.replica_objects,
        report.copied_to_replica.len(),
        report.copied_to_primary.len(),
        report.removed_after_deletion.len(),
        report.mismatched.len()
    );
    if !report.mismatched.is_empty() {
        bail!("objects differ between the stores: {:?}", report.mismatched);
    }
    Ok(())
}

async fn delete_user(args: DeleteUserArgs) -> anyhow::Result<()> {
    let (keys, archive) = keys(&args.config.config, &args.source).await?;
    if args.user.is_empty() {
        bail!("--user must not be empty");
    }
    delete::suppress(&keys, &args.source, &args.user).await?;
    let settle = args.settle.map_or(
        archive.suppression_refresh() + Duration::from_secs(5),
        Duration::from_secs,
    );
    eprintln!(
        "the user is on source {}'s suppression list; waiting {}s for running routers to stop archiving it",
        args.source,
        settle.as_secs()
    );
    actix_web::rt::time::sleep(settle).await;
    let record = delete::delete_user(&keys, &args.source, &args.user).await?;
    println!("{}", serde_json::to_string(&record)?);
    eprintln!(
        "removed {} events: {} objects rewritten, {} deleted, of {} looked at",
        record.events_removed, record.objects_rewritten, record.objects_deleted, record.objects_scanned
    );
    Ok(())
}

async fn delete_source(args: DeleteSourceArgs) -> anyhow::Result<()> {
    let path = &args.config.config;
    let config = Config::load(path)?;
    let archive = config.archive_section(path)?;
    if !args.force && is_configured(&config, &args.source).await? {
        bail!(
            "source {:?} is still configured in {} or its workspace: remove it (running routers reload in seconds) and run this again, or pass --force",
            args.source,
            path.display()
        );
    }
    let keys = key_ring(&config, &archive)?;
    let record = delete::delete_source(&keys, &args.source).await?;
    println!("{}", serde_json::to_string(&record)?);
    eprintln!(
        "deleted source {}'s archive: {} objects and {} keys",
        args.source, record.objects_deleted, record.keys_deleted
    );
    Ok(())
}
