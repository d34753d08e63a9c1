//! `switchyard control ...` and `switchyard audit ...`: the metadata database, its
//! first owner, the admin API server, and the audit chain's check.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use switchyard_actors::EgressPolicy;
use switchyard_archive::keys::{keygen_text, master_from_env, parse_identities};
use switchyard_control::api::{ApiState, TrustedProxies, routes};
use switchyard_control::debugger::Debugger;
use switchyard_control::model::Actor;
use switchyard_control::secrets::Sealer;
use switchyard_control::store::{Password, Reserved};
use switchyard_control::{Control, ControlConfig, Db, audit, backup};
use switchyard_router::tap::TapSink;

use crate::config::Config;
pub use crate::config::ConfigArgs;

/// Where the first owner's password comes from (never a command-line argument).
const PASSWORD_ENV: &str = "SWITCHYARD_ADMIN_PASSWORD";

#[derive(Debug, clap::Subcommand)]
pub enum ControlCommand {
    /// Creates the metadata database (when missing), a workspace and its owner; the
    /// owner's password comes from SWITCHYARD_ADMIN_PASSWORD.
    Init(InitArgs),
    /// Brings the metadata database's schema up to date, then exits (a deployment's
    /// pre-upgrade step; every other command also migrates when it opens the database).
    Migrate(ConfigArgs),
    /// Serves the admin API (HTTPS) and its OpenAPI document at /openapi.json.
    Serve(ConfigArgs),
}

#[derive(Debug, clap::Subcommand)]
pub enum AuditCommand {
    /// Checks the audit log's hash chain; fails naming the first row that doesn't hold.
    Verify(ConfigArgs),
}

#[derive(Debug, clap::Args)]
pub struct RestoreArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// The backup's path in the backup store; the newest when absent.
    #[arg(long)]
    from: Option<String>,
    /// Replace what the database holds (it is refused when it holds a workspace).
    #[arg(long)]
    force: bool,
}

#[derive(Debug, clap::Args)]
pub struct ApplyArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// The workspace file (YAML); credentials written ${NAME} come from the environment.
    #[arg(long, short = 'f')]
    file: PathBuf,
    /// Also delete the sources and destinations the file doesn't list.
    #[arg(long)]
    prune: bool,
}

#[derive(Debug, clap::Args)]
pub struct ExportConfigArgs {
    #[command(flatten)]
    config: ConfigArgs,
    #[arg(long)]
    workspace: String,
    /// A file to write; standard output when absent.
    #[arg(long, short)]
    output: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct InitArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// The owner's email (their sign-in name).
    #[arg(long)]
    email: String,
    #[arg(long, default_value = "Default")]
    workspace: String,
    /// The workspace's id (lowercase letters, digits, dashes), for a deployment that
    /// names it in `[control] workspace` before the database exists; random when absent.
    #[arg(long)]
    workspace_id: Option<String>,
    /// Succeed without a change when the workspace already exists, and make an owner
    /// who already has an account the owner: a deployment runs this on every upgrade.
    #[arg(long, requires = "workspace_id")]
    if_missing: bool,
}

fn section(path: &Path) -> anyhow::Result<ControlConfig> {
    Ok(Config::load_without_kafka(path)?.control.unwrap_or_default())
}

/// The master key: from the environment, else the configured file (made on first use).
fn master_key(config: &ControlConfig) -> anyhow::Result<age::x25519::Identity> {
    if let Some(master) = master_from_env()? {
        return Ok(master);
    }
    let path = &config.master_key_file;
    match std::fs::read_to_string(path) {
        Ok(text) => parse_identities(&text)
            .map_err(anyhow::Error::msg)
            .and_then(|identities| identities.into_iter().next_back().context("no identity"))
            .with_context(|| format!("{}: no age identity in it", path.display())),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            let identity = age::x25519::Identity::generate();
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            crate::files::write_private(path, keygen_text(std::slice::from_ref(&identity)).as_bytes())?;
            tracing::warn!(
                path = %path.display(),
                "made a master key file: keep a copy safe; in production set SWITCHYARD_MASTER_KEY_FILE from a secret store"
            );
            Ok(identity)
        }
        Err(error) => Err(error).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// The control plane, checking destinations against the operator's `egress`.
pub async fn open(config: &ControlConfig, egress: &EgressPolicy) -> anyhow::Result<Control> {
    let db = Db::open(&config.database_url).await?;
    Ok(Control::new(db, Sealer::from_master(&master_key(config)?)).with_egress(Arc::new(egress.clone())))
}

/// [`open`] with the `[control]` and `[egress]` of the file at `path`, its own sources'
/// and destinations' ids kept from tenants.
async fn open_file(path: &Path) -> anyhow::Result<Control> {
    let file = Config::load_without_kafka(path)?;
    open_config(&file).await
}

async fn open_config(file: &Config) -> anyhow::Result<Control> {
    let reserved = Reserved {
        sources: file.source_configs().into_iter().map(|source| source.id).collect(),
        destinations: file
            .destinations
            .iter()
            .map(|destination| destination.id.clone())
            .collect(),
    };
    Ok(open(&file.control.clone().unwrap_or_default(), &file.egress)
        .await?
        .with_reserved(reserved))
}

pub fn run(command: ControlCommand) -> anyhow::Result<()> {
    let runtime = actix_web::rt::System::new();
    match command {
        ControlCommand::Init(args) => runtime.block_on(init(args)),
        ControlCommand::Migrate(args) => runtime.block_on(migrate(args)),
        ControlCommand::Serve(args) => runtime.block_on(serve(args)),
    }
}

/// The backup section, its store and the master key.
fn backup_setup(
    config: &ControlConfig,
) -> anyhow::Result<(
    &backup::BackupConfig,
    Arc<dyn object_store::ObjectStore>,
    age::x25519::Identity,
)> {
    let Some(section) = &config.backup else {
        bail!(
            "[control.backup] is missing: say where backups go (store = {{ kind = \"local\", path = \"...\" }} or an S3 bucket)"
        );
    };
    Ok((section, section.store.open()?, master_key(config)?))
}

/// `switchyard backup`: a backup now.
pub fn take_backup(args: ConfigArgs) -> anyhow::Result<()> {
    actix_web::rt::System::new().block_on(async {
        let config = section(&args.config)?;
        let (settings, store, master) = backup_setup(&config)?;
        let db = Db::open(&config.database_url).await?;
        let path = backup::take(&db, &store, &settings.prefix, &master).await?;
        println!("{path}");
        Ok(())
    })
}

/// `switchyard restore`: a backup back into the configured database.
pub fn restore(args: RestoreArgs) -> anyhow::Result<()> {
    actix_web::rt::System::new().block_on(async {
        let config = section(&args.config.config)?;
        let (settings, store, master) = backup_setup(&config)?;
        let path = match args.from {
            Some(path) => path,
            None => backup::list(&store, &settings.prefix)
                .await?
                .pop()
                .with_context(|| format!("no backup under {}", settings.prefix))?,
        };
        let snapshot = backup::read(&store, &path, &master).await?;
        let db = Db::open(&config.database_url).await?;
        let rows = backup::load(&db, &snapshot, args.force).await?;
        eprintln!("restored {rows} rows from {path}");
        Ok(())
    })
}

/// `switchyard apply -f FILE`: the workspace made to match the file.
pub fn apply(args: ApplyArgs) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&args.file).with_context(|| format!("cannot read {}", args.file.display()))?;
    let file = switchyard_control::apply::WorkspaceFile::from_yaml(&text)
        .with_context(|| format!("{} is not a workspace file", args.file.display()))?;
    actix_web::rt::System::new().block_on(async {
        let control = open_file(&args.config.config).await?;
        let actor = Actor::local("switchyard apply");
        let env = |name: &str| std::env::var(name).ok();
        let report = switchyard_control::apply::apply(&control, &actor, &file, &env, args.prune).await?;
        let keys: serde_json::Map<String, serde_json::Value> = report
            .write_keys
            .iter()
            .map(|(source, key)| (source.clone(), serde_json::Value::from(key.clone())))
            .collect();
        println!("{}", serde_json::json!({"report": report, "new_write_keys": keys}));
        eprintln!(
            "{} created, {} updated, {} unchanged, {} deleted{}",
            report.created.len(),
            report.updated.len(),
            report.unchanged.len(),
            report.deleted.len(),
            if keys.is_empty() {
                ""
            } else {
                "; new write keys are shown above, this once"
            }
        );
        Ok(())
    })
}

/// `switchyard export-config`: a workspace as a file, without secrets.
pub fn export_config(args: ExportConfigArgs) -> anyhow::Result<()> {
    actix_web::rt::System::new().block_on(async {
        let control = open_file(&args.config.config).await?;
        let yaml = switchyard_control::apply::export(&control, &args.workspace)
            .await?
            .to_yaml()?;
        match &args.output {
            Some(path) => std::fs::write(path, yaml).with_context(|| format!("cannot write {}", path.display()))?,
            None => print!("{yaml}"),
        }
        Ok(())
    })
}

/// The server's own backups, every `interval_secs`.
async fn backup_every(config: ControlConfig, db: Db) {
    let Ok((settings, store, master)) = backup_setup(&config) else {
        return;
    };
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(settings.interval_secs.max(60)));
    loop {
        tick.tick().await;
        if let Err(error) = backup::take(&db, &store, &settings.prefix, &master).await {
            tracing::error!(%error, "control metadata backup failed; retried at the next interval");
        }
    }
}

pub fn audit(command: AuditCommand) -> anyhow::Result<()> {
    let AuditCommand::Verify(args) = command;
    actix_web::rt::System::new().block_on(async {
        let config = section(&args.config)?;
        let db = Db::open(&config.database_url).await?;
        // The chain is keyed under the master key: without it nothing can be checked.
        let key = Sealer::from_master(&master_key(&config)?).audit_key();
        let report = audit::verify(&db, &key).await?;
        println!("{}", serde_json::to_string(&report)?);
        match (report.broken_at, report.reason) {
            (Some(seq), Some(reason)) => bail!("audit log broken at row {seq}: {reason}"),
            _ => {
                eprintln!("audit log intact: {} rows", report.rows);
                Ok(())
            }
        }
    })
}

async fn migrate(args: ConfigArgs) -> anyhow::Result<()> {
    let config = section(&args.config)?;
    Db::open(&config.database_url).await?;
    let url = switchyard_control::db::redact_url(&config.database_url);
    println!("{}", serde_json::json!({"migrated": url}));
    eprintln!("metadata database {url} is up to date");
    Ok(())
}

async fn init(args: InitArgs) -> anyhow::Result<()> {
    let password = std::env::var(PASSWORD_ENV)
        .ok()
        .filter(|p| !p.is_empty())
        .with_context(|| format!("set {PASSWORD_ENV} to the owner's password (12 characters or more)"))?;
    let control = open_file(&args.config.config).await?;
    let actor = Actor::local("switchyard control init");
    if let Some(id) = args.workspace_id.as_deref().filter(|_| args.if_missing)
        && let Some(workspace) = control.workspace(id).await?
    {
        println!("{}", serde_json::json!({"workspace": workspace.id, "created": false}));
        eprintln!(
            "workspace {:?} ({}) exists: nothing to do",
            workspace.name, workspace.id
        );
        return Ok(());
    }
    let owner = match control.user_id(&args.email).await? {
        Some(id) if args.if_missing => id,
        _ => {
            control
                .create_user(&actor, &args.email, Password::Plain(&password))
                .await?
        }
    };
    let workspace = match &args.workspace_id {
        Some(id) => {
            control
                .create_workspace_with_id(&actor, id, &args.workspace, &owner)
                .await?
        }
        None => control.create_workspace(&actor, &args.workspace, &owner).await?,
    };
    println!(
        "{}",
        serde_json::json!({"workspace": workspace.id, "owner": args.email, "created": true})
    );
    eprintln!(
        "workspace {:?} ({}) with owner {}",
        workspace.name, workspace.id, args.email
    );
    Ok(())
}

/// Hands the ingest topic's records to the admin API's event debugger.
struct TapToDebugger(Arc<Debugger>);

impl TapSink for TapToDebugger {
    fn anyone_watching(&self) -> bool {
        self.0.anyone_watching()
    }

    fn watching(&self, source_id: &str) -> bool {
        self.0.watching(source_id)
    }

    fn push(&self, source_id: &str, value: &[u8]) {
        self.0.push(source_id, value);
    }

    fn stopped(&self) {
        self.0.tap_stopped();
    }
}

/// How often an open debugger stream checks its viewer's access and sends its counts.
const DEBUGGER_RECHECK: Duration = Duration::from_secs(15);

async fn serve(args: ConfigArgs) -> anyhow::Result<()> {
    let file = Config::load(&args.config)?;
    let config = file.control.clone().unwrap_or_default();
    let control = Arc::new(open_config(&file).await?);
    // interval_secs = 0: a scheduler of the operator's runs `switchyard backup` instead
    // (the chart's CronJob), so replicas don't each take one.
    if config.backup.as_ref().is_some_and(|backup| backup.interval_secs > 0) {
        actix_web::rt::spawn(backup_every(config.clone(), control.db().clone()));
    }
    // Without [kafka] there is no topic to show events from: the debugger answers 503.
    let debugger = file.kafka.map(|kafka| {
        Debugger::new(config.debugger_streams, DEBUGGER_RECHECK, move |debugger| {
            switchyard_router::tap::spawn(kafka.clone(), Arc::new(TapToDebugger(debugger)));
        })
    });
    let sso = if config.sso.is_empty() {
        None
    } else {
        Some(Arc::new(switchyard_control::sso::Sso::new(&config.sso)?))
    };
    let state = actix_web::web::Data::new(ApiState { control, debugger, sso });
    let trusted_proxies = config.trusted_proxies;
    let server = actix_web::HttpServer::new(move || {
        actix_web::App::new()
            .app_data(state.clone())
            .app_data(actix_web::web::Data::new(TrustedProxies(trusted_proxies)))
            .wrap(actix_web::middleware::Logger::new("%a \"%r\" %s %Dms").log_target("switchyard::control"))
            .configure(routes)
    });
    let (server, scheme) = match (&config.tls_cert_path, &config.tls_key_path) {
        (Some(cert), Some(key)) => {
            let tls = switchyard_ingest::tls::server_config(cert, key)?;
            (server.bind_rustls_0_23(&config.listen, tls)?, "https")
        }
        (None, None) if config.allow_plain_http => (server.bind(&config.listen)?, "http"),
        (None, None) => bail!(
            "[control] needs tls_cert_path and tls_key_path (the admin API serves HTTPS), or allow_plain_http = true for a local trial"
        ),
        _ => bail!("[control] needs both tls_cert_path and tls_key_path"),
    };
    let addr = server.addrs()[0];
    tracing::info!(%addr, scheme, "control listening");
    // A line on stdout for scripts and tests that start us on port 0.
    println!("control listening on {scheme}://{addr}");
    server.run().await.context("admin API server failed")
}
