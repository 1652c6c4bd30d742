//! Plays the trust & safety attacks of `tests/common/attacks.rs` against a
//! running server and prints the boosts as a Markdown table:
//!
//! ```sh
//! creator-boost serve --data-dir "$(mktemp -d)" &
//! cargo run --release --example attacks -- http://127.0.0.1:50051
//! ```
//!
//! Use a fresh store: the background platform is written into it.

#[path = "../../tests/common/attacks.rs"]
mod attacks;

use creator_boost::proto::creator_boost_client::CreatorBoostClient;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "http://127.0.0.1:50051".to_owned());
    if let Some(variant) = std::env::args().nth(2) {
        let _ = attacks::VARIANT.set(variant);
    }
    let mut client = CreatorBoostClient::connect(url).await?;
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis() as i64;
    let figures = attacks::run(&mut client, now_ms, "attack").await?;
    print!("{}", figures.table());
    Ok(())
}
