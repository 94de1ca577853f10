//! The body of `POST /messages/batch`, read as it is parsed: typed and
//! bounded, so that nothing grows with what a client sends beyond what the
//! producer uses. The item count is checked as each item arrives (parsing
//! stops at item 1001, not after materialising two million), an item's
//! fields are read into what they must be (unknown fields are skipped
//! unread), and anything that is not what it must be is kept only as the
//! fact that it is wrong, for the handler's error naming it. The body
//! itself is bounded by `MAX_BATCH_BODY_BYTES` and never decompressed.
//!
//! A new field of the batch items is read in [`Item`]'s map visitor,
//! beside `content`.

use std::fmt;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};
use shared::envelope::{validate_content, ContentError};

use crate::schemas::MAX_BATCH;

/// What a batch body may be, for errors.
pub const SHAPES: &str = "body must be a JSON array of {\"content\": \"...\"} objects, \
    or an object {\"messages\": [...], \"callback_url\": \"...\"}";

/// A batch body: the array form, or the object form with its callback.
#[derive(Debug)]
pub struct BatchBody {
    /// The items, at most [`MAX_BATCH`], in order.
    pub items: Vec<Item>,
    /// The object form's `callback_url`, as sent.
    pub callback_url: Scalar,
}

/// One item as sent: an object with the fields the producer reads, or
/// not an object at all.
#[derive(Debug)]
pub enum Item {
    /// A JSON object.
    Object {
        /// Its `content`.
        content: Scalar,
        /// Its `kind`.
        kind: Scalar,
        /// `deliver_at` and `delay_seconds` as sent (read by
        /// `schedule::hold::requested`, which names what is wrong).
        deliver_at: Option<serde_json::Value>,
        /// See `deliver_at`.
        delay_seconds: Option<serde_json::Value>,
    },
    /// Anything else (its value is skipped, not kept).
    NotAnObject,
}

/// A field's value, kept only if it is a string.
#[derive(Debug, Default, PartialEq, Eq)]
pub enum Scalar {
    /// The field is not there.
    #[default]
    Absent,
    /// `null`.
    Null,
    /// A string.
    Text(String),
    /// A number, a boolean, an array or an object (skipped, not kept).
    Other,
}

/// A field that must be a string was another JSON value.
#[derive(Debug, PartialEq, Eq)]
pub struct NotAString;

impl Scalar {
    /// The text of a field that must be a string, or `None` when absent
    /// or null.
    pub fn optional_text(self) -> Result<Option<String>, NotAString> {
        match self {
            Scalar::Absent | Scalar::Null => Ok(None),
            Scalar::Text(text) => Ok(Some(text)),
            Scalar::Other => Err(NotAString),
        }
    }
}

impl Item {
    /// The item's content, checked as a single message's is.
    pub fn content(&mut self) -> Result<String, ContentError> {
        let content = match self {
            Item::Object { content, .. } => std::mem::take(content),
            Item::NotAnObject => Scalar::Other,
        };
        match content.optional_text() {
            Ok(Some(text)) => validate_content(&text).map(|()| text),
            Ok(None) => Err(ContentError::Missing),
            Err(NotAString) => Err(ContentError::NotAString),
        }
    }
}

impl Item {
    /// The item's `kind` as JSON (absent: `None`), for the configured
    /// kinds' check.
    pub fn kind(&self) -> Option<serde_json::Value> {
        match self {
            Item::Object { kind, .. } => match kind {
                Scalar::Absent => None,
                Scalar::Null => Some(serde_json::Value::Null),
                Scalar::Text(text) => Some(serde_json::Value::String(text.clone())),
                Scalar::Other => Some(serde_json::Value::Bool(false)),
            },
            Item::NotAnObject => None,
        }
    }
}

impl Item {
    /// The item's `deliver_at` and `delay_seconds`, as sent.
    pub fn schedule(&self) -> (Option<&serde_json::Value>, Option<&serde_json::Value>) {
        match self {
            Item::Object {
                deliver_at,
                delay_seconds,
                ..
            } => (deliver_at.as_ref(), delay_seconds.as_ref()),
            Item::NotAnObject => (None, None),
        }
    }
}

impl<'de> Deserialize<'de> for BatchBody {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(BodyVisitor)
    }
}

struct BodyVisitor;

impl<'de> Visitor<'de> for BodyVisitor {
    type Value = BatchBody;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(SHAPES)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<BatchBody, A::Error> {
        Ok(BatchBody {
            items: ItemsVisitor.visit_seq(seq)?,
            callback_url: Scalar::Absent,
        })
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<BatchBody, A::Error> {
        let mut items = None;
        let mut callback_url = Scalar::Absent;
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "messages" => items = Some(map.next_value_seed(Items)?),
                "callback_url" => callback_url = map.next_value()?,
                unknown => {
                    return Err(de::Error::custom(format!(
                        "unknown field {unknown:?}: {SHAPES}"
                    )))
                }
            }
        }
        let items = items.ok_or_else(|| {
            de::Error::custom("\"messages\" must be an array of {\"content\": \"...\"} objects")
        })?;
        Ok(BatchBody {
            items,
            callback_url,
        })
    }
}

/// The items of either form, counted as they are read.
struct Items;

impl<'de> DeserializeSeed<'de> for Items {
    type Value = Vec<Item>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(ItemsVisitor)
    }
}

struct ItemsVisitor;

impl<'de> Visitor<'de> for ItemsVisitor {
    type Value = Vec<Item>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("\"messages\" must be an array of {\"content\": \"...\"} objects")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<Item>, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Item>()? {
            if items.len() == MAX_BATCH {
                return Err(de::Error::custom(format!(
                    "batch has more than {MAX_BATCH} messages; at most {MAX_BATCH} are allowed"
                )));
            }
            items.push(item);
        }
        Ok(items)
    }
}

impl<'de> Deserialize<'de> for Item {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ItemVisitor)
    }
}

struct ItemVisitor;

impl<'de> Visitor<'de> for ItemVisitor {
    type Value = Item;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a message object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Item, A::Error> {
        let mut content = Scalar::Absent;
        let mut kind = Scalar::Absent;
        let mut deliver_at = None;
        let mut delay_seconds = None;
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "content" => content = map.next_value()?,
                "kind" => kind = map.next_value()?,
                "deliver_at" => deliver_at = Some(map.next_value()?),
                "delay_seconds" => delay_seconds = Some(map.next_value()?),
                // Other fields are ignored, as by a single POST: skipped
                // unread.
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Item::Object {
            content,
            kind,
            deliver_at,
            delay_seconds,
        })
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Item, A::Error> {
        IgnoredAny.visit_seq(seq).map(|_| Item::NotAnObject)
    }

    fn visit_bool<E>(self, _: bool) -> Result<Item, E> {
        Ok(Item::NotAnObject)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Item, E> {
        Ok(Item::NotAnObject)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Item, E> {
        Ok(Item::NotAnObject)
    }

    fn visit_f64<E>(self, _: f64) -> Result<Item, E> {
        Ok(Item::NotAnObject)
    }

    fn visit_str<E>(self, _: &str) -> Result<Item, E> {
        Ok(Item::NotAnObject)
    }

    fn visit_unit<E>(self) -> Result<Item, E> {
        Ok(Item::NotAnObject)
    }
}

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ScalarVisitor)
    }
}

struct ScalarVisitor;

impl<'de> Visitor<'de> for ScalarVisitor {
    type Value = Scalar;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_str<E>(self, text: &str) -> Result<Scalar, E> {
        Ok(Scalar::Text(text.to_owned()))
    }

    fn visit_string<E>(self, text: String) -> Result<Scalar, E> {
        Ok(Scalar::Text(text))
    }

    fn visit_unit<E>(self) -> Result<Scalar, E> {
        Ok(Scalar::Null)
    }

    fn visit_bool<E>(self, _: bool) -> Result<Scalar, E> {
        Ok(Scalar::Other)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Scalar, E> {
        Ok(Scalar::Other)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Scalar, E> {
        Ok(Scalar::Other)
    }

    fn visit_f64<E>(self, _: f64) -> Result<Scalar, E> {
        Ok(Scalar::Other)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Scalar, A::Error> {
        IgnoredAny.visit_seq(seq).map(|_| Scalar::Other)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Scalar, A::Error> {
        IgnoredAny.visit_map(map).map(|_| Scalar::Other)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<BatchBody, String> {
        serde_json::from_str(text).map_err(|e| e.to_string())
    }

    #[test]
    fn both_forms_and_every_kind_of_item() {
        let body =
            parse(r#"[{"content": "a", "extra": [1, {"x": 2}]}, {"content": 1}, {}, "s", null]"#)
                .unwrap();
        let contents: Vec<_> = body.items.into_iter().map(|mut i| i.content()).collect();
        assert_eq!(
            contents,
            vec![
                Ok("a".to_owned()),
                Err(ContentError::NotAString),
                Err(ContentError::Missing),
                Err(ContentError::NotAString),
                Err(ContentError::NotAString),
            ]
        );
        let body =
            parse(r#"{"callback_url": "https://x.example/", "messages": [{"content": "a"}]}"#)
                .unwrap();
        assert_eq!(body.items.len(), 1);
        assert_eq!(body.callback_url, Scalar::Text("https://x.example/".into()));
        assert!(parse(r#"{"content": "x"}"#)
            .unwrap_err()
            .contains("JSON array"));
        assert!(parse(r#"{"callback_url": null}"#)
            .unwrap_err()
            .contains("\"messages\" must be"));
        assert!(parse(r#"{"messages": 3}"#)
            .unwrap_err()
            .contains("\"messages\" must be"));
        assert!(parse("7").unwrap_err().contains("JSON array"));
    }

    #[test]
    fn counting_stops_at_the_first_item_too_many() {
        let ok = format!("[{}0]", "0,".repeat(MAX_BATCH - 1));
        assert_eq!(parse(&ok).unwrap().items.len(), MAX_BATCH);
        // Everything after item 1001, valid or not, is never read.
        let over = format!("[{}0, this is not JSON", "0,".repeat(MAX_BATCH));
        let err = parse(&over).unwrap_err();
        assert!(err.contains("at most 1000"), "{err}");
    }
}
