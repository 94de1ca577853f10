//! The `--name value` command lines of the measuring binaries.

use std::collections::HashMap;

use anyhow::{bail, Context};

/// Every `--name value` pair of the process's arguments.
pub fn parse() -> anyhow::Result<HashMap<String, String>> {
    let mut map = HashMap::new();
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let Some(name) = flag.strip_prefix("--") else {
            bail!("unexpected argument {flag:?}; flags are --name value");
        };
        let value = it
            .next()
            .with_context(|| format!("--{name} needs a value"))?;
        map.insert(name.to_owned(), value);
    }
    Ok(map)
}

/// `--pids name=pid,…`: the processes to report on.
pub fn pids(list: &str) -> anyhow::Result<Vec<(String, u32)>> {
    list.split(',')
        .filter(|s| !s.is_empty())
        .map(|pair| {
            let (name, pid) = pair.split_once('=').context("--pids is name=pid,…")?;
            Ok((name.to_owned(), pid.parse()?))
        })
        .collect()
}
