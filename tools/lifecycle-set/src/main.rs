//! The `lifecycle-set` command; the work is in the library.
fn main() -> std::process::ExitCode {
    shared::cli::main("lifecycle-set", lifecycle_set::run)
}
