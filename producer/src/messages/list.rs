//! `GET /messages?limit=&cursor=&kind=`: the stored messages in commit
//! order, page by page, and the position after each page for tailing; with
//! `kind`, only that kind's.

use actix_web::http::header;
use actix_web::{web, HttpResponse};
use serde::Deserialize;

use crate::cursor;
use crate::error::ApiError;
use crate::http::extract::bounded_number;
use crate::schemas::{ErrorBody, ListedMessage};
use crate::state::AppState;

/// Default and maximum page sizes of `GET /messages`.
const DEFAULT_LIMIT: u32 = 100;
const MAX_LIMIT: u32 = 1000;

/// Query parameters of `GET /messages`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    // A string, so that a non-number gets an error naming `limit`.
    limit: Option<String>,
    cursor: Option<String>,
    kind: Option<String>,
}

/// `GET /messages?limit=&cursor=&kind=`: stored messages in commit order
/// (of one kind, with `kind`), in the tutorial's shape `{"id", "content",
/// "timestamp"}`. When more rows follow, a `Link: <…>; rel="next"` header
/// gives the next page's URL; the `Cursor` header always carries the
/// position after this page, for tailing.
#[utoipa::path(get, path = "/messages", tag = "messages",
    params(("limit" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "Page size, default 100"),
           ("cursor" = Option<String>, Query, pattern = "^(0|[1-9][0-9]{0,17})_(0|-?[1-9][0-9]{0,15})_[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$",
            description = "Opaque: from the Cursor or Link header of a previous page, unchanged"),
           ("kind" = Option<String>, Query, pattern = "^[a-z0-9][a-z0-9_-]{0,62}$",
            description = "Only messages of this kind (one of KINDS); every kind when absent. The Link header's next page keeps it; a cursor is only meaningful with the same kind")),
    responses(
        (status = 200, description = "Stored messages in commit order (see docs/api.md, Paging and tailing: a client following cursors sees every row exactly once, even one that commits late)",
            body = [ListedMessage],
            headers(
                ("Link" = String, description = r#"<URL of the next page>; rel="next", when more rows follow now"#),
                ("Cursor" = String, description = "Opaque position after this page's last row (or the given cursor when the page is empty): pass it as ?cursor= to continue, now or later"),
            )),
        (status = 400, description = "Bad limit or cursor, or kind malformed or not one of KINDS (the error names them)", body = ErrorBody),
        (status = 401, description = "API_TOKEN is set and the bearer token is missing or wrong", body = ErrorBody),
        (status = 503, description = "Database unavailable", body = ErrorBody,
            headers(("Retry-After" = u32, description = "Seconds to wait before retrying"))),
    ))]
pub async fn list_messages(
    params: web::Query<ListParams>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let limit = bounded_number(
        params.limit.as_deref(),
        "limit",
        DEFAULT_LIMIT.into(),
        1..=MAX_LIMIT.into(),
    )? as u32;
    let after = params
        .cursor
        .as_deref()
        .map(|text| {
            cursor::parse_commit_order(text).ok_or_else(|| {
                ApiError::BadRequest("cursor is malformed; use the Link header's URL".into())
            })
        })
        .transpose()?;
    let kind = params
        .kind
        .as_deref()
        .map(|name| state.kind_named(name))
        .transpose()?;
    // The next page's URL keeps the filter (a checked kind name needs no
    // escaping: `[a-z0-9_-]` only).
    let filter = kind
        .as_ref()
        .map(|k| format!("&kind={k}"))
        .unwrap_or_default();
    // One extra row tells whether there is a next page.
    let fetch = i64::from(limit) + 1;
    let mut rows = state
        .with_db(move |conn| {
            Ok(shared::db::messages::list_committed(
                conn,
                after,
                fetch,
                kind.as_ref(),
            )?)
        })
        .await?;
    let has_more = rows.len() > limit as usize;
    rows.truncate(limit as usize);

    let mut response = HttpResponse::Ok();
    let here = match rows.last() {
        Some((position, _)) => Some(cursor::commit_order(position)),
        None => params.cursor.clone(),
    };
    if let Some(here) = &here {
        if has_more {
            let next = format!("</messages?limit={limit}&cursor={here}{filter}>; rel=\"next\"");
            response.insert_header((header::LINK, next));
        }
        response.insert_header((CURSOR_HEADER, here.as_str()));
    }
    let body: Vec<ListedMessage> = rows
        .into_iter()
        .map(|(_, m)| ListedMessage {
            id: m.id,
            content: m.content,
            timestamp: m.created_at,
        })
        .collect();
    Ok(response.json(body))
}

/// The response header carrying the position after a page of `GET /messages`.
const CURSOR_HEADER: &str = "Cursor";
