//! The `ecr-repo` command; the work is in the library.
fn main() -> std::process::ExitCode {
    shared::cli::main("ecr-repo", ecr_repo::run)
}
