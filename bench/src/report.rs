//! The Markdown tables the measuring binaries print, and the figures in them.

#![allow(clippy::print_stdout)] // printing the report is these tools' job

use std::time::Duration;

/// A table: the header row, then one row per item.
pub fn table<R: AsRef<[String]>>(header: &[&str], rows: impl IntoIterator<Item = R>) {
    println!(
        "\n| {} |\n|{}",
        header.join(" | "),
        " --- |".repeat(header.len())
    );
    for row in rows {
        println!("| {} |", row.as_ref().join(" | "));
    }
}

/// One verdict of a run: what was checked, whether it held, and the figures.
pub struct Check {
    pub name: String,
    pub pass: bool,
    pub detail: String,
}

impl Check {
    pub fn new(name: impl Into<String>, pass: bool, detail: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            pass,
            detail: detail.into(),
        }
    }
}

/// The `| Check | Result | Detail |` table; whether any check failed.
pub fn checks(checks: &[Check]) -> bool {
    table(
        &["Check", "Result", "Detail"],
        checks.iter().map(|c| {
            let result = if c.pass { "pass" } else { "FAIL" };
            [c.name.clone(), result.to_owned(), c.detail.clone()]
        }),
    );
    checks.iter().any(|c| !c.pass)
}

/// `12.3 ms`.
pub fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

/// `1.2 s`.
pub fn secs(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

/// `14.2 MB` (MiB, as the kernel counts).
pub fn mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1_048_576.0)
}
