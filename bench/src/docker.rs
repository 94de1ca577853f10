//! The docker CLI, as the fault injectors drive a running compose project:
//! from the folder of its compose files (the caller's working directory),
//! with the caller's environment (`COMPOSE_FILE`, the published ports).

use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context};
use tokio::process::Command;

/// The longest one docker call may take: a stop waits out a 30 s grace
/// period, and a hung daemon must fail the run, not hang it.
const CALL_TIMEOUT: Duration = Duration::from_secs(120);

/// `docker <args>`, which must succeed; its standard output.
pub async fn docker(args: &[&str]) -> anyhow::Result<String> {
    let out = tokio::time::timeout(
        CALL_TIMEOUT,
        Command::new("docker")
            .args(args)
            .stdin(Stdio::null())
            .output(),
    )
    .await
    .with_context(|| format!("docker {} timed out", args.join(" ")))?
    .context("running docker")?;
    if !out.status.success() {
        bail!(
            "docker {} failed: {}: {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A running `docker compose` project.
pub struct Compose {
    /// Its name (`-p`).
    pub project: String,
}

impl Compose {
    /// `docker compose -p <project> <args>`, which must succeed.
    pub async fn run(&self, args: &[&str]) -> anyhow::Result<String> {
        let mut all = vec!["compose", "-p", self.project.as_str()];
        all.extend_from_slice(args);
        docker(&all).await
    }

    /// The container ids of a service's running replicas.
    pub async fn containers(&self, service: &str) -> anyhow::Result<Vec<String>> {
        Ok(self
            .run(&["ps", "-q", service])
            .await?
            .lines()
            .map(str::to_owned)
            .collect())
    }

    /// The container id of a service that runs one.
    pub async fn container(&self, service: &str) -> anyhow::Result<String> {
        let id = self.run(&["ps", "-q", service]).await?;
        let id = id.trim();
        if id.is_empty() {
            bail!("no container for {service}");
        }
        Ok(id.to_owned())
    }

    /// Wait until `service`'s container reports healthy (2 minutes at most).
    pub async fn wait_healthy(&self, service: &str) -> anyhow::Result<()> {
        for _ in 0..240 {
            if let Ok(health) = self.run(&["ps", "--format", "{{.Health}}", service]).await {
                if health.trim() == "healthy" {
                    return Ok(());
                }
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        bail!("{service} did not become healthy within 120 s")
    }
}
