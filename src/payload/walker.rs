//! Rewrites every payload of a message on the wire and copies all other bytes verbatim.

use super::WalkError;
use super::schema::{self, FieldClass, FieldRule, MessageIndex, MessageKind};
use super::view::{PAYLOAD_DATA, PayloadView};
use super::wire::{FieldReader, WIRE_LEN, WIRE_VARINT, write_length_prefixed};

/// Deepest message nesting the walker follows (`Failure.cause` chains, nested `Any`s).
pub const MAX_DEPTH: u32 = 100;

/// The server's limits on `UserMetadata` payloads, measured on the whole payload.
pub const USER_METADATA_SUMMARY_LIMIT: usize = 400;
pub const USER_METADATA_DETAILS_LIMIT: usize = 20_000;

const SYSTEM_NEXUS_ENDPOINT: &[u8] = b"__temporal_system";
const ANY_TYPE_URL: u32 = 1;
const ANY_VALUE: u32 = 2;
const DATA_BLOB_ENCODING: u32 = 1;
const DATA_BLOB_DATA: u32 = 2;
const ENCODING_TYPE_PROTO3: u64 = 1;

/// What happens to each payload the walker finds.
pub trait PayloadTransformer {
    /// Whether payloads reached through a field of this class are transformed at all.
    fn enters(&self, class: FieldClass) -> bool;

    /// Writes the replacement for `payload` (a serialized `Payload`) to `out`, and tells
    /// whether it differs from the payload.
    fn transform(&mut self, payload: &[u8], view: &PayloadView<'_>, out: &mut Vec<u8>) -> Result<bool, WalkError>;
}

/// Rewrites the payloads in `message`, a serialized message of type `message_type`.
pub fn rewrite<T: PayloadTransformer>(
    message: &[u8],
    message_type: MessageIndex,
    transformer: &mut T,
) -> Result<Vec<u8>, WalkError> {
    let mut out = Vec::with_capacity(message.len() + message.len() / 8 + 64);
    Walk { transformer }.message(message, message_type, FieldClass::Always, false, 0, &mut out)?;
    Ok(out)
}

struct Walk<'t, T> {
    transformer: &'t mut T,
}

/// How one field of a message is treated.
#[derive(Clone, Copy)]
struct Descend {
    target: MessageIndex,
    class: FieldClass,
    system: bool,
}

impl<T: PayloadTransformer> Walk<'_, T> {
    fn message(
        &mut self,
        input: &[u8],
        message_type: MessageIndex,
        class: FieldClass,
        system: bool,
        depth: u32,
        out: &mut Vec<u8>,
    ) -> Result<bool, WalkError> {
        if depth > MAX_DEPTH {
            return Err(WalkError::TooDeep);
        }
        let schema = schema::message(message_type);
        match schema.kind {
            MessageKind::Payload => self.payload(input, class, system, depth, out),
            MessageKind::Fields => self.fields(input, out, depth, |number| {
                let rule = find_rule(schema.fields, number)?;
                Some(Descend {
                    target: rule.target,
                    class: rule.class,
                    system: false,
                })
            }),
            MessageKind::NexusCommand { endpoint_field } => {
                let system_endpoint = last_len_field(input, endpoint_field)? == Some(SYSTEM_NEXUS_ENDPOINT);
                self.fields(input, out, depth, |number| {
                    let rule = find_rule(schema.fields, number)?;
                    Some(Descend {
                        target: rule.target,
                        class: rule.class,
                        system: system_endpoint && rule.class == FieldClass::NexusOperationInput,
                    })
                })
            }
            MessageKind::Any => {
                let inner = last_len_field(input, ANY_TYPE_URL)?
                    .and_then(|url| std::str::from_utf8(url).ok())
                    .map(|url| url.rsplit('/').next().unwrap_or(url))
                    .and_then(schema::message_by_name);
                match inner {
                    Some(target) => self.fields(input, out, depth, |number| {
                        (number == ANY_VALUE).then_some(Descend {
                            target,
                            class,
                            system: false,
                        })
                    }),
                    None => {
                        out.extend_from_slice(input);
                        Ok(false)
                    }
                }
            }
            MessageKind::HistoryBlob { history } => {
                if last_varint_field(input, DATA_BLOB_ENCODING)? == Some(ENCODING_TYPE_PROTO3) {
                    self.fields(input, out, depth, |number| {
                        (number == DATA_BLOB_DATA).then_some(Descend {
                            target: history,
                            class,
                            system: false,
                        })
                    })
                } else {
                    out.extend_from_slice(input);
                    Ok(false)
                }
            }
        }
    }

    /// Copies `input` field by field, descending into the fields `descend` selects; tells
    /// whether anything changed.
    fn fields(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
        depth: u32,
        descend: impl Fn(u32) -> Option<Descend>,
    ) -> Result<bool, WalkError> {
        let mut reader = FieldReader::new(input);
        let mut copied_to = 0;
        let mut changed = false;
        while let Some(field) = reader.next_field()? {
            let Some(rule) = descend(field.number) else {
                continue;
            };
            if !self.transformer.enters(rule.class) {
                continue;
            }
            if field.wire_type != WIRE_LEN {
                return Err(WalkError::malformed(format!(
                    "field {} should be length-delimited but has wire type {}",
                    field.number, field.wire_type
                )));
            }
            out.extend_from_slice(&input[copied_to..field.start]);
            let span_start = out.len();
            let field_end = reader.position();
            out.extend_from_slice(&input[field.start..field.tag_end]);
            let mut child_changed = false;
            write_length_prefixed(out, field.content.len(), |out| {
                child_changed = self.message(field.content, rule.target, rule.class, rule.system, depth + 1, out)?;
                Ok::<_, WalkError>(())
            })?;
            // An unchanged field keeps its exact original bytes, including a non-minimal
            // length, so untouched parts of a message survive byte for byte.
            if !child_changed && out.len() - span_start != field_end - field.start {
                out.truncate(span_start);
                out.extend_from_slice(&input[field.start..field_end]);
            }
            changed |= child_changed;
            copied_to = field_end;
        }
        out.extend_from_slice(&input[copied_to..]);
        Ok(changed)
    }

    fn payload(
        &mut self,
        input: &[u8],
        class: FieldClass,
        system_site: bool,
        depth: u32,
        out: &mut Vec<u8>,
    ) -> Result<bool, WalkError> {
        let view = PayloadView::parse(input)?;
        if system_site || view.system {
            return self.system_envelope(input, &view, depth, out);
        }
        let start = out.len();
        let changed = self.transformer.transform(input, &view, out)?;
        let limit = match class {
            FieldClass::UserMetadataSummary => Some(("summary", USER_METADATA_SUMMARY_LIMIT)),
            FieldClass::UserMetadataDetails => Some(("details", USER_METADATA_DETAILS_LIMIT)),
            _ => None,
        };
        if let Some((field, limit)) = limit {
            let size = out.len() - start;
            if size > limit && size > input.len() {
                return Err(WalkError::UserMetadataTooLarge { field, size, limit });
            }
        }
        Ok(changed)
    }

    /// A system Nexus envelope is executed by the server: it stays readable, and only the
    /// payloads inside the protobuf message it carries are rewritten.
    fn system_envelope(
        &mut self,
        input: &[u8],
        view: &PayloadView<'_>,
        depth: u32,
        out: &mut Vec<u8>,
    ) -> Result<bool, WalkError> {
        let inner = view
            .message_type
            .and_then(|name| std::str::from_utf8(name).ok())
            .and_then(schema::message_by_name);
        match inner {
            Some(target) => self.fields(input, out, depth, |number| {
                (number == PAYLOAD_DATA).then_some(Descend {
                    target,
                    class: FieldClass::Always,
                    system: false,
                })
            }),
            None => {
                out.extend_from_slice(input);
                Ok(false)
            }
        }
    }
}

/// The rule for a field number; `build.rs` sorts each message's rules by number.
#[inline]
fn find_rule(rules: &[FieldRule], number: u32) -> Option<&FieldRule> {
    rules
        .binary_search_by_key(&number, |rule| rule.number)
        .ok()
        .map(|index| &rules[index])
}

/// The last occurrence of a length-delimited field (protobuf: the last one wins).
fn last_len_field(input: &[u8], number: u32) -> Result<Option<&[u8]>, WalkError> {
    let mut found = None;
    let mut reader = FieldReader::new(input);
    while let Some(field) = reader.next_field()? {
        if field.number == number && field.wire_type == WIRE_LEN {
            found = Some(field.content);
        }
    }
    Ok(found)
}

fn last_varint_field(input: &[u8], number: u32) -> Result<Option<u64>, WalkError> {
    let mut found = None;
    let mut reader = FieldReader::new(input);
    while let Some(field) = reader.next_field()? {
        if field.number == number && field.wire_type == WIRE_VARINT {
            found = Some(field.varint);
        }
    }
    Ok(found)
}
