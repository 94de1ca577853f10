//! `Idempotency-Key`, after the IETF httpapi Idempotency-Key draft.
//!
//! The same key always yields the same message id(s), so a client retrying
//! after a timeout or a 503 cannot create a second message. Because the id
//! alone cannot tell a retry from a new message that reuses the key, each
//! key is also bound, in PostgreSQL, to a fingerprint of the request it was
//! first used with: the same request again gets the original answer (202,
//! same id), another request is refused with 422 instead of being accepted
//! and then silently dropped as a duplicate id.
//!
//! The binding is written *before* publishing. Written after, two different
//! requests racing with one key could both be published under one id and
//! one would be lost. A binding whose publish then failed (503) stays: the
//! broker may still have that message (a lost confirm), so the key must stay
//! bound to its body; the retry with the same body finds its own fingerprint
//! and is published again.
//!
//! A key is bound for `IDEMPOTENCY_KEY_TTL` (24 hours by default, as payment
//! APIs do): in the draft's words, the resource "MAY expire the
//! idempotency key" and then treats a request with it as a new one. An
//! expired binding is replaced at the next use (before the retention has
//! pruned it, too), and the ids of a binding derive from the key *and* the
//! time it was bound, so the new request gets new ids and is never dropped
//! as a duplicate of what the key made before. That time is also the
//! messages' `created_at`: every retry carries the same one, so it reaches
//! the same partition and row of `messages`. (Bindings made before keys
//! expired keep the ids of the key alone, `timed_ids = false`; so do those
//! a producer of before writes during a rolling upgrade, as it does not
//! name the column: a retry reaching a new producer gets the same id.)
//!
//! A handler makes one call: [`message_id`] or [`batch_ids`], after it has
//! checked the request and before it publishes.

use actix_web::HttpRequest;
use chrono::{DateTime, SubsecRound, Utc};
use sha2::{Digest, Sha256};
use shared::db::idempotency_keys::{Binding, NewIdempotencyKey};
use shared::kind::Kind;
use uuid::Uuid;

use crate::error::ApiError;
use crate::state::AppState;

/// The header clients set.
pub const HEADER: &str = "Idempotency-Key";

/// Namespace for name-based (v5) ids derived from the keys of single
/// `POST /messages`. Fixed forever: changing it would break deduplication
/// across a deploy.
const NAMESPACE: Uuid = Uuid::from_u128(0x0b6f_5c1e_9a4d_4e0f_8f3b_6d2a_1c7e_5a90);

/// Namespace for the ids of batch items (`key/index`), apart from
/// [`NAMESPACE`] so that item `i` of key `K` never collides with a single
/// POST whose key is literally `K/i`.
const BATCH_NAMESPACE: Uuid = Uuid::from_u128(0x6a1d_83f2_57c4_4b9e_a0d5_3e8f_12c6_b471);

/// Namespace of batch ids derived from a key (UUID v5): a retried batch
/// keeps its id, and no message id can equal it.
const BATCH_ID_NAMESPACE: Uuid = Uuid::from_u128(0x8d5e_61a4_3b0f_4c2e_9a57_2f0e_b1c3_d4a9);

/// Longest accepted key.
pub const MAX_LEN: usize = 255;

/// Which endpoint a key was used on: each has a namespace of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    /// `POST /messages`.
    Message,
    /// `POST /messages/batch`.
    Batch,
}

impl Scope {
    /// The `scope` column value, also the endpoint's part of the fingerprint.
    fn as_str(self) -> &'static str {
        match self {
            Scope::Message => "message",
            Scope::Batch => "batch",
        }
    }
}

/// The id and acceptance time of a `POST /messages`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Assigned {
    /// The message id.
    pub id: Uuid,
    /// Its `created_at`: the time the key was bound (every retry carries
    /// the same), or now without a key.
    pub created_at: DateTime<Utc>,
}

/// Now, as PostgreSQL keeps it (microseconds): what the producer reports
/// equals what the row holds.
fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

/// The id of a `POST /messages`: with an `Idempotency-Key`, derived from
/// the key (and the time it was bound) and bound to this request (its
/// content and callback) before it is published; without one, random. A
/// bad key is a 400, a key bound to another request a 422.
pub async fn message_id(
    state: &AppState,
    req: &HttpRequest,
    content: &str,
    callback_url: Option<&str>,
    kind: &Kind,
    schedule: Option<&str>,
) -> Result<Assigned, ApiError> {
    let Some(key) = key(req)? else {
        return Ok(Assigned {
            id: Uuid::new_v4(),
            created_at: now(),
        });
    };
    // The callback and the kind are part of the request: another one is a
    // 422 too (the same id in another kind's queue would be stored once,
    // in whichever kind came first).
    let callback = callback_part(callback_url);
    let kind = kind_part(None, kind);
    let schedule = schedule_part(None, schedule);
    let parts = std::iter::once(content)
        .chain(callback.as_deref())
        .chain(kind.as_deref())
        .chain(schedule.as_deref());
    let binding = bind(
        state,
        Scope::Message,
        &key,
        fingerprint(Scope::Message, parts),
    )
    .await?;
    Ok(Assigned {
        id: id_for_binding(&key, &binding),
        created_at: binding.created_at,
    })
}

/// The ids of a `POST /messages/batch`.
#[derive(Debug)]
pub struct BatchIds {
    /// The batch's id.
    pub batch: Uuid,
    /// Each item's id, in request order.
    pub items: Vec<Uuid>,
    /// Their `created_at`, as [`Assigned::created_at`].
    pub created_at: DateTime<Utc>,
}

/// The ids of a batch of `contents`: with an `Idempotency-Key`, derived
/// from the key (item `i` from the key and `i`, in a namespace apart from
/// single POSTs) and bound to this batch before it is published; without
/// one, random. Errors as [`message_id`].
pub async fn batch_ids(
    state: &AppState,
    req: &HttpRequest,
    contents: &[String],
    callback_url: Option<&str>,
    kinds: &[Kind],
    schedules: &[Option<String>],
) -> Result<BatchIds, ApiError> {
    let Some(key) = key(req)? else {
        return Ok(BatchIds {
            batch: Uuid::new_v4(),
            items: contents.iter().map(|_| Uuid::new_v4()).collect(),
            created_at: now(),
        });
    };
    let callback = callback_part(callback_url);
    let kinds: Vec<String> = kinds
        .iter()
        .enumerate()
        .filter_map(|(i, k)| kind_part(Some(i), k))
        .collect();
    let schedules: Vec<String> = schedules
        .iter()
        .enumerate()
        .filter_map(|(i, s)| schedule_part(Some(i), s.as_deref()))
        .collect();
    let parts = contents
        .iter()
        .map(String::as_str)
        .chain(callback.as_deref())
        .chain(kinds.iter().map(String::as_str))
        .chain(schedules.iter().map(String::as_str));
    let binding = bind(state, Scope::Batch, &key, fingerprint(Scope::Batch, parts)).await?;
    let name = name_of(&key, &binding);
    Ok(BatchIds {
        batch: Uuid::new_v5(&BATCH_ID_NAMESPACE, name.as_bytes()),
        items: (0..contents.len())
            .map(|i| batch_item_id(&name, i))
            .collect(),
        created_at: binding.created_at,
    })
}

/// The validated `Idempotency-Key` of `req`, if it has one.
fn key(req: &HttpRequest) -> Result<Option<String>, ApiError> {
    let Some(value) = req.headers().get(HEADER) else {
        return Ok(None);
    };
    let key = value
        .to_str()
        .ok()
        .filter(|k| is_valid_key(k))
        .ok_or_else(|| {
            ApiError::BadRequest(format!(
                "{HEADER} must be 1 to {MAX_LEN} visible ASCII characters (no spaces)"
            ))
        })?;
    Ok(Some(key.to_owned()))
}

/// What the OpenAPI document states (`pattern: ^[!-~]+$`, 1 to
/// [`MAX_LEN`]): visible ASCII, no spaces, no controls.
pub fn is_valid_key(key: &str) -> bool {
    (1..=MAX_LEN).contains(&key.len()) && key.bytes().all(|b| (b'!'..=b'~').contains(&b))
}

/// The message id for the key of a single `POST /messages` bound before
/// keys expired (`timed_ids = false`): the key's alone.
pub fn id_for_key(key: &str) -> Uuid {
    Uuid::new_v5(&NAMESPACE, key.as_bytes())
}

/// What ids derive from: the key, and for bindings since keys expire the
/// time it was bound (microseconds since the epoch; a visible-ASCII key
/// holds no NUL, so no two pairs share a name).
fn name_of(key: &str, binding: &Binding) -> String {
    if binding.timed_ids {
        format!("{key}\u{0}{}", binding.created_at.timestamp_micros())
    } else {
        key.to_owned()
    }
}

/// The message id of a single `POST /messages` with `key`, bound as `binding`.
pub fn id_for_binding(key: &str, binding: &Binding) -> Uuid {
    id_for_key(&name_of(key, binding))
}

/// The message id the live binding of `key` (single `POST /messages`)
/// gives, if the key is bound (used less than `IDEMPOTENCY_KEY_TTL` ago).
pub async fn bound_id(state: &AppState, key: &str) -> Result<Option<Uuid>, ApiError> {
    let ttl = state.idempotency_key_ttl;
    let owned = key.to_owned();
    let binding = state
        .with_db(move |conn| {
            Ok(shared::db::idempotency_keys::find(
                conn,
                Scope::Message.as_str(),
                &owned,
                ttl,
            )?)
        })
        .await?;
    Ok(binding.map(|b| id_for_binding(key, &b)))
}

/// The id of item `index` of a batch posted with `key`.
fn batch_item_id(key: &str, index: usize) -> Uuid {
    Uuid::new_v5(&BATCH_NAMESPACE, format!("{key}/{index}").as_bytes())
}

/// SHA-256 of the canonical request: the endpoint and the contents it
/// would publish, each length-prefixed so that no two requests share an
/// encoding. Fields the endpoint ignores (anything but `content`) and JSON
/// formatting do not count: they change nothing that is stored.
fn fingerprint<'a>(scope: Scope, contents: impl IntoIterator<Item = &'a str>) -> [u8; 32] {
    let mut hash = Sha256::new();
    hash.update(scope.as_str().as_bytes());
    hash.update([0]);
    for content in contents {
        hash.update((content.len() as u64).to_be_bytes());
        hash.update(content.as_bytes());
    }
    hash.finalize().into()
}

/// The callback URL as one more fingerprinted part. It starts with NUL,
/// which no content may hold, so it can never equal a message's content.
fn callback_part(url: Option<&str>) -> Option<String> {
    url.map(|u| format!("\u{0}callback_url:{u}"))
}

/// The kind as one more fingerprinted part (of item `index` of a batch),
/// none for `default`, so that a key first used before kinds existed keeps
/// its fingerprint. It starts with NUL, as [`callback_part`].
fn kind_part(index: Option<usize>, kind: &Kind) -> Option<String> {
    if kind.is_default() {
        return None;
    }
    Some(match index {
        None => format!("\u{0}kind:{kind}"),
        Some(i) => format!("\u{0}kind:{i}:{kind}"),
    })
}

/// The schedule as asked (`deliver_at=...` or `delay_seconds=...`) as one
/// more fingerprinted part, none for a message sent at once (so earlier
/// keys keep their fingerprints). It starts with NUL, as [`callback_part`].
fn schedule_part(index: Option<usize>, asked: Option<&str>) -> Option<String> {
    let asked = asked?;
    Some(match index {
        None => format!("\u{0}schedule:{asked}"),
        Some(i) => format!("\u{0}schedule:{i}:{asked}"),
    })
}

/// Bind `key` to `fingerprint` (first use, or the last binding expired),
/// or check that it is bound to it already (a retry). A key bound to
/// another request is a 422.
async fn bind(
    state: &AppState,
    scope: Scope,
    key: &str,
    fingerprint: [u8; 32],
) -> Result<Binding, ApiError> {
    let owned_key = key.to_owned();
    let ttl = state.idempotency_key_ttl;
    let bound = state
        .with_db(move |conn| {
            Ok(shared::db::idempotency_keys::bind(
                conn,
                &NewIdempotencyKey {
                    scope: scope.as_str(),
                    key: &owned_key,
                    fingerprint: &fingerprint,
                },
                ttl,
            )?)
        })
        .await?;
    if bound.fingerprint == fingerprint {
        Ok(bound)
    } else {
        Err(ApiError::Unprocessable(format!(
            "{HEADER} {key:?} was already used with a different request; \
             send a new message with a new key"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_key_same_id_different_key_different_id() {
        assert_eq!(id_for_key("order-17"), id_for_key("order-17"));
        assert_ne!(id_for_key("order-17"), id_for_key("order-18"));
    }

    #[test]
    fn a_key_bound_again_gives_new_ids_and_an_old_binding_the_old_ones() {
        let at = |micros| Binding {
            fingerprint: vec![],
            created_at: DateTime::from_timestamp_micros(micros).unwrap(),
            timed_ids: true,
        };
        let (first, second) = (at(1_000_000), at(2_000_000));
        assert_eq!(id_for_binding("k", &first), id_for_binding("k", &first));
        assert_ne!(id_for_binding("k", &first), id_for_binding("k", &second));
        let legacy = Binding {
            timed_ids: false,
            ..first
        };
        assert_eq!(id_for_binding("k", &legacy), id_for_key("k"));
    }

    #[test]
    fn keys_are_visible_ascii_without_spaces() {
        assert!(is_valid_key("order-17/a:b"));
        assert!(!is_valid_key(""));
        assert!(!is_valid_key("a b"));
        assert!(!is_valid_key("a\tb"));
        assert!(!is_valid_key("é"));
        assert!(is_valid_key(&"k".repeat(MAX_LEN)));
        assert!(!is_valid_key(&"k".repeat(MAX_LEN + 1)));
    }

    #[test]
    fn batch_items_do_not_collide_with_single_keys() {
        assert_ne!(batch_item_id("K", 1), id_for_key("K/1"));
        assert_ne!(batch_item_id("K", 0), batch_item_id("K", 1));
    }

    #[test]
    fn fingerprint_tells_requests_apart() {
        let one = fingerprint(Scope::Message, ["ab"]);
        assert_eq!(one, fingerprint(Scope::Message, ["ab"]));
        assert_ne!(one, fingerprint(Scope::Batch, ["ab"]));
        assert_ne!(
            fingerprint(Scope::Batch, ["a", "b"]),
            fingerprint(Scope::Batch, ["ab"])
        );
    }
}
