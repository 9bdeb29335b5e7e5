//! `order-platform`: the one binary of the Order Platform. Everything it does
//! lives in the library (`src/lib.rs`), so the tests can run the same server
//! in their own process.

// mimalloc rather than glibc's malloc: a request allocates and frees many small
// buffers across worker threads, where glibc spent about a tenth of the gateway's CPU
// (docs/BENCHMARKS.md, "Gateway overhead").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    order_platform::cli::main()
}
