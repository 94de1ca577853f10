//! Schemas of the OpenAPI document: request bodies and answers, with every
//! constraint the handlers enforce, so that a schema-driven client (or
//! fuzzer) and the handlers agree on what is valid.
//!
//! The handlers build their JSON with these types where the shape is theirs
//! alone, so the document cannot drift from what is sent.

use chrono::{DateTime, Utc};
use serde::Serialize;
use shared::webhook::MAX_URL_LEN;
use utoipa::openapi::schema::{
    ArrayBuilder, ObjectBuilder, OneOfBuilder, Schema, SchemaType, Type,
};
use utoipa::openapi::RefOr;
use utoipa::{PartialSchema, ToSchema};
use uuid::Uuid;

/// Most messages in one batch (`POST /messages/batch`).
pub const MAX_BATCH: usize = 1000;

/// What a `callback_url` must look like: `http://` or `https://` and a
/// host that is not empty, read as URL parsing reads it (more slashes or
/// backslashes may come first; the userinfo runs to the last `@` before
/// the path, query or fragment; the host then to a `:` port). So `http://`,
/// `http://:80/` and `http://user@/` are refused by the schema, as the
/// handler refuses them.
pub const CALLBACK_URL_PATTERN: &str =
    r"^https?://[/\\]*([^/\\?#]*@)?[^/\\?#@:][^/\\?#@]*([/\\?#]|$)";

/// `{"content": "text"}`. Other fields are ignored.
// A schema only: the handlers read the body as JSON `Value`, so that each
// way it can be wrong gets its own 400.
#[allow(dead_code)]
#[derive(Debug, ToSchema)]
#[schema(as = NewMessage)]
pub struct NewMessageBody {
    /// The text: at least one character, and no NUL (PostgreSQL `text`
    /// cannot store it).
    #[schema(min_length = 1, pattern = "^[^\\u0000]*$")]
    pub content: String,
    /// Where to POST a signed notification once the message is stored or
    /// dead-lettered (its `data` says the message's fields and `kind`):
    /// http(s), on port 80 or 443, not to a private or local address,
    /// unless `WEBHOOK_ALLOWED_HOSTS` lists the host (and port): a rule
    /// JSON Schema cannot say, so such a URL is a 400 though it matches
    /// this schema. `null` is none.
    // The pattern is `CALLBACK_URL_PATTERN`, repeated because the derive
    // wants a literal (the unit test in `openapi` checks both).
    #[schema(
        min_length = 1,
        max_length = 2048,
        pattern = r"^https?://[/\\]*([^/\\?#]*@)?[^/\\?#@:][^/\\?#@]*([/\\?#]|$)"
    )]
    pub callback_url: Option<String>,
    /// The kind of work (one of `KINDS`; an unknown one is a 400 naming
    /// them). Absent or `null`: `default`.
    #[schema(
        min_length = 1,
        max_length = 63,
        pattern = "^[a-z0-9][a-z0-9_-]{0,62}$"
    )]
    pub kind: Option<String>,
    /// Deliver at this time instead of now (RFC 3339 with an offset); a
    /// time not in the future is now. Not with `delay_seconds` (a 400).
    /// Beyond `MAX_SCHEDULE_AHEAD` (default 365 days) is a 400: a rule the
    /// schema cannot say. `null` is none.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub deliver_at: Option<DateTime<Utc>>,
    /// Deliver this many seconds from now instead of now (0: now). Not
    /// with `deliver_at` (a 400); beyond `MAX_SCHEDULE_AHEAD` is a 400.
    /// `null` is none.
    #[schema(minimum = 0)]
    pub delay_seconds: Option<u64>,
}

/// `{"content": "text"}` of the tutorial's `POST /add_message`, which has
/// no callback. Other fields are ignored.
// A schema only, like `NewMessageBody`.
#[allow(dead_code)]
#[derive(Debug, ToSchema)]
#[schema(as = AddMessage)]
pub struct AddMessageBody {
    /// The text: at least one character, and no NUL.
    #[schema(min_length = 1, pattern = "^[^\\u0000]*$")]
    pub content: String,
    /// The kind of work, as `POST /messages`'s. Absent or `null`: `default`.
    #[schema(
        min_length = 1,
        max_length = 63,
        pattern = "^[a-z0-9][a-z0-9_-]{0,62}$"
    )]
    pub kind: Option<String>,
    /// As `POST /messages`'s: deliver at this time instead of now (RFC 3339 with an offset); a
    /// time not in the future is now. Not with `delay_seconds` (a 400).
    /// Beyond `MAX_SCHEDULE_AHEAD` (default 365 days) is a 400: a rule the
    /// schema cannot say. `null` is none.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub deliver_at: Option<DateTime<Utc>>,
    /// Deliver this many seconds from now instead of now (0: now). Not
    /// with `deliver_at` (a 400); beyond `MAX_SCHEDULE_AHEAD` is a 400.
    /// `null` is none.
    #[schema(minimum = 0)]
    pub delay_seconds: Option<u64>,
}

/// `[{"content": "text"}, …]` (1 to 1000 messages), or the object form
/// `{"messages": [...], "callback_url": "https://..."}`.
#[derive(Debug)]
pub struct NewBatchBody;

// By hand: utoipa's derive cannot put minItems/maxItems on a bare array.
impl PartialSchema for NewBatchBody {
    fn schema() -> RefOr<Schema> {
        let items = || {
            ArrayBuilder::new()
                .items(
                    ObjectBuilder::new()
                        .property(
                            "content",
                            ObjectBuilder::new()
                                .schema_type(Type::String)
                                .min_length(Some(1))
                                .pattern(Some("^[^\\u0000]*$")),
                        )
                        .required("content")
                        .property(
                            "kind",
                            ObjectBuilder::new()
                                .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
                                .min_length(Some(1))
                                .max_length(Some(shared::kind::MAX_LEN))
                                .pattern(Some(KIND_PATTERN))
                                .description(Some("One of KINDS (else a 400 naming them); absent or null: default")),
                        )
                        .property(
                            "deliver_at",
                            ObjectBuilder::new()
                                .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
                                .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(
                                    utoipa::openapi::KnownFormat::DateTime,
                                )))
                                .description(Some("As POST /messages's: deliver at this time (RFC 3339 with an offset); not with delay_seconds")),
                        )
                        .property(
                            "delay_seconds",
                            ObjectBuilder::new()
                                .schema_type(SchemaType::from_iter([Type::Integer, Type::Null]))
                                .minimum(Some(0))
                                .description(Some("As POST /messages's: deliver this many seconds from now; not with deliver_at")),
                        ),
                )
                .min_items(Some(1))
                .max_items(Some(MAX_BATCH))
        };
        OneOfBuilder::new()
            .item(items().description(Some("1 to 1000 messages, each {\"content\": \"text\"}")))
            .item(
                ObjectBuilder::new()
                    .property("messages", items())
                    .required("messages")
                    // As `NewMessage`'s: null is none; the host rule is
                    // beyond JSON Schema.
                    .property(
                        "callback_url",
                        ObjectBuilder::new()
                            .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
                            .min_length(Some(1))
                            .max_length(Some(MAX_URL_LEN))
                            .pattern(Some(CALLBACK_URL_PATTERN)),
                    )
                    .description(Some(
                        "The batch object form: the messages, and where to POST a signed notification when the batch completes",
                    )),
            )
            .into()
    }
}

impl ToSchema for NewBatchBody {
    fn name() -> std::borrow::Cow<'static, str> {
        "NewBatch".into()
    }
}

/// The pattern of a kind name (`shared::kind::well_formed`).
pub const KIND_PATTERN: &str = "^[a-z0-9][a-z0-9_-]{0,62}$";

/// Every error: `{"error": "what is wrong"}` (some add fields).
// A schema only: `ApiError` writes this shape.
#[allow(dead_code)]
#[derive(Debug, ToSchema)]
#[schema(as = Error)]
pub struct ErrorBody {
    /// What went wrong, for a human.
    pub error: String,
}

/// How an admin route (`http::access::Access::Admin`) refuses, as the
/// dead-letter tools document it.
// A schema only: the access guard answers these.
#[allow(dead_code)]
#[derive(Debug, utoipa::IntoResponses)]
pub enum AdminRefusal {
    /// The token is missing or another.
    #[response(status = 401, description = "Missing or wrong ADMIN_TOKEN")]
    Unauthorized(ErrorBody),
    /// `ADMIN_TOKEN` is not set.
    #[response(
        status = 404,
        description = "ADMIN_TOKEN is not set: the tools are disabled"
    )]
    Disabled(ErrorBody),
}

/// `202` of `POST /messages`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Queued {
    /// The message id (also in `Location`).
    pub id: Uuid,
    /// `queued`, or `scheduled` with `deliver_at`.
    #[schema(inline)]
    pub status: QueuedStatus,
    /// When a scheduled message is delivered (a retried Idempotency-Key
    /// gets its first request's). Absent when queued.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deliver_at: Option<DateTime<Utc>>,
}

/// What a 202 can report.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum QueuedStatus {
    /// Confirmed by the broker, not yet stored.
    Queued,
    /// Held (durably, in the database) until `deliver_at`.
    Scheduled,
}

/// `202` of `POST /messages/batch`.
#[derive(Debug, Serialize, ToSchema)]
pub struct BatchQueued {
    /// `queued`, or `scheduled` when every item is scheduled.
    #[schema(inline)]
    pub status: QueuedStatus,
    /// The batch's id (`GET /batches/{id}`); derived from the
    /// Idempotency-Key when there is one.
    pub batch_id: Uuid,
    /// The ids, in request order.
    pub ids: Vec<Uuid>,
    /// When some items are scheduled: each item's `deliver_at`, in request
    /// order (`null`: queued now). Absent when none is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deliver_at: Option<Vec<Option<DateTime<Utc>>>>,
}

/// `202` of `POST /add_message` (the tutorial's shape).
#[derive(Debug, Serialize, ToSchema)]
pub struct Enqueued {
    /// `Message enqueued`, or `Message scheduled`.
    pub message: String,
    /// The message id.
    pub job_id: Uuid,
    /// `scheduled` when it is; absent otherwise (the tutorial's shape).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(inline)]
    pub status: Option<QueuedStatus>,
    /// When a scheduled message is delivered; absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deliver_at: Option<DateTime<Utc>>,
}

/// `200` of `GET /messages/{id}`: stored or dead-lettered, or scheduled
/// or cancelled.
// A schema only: the handler serializes whichever it found.
#[allow(dead_code)]
#[derive(Debug, ToSchema)]
#[serde(untagged)]
pub enum MessageState {
    /// Stored or dead-lettered.
    Settled(shared::events::MessageStatus),
    /// Scheduled (waiting for `deliver_at`) or cancelled.
    Waiting(shared::schedule::ScheduleStatus),
}

/// `200` of `DELETE /messages/{id}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Cancelled {
    /// The message id.
    pub id: Uuid,
    /// Always `cancelled`.
    #[schema(inline)]
    pub status: CancelledStatus,
    /// When it would have been delivered.
    pub deliver_at: DateTime<Utc>,
}

/// The status of a cancelled message.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CancelledStatus {
    /// Never stored.
    Cancelled,
}

/// One row of `GET /messages` (the tutorial's shape).
#[derive(Debug, Serialize, ToSchema)]
pub struct ListedMessage {
    /// The message id.
    pub id: Uuid,
    /// The text.
    pub content: String,
    /// When the producer accepted it.
    pub timestamp: DateTime<Utc>,
}

/// `404` of `GET /messages/{id}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct NotFound {
    /// What is not there.
    pub error: String,
    /// Always `not_found`.
    #[schema(inline)]
    pub status: NotFoundStatus,
}

/// The status of a message neither stored nor dead-lettered.
#[derive(Debug, Serialize, ToSchema)]
pub enum NotFoundStatus {
    /// Still queued, or never accepted.
    #[serde(rename = "not_found")]
    NotFound,
}

/// `DELETE /dead-letters?confirm=true`: the only accepted value.
// A schema only: the handler compares the query string.
#[allow(dead_code)]
#[derive(Debug, ToSchema)]
pub enum ConfirmTrue {
    /// Yes, purge.
    #[schema(rename = "true")]
    True,
}

/// `200` of `GET /dead-letters`.
// A schema only: the handler builds this from the queue's messages.
#[allow(dead_code)]
#[derive(Debug, ToSchema)]
pub struct DeadLetterList {
    /// Oldest first: `{"id", "content", "reason", "category", "attempts",
    /// "dead_lettered_at"}`, each `null` when the message does not carry it.
    pub dead_letters: Vec<serde_json::Map<String, serde_json::Value>>,
    /// Messages in `messages.dead` when browsing began.
    pub total: u32,
}

/// `200` of `POST /dead-letters/redrive`.
// A schema only, like the two below.
#[allow(dead_code)]
#[derive(Debug, ToSchema)]
pub struct Redriven {
    /// How many were moved back.
    pub redriven: u64,
}

/// `200` of `DELETE /dead-letters?confirm=true`.
#[allow(dead_code)]
#[derive(Debug, ToSchema)]
pub struct Purged {
    /// How many were deleted.
    pub purged: u32,
}

/// `200` of `GET /webhooks/signing-key`: one destination's signing key.
#[derive(Debug, Serialize, ToSchema)]
pub struct SigningKey {
    /// The origin, normalised: `scheme://host:port`, the port always given.
    pub origin: String,
    /// Its key as a Standard Webhooks secret, `whsec_<base64>`.
    #[schema(pattern = "^whsec_[A-Za-z0-9+/]+=*$")]
    pub secret: String,
    /// While `WEBHOOK_PREVIOUS_SECRET` is set (a rotation), its key under
    /// the previous master secret; webhooks then carry both signatures.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(pattern = "^whsec_[A-Za-z0-9+/]+=*$")]
    pub previous_secret: Option<String>,
}
