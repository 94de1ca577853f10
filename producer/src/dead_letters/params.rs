//! The query every dead-letter tool takes: `limit` and `confirm`.

use serde::Deserialize;

use crate::error::ApiError;
use crate::http::extract::bounded_number;

/// Default and maximum messages per call.
const DEFAULT_LIMIT: u32 = 100;
const MAX_LIMIT: u32 = 1000;

/// `limit` and `confirm` query parameters.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    limit: Option<String>,
    confirm: Option<String>,
}

impl Params {
    /// `limit` (1 to 1000, default 100), or `None` when absent.
    pub fn limit(&self) -> Result<Option<u32>, ApiError> {
        self.limit
            .as_deref()
            .map(|text| {
                let n = bounded_number(Some(text), "limit", 0, 1..=MAX_LIMIT.into())?;
                Ok(n as u32)
            })
            .transpose()
    }

    /// `limit`, or the default when absent.
    pub fn limit_or_default(&self) -> Result<u32, ApiError> {
        Ok(self.limit()?.unwrap_or(DEFAULT_LIMIT))
    }

    /// Whether the call says `confirm=true`.
    pub fn confirmed(&self) -> bool {
        self.confirm.as_deref() == Some("true")
    }
}
