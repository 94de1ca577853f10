//! The producer binary, built with the e2e tests so that a test can run it
//! as a process of its own (`e2e::process`): under a file limit, paused,
//! or to read its peak memory. The same code as `producer`'s `main`.

fn main() -> std::process::ExitCode {
    producer::cli::run()
}
