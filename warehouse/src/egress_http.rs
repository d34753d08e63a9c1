//! The HTTP client of export destinations: every host name it connects to is resolved
//! and checked against the operator's egress policy at connect time, redirects are
//! never followed, and plain http only where the policy lists the host.

use std::sync::Arc;
use std::time::Duration;

use object_store::ClientOptions;
use object_store::client::{HttpClient, HttpConnector};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use switchyard_egress::EgressPolicy;

#[derive(Debug)]
pub(crate) struct CheckedConnector {
    pub egress: Arc<EgressPolicy>,
    pub timeout: Duration,
    pub allow_http: bool,
}

impl HttpConnector for CheckedConnector {
    fn connect(&self, _options: &ClientOptions) -> object_store::Result<HttpClient> {
        let client = reqwest::Client::builder()
            .timeout(self.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .https_only(!self.allow_http)
            .dns_resolver(Arc::new(CheckedResolver(self.egress.clone())))
            .build()
            .map_err(|error| object_store::Error::Generic {
                store: "S3",
                source: Box::new(error),
            })?;
        Ok(HttpClient::new(client))
    }
}

/// reqwest asks it for host names only; an IP literal endpoint was checked when the
/// exporter was built (it can't change).
struct CheckedResolver(Arc<EgressPolicy>);

impl Resolve for CheckedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let egress = self.0.clone();
        let host = name.as_str().to_string();
        Box::pin(async move {
            // Port 0: reqwest puts the URL's port on the addresses itself.
            let addrs = egress.resolve_async(&host, 0).await?;
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}
