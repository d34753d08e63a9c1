//! Archive throughput: JSON lines sealed into objects (zstd, then age) and written to
//! the local object store, the archive actor's work per object. Prints
//! `archive <MB/s> <process CPU-seconds> <MB> <compressed+encrypted MB>`.
//!
//! Usage: archive_bench [MB] [object MB]

use std::time::Instant;
use switchyard_testkit::process_cpu_seconds;

use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload};
use switchyard_archive::object::{object_path, seal};

/// About 950 bytes, shaped like the router benchmark's events, with a random id and
/// session token in each so that compression sees real-world entropy, not repeats.
fn line(i: usize, random: &mut u64) -> String {
    let mut next = || {
        *random ^= *random << 13;
        *random ^= *random >> 7;
        *random ^= *random << 17;
        *random
    };
    let (a, b, c) = (next(), next(), next());
    format!(
        r#"{{"type":"track","userId":"user-{}","event":"Product Viewed","messageId":"{a:016x}{b:016x}","anonymousId":"{c:016x}","timestamp":"2026-11-29T12:00:00.000Z","receivedAt":"2026-11-29T12:00:00.100Z","properties":{{"product_id":"sku-{i}","name":"Fleece-lined waterproof hiking jacket","category":"Outdoor/Clothing/Jackets","price":149.99,"currency":"EUR","url":"https://shop.example.com/products/sku-{i}?utm_source=newsletter","tags":["outdoor","waterproof","winter"]}},"context":{{"library":{{"name":"analytics-python","version":"2.4.0"}},"locale":"en-GB","userAgent":"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0","page":{{"path":"/products/sku-{i}","title":"Hiking jacket"}},"ip":"203.0.113.{}","session":"{:016x}"}}}}"#,
        i % 1000,
        i % 250,
        next()
    ) + "\n"
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let total_mb: usize = args.next().map_or(Ok(512), |a| a.parse())?;
    let object_mb: usize = args.next().map_or(Ok(64), |a| a.parse())?;
    let object_bytes = object_mb * 1024 * 1024;
    let identity = age::x25519::Identity::generate();
    let recipient = identity.to_public();
    let dir = tempfile::tempdir()?;
    let store = LocalFileSystem::new_with_prefix(dir.path())?;
    // The events are made before the clock starts: the archive receives them ready.
    let mut objects = Vec::new();
    let mut current = Vec::with_capacity(object_bytes + 4096);
    let (mut i, mut random) = (0, 0x9e37_79b9_7f4a_7c15_u64);
    while objects.len() * object_bytes + current.len() < total_mb * 1024 * 1024 {
        current.extend_from_slice(line(i, &mut random).as_bytes());
        i += 1;
        if current.len() >= object_bytes {
            objects.push(std::mem::take(&mut current));
        }
    }
    if !current.is_empty() {
        objects.push(current);
    }
    let plain: usize = objects.iter().map(Vec::len).sum();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let (started, cpu_start) = (Instant::now(), process_cpu_seconds());
    let mut written = 0;
    for lines in &objects {
        let sealed = seal(lines, &recipient)?;
        written += sealed.len();
        let path = Path::from(object_path("archive", "bench", chrono::Utc::now()));
        runtime.block_on(store.put(&path, PutPayload::from(sealed)))?;
    }
    let (elapsed, cpu) = (started.elapsed().as_secs_f64(), process_cpu_seconds() - cpu_start);
    let mb = plain as f64 / 1e6;
    println!(
        "archive {:.0} {cpu:.2} {mb:.0} {:.0}",
        mb / elapsed,
        written as f64 / 1e6
    );
    Ok(())
}
