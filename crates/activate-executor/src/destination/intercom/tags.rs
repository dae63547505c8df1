//! Tags for segments: `object: "tag:<name>"` tags the contacts that are a model's rows with
//! one named Intercom tag, and (in mirror mode) untags the contacts that leave the model.
//!
//! - the tag: `POST /tags {"name": ...}` creates it, or answers the existing tag of that name
//!   (Intercom's tag names are case insensitive), once per run.
//! - each row's contact: `POST /contacts/search` on the `match_on` field (`external_id`,
//!   `email`, or a custom attribute); a tag sync never creates contacts, so a row without a
//!   contact is rejected.
//! - tag: `POST /contacts/{id}/tags {"id": <tag id>}`; untag:
//!   `DELETE /contacts/{contact_id}/tags/{tag_id}` for every matching contact; a contact
//!   already gone (404) holds no tag, which is what was asked.

use reqwest::Method;
use serde_json::{Value as Json, json};

use super::body::{Object, key_text};
use super::client::Answer;
use super::{IntercomDestination, refusal};
use crate::destination::{BatchOutcome, ObjectSchema, SyncShape, WriteBatch, WriteOp};
use crate::error::DestinationError;

/// The prefix of a tag object: `tag:<name>`.
pub const PREFIX: &str = "tag:";

/// The tag name of a `tag:<name>` object (trimmed; empty when no name follows the prefix), or
/// `None` for other objects.
pub fn tag_name(object: &str) -> Option<&str> {
    object.strip_prefix(PREFIX).map(str::trim)
}

/// What a tag sync may be asked to do, checked before anything is sent.
pub fn check_tag_sync(name: &str, sync: &SyncShape<'_>) -> Result<(), String> {
    if name.is_empty() {
        return Err(
            "`object: tag:` needs the tag's name\n  hint: object: \"tag:High value at risk\""
                .into(),
        );
    }
    let [key] = sync.key_fields else {
        return Err(format!(
            "tag `{name}` matches contacts on one field (match_on: external_id or email); match_on names {} fields",
            sync.key_fields.len()
        ));
    };
    let extra: Vec<String> = sync
        .fields
        .iter()
        .filter(|f| *f != key)
        .map(|f| format!("`{f}`"))
        .collect();
    if !extra.is_empty() {
        return Err(format!(
            "tag `{name}` marks contacts, it holds no values: map only the match field `{key}`; {} would go nowhere\n  hint: mapping: {{<column>: {key}}}; to set contact attributes too, add a second sync of the model to `object: contacts`",
            extra.join(", ")
        ));
    }
    if sync.op == WriteOp::Update {
        return Err(format!(
            "tag `{name}`: `operation: update` has no meaning for a tag\n  hint: use `operation: upsert` (the default): a row tags its contact"
        ));
    }
    if sync.removal == Some(WriteOp::Clear) {
        return Err(format!(
            "tag `{name}`: `on_delete: clear` has no meaning for a tag\n  hint: use `on_delete: delete` (contacts that leave the model are untagged) or `ignore`"
        ));
    }
    Ok(())
}

/// The id of a tag object (`{"type": "tag", "id": "17513", "name": ...}`).
pub fn tag_id_of(tag: &Json) -> Option<String> {
    match tag.get("id")? {
        Json::String(s) if !s.is_empty() => Some(s.clone()),
        Json::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

impl IntercomDestination {
    /// `describe` of a `tag:<name>` object: the contact attributes a tag sync may match on.
    pub(super) async fn describe_tag(&self) -> Result<Option<ObjectSchema>, DestinationError> {
        use crate::destination::Destination;
        self.describe(Object::Contacts.path()).await
    }

    /// The tag's id: `POST /tags` finds or creates it by name, once per run.
    async fn tag_id(&self, name: &str) -> Result<String, DestinationError> {
        let mut known = self.tags.lock().await;
        if let Some(id) = known.get(name) {
            return Ok(id.clone());
        }
        let body = json!({ "name": name });
        let id = match self.client.call(Method::POST, "/tags", Some(&body)).await? {
            Answer::Ok(tag) => tag_id_of(&tag).ok_or_else(|| {
                DestinationError::new(format!(
                    "{}: POST /tags answered no tag id for `{name}`: {tag}",
                    self.client.what
                ))
            })?,
            Answer::NotFound(reason) | Answer::Refused { reason, .. } => {
                return Err(DestinationError::new(format!(
                    "{}: cannot create or find tag `{name}` ({reason})",
                    self.client.what
                )));
            }
        };
        known.insert(name.to_owned(), id.clone());
        Ok(id)
    }

    /// Writes a batch of a `tag:<name>` sync: tags (upsert, insert) or untags (delete) the
    /// rows' contacts.
    pub(super) async fn write_tag(
        &self,
        name: &str,
        batch: &WriteBatch<'_>,
    ) -> Result<BatchOutcome, DestinationError> {
        if matches!(batch.op, WriteOp::Update | WriteOp::Clear) {
            return Err(DestinationError::new(format!(
                "{}: tag `{name}` only tags and untags contacts: `{}` is not supported\n  hint: use `operation: upsert` and `on_delete: delete` or `ignore`",
                self.client.what,
                batch.op.as_str()
            )));
        }
        let [key_position] = batch.key_positions else {
            return Err(DestinationError::new(format!(
                "{}: tag `{name}` matches contacts on one field; match_on has {}",
                self.client.what,
                batch.key_positions.len()
            )));
        };
        let tag_id = self.tag_id(name).await?;
        let field = Object::Contacts.search_field(&batch.fields[*key_position]);
        let tag_id = tag_id.as_str();
        let field = field.as_str();
        self.each_record(batch, |record| {
            self.tag_one(batch.op, tag_id, field, &record.values[*key_position])
        })
        .await
    }

    /// Tags or untags the contact of one row; `Ok(Some(reason))` when it cannot be done.
    async fn tag_one(
        &self,
        op: WriteOp,
        tag_id: &str,
        field: &str,
        key: &crate::value::Value,
    ) -> Result<Option<String>, DestinationError> {
        if key.is_null() {
            return Ok(Some(format!("`{field}` is null: nothing to match on")));
        }
        let matched = format!("{field} = {}", key_text(key));
        let ids = match self.search_contacts(field, key).await? {
            Ok(ids) => ids,
            Err(reason) => return Ok(Some(reason)),
        };
        if op == WriteOp::Delete {
            for id in &ids {
                let path = format!("/contacts/{id}/tags/{tag_id}");
                match self.client.call(Method::DELETE, &path, None).await? {
                    // The contact is gone: it holds no tag.
                    Answer::Ok(_) | Answer::NotFound(_) => {}
                    Answer::Refused { reason, .. } => return Ok(Some(reason)),
                }
            }
            return Ok(None);
        }
        match ids.as_slice() {
            [] => Ok(Some(format!(
                "no Intercom contact has {matched} (a tag sync never creates contacts)"
            ))),
            [id] => {
                let path = format!("/contacts/{id}/tags");
                let body = json!({ "id": tag_id });
                Ok(refusal(
                    self.client.call(Method::POST, &path, Some(&body)).await?,
                ))
            }
            many => Ok(Some(format!(
                "{} contacts match {matched}: make the match field unique",
                many.len()
            ))),
        }
    }
}
