//! The `ecr-login` command (and `docker-credential-ecr-login`); the work is in the library.
fn main() -> std::process::ExitCode {
    ecr_login::main()
}
