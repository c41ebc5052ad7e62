//! The `img-tag` command; the work is in the library.
fn main() -> std::process::ExitCode {
    shared::cli::main("img-tag", img_tag::run)
}
