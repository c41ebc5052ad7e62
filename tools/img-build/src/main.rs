//! The `img-build` command; the work is in the library.
fn main() -> std::process::ExitCode {
    shared::cli::main("img-build", img_build::run)
}
