//! The `scan-gate` command; the work is in the library.
fn main() -> std::process::ExitCode {
    shared::cli::main("scan-gate", scan_gate::run)
}
