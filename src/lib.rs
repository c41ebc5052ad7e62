//! The imgpipe integration tests live in `tests/`: they run the real binaries against real services.
