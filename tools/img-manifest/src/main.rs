//! The `img-manifest` command; the work is in the library.
fn main() -> std::process::ExitCode {
    shared::cli::main("img-manifest", img_manifest::run)
}
