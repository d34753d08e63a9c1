//! Configuration as code: `switchyard apply -f workspace.yaml` makes a workspace's
//! sources and destinations what the file says, changing only what differs (so a
//! second run changes nothing and audits nothing), and `switchyard export-config`
//! writes a workspace back out without a secret. Credentials in the file are written
//! `${NAME}` and read from the environment, so the file can live in Git; an exported
//! file names each credential `${<DESTINATION>_<KEY>}`. A new source's write key is
//! reported once. With `prune`, what the file doesn't list is deleted.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use switchyard_config::WebhookSourceConfig;

use crate::model::{Actor, DestinationPatch, NewDestination, NewSource, SourcePatch, SourceSettings};
use crate::{Control, ControlError};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkspaceFile {
    /// The workspace's id.
    pub workspace: String,
    #[serde(default)]
    pub sources: Vec<SourceEntry>,
    #[serde(default)]
    pub destinations: Vec<DestinationEntry>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceEntry {
    pub id: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default)]
    pub settings: SourceSettings,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub transforms: Vec<Value>,
    /// A webhook source; its `secret` written `${NAME}` comes from the environment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<WebhookSourceConfig>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DestinationEntry {
    pub id: String,
    pub kind: String,
    pub sources: Vec<String>,
    #[serde(default)]
    pub settings: Map<String, Value>,
    /// Values `${NAME}` come from the environment. Absent: the stored ones are kept.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub credentials: Map<String, Value>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub transforms: Vec<Value>,
}

#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct ApplyReport {
    pub created: Vec<String>,
    pub updated: Vec<String>,
    pub unchanged: Vec<String>,
    pub deleted: Vec<String>,
    /// New sources' write keys, shown this once: (source id, key).
    #[serde(skip)]
    pub write_keys: Vec<(String, String)>,
}

impl WorkspaceFile {
    pub fn from_yaml(text: &str) -> Result<WorkspaceFile, ControlError> {
        serde_yaml_ng::from_str(text).map_err(|e| ControlError::invalid("file", e.to_string()))
    }

    pub fn to_yaml(&self) -> Result<String, ControlError> {
        serde_yaml_ng::to_string(self).map_err(|e| ControlError::invalid("file", e.to_string()))
    }
}

/// `${NAME}` values replaced by the environment's.
fn resolve(
    destination: &str,
    credentials: &Map<String, Value>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Map<String, Value>, ControlError> {
    let mut out = Map::new();
    for (key, value) in credentials {
        let resolved = match value
            .as_str()
            .and_then(|text| text.strip_prefix("${")?.strip_suffix('}'))
        {
            Some(name) => Value::from(env(name).ok_or_else(|| {
                ControlError::invalid(
                    &format!("destinations.{destination}.credentials.{key}"),
                    format!("environment variable {name} is not set"),
                )
            })?),
            None => value.clone(),
        };
        out.insert(key.clone(), resolved);
    }
    Ok(out)
}

/// Whether a source's stored webhook settings (and secret) are the file's.
async fn same_webhook(
    control: &Control,
    ws: &str,
    id: &str,
    stored: Option<&Value>,
    file: Option<&WebhookSourceConfig>,
) -> Result<bool, ControlError> {
    let Some(file) = file else { return Ok(stored.is_none()) };
    let Some(stored) = stored else { return Ok(false) };
    let mut shown = serde_json::to_value(file).map_err(|e| ControlError::Corrupt(e.to_string()))?;
    if let Some(object) = shown.as_object_mut() {
        object.remove("secret");
    }
    let mut stored = stored.clone();
    if let Some(object) = stored.as_object_mut() {
        object.remove("secret");
    }
    Ok(shown == stored && (file.secret.is_none() || control.webhook_secret(ws, id).await? == file.secret))
}

/// Makes the workspace match `file`.
pub async fn apply(
    control: &Control,
    actor: &Actor,
    file: &WorkspaceFile,
    env: &dyn Fn(&str) -> Option<String>,
    prune: bool,
) -> Result<ApplyReport, ControlError> {
    let ws = &file.workspace;
    if control.workspace(ws).await?.is_none() {
        return Err(ControlError::NotFound(format!("workspace {ws}")));
    }
    let mut report = ApplyReport::default();
    let sources = control.sources(ws).await?;
    for entry in &file.sources {
        let name = format!("source {}", entry.id);
        let webhook = entry
            .webhook
            .clone()
            .map(|mut webhook| {
                if let Some(secret) = &webhook.secret {
                    let resolved = resolve(
                        &entry.id,
                        &Map::from_iter([("secret".into(), Value::from(secret.as_str()))]),
                        env,
                    )?;
                    webhook.secret = resolved["secret"].as_str().map(str::to_string);
                }
                Ok::<_, ControlError>(webhook)
            })
            .transpose()?;
        match sources.iter().find(|s| s.id == entry.id) {
            None => {
                let new = NewSource {
                    id: entry.id.clone(),
                    name: entry.name.clone(),
                    settings: entry.settings.clone(),
                    transforms: entry.transforms.clone(),
                    webhook,
                };
                let created = control.create_source(actor, ws, &new).await?;
                if let Some(write_key) = created.write_key {
                    report.write_keys.push((entry.id.clone(), write_key));
                }
                report.created.push(name);
            }
            Some(current)
                if current.name == entry.name
                    && current.settings == entry.settings
                    && crate::salts::unchanged(&current.transforms, &entry.transforms)
                    && same_webhook(control, ws, &entry.id, current.webhook.as_ref(), webhook.as_ref()).await? =>
            {
                report.unchanged.push(name);
            }
            Some(_) => {
                let patch = SourcePatch {
                    name: Some(entry.name.clone()),
                    settings: Some(entry.settings.clone()),
                    transforms: Some(entry.transforms.clone()),
                    webhook,
                };
                control.update_source(actor, ws, &entry.id, &patch).await?;
                report.updated.push(name);
            }
        }
    }
    let destinations = control.destinations(ws).await?;
    for entry in &file.destinations {
        let name = format!("destination {}", entry.id);
        let credentials = resolve(&entry.id, &entry.credentials, env)?;
        match destinations.iter().find(|d| d.id == entry.id) {
            None => {
                let new = NewDestination {
                    id: entry.id.clone(),
                    kind: entry.kind.clone(),
                    sources: entry.sources.clone(),
                    settings: entry.settings.clone(),
                    credentials,
                    transforms: entry.transforms.clone(),
                };
                control.create_destination(actor, ws, &new).await?;
                report.created.push(name);
            }
            Some(current) if current.kind != entry.kind => {
                return Err(ControlError::invalid(
                    &format!("destinations.{}.kind", entry.id),
                    format!("is {}; a kind can't change: delete the destination first", current.kind),
                ));
            }
            Some(current) => {
                let stored = control.destination_credentials(ws, &entry.id).await?;
                // Given again with changed settings: a credential follows its endpoint, so
                // a new endpoint takes the credentials anew (the store refuses it otherwise).
                let new_credentials = (!credentials.is_empty()
                    && (credentials != stored || current.settings != entry.settings))
                    .then_some(credentials);
                let same = current.sources == entry.sources
                    && current.settings == entry.settings
                    && crate::salts::unchanged(&current.transforms, &entry.transforms)
                    && new_credentials.is_none();
                if same {
                    report.unchanged.push(name);
                    continue;
                }
                let patch = DestinationPatch {
                    sources: Some(entry.sources.clone()),
                    settings: Some(entry.settings.clone()),
                    credentials: new_credentials,
                    transforms: Some(entry.transforms.clone()),
                };
                control.update_destination(actor, ws, &entry.id, patch).await?;
                report.updated.push(name);
            }
        }
    }
    if prune {
        for destination in destinations
            .iter()
            .filter(|d| !file.destinations.iter().any(|e| e.id == d.id))
        {
            control.delete_destination(actor, ws, &destination.id).await?;
            report.deleted.push(format!("destination {}", destination.id));
        }
        for source in sources.iter().filter(|s| !file.sources.iter().any(|e| e.id == s.id)) {
            control.delete_source(actor, ws, &source.id).await?;
            report.deleted.push(format!("source {}", source.id));
        }
    }
    Ok(report)
}

/// The workspace as a file, credentials replaced by `${DESTINATION_KEY}` names and hash
/// salts by `<redacted>` (applied back to the same workspace, they keep the stored salts;
/// into another, each must be given).
pub async fn export(control: &Control, workspace_id: &str) -> Result<WorkspaceFile, ControlError> {
    if control.workspace(workspace_id).await?.is_none() {
        return Err(ControlError::NotFound(format!("workspace {workspace_id}")));
    }
    let sources = control
        .sources(workspace_id)
        .await?
        .into_iter()
        .map(|s| {
            let webhook = s.webhook.and_then(|view| {
                let mut config: WebhookSourceConfig = serde_json::from_value(Value::Object(
                    view.as_object()?
                        .iter()
                        .filter(|(k, _)| *k != "secret")
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect(),
                ))
                .ok()?;
                let name = format!("{}_WEBHOOK_SECRET", s.id)
                    .to_ascii_uppercase()
                    .replace('-', "_");
                config.secret = Some(format!("${{{name}}}"));
                Some(config)
            });
            SourceEntry {
                id: s.id,
                name: s.name,
                settings: s.settings,
                transforms: crate::salts::redacted(&s.transforms),
                webhook,
            }
        })
        .collect();
    let destinations = control
        .destinations(workspace_id)
        .await?
        .into_iter()
        .map(|d| {
            let credentials = d
                .credentials
                .keys()
                .map(|key| {
                    let name = format!("{}_{}", d.id, key).to_ascii_uppercase().replace('-', "_");
                    (key.clone(), Value::from(format!("${{{name}}}")))
                })
                .collect();
            DestinationEntry {
                id: d.id,
                kind: d.kind,
                sources: d.sources,
                settings: d.settings,
                credentials,
                transforms: crate::salts::redacted(&d.transforms),
            }
        })
        .collect();
    Ok(WorkspaceFile {
        workspace: workspace_id.to_string(),
        sources,
        destinations,
    })
}
