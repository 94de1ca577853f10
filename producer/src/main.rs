//! The producer binary: see `producer::cli`.

fn main() -> std::process::ExitCode {
    producer::cli::run()
}
