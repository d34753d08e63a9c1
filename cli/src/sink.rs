//! `switchyard sink`: a webhook receiver for local runs. It answers 200 and prints one
//! line per event it receives, so `make run` can show an event arriving.

use std::net::SocketAddr;

use actix_web::{App, HttpResponse, HttpServer, web};
use serde_json::Value;

#[derive(Debug, clap::Args)]
pub struct SinkArgs {
    #[arg(long, default_value = "127.0.0.1:9000")]
    listen: SocketAddr,
}

async fn receive(path: web::Path<String>, body: web::Bytes) -> HttpResponse {
    let events = match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Object(mut object)) => match object.remove("batch") {
            Some(Value::Array(batch)) => batch,
            _ => vec![Value::Object(object)],
        },
        _ => {
            println!("sink /{path}: received {} bytes that are not a JSON object", body.len());
            return HttpResponse::BadRequest().body("expected a JSON object");
        }
    };
    for event in events {
        let field = |name: &str| event.get(name).and_then(Value::as_str).unwrap_or("-").to_string();
        println!(
            "sink /{path}: received {} {} user={} messageId={}",
            field("type"),
            event
                .get("event")
                .or(event.get("name"))
                .and_then(Value::as_str)
                .unwrap_or(""),
            event
                .get("userId")
                .or(event.get("anonymousId"))
                .and_then(Value::as_str)
                .unwrap_or("-"),
            field("messageId"),
        );
    }
    HttpResponse::Ok().json(serde_json::json!({ "ok": true }))
}

pub fn run(args: SinkArgs) -> anyhow::Result<()> {
    actix_web::rt::System::new().block_on(async move {
        let server = HttpServer::new(|| App::new().route("/{path:.*}", web::post().to(receive)))
            .workers(1)
            .bind(args.listen)?;
        println!("sink listening on http://{}", args.listen);
        server.run().await
    })?;
    Ok(())
}
