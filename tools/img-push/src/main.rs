//! The `img-push` command; the work is in the library.
fn main() -> std::process::ExitCode {
    shared::cli::main("img-push", img_push::run)
}
