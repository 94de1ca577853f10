//! The `--name value` command lines of the measuring binaries: one parser
//! and one set of readers, so every binary refuses a bad value the same way.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use anyhow::{bail, Context};

/// Every `--name value` pair of a command line.
pub struct Flags(HashMap<String, String>);

impl Flags {
    /// The process's arguments.
    pub fn parse() -> anyhow::Result<Self> {
        Self::from_args(std::env::args().skip(1))
    }

    /// `args` (without the program name).
    pub fn from_args(args: impl IntoIterator<Item = String>) -> anyhow::Result<Self> {
        let mut map = HashMap::new();
        let mut it = args.into_iter();
        while let Some(flag) = it.next() {
            let Some(name) = flag.strip_prefix("--") else {
                bail!("unexpected argument {flag:?}; flags are --name value");
            };
            let value = it
                .next()
                .with_context(|| format!("--{name} needs a value"))?;
            map.insert(name.to_owned(), value);
        }
        Ok(Self(map))
    }

    /// `--name`, if given.
    pub fn optional(&self, name: &str) -> Option<String> {
        self.0.get(name).cloned()
    }

    /// `--name`, which must be given.
    pub fn required(&self, name: &str) -> anyhow::Result<String> {
        self.optional(name)
            .with_context(|| format!("--{name} is required"))
    }

    /// `--name`, or `default`.
    pub fn string(&self, name: &str, default: &str) -> String {
        self.optional(name).unwrap_or_else(|| default.to_owned())
    }

    /// `--name` as a number (or anything `FromStr`), or `default`.
    pub fn number<T: FromStr>(&self, name: &str, default: T) -> anyhow::Result<T> {
        match self.0.get(name) {
            None => Ok(default),
            Some(value) => value
                .parse()
                .map_err(|_| anyhow::anyhow!("--{name} must be a number, not {value:?}")),
        }
    }

    /// `--name` in whole seconds, or `default` seconds.
    pub fn secs(&self, name: &str, default: u64) -> anyhow::Result<Duration> {
        Ok(Duration::from_secs(self.number(name, default)?))
    }

    /// `--name http://ip:port` as the address to connect to.
    pub fn addr(&self, name: &str, default: &str) -> anyhow::Result<SocketAddr> {
        let url = self.string(name, default);
        url.trim_start_matches("http://")
            .trim_end_matches('/')
            .parse()
            .with_context(|| format!("--{name} {url} must be http://ip:port"))
    }

    /// `--name http://ip:port,http://ip:port,…`: several addresses.
    pub fn addrs(&self, name: &str, default: &str) -> anyhow::Result<Vec<SocketAddr>> {
        self.string(name, default)
            .split(',')
            .filter(|s| !s.is_empty())
            .map(|url| {
                url.trim_start_matches("http://")
                    .trim_end_matches('/')
                    .parse()
                    .with_context(|| format!("--{name}: {url} must be http://ip:port"))
            })
            .collect()
    }

    /// `--pids name=pid,…`: the processes to report on (none if not given).
    pub fn pids(&self, name: &str) -> anyhow::Result<Vec<(String, u32)>> {
        self.string(name, "")
            .split(',')
            .filter(|s| !s.is_empty())
            .map(|pair| {
                let (name, pid) = pair.split_once('=').context("--pids is name=pid,…")?;
                Ok((name.to_owned(), pid.parse()?))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn flags(args: &[&str]) -> anyhow::Result<Flags> {
        Flags::from_args(args.iter().map(|s| (*s).to_owned()))
    }

    #[test]
    fn reads_values_defaults_and_refuses_bad_ones() {
        let f = flags(&[
            "--n",
            "5",
            "--url",
            "http://127.0.0.1:9/",
            "--pids",
            "a=1,b=2",
        ])
        .unwrap();
        assert_eq!(f.number("n", 1usize).unwrap(), 5);
        assert_eq!(f.number("c", 64usize).unwrap(), 64);
        assert_eq!(f.secs("n", 0).unwrap(), Duration::from_secs(5));
        assert_eq!(f.addr("url", "").unwrap().port(), 9);
        let two = f.addrs("urls", "http://127.0.0.1:1,127.0.0.1:2/").unwrap();
        assert_eq!(two.iter().map(|a| a.port()).collect::<Vec<_>>(), [1, 2]);
        assert!(f.addrs("urls", "http://nowhere:1").is_err());
        assert_eq!(
            f.pids("pids").unwrap(),
            vec![("a".into(), 1), ("b".into(), 2)]
        );
        assert_eq!(f.string("x", "d"), "d");
        assert!(f.required("x").is_err());
        assert!(flags(&["--n", "five"])
            .unwrap()
            .number("n", 1usize)
            .is_err());
        assert!(flags(&["n"]).is_err());
        assert!(flags(&["--n"]).is_err());
    }
}
