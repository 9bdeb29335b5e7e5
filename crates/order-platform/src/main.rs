//! `order-platform`: the one binary of the Order Platform. Everything it does
//! lives in the library (`src/lib.rs`), so the tests can run the same server
//! in their own process.

fn main() -> std::process::ExitCode {
    order_platform::cli::main()
}
