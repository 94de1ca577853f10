//! `ProducerProcess`: the producer binary run as a process of its own, for
//! what a producer inside the test process cannot show: a file limit of
//! its own (`ulimit -n`), its peak memory (`VmHWM`), or being paused
//! (`SIGSTOP`) the way a starved machine pauses it. It gets the settings
//! `spawn_producer` gives (the test's database and prefix, a free port on
//! 127.0.0.1) and nothing from the test's environment or a `.env`; it is
//! killed when dropped.
//!
//! The binary is the tests' copy of the producer (`test-producer`, the
//! same code as `producer`'s `main`): a test passes
//! `env!("CARGO_BIN_EXE_test-producer")`, which cargo builds for it.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::broker::TestBroker;
use crate::database::TestDb;
use crate::services::env_pairs;

/// A producer running as a child process.
pub struct ProducerProcess {
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    /// `127.0.0.1:<port>`, for raw connections.
    pub addr: String,
    /// An HTTP client.
    pub client: reqwest::Client,
    child: Child,
    log: Arc<Mutex<String>>,
}

impl ProducerProcess {
    /// Start `binary` with the test's settings and `extra` (which win),
    /// under `ulimit -n nofile` when given; returns once it listens.
    pub async fn spawn(
        binary: &str,
        db: &TestDb,
        broker: &TestBroker,
        extra: &[(&str, &str)],
        nofile: Option<u64>,
    ) -> Self {
        let script = match nofile {
            Some(n) => format!("ulimit -n {n} && exec \"$0\""),
            None => "exec \"$0\"".to_owned(),
        };
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(script)
            .arg(binary)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("RUST_LOG", "info")
            .envs(env_pairs(db, broker, extra))
            // No `.env` on the way up from here.
            .current_dir(std::env::temp_dir())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("cannot start the producer binary");
        let log = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().expect("piped stderr");
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        let port = loop {
            let port = log
                .lock()
                .unwrap()
                .lines()
                .find_map(|l| l.split("producer listening on port ").nth(1))
                .and_then(|p| p.trim().parse::<u16>().ok());
            if let Some(port) = port {
                break port;
            }
            if let Some(status) = child.try_wait().unwrap() {
                panic!("the producer exited ({status}):\n{}", log.lock().unwrap());
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the producer did not start listening:\n{}",
                log.lock().unwrap()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        };
        let addr = format!("127.0.0.1:{port}");
        Self {
            base: format!("http://{addr}"),
            addr,
            client: reqwest::Client::new(),
            child,
            log,
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The full URL of `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Its peak resident memory so far (`VmHWM`), in kB.
    pub fn peak_memory_kb(&self) -> u64 {
        self.status_kb("VmHWM:")
    }

    /// Its resident memory now (`VmRSS`), in kB.
    pub fn memory_kb(&self) -> u64 {
        self.status_kb("VmRSS:")
    }

    fn status_kb(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }

    /// Its open file descriptors.
    pub fn open_files(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    /// Send it a signal by name (`STOP`, `CONT`, `TERM`).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status()
            .unwrap();
        assert!(status.success(), "kill -{name} {}", self.pid());
    }

    /// Everything it logged so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for ProducerProcess {
    fn drop(&mut self) {
        // Resumed first, in case a test stopped it and failed before
        // resuming (a stopped process ignores everything but SIGKILL and
        // SIGCONT, and SIGKILL is what follows).
        let _ = Command::new("kill")
            .arg("-CONT")
            .arg(self.pid().to_string())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
