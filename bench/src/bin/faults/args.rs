//! The settings of one run, from the command line.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::bail;
use bench::flags::Flags;

/// Settings of one run (flags `--name value`).
#[derive(Clone)]
pub struct Args {
    pub n: usize,
    pub duration: Duration,
    pub consumers: usize,
    pub poison: usize,
    pub pg_down: Duration,
    pub callback_every: usize,
    /// `--scheduled-every` (10; 0 for none): every n-th message is sent
    /// with `delay_seconds`, so it waits in the database and falls due
    /// during the run (issue 19).
    pub scheduled_every: usize,
    /// `--delay-secs` (3): the `delay_seconds` those messages carry.
    pub delay_secs: u64,
    pub producer_bin: PathBuf,
    pub consumer_bin: PathBuf,
    pub server_url: String,
    pub amqp_url: String,
    /// `--compose-project`: test this running compose project, not local processes.
    pub compose_project: Option<String>,
    /// `--producer-url` (compose only): the producer's published port.
    pub producer_url: String,
    /// `--faults all|none`: `none` sends and checks without injecting faults.
    pub inject_faults: bool,
}

pub fn parse_args() -> anyhow::Result<Args> {
    let flags = Flags::parse()?;
    Ok(Args {
        n: flags.number("n", 100_000)?,
        duration: flags.secs("duration-secs", 60)?,
        consumers: flags.number("consumers", 3)?,
        poison: flags.number("poison", 5)?,
        pg_down: flags.secs("pg-down-secs", 20)?,
        callback_every: flags.number("callback-every", 10usize)?.max(1),
        scheduled_every: flags.number("scheduled-every", 10usize)?,
        delay_secs: flags.number("delay-secs", 3u64)?,
        producer_bin: flags
            .string("producer-bin", "target/release/producer")
            .into(),
        consumer_bin: flags
            .string("consumer-bin", "target/release/consumer")
            .into(),
        server_url: flags.string("server-url", "postgres://root@127.0.0.1:5432"),
        amqp_url: flags.string("amqp-url", "amqp://guest:guest@127.0.0.1:5672/%2f"),
        compose_project: flags.optional("compose-project"),
        producer_url: flags.string("producer-url", "http://127.0.0.1:8080"),
        inject_faults: match flags.string("faults", "all").as_str() {
            "all" => true,
            "none" => false,
            other => bail!("--faults is all or none, not {other:?}"),
        },
    })
}
