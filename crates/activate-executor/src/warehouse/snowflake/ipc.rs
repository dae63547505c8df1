//! Reads an Arrow IPC stream as Snowflake (and fakesnow) send it. Snowflake declares the
//! children of its timestamp structs non-nullable and leaves garbage under a null parent, which
//! Arrow's reader rejects; the schema is therefore read first and every field made nullable
//! before the record batches are decoded against it.

use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::ArrayRef;
use arrow_array::RecordBatch;
use arrow_ipc::MessageHeader;
use arrow_schema::{ArrowError, DataType, Field, Fields, Schema};

fn nullable(field: &Field) -> Field {
    let data_type = match field.data_type() {
        DataType::Struct(children) => DataType::Struct(
            children
                .iter()
                .map(|c| Arc::new(nullable(c)))
                .collect::<Fields>(),
        ),
        other => other.clone(),
    };
    field.clone().with_data_type(data_type).with_nullable(true)
}

fn bad(message: &str) -> ArrowError {
    ArrowError::IpcError(message.to_owned())
}

/// Every record batch of the stream in `bytes`.
pub fn read_stream(bytes: &[u8]) -> Result<Vec<RecordBatch>, ArrowError> {
    let mut at = 0usize;
    let mut schema: Option<Arc<Schema>> = None;
    let no_dictionaries: HashMap<i64, ArrayRef> = HashMap::new();
    let mut batches = Vec::new();
    let word = |at: usize| -> Result<u32, ArrowError> {
        let b = bytes
            .get(at..at + 4)
            .ok_or_else(|| bad("truncated Arrow stream"))?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    while at + 4 <= bytes.len() {
        let mut length = word(at)?;
        at += 4;
        if length == 0xFFFF_FFFF {
            length = word(at)?;
            at += 4;
        }
        if length == 0 {
            break; // end of stream
        }
        let meta = bytes
            .get(at..at + length as usize)
            .ok_or_else(|| bad("truncated Arrow message"))?;
        at += length as usize;
        let message = arrow_ipc::root_as_message(meta)
            .map_err(|e| bad(&format!("invalid Arrow message: {e}")))?;
        let body_len =
            usize::try_from(message.bodyLength()).map_err(|_| bad("negative Arrow body length"))?;
        let body = bytes
            .get(at..at + body_len)
            .ok_or_else(|| bad("truncated Arrow body"))?;
        at += body_len;
        match message.header_type() {
            MessageHeader::Schema => {
                let fb = message
                    .header_as_schema()
                    .ok_or_else(|| bad("Arrow schema message without a schema"))?;
                let declared = arrow_ipc::convert::fb_to_schema(fb);
                let fields: Vec<Field> = declared.fields().iter().map(|f| nullable(f)).collect();
                schema = Some(Arc::new(Schema::new_with_metadata(
                    fields,
                    declared.metadata().clone(),
                )));
            }
            MessageHeader::RecordBatch => {
                let schema = schema
                    .clone()
                    .ok_or_else(|| bad("Arrow record batch before the schema"))?;
                let fb = message
                    .header_as_record_batch()
                    .ok_or_else(|| bad("Arrow record batch message without a batch"))?;
                let buffer = arrow_buffer_from(body);
                batches.push(arrow_ipc::reader::read_record_batch(
                    &buffer,
                    fb,
                    schema,
                    &no_dictionaries,
                    None,
                    &message.version(),
                )?);
            }
            MessageHeader::DictionaryBatch => {
                return Err(bad("dictionary-encoded Arrow results are not supported"));
            }
            _ => {}
        }
    }
    Ok(batches)
}

fn arrow_buffer_from(body: &[u8]) -> arrow_buffer::Buffer {
    arrow_buffer::Buffer::from(body.to_vec())
}
