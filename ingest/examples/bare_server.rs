//! The benchmark baseline: an actix-web handler that reads the body and answers like
//! ingest does, with no parsing, auth or Kafka. Ingest's figures are read against it.
//!
//! Usage: bare_server <listen addr> <workers>

use actix_web::{App, HttpResponse, HttpServer, web};

async fn accept(body: web::Bytes) -> HttpResponse {
    std::hint::black_box(body.len());
    HttpResponse::Ok().json(serde_json::json!({ "success": true }))
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:8099".into());
    let workers: usize = args.next().and_then(|w| w.parse().ok()).unwrap_or(1);
    HttpServer::new(|| {
        App::new()
            .app_data(web::PayloadConfig::new(1024 * 1024))
            .route("/v1/{path}", web::post().to(accept))
    })
    .workers(workers)
    .bind(addr)?
    .run()
    .await
}
