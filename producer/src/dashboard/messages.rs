//! The dashboard's reads of messages that the public API does not have:
//! the latest messages newest first, and one message with its whole
//! history.

use actix_web::{web, HttpResponse};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use serde::Deserialize;
use serde_json::{json, Value};
use shared::db::dead_letters::DeadLetter;
use shared::db::messages::Message;
use shared::kind::Kind;
use shared::schema::messages;
use uuid::Uuid;

use crate::cursor;
use crate::error::ApiError;
use crate::http::extract::bounded_number;
use crate::state::AppState;

/// Default and maximum page sizes of the latest-messages list.
const DEFAULT_LIMIT: u64 = 25;
const MAX_LIMIT: u64 = 200;
/// Characters of content shown in a list (the message page shows it all).
const PREVIEW_CHARS: usize = 120;

/// Query of `GET /dashboard/api/messages`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LatestParams {
    limit: Option<String>,
    before: Option<String>,
    kind: Option<String>,
}

/// Stored messages newest first (by acceptance time, then id), before the
/// keyset cursor `before`; with `kind`, of that kind only. Walks the
/// `(created_at, id)` index backwards.
fn latest(
    conn: &mut PgConnection,
    before: Option<(DateTime<Utc>, Uuid)>,
    limit: i64,
    kind: Option<&Kind>,
) -> QueryResult<Vec<Message>> {
    let mut query = messages::table
        .select(Message::as_select())
        .order((messages::created_at.desc(), messages::id.desc()))
        .limit(limit)
        .into_boxed();
    if let Some(kind) = kind {
        query = query.filter(messages::kind.eq(kind.as_str().to_owned()));
    }
    if let Some((ts, id)) = before {
        query = query.filter(
            messages::created_at
                .lt(ts)
                .or(messages::created_at.eq(ts).and(messages::id.lt(id))),
        );
    }
    query.load(conn)
}

fn preview(content: &str) -> (String, bool) {
    let mut chars = content.char_indices();
    match chars.nth(PREVIEW_CHARS) {
        Some((cut, _)) => (content[..cut].to_owned(), true),
        None => (content.to_owned(), false),
    }
}

/// `GET /dashboard/api/messages?limit=&before=&kind=`: the latest stored
/// messages (of one kind, with `kind`), newest first, with a content
/// preview and their kind.
#[utoipa::path(get, path = "/dashboard/api/messages", tag = "dashboard",
    params(("limit" = Option<u32>, Query, minimum = 1, maximum = 200, description = "Page size, default 25"),
           ("before" = Option<String>, Query, pattern = "^(0|-?[1-9][0-9]{0,15})_[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$",
            description = "Opaque: the previous page's \"next\" cursor, unchanged"),
           ("kind" = Option<String>, Query, pattern = "^[a-z0-9][a-z0-9_-]{0,62}$",
            description = "Only messages of this kind (one of KINDS); every kind when absent")),
    responses(
        (status = 200, description = r#"{"messages": [{"id", "kind", "preview", "truncated", "created_at", "stored_at"}], "next": cursor or null}, newest first"#),
        (status = 400, description = "Bad limit or cursor, or kind malformed or not one of KINDS (the error names them)"),
        (status = 401, description = "API_TOKEN is set and the bearer token is missing or wrong"),
        (status = 503, description = "Database unavailable; see Retry-After"),
    ))]
pub async fn latest_messages(
    params: web::Query<LatestParams>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let limit = bounded_number(
        params.limit.as_deref(),
        "limit",
        DEFAULT_LIMIT,
        1..=MAX_LIMIT,
    )?;
    let before = params
        .before
        .as_deref()
        .map(|text| {
            cursor::parse_newest_first(text).ok_or_else(|| {
                ApiError::BadRequest(
                    "before: malformed cursor; use the previous page's \"next\"".into(),
                )
            })
        })
        .transpose()?;
    let kind = params
        .kind
        .as_deref()
        .map(|name| state.kind_named(name))
        .transpose()?;
    // One extra row tells whether an older page exists.
    let fetch = limit as i64 + 1;
    let mut rows = state
        .with_db(move |conn| Ok(latest(conn, before, fetch, kind.as_ref())?))
        .await?;
    let more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    let next = if more {
        rows.last()
            .map(|m| cursor::newest_first(m.created_at, m.id))
    } else {
        None
    };
    let items: Vec<Value> = rows
        .iter()
        .map(|m| {
            let (text, truncated) = preview(&m.content);
            json!({
                "id": m.id,
                "kind": m.kind,
                "preview": text,
                "truncated": truncated,
                "created_at": m.created_at,
                "stored_at": m.stored_at,
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "messages": items, "next": next })))
}

/// `GET /dashboard/api/messages/{id}`: everything the database knows about
/// one message: the stored row and the dead-letter record, both if it was
/// dead-lettered and later redriven and stored.
#[utoipa::path(get, path = "/dashboard/api/messages/{id}", tag = "dashboard",
    params(("id" = uuid::Uuid, Path, description = "Message id")),
    responses(
        (status = 200, description = r#"{"id", "status": "stored|dead_lettered|scheduled|cancelled", "kind", "content", "created_at", "stored_at", "dead_letter": {"reason", "attempts", "dead_lettered_at", "kind"} or null}; a scheduled or cancelled message (not stored) adds "deliver_at" and "cancelled_at" (null unless cancelled); cancel one with DELETE /messages/{id}"#),
        (status = 400, description = "id is not a UUID"),
        (status = 401, description = "API_TOKEN is set and the bearer token is missing or wrong"),
        (status = 404, description = r#"{"status": "not_found"}: neither stored, dead-lettered, scheduled nor cancelled (still queued, or never accepted)"#),
        (status = 503, description = "Database unavailable; see Retry-After"),
    ))]
pub async fn message_detail(
    path: web::Path<Uuid>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let (row, dead): (Option<Message>, Option<DeadLetter>) = state
        .with_db(move |conn| {
            Ok((
                shared::db::messages::find(conn, id)?,
                shared::db::dead_letters::find(conn, id)?,
            ))
        })
        .await?;
    let dead_letter = dead.as_ref().map(|d| {
        json!({ "reason": d.reason, "attempts": d.attempts, "dead_lettered_at": d.dead_lettered_at, "kind": d.kind })
    });
    let body = match (&row, &dead) {
        (Some(m), _) => json!({
            "id": id,
            "status": "stored",
            "kind": m.kind,
            "content": m.content,
            "created_at": m.created_at,
            "stored_at": m.stored_at,
            "dead_letter": dead_letter,
        }),
        (None, Some(d)) => json!({
            "id": id,
            "status": "dead_lettered",
            "kind": d.kind,
            "content": Value::Null,
            "created_at": Value::Null,
            "stored_at": Value::Null,
            "dead_letter": dead_letter,
        }),
        (None, None) => {
            if let Some(waiting) = super::scheduled::message_detail(&state, id).await? {
                return Ok(HttpResponse::Ok().json(waiting));
            }
            return Ok(HttpResponse::NotFound().json(json!({
                "error": format!("message {id} is neither stored nor dead-lettered (still queued, or never accepted)"),
                "status": "not_found",
            })));
        }
    };
    Ok(HttpResponse::Ok().json(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn previews_cut_on_characters() {
        let long = "é".repeat(PREVIEW_CHARS + 5);
        let (text, cut) = preview(&long);
        assert!(cut);
        assert_eq!(text.chars().count(), PREVIEW_CHARS);
        assert_eq!(preview("short"), ("short".to_owned(), false));
    }
}
