//! List membership for segments: `object: "list:<name>"` makes a model's rows the members of
//! a static (MANUAL) HubSpot contact list, through the Lists API v3.
//!
//! - the list is found by name (`GET /crm/v3/lists/object-type-id/0-1/name/{name}`, not case
//!   sensitive) or created as a MANUAL contact list (`POST /crm/v3/lists`) on the first write;
//!   an active (DYNAMIC) list is refused, as HubSpot decides its members from its filters.
//! - rows are matched to contacts by `match_on` (a unique-value contact property, such as
//!   `email`) with `batch/read`, giving record ids.
//! - upsert / insert: `PUT /crm/v3/lists/{listId}/memberships/add` with the record ids; a row
//!   whose contact does not exist is rejected with HubSpot's `OBJECT_NOT_FOUND` reason.
//! - mirror deletes: `PUT /crm/v3/lists/{listId}/memberships/remove`; a contact that no
//!   longer exists is no longer a member, which is what was asked.

use std::collections::BTreeMap;

use reqwest::Method;
use serde_json::{Value as Json, json};

use super::request::{self, BatchResponse, key_value};
use super::{Answer, HubSpotDestination, Row, refused_status};
use crate::destination::{BatchOutcome, ObjectSchema, SyncShape, WriteBatch, WriteOp};
use crate::error::DestinationError;

/// The prefix of a list object: `list:<name>`.
pub const PREFIX: &str = "list:";
/// The object type id of contacts, the records a `list:` sync adds.
pub const CONTACTS_TYPE_ID: &str = "0-1";

/// The list name of a `list:<name>` object (trimmed; empty when no name follows the prefix),
/// or `None` for other objects.
pub fn list_name(object: &str) -> Option<&str> {
    object.strip_prefix(PREFIX).map(str::trim)
}

/// What a list sync may be asked to do, checked before anything is sent.
pub fn check_list_sync(name: &str, sync: &SyncShape<'_>) -> Result<(), String> {
    if name.is_empty() {
        return Err(
            "`object: list:` needs the list's name\n  hint: object: \"list:High value at risk\""
                .into(),
        );
    }
    let [key] = sync.key_fields else {
        return Err(format!(
            "list `{name}` matches contacts on one unique property (match_on: email); match_on names {} fields",
            sync.key_fields.len()
        ));
    };
    let extra: Vec<&str> = sync
        .fields
        .iter()
        .map(String::as_str)
        .filter(|f| f != key)
        .collect();
    if !extra.is_empty() {
        return Err(format!(
            "list `{name}` holds members, not values: map only the match field `{key}`; {} would go nowhere\n  hint: mapping: {{<email column>: {key}}}; to set contact properties too, add a second sync of the model to `object: contacts`",
            extra
                .iter()
                .map(|f| format!("`{f}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if sync.op == WriteOp::Update {
        return Err(format!(
            "list `{name}`: `operation: update` has no meaning for list membership\n  hint: use `operation: upsert` (the default): a row adds its contact to the list"
        ));
    }
    if sync.removal == Some(WriteOp::Clear) {
        return Err(format!(
            "list `{name}`: `on_delete: clear` has no meaning for list membership\n  hint: use `on_delete: delete` (contacts that leave the model leave the list) or `ignore`"
        ));
    }
    Ok(())
}

/// A list as `GET .../name/{name}` and `POST /crm/v3/lists` answer it.
#[derive(Debug, Clone, PartialEq)]
pub struct ListInfo {
    pub id: String,
    pub processing_type: String,
}

impl ListInfo {
    /// `{"list": {"listId": "123", "processingType": "MANUAL", ...}}`.
    pub fn parse(body: &str) -> Option<Self> {
        let json: Json = serde_json::from_str(body).ok()?;
        let list = &json["list"];
        let id = match &list["listId"] {
            Json::String(s) => s.clone(),
            Json::Number(n) => n.to_string(),
            _ => return None,
        };
        Some(Self {
            id,
            processing_type: list["processingType"].as_str().unwrap_or("").to_owned(),
        })
    }
}

/// The record ids a membership answer says are missing (`recordIdsMissing`).
pub fn missing_ids(body: &str) -> Vec<String> {
    let json: Json = serde_json::from_str(body).unwrap_or(Json::Null);
    json["recordIdsMissing"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| match v {
            Json::String(s) => Some(s.clone()),
            Json::Number(n) => Some(n.to_string()),
            _ => None,
        })
        .collect()
}

/// Path segments are percent-encoded (list names have spaces).
fn encode_segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl HubSpotDestination {
    /// `describe` of a `list:<name>` object: the contact properties a list sync may match on
    /// (those with unique values). An active (DYNAMIC) list of that name is an error; a list
    /// that does not exist yet is fine (the first run creates it).
    pub(super) async fn describe_list(
        &self,
        name: &str,
    ) -> Result<Option<ObjectSchema>, DestinationError> {
        if let Some(list) = self.find_list(name).await? {
            self.check_manual(name, &list)?;
        }
        let path = format!("/crm/v3/properties/{CONTACTS_TYPE_ID}");
        match self.call(Method::GET, &path, None).await? {
            Answer::Accepted { body, .. } => Ok(Some(ObjectSchema {
                fields: self.property_fields(&body, "contacts", true)?,
            })),
            Answer::Refused(reason) => Err(DestinationError::new(format!(
                "hubspot `{}`: cannot read the contact properties for list `{name}` ({reason})",
                self.name
            ))),
        }
    }

    fn check_manual(&self, name: &str, list: &ListInfo) -> Result<(), DestinationError> {
        if matches!(list.processing_type.as_str(), "MANUAL" | "SNAPSHOT") {
            return Ok(());
        }
        Err(DestinationError::new(format!(
            "hubspot `{}`: list `{name}` (id {}) is a {} list: HubSpot decides its members from its filters, so a sync cannot add or remove them\n  hint: name a static (MANUAL) list, or a new name and dbt-activate creates one",
            self.name, list.id, list.processing_type
        )))
    }

    /// The contact list with this name, if any.
    async fn find_list(&self, name: &str) -> Result<Option<ListInfo>, DestinationError> {
        let path = format!(
            "/crm/v3/lists/object-type-id/{CONTACTS_TYPE_ID}/name/{}",
            encode_segment(name)
        );
        match self.call(Method::GET, &path, None).await? {
            Answer::Accepted { body, .. } => ListInfo::parse(&body).map(Some).ok_or_else(|| {
                DestinationError::new(format!(
                    "hubspot `{}`: unreadable answer for list `{name}`: {}",
                    self.name,
                    crate::destination::http::excerpt(&body)
                ))
            }),
            Answer::Refused(reason) if refused_status(&reason) == Some(404) => Ok(None),
            Answer::Refused(reason) => Err(DestinationError::new(format!(
                "hubspot `{}`: cannot look up list `{name}` ({reason})",
                self.name
            ))),
        }
    }

    /// The id of the list, found (or, when `create`, created as a MANUAL contact list) once
    /// per run; `None` when there is no such list and `create` is false.
    async fn list_id(&self, name: &str, create: bool) -> Result<Option<String>, DestinationError> {
        let mut known = self.lists.lock().await;
        if let Some(id) = known.get(name) {
            return Ok(Some(id.clone()));
        }
        let list = match self.find_list(name).await? {
            Some(list) => list,
            None if create => self.create_list(name).await?,
            None => return Ok(None),
        };
        self.check_manual(name, &list)?;
        known.insert(name.to_owned(), list.id.clone());
        Ok(Some(list.id))
    }

    async fn create_list(&self, name: &str) -> Result<ListInfo, DestinationError> {
        let body = json!({
            "name": name,
            "objectTypeId": CONTACTS_TYPE_ID,
            "processingType": "MANUAL",
        });
        match self
            .call(Method::POST, "/crm/v3/lists", Some(&body))
            .await?
        {
            Answer::Accepted { body, .. } => ListInfo::parse(&body).ok_or_else(|| {
                DestinationError::new(format!(
                    "hubspot `{}`: unreadable answer creating list `{name}`: {}",
                    self.name,
                    crate::destination::http::excerpt(&body)
                ))
            }),
            // A create retried after its answer was lost, or a list made meanwhile.
            Answer::Refused(reason) => match self.find_list(name).await? {
                Some(list) => Ok(list),
                None => Err(DestinationError::new(format!(
                    "hubspot `{}`: cannot create list `{name}` ({reason})\n  hint: the private app needs the crm.lists.write scope",
                    self.name
                ))),
            },
        }
    }

    /// Writes a batch of a `list:<name>` sync: adds (upsert, insert) or removes (delete) the
    /// rows' contacts.
    pub(super) async fn write_list(
        &self,
        name: &str,
        batch: &WriteBatch<'_>,
    ) -> Result<BatchOutcome, DestinationError> {
        let action = match batch.op {
            WriteOp::Upsert | WriteOp::Insert => "add",
            WriteOp::Delete => "remove",
            WriteOp::Update | WriteOp::Clear => {
                return Err(DestinationError::new(format!(
                    "hubspot `{}`: list `{name}` takes members only: `{}` is not supported\n  hint: use `operation: upsert` and `on_delete: delete` or `ignore`",
                    self.name,
                    batch.op.as_str()
                )));
            }
        };
        let [key_position] = batch.key_positions else {
            return Err(DestinationError::new(format!(
                "hubspot `{}`: list `{name}` matches contacts on one unique property; match_on names {} fields",
                self.name,
                batch.key_positions.len()
            )));
        };
        let id_property = batch.fields[*key_position].as_str();
        let mut rejected = Vec::new();
        let mut rows: Vec<Row> = Vec::with_capacity(batch.records.len());
        for (i, record) in batch.records.iter().enumerate() {
            match key_value(batch, record) {
                Some(key) => rows.push((i, key)),
                None => rejected.push((
                    i,
                    format!("{id_property} is empty: HubSpot matches contacts by it"),
                )),
            }
        }
        // Removing from a list that does not exist: nobody is a member, nothing to do.
        let Some(list_id) = self.list_id(name, action == "add").await? else {
            return Ok(BatchOutcome { rejected });
        };
        for chunk in rows.chunks(self.config.batch_size) {
            let members = self
                .contact_ids(id_property, chunk, action == "add", &mut rejected)
                .await?;
            self.change_members(&list_id, action, &members, &mut rejected)
                .await?;
        }
        rejected.sort_by_key(|(i, _)| *i);
        Ok(BatchOutcome { rejected })
    }

    /// The contact record id of each row, through `batch/read` by `id_property`. A contact
    /// HubSpot does not have is rejected with HubSpot's reason when `required` (adding), and
    /// skipped otherwise (removing: it is no member).
    async fn contact_ids(
        &self,
        id_property: &str,
        rows: &[Row],
        required: bool,
        rejected: &mut Vec<(usize, String)>,
    ) -> Result<Vec<Row>, DestinationError> {
        let keys: Vec<&str> = rows.iter().map(|(_, k)| k.as_str()).collect();
        let body = request::read_body(id_property, &keys, &[]);
        let answer = self
            .call(
                Method::POST,
                "/crm/v3/objects/contacts/batch/read",
                Some(&body),
            )
            .await?;
        let response = match answer {
            Answer::Accepted { body, .. } => BatchResponse::parse(&body)
                .map_err(|e| format!("unreadable batch/read answer: {e}")),
            Answer::Refused(reason) => Err(reason),
        };
        let response = match response {
            Ok(r) => r,
            Err(reason) => {
                rejected.extend(rows.iter().map(|(i, _)| (*i, reason.clone())));
                return Ok(Vec::new());
            }
        };
        let found: BTreeMap<String, String> = response.ids_by(id_property);
        let mut members = Vec::with_capacity(rows.len());
        for (i, key) in rows {
            match found.get(&key.to_lowercase()) {
                Some(id) => members.push((*i, id.clone())),
                None if required => {
                    let reason = response
                        .errors
                        .iter()
                        .find(|e| e.names.contains(&key.to_lowercase()))
                        .or(response.errors.first())
                        .map_or("not returned by batch/read", |e| e.message.as_str());
                    rejected.push((
                        *i,
                        format!("no contact has {id_property} = {key} (a list sync never creates contacts): {reason}"),
                    ));
                }
                None => {}
            }
        }
        Ok(members)
    }

    /// `PUT /crm/v3/lists/{listId}/memberships/{add|remove}` with the members' record ids.
    async fn change_members(
        &self,
        list_id: &str,
        action: &str,
        members: &[Row],
        rejected: &mut Vec<(usize, String)>,
    ) -> Result<(), DestinationError> {
        if members.is_empty() {
            return Ok(());
        }
        let ids: Vec<&str> = members.iter().map(|(_, id)| id.as_str()).collect();
        let path = format!("/crm/v3/lists/{list_id}/memberships/{action}");
        match self.call(Method::PUT, &path, Some(&json!(ids))).await? {
            Answer::Accepted { body, .. } => {
                // Adding: a record HubSpot calls missing was deleted since it was read.
                // Removing: a missing record is no member, which is what was asked.
                if action == "add" {
                    let missing = missing_ids(&body);
                    for (i, id) in members {
                        if missing.contains(id) {
                            rejected.push((
                                *i,
                                format!("HubSpot did not add contact {id} to list {list_id}: recordIdsMissing (the contact was deleted?)"),
                            ));
                        }
                    }
                }
            }
            Answer::Refused(reason) => {
                rejected.extend(members.iter().map(|(i, _)| (*i, reason.clone())));
            }
        }
        Ok(())
    }
}
