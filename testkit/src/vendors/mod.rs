//! Local receivers for the vendors' APIs the native destinations call, each holding
//! requests to the format and limits the vendor documents and answering as the vendor
//! does. Each runs its own HTTP server on a thread of its own, so a test on any
//! runtime (actix, tokio) or none can use it.

mod amplitude;
mod mixpanel;
mod segment;

pub use amplitude::AmplitudeReceiver;
pub use mixpanel::MixpanelReceiver;
pub use segment::SegmentReceiver;

use std::net::SocketAddr;

use actix_web::dev::{ServiceFactory, ServiceRequest};
use actix_web::{App, HttpResponse, HttpServer};

/// An answer given instead of checking the request: status, headers, body.
#[derive(Debug, Clone)]
pub struct Scripted {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
}

impl Scripted {
    pub fn new(status: u16, body: &str) -> Self {
        Scripted {
            status,
            headers: Vec::new(),
            body: body.into(),
        }
    }

    pub fn with_header(mut self, name: &'static str, value: &str) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    fn response(&self) -> HttpResponse {
        let status = actix_web::http::StatusCode::from_u16(self.status).expect("a status code");
        let mut answer = HttpResponse::build(status);
        answer.content_type("application/json");
        for (name, value) in &self.headers {
            answer.insert_header((*name, value.as_str()));
        }
        answer.body(self.body.clone())
    }
}

/// Serves `app` on 127.0.0.1 (an ephemeral port) on a thread of its own.
fn serve<F, T>(app: F) -> SocketAddr
where
    F: Fn() -> App<T> + Send + Clone + 'static,
    T: ServiceFactory<
            ServiceRequest,
            Config = (),
            Response = actix_web::dev::ServiceResponse,
            Error = actix_web::Error,
            InitError = (),
        > + 'static,
{
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        actix_web::rt::System::new().block_on(async move {
            let server = HttpServer::new(app)
                .workers(1)
                .disable_signals()
                .bind(("127.0.0.1", 0))
                .expect("bind a local port");
            let _ = sender.send(server.addrs()[0]);
            let _ = server.run().await;
        });
    });
    receiver.recv().expect("the receiver started")
}
