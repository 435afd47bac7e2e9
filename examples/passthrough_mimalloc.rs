//! The bare pingora pass-through of `passthrough.rs` with mimalloc as its allocator, as baton
//! has: `bench/proxy.sh` measures both, so the figures show what the allocator accounts for
//! and what baton's own work costs over pingora's.
//!
//! ```sh
//! cargo run --release --example passthrough_mimalloc -- LISTEN UPSTREAM
//! ```

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "passthrough.rs"]
mod passthrough;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    passthrough::main()
}
