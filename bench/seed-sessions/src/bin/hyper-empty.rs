//! hyper-empty: the floor of any hyper-based answer on this machine. The
//! connection handling of `authgate::server::listener` (see
//! `floor_listener.rs`) without the gateway: every request gets an empty
//! 200.
//!
//! Usage: hyper-empty 127.0.0.1:PORT

#[path = "../floor_listener.rs"]
mod floor_listener;

use bytes::Bytes;
use http_body_util::Empty;
use hyper::Response;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:0".to_owned());
    floor_listener::serve("hyper-empty", &addr, |_req| async {
        Response::new(Empty::<Bytes>::new())
    })
    .await
}
