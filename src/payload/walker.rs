//! Rewrites every payload of a message on the wire and copies all other bytes verbatim.

use super::WalkError;
use super::schema::{FieldClass, MessageIndex, MessageKind, MessageSchema, NamedType, Schema};
use super::view::{ENCODING_KEY, PAYLOAD_DATA, PayloadView, map_entry, write_metadata_entry};
use super::wire::{FieldReader, WIRE_LEN, WIRE_VARINT, write_len_field, write_length_prefixed, write_tag};

/// Deepest message nesting the walker follows in a request (`Failure.cause` chains,
/// nested `Any`s), counted from the request message itself.
///
/// Stricter than [`RESPONSE_MAX_DEPTH`] on purpose: what a request stores comes back inside
/// a deeper envelope (a history event inside a history inside a poll or history response,
/// or a history blob), so a message the proxy lets in must never be one it cannot read
/// back. Both stay well below what a 2 MiB thread stack holds (tokio's workers and its
/// blocking pool), in debug builds too.
pub const REQUEST_MAX_DEPTH: u32 = 64;
/// Deepest message nesting the walker follows in a response.
pub const RESPONSE_MAX_DEPTH: u32 = 100;

/// The server's limits on `UserMetadata` payloads, measured on the whole payload.
pub const USER_METADATA_SUMMARY_LIMIT: usize = 400;
pub const USER_METADATA_DETAILS_LIMIT: usize = 20_000;

const SYSTEM_NEXUS_ENDPOINT: &[u8] = b"__temporal_system";
const ANY_TYPE_URL: u32 = 1;
const ANY_VALUE: u32 = 2;
const DATA_BLOB_ENCODING: u32 = 1;
const DATA_BLOB_DATA: u32 = 2;
const ENCODING_TYPE_PROTO3: u64 = 1;
const ENCODING_TYPE_JSON: u64 = 2;

/// What SDKs put in `Failure.message` when its texts travel in `encoded_attributes`.
pub const ENCODED_FAILURE_MESSAGE: &[u8] = b"Encoded failure";
const JSON_PLAIN: &[u8] = b"json/plain";
/// The Nexus failure metadata that says its details are a Temporal `Failure` in protojson.
const NEXUS_FAILURE_TYPE_KEY: &[u8] = b"type";
const NEXUS_FAILURE_TYPE_TEMPORAL: &[u8] = b"temporal.api.failure.v1.Failure";

/// What happens to the plain-string `message` and `stack_trace` of a `Failure`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureTexts {
    /// Left as they are.
    Keep,
    /// Moved into an `encoded_attributes` payload `{"message", "stack_trace"}` (the SDKs'
    /// "encode common attributes" convention), which is then transformed like any other.
    Conceal,
    /// Put back from an `encoded_attributes` payload that the transformer changed.
    Reveal,
}

/// The `encoded_attributes` payload's JSON document.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct EncodedFailureTexts {
    message: String,
    #[serde(default)]
    stack_trace: String,
    /// Base64 of the `encoded_attributes` payload a failure already had when it also
    /// carried plaintext texts: both are sealed together, and both come back as they were.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    encoded_attributes: Option<String>,
}

/// A field holding a message in the protobuf JSON mapping.
#[derive(Clone, Copy)]
struct JsonField {
    number: u32,
    message_type: MessageIndex,
    /// Names the field in errors.
    what: &'static str,
}

/// Field numbers of `Failure`'s texts.
#[derive(Clone, Copy)]
struct FailureFields {
    message: u32,
    stack_trace: u32,
    encoded_attributes: u32,
}

/// What happens to each payload the walker finds.
pub trait PayloadTransformer {
    /// Whether payloads reached through a field of this class are transformed at all.
    fn enters(&self, class: FieldClass) -> bool;

    /// Writes the replacement for `payload` (a serialized `Payload`) to `out`, and tells
    /// whether it differs from the payload.
    fn transform(&mut self, payload: &[u8], view: &PayloadView<'_>, out: &mut Vec<u8>) -> Result<bool, WalkError>;

    /// What happens to failure messages and stack traces.
    fn failure_texts(&self) -> FailureTexts {
        FailureTexts::Keep
    }

    /// Decides on a part of a message that may hold payloads the walker cannot find: an
    /// `Any` of a type the schema does not have, a history blob of an unknown encoding, a
    /// system envelope of an unknown message type. `Ok` copies it unchanged, as reading a
    /// response may; a request must refuse it, or its payloads would go out in plaintext.
    fn opaque(&self, _what: String) -> Result<(), WalkError> {
        Ok(())
    }

    /// Decides on a length-delimited field that the schema's API version does not have,
    /// found in `message`, a type that can hold payloads: a newer client's field may be a
    /// payload the walker cannot see. `Ok` copies it unchanged.
    fn unknown_field(&mut self, _message: &str, _number: u32, _content: &[u8]) -> Result<(), WalkError> {
        Ok(())
    }

    /// Deepest nesting followed; anything deeper fails with [`WalkError::TooDeep`].
    fn max_depth(&self) -> u32 {
        RESPONSE_MAX_DEPTH
    }

    /// Largest rewritten message; the walk stops with [`WalkError::TooLarge`] as soon as its
    /// output passes it, so a message of many small payloads cannot grow without bound.
    fn max_output_bytes(&self) -> usize {
        usize::MAX
    }
}

/// Rewrites the payloads in `message`, a serialized message of `schema`'s type `message_type`.
pub fn rewrite<T: PayloadTransformer>(
    schema: &Schema,
    message: &[u8],
    message_type: MessageIndex,
    transformer: &mut T,
) -> Result<Vec<u8>, WalkError> {
    let max_output = transformer.max_output_bytes();
    let mut out = Vec::with_capacity((message.len() + message.len() / 8 + 64).min(max_output));
    let mut walk = Walk {
        schema,
        max_depth: transformer.max_depth(),
        max_output,
        transformer,
    };
    walk.message(message, message_type, FieldClass::Always, false, 0, &mut out)?;
    if out.len() > max_output {
        return Err(WalkError::TooLarge { limit: max_output });
    }
    Ok(out)
}

struct Walk<'s, 't, T> {
    schema: &'s Schema,
    transformer: &'t mut T,
    max_depth: u32,
    max_output: usize,
}

/// How one field of a message is treated.
#[derive(Clone, Copy)]
struct Descend {
    target: MessageIndex,
    class: FieldClass,
    system: bool,
}

impl<'s, T: PayloadTransformer> Walk<'s, '_, T> {
    fn message(
        &mut self,
        input: &[u8],
        message_type: MessageIndex,
        class: FieldClass,
        system: bool,
        depth: u32,
        out: &mut Vec<u8>,
    ) -> Result<bool, WalkError> {
        if depth > self.max_depth {
            return Err(WalkError::TooDeep { limit: self.max_depth });
        }
        let schema: &'s MessageSchema = self.schema.message(message_type);
        let checked = Some(schema);
        match schema.kind {
            MessageKind::Payload => self.payload(input, class, system, depth, out),
            MessageKind::Fields => self.fields(input, out, depth, checked, by_rule(schema)),
            MessageKind::NexusCommand { endpoint_field } => {
                let system_endpoint = last_len_field(input, endpoint_field)? == Some(SYSTEM_NEXUS_ENDPOINT);
                self.fields(input, out, depth, checked, |number| {
                    let rule = schema.rule(number)?;
                    Some(Descend {
                        target: rule.target,
                        class: rule.class,
                        system: system_endpoint && rule.class == FieldClass::NexusOperationInput,
                    })
                })
            }
            MessageKind::Failure {
                message_field,
                stack_trace_field,
                encoded_attributes_field,
            } => {
                let layout = FailureFields {
                    message: message_field,
                    stack_trace: stack_trace_field,
                    encoded_attributes: encoded_attributes_field,
                };
                let descend = by_rule(schema);
                match self.transformer.failure_texts() {
                    FailureTexts::Keep => self.fields(input, out, depth, checked, descend),
                    FailureTexts::Conceal => self.conceal_failure_texts(input, layout, depth, out, schema, descend),
                    FailureTexts::Reveal => self.reveal_failure_texts(input, layout, depth, out, schema, descend),
                }
            }
            MessageKind::NexusFailure {
                metadata_field,
                details_field,
            } => {
                let descend = by_rule(schema);
                if carries_temporal_failure(input, metadata_field)? {
                    self.json_field::<temporalio_protos::temporal::api::failure::v1::Failure>(
                        input,
                        JsonField {
                            number: details_field,
                            message_type: self.schema.failure_type,
                            what: "Nexus failure details",
                        },
                        depth,
                        out,
                        checked,
                        descend,
                    )
                } else {
                    self.fields(input, out, depth, checked, descend)
                }
            }
            MessageKind::Any => {
                let type_url = last_len_field(input, ANY_TYPE_URL)?.unwrap_or_default();
                let type_name = std::str::from_utf8(type_url)
                    .map(|url| url.rsplit('/').next().unwrap_or(url))
                    .unwrap_or_default();
                match self.schema.named_type(type_name) {
                    NamedType::Payloads(target) => self.fields(input, out, depth, None, |number| {
                        (number == ANY_VALUE).then_some(Descend {
                            target,
                            class,
                            system: false,
                        })
                    }),
                    NamedType::Unknown if last_len_field(input, ANY_VALUE)?.is_some_and(|value| !value.is_empty()) => {
                        self.transformer.opaque(format!(
                            "google.protobuf.Any of type {:?}, which this proxy's Temporal API does not have",
                            String::from_utf8_lossy(type_url)
                        ))?;
                        out.extend_from_slice(input);
                        Ok(false)
                    }
                    NamedType::PayloadFree | NamedType::Unknown => {
                        out.extend_from_slice(input);
                        Ok(false)
                    }
                }
            }
            MessageKind::HistoryBlob { history } => match last_varint_field(input, DATA_BLOB_ENCODING)? {
                Some(ENCODING_TYPE_PROTO3) => self.fields(input, out, depth, None, |number| {
                    (number == DATA_BLOB_DATA).then_some(Descend {
                        target: history,
                        class,
                        system: false,
                    })
                }),
                Some(ENCODING_TYPE_JSON) => self.json_field::<temporalio_protos::temporal::api::history::v1::History>(
                    input,
                    JsonField {
                        number: DATA_BLOB_DATA,
                        message_type: history,
                        what: "JSON history blob",
                    },
                    depth,
                    out,
                    None,
                    |_| None,
                ),
                encoding => {
                    if last_len_field(input, DATA_BLOB_DATA)?.is_some_and(|data| !data.is_empty()) {
                        self.transformer.opaque(format!(
                            "a history blob of encoding {}, neither PROTO3 nor JSON",
                            encoding.map_or("unset".to_owned(), |encoding| encoding.to_string())
                        ))?;
                    }
                    out.extend_from_slice(input);
                    Ok(false)
                }
            },
        }
    }

    /// Copies `input` field by field, descending into the fields `descend` selects; tells
    /// whether anything changed. With `checked`, the message's schema (whose rules
    /// `descend` must follow), a length-delimited field it does not know goes to the
    /// transformer first.
    fn fields(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
        depth: u32,
        checked: Option<&MessageSchema>,
        descend: impl Fn(u32) -> Option<Descend>,
    ) -> Result<bool, WalkError> {
        let mut reader = FieldReader::new(input);
        let mut copied_to = 0;
        let mut changed = false;
        while let Some(field) = reader.next_field()? {
            // With the message's schema at hand, most fields are settled by one bit: every
            // `descend` used with one finds rules in that schema alone.
            if checked.is_some_and(|message| message.is_plain(field.number)) {
                continue;
            }
            let Some(rule) = descend(field.number) else {
                if let Some(message) = checked
                    && field.wire_type == WIRE_LEN
                    && !message.known.contains(field.number)
                {
                    self.transformer
                        .unknown_field(&message.name, field.number, field.content)?;
                }
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

    /// Moves a failure's message and stack trace into a new `encoded_attributes` payload,
    /// leaving "Encoded failure" as its message, as SDKs do when told to encode them.
    fn conceal_failure_texts(
        &mut self,
        input: &[u8],
        layout: FailureFields,
        depth: u32,
        out: &mut Vec<u8>,
        failure: &MessageSchema,
        descend: impl Fn(u32) -> Option<Descend>,
    ) -> Result<bool, WalkError> {
        let found = FailureTextFields::find(input, layout)?;
        let already_encoded = found.encoded_attributes_count > 0;
        // A failure whose texts an SDK already moved says "Encoded failure"; one that also
        // kept a real message or a stack trace beside its encoded attributes would send
        // those in plaintext.
        let message_is_plaintext =
            !(found.message.is_empty() || already_encoded && found.message == ENCODED_FAILURE_MESSAGE);
        if !message_is_plaintext && found.stack_trace.is_empty() {
            return self.fields(input, out, depth, Some(failure), descend);
        }
        let sealed_attributes = if already_encoded {
            let merged = all_len_fields(input, layout.encoded_attributes)?;
            // Sealed unread, it must still be a payload, or it could not be read back.
            PayloadView::parse(&merged)?;
            use base64::Engine as _;
            Some(base64::engine::general_purpose::STANDARD.encode(merged))
        } else {
            None
        };
        let texts = EncodedFailureTexts {
            message: utf8_text(found.message, "message")?,
            stack_trace: utf8_text(found.stack_trace, "stack_trace")?,
            encoded_attributes: sealed_attributes,
        };
        let json = serde_json::to_vec(&texts).map_err(|_| WalkError::Encryption)?;
        let mut payload = Vec::with_capacity(json.len() + 32);
        write_metadata_entry(&mut payload, ENCODING_KEY, JSON_PLAIN);
        write_len_field(&mut payload, PAYLOAD_DATA, &json);

        let mut message_written = found.message.is_empty();
        if message_written {
            write_len_field(out, layout.message, ENCODED_FAILURE_MESSAGE);
        }
        let mut reader = FieldReader::new(input);
        while let Some(field) = reader.next_field()? {
            if field.number == layout.message {
                if !message_written {
                    write_len_field(out, layout.message, ENCODED_FAILURE_MESSAGE);
                    message_written = true;
                }
            } else if field.number != layout.stack_trace && field.number != layout.encoded_attributes {
                self.fields(
                    &input[field.start..reader.position()],
                    out,
                    depth,
                    Some(failure),
                    &descend,
                )?;
            }
        }
        write_tag(out, layout.encoded_attributes, WIRE_LEN);
        write_length_prefixed(out, payload.len() + 64, |out| {
            // The texts were moved to be encrypted: a transformer that left them as they
            // are would send them out in plaintext.
            match self.message(
                &payload,
                self.schema.payload_type,
                FieldClass::Always,
                false,
                depth + 1,
                out,
            )? {
                true => Ok(()),
                false => Err(WalkError::Encryption),
            }
        })?;
        Ok(true)
    }

    /// Undoes [`Self::conceal_failure_texts`] once the transformer has decoded the
    /// `encoded_attributes` payload: the texts go back to their own fields, the stack trace
    /// before the first field numbered after it, as serializers order them.
    fn reveal_failure_texts(
        &mut self,
        input: &[u8],
        layout: FailureFields,
        depth: u32,
        out: &mut Vec<u8>,
        failure: &MessageSchema,
        descend: impl Fn(u32) -> Option<Descend>,
    ) -> Result<bool, WalkError> {
        let found = FailureTextFields::find(input, layout)?;
        // Several occurrences of a message field merge; that rare shape is walked as it is.
        if found.encoded_attributes_count != 1 || found.message != ENCODED_FAILURE_MESSAGE {
            return self.fields(input, out, depth, Some(failure), descend);
        }
        let mut decoded = Vec::with_capacity(found.encoded_attributes.len());
        let decoded_changed = self.message(
            found.encoded_attributes,
            self.schema.payload_type,
            FieldClass::Always,
            false,
            depth + 1,
            &mut decoded,
        )?;
        let restored = if decoded_changed {
            decoded_failure_texts(&decoded)
        } else {
            None
        };

        let mut message_written = false;
        let mut stack_trace_written = false;
        let mut reader = FieldReader::new(input);
        while let Some(field) = reader.next_field()? {
            let span = &input[field.start..reader.position()];
            let Some(texts) = &restored else {
                if field.number != layout.encoded_attributes {
                    self.fields(span, out, depth, Some(failure), &descend)?;
                } else if decoded_changed {
                    write_tag(out, layout.encoded_attributes, WIRE_LEN);
                    write_length_prefixed(out, decoded.len(), |out| {
                        out.extend_from_slice(&decoded);
                        Ok::<_, WalkError>(())
                    })?;
                } else {
                    // Walked once already and unchanged: the original bytes are the answer.
                    out.extend_from_slice(span);
                }
                continue;
            };
            if field.number > layout.stack_trace && !stack_trace_written {
                write_nonempty_text(out, layout.stack_trace, &texts.stack_trace);
                stack_trace_written = true;
            }
            if field.number == layout.message {
                if !message_written {
                    write_nonempty_text(out, layout.message, &texts.message);
                    message_written = true;
                }
            } else if field.number == layout.encoded_attributes {
                if let Some(original) = &texts.encoded_attributes {
                    self.restore_encoded_attributes(original, layout, depth, out)?;
                }
            } else if field.number != layout.stack_trace {
                self.fields(span, out, depth, Some(failure), &descend)?;
            }
        }
        if let Some(texts) = &restored
            && !stack_trace_written
        {
            write_nonempty_text(out, layout.stack_trace, &texts.stack_trace);
        }
        Ok(decoded_changed)
    }

    /// Writes back the `encoded_attributes` payload a failure had beside plaintext texts,
    /// decrypting it too where it was under a held key.
    fn restore_encoded_attributes(
        &mut self,
        original: &str,
        layout: FailureFields,
        depth: u32,
        out: &mut Vec<u8>,
    ) -> Result<(), WalkError> {
        use base64::Engine as _;
        let original = base64::engine::general_purpose::STANDARD
            .decode(original)
            .map_err(|_| WalkError::malformed("sealed failure attributes are not base64"))?;
        write_tag(out, layout.encoded_attributes, WIRE_LEN);
        write_length_prefixed(out, original.len(), |out| {
            self.message(
                &original,
                self.schema.payload_type,
                FieldClass::Always,
                false,
                depth + 1,
                out,
            )
            .map(drop)
        })
        .map(drop)
    }

    /// Copies `input` field by field, descending as `descend` says, except that the message
    /// held as protojson in `json` is rewritten and written back as protojson. `M` is that
    /// message's generated type.
    fn json_field<M>(
        &mut self,
        input: &[u8],
        json: JsonField,
        depth: u32,
        out: &mut Vec<u8>,
        checked: Option<&MessageSchema>,
        descend: impl Fn(u32) -> Option<Descend>,
    ) -> Result<bool, WalkError>
    where
        M: prost::Message + Default + serde::Serialize + serde::de::DeserializeOwned,
    {
        let mut changed = false;
        let mut reader = FieldReader::new(input);
        while let Some(field) = reader.next_field()? {
            let span = &input[field.start..reader.position()];
            if field.number != json.number || field.wire_type != WIRE_LEN {
                changed |= self.fields(span, out, depth, checked, &descend)?;
                continue;
            }
            let rewritten = self
                .rewrite_protojson::<M>(field.content, json.message_type, depth)
                .map_err(|reason| WalkError::malformed(format!("{}: {reason}", json.what)))?;
            match rewritten {
                Some(text) => {
                    write_len_field(out, json.number, &text);
                    changed = true;
                }
                None => out.extend_from_slice(span),
            }
        }
        Ok(changed)
    }

    /// Rewrites a message of type `message_type` given in the protobuf JSON mapping; `None`
    /// when nothing in it changed.
    fn rewrite_protojson<M>(
        &mut self,
        json: &[u8],
        message_type: MessageIndex,
        depth: u32,
    ) -> Result<Option<Vec<u8>>, String>
    where
        M: prost::Message + Default + serde::Serialize + serde::de::DeserializeOwned,
    {
        let message: M =
            serde_json::from_slice(json).map_err(|error| format!("not valid JSON for the message: {error}"))?;
        let mut rewritten = Vec::new();
        let changed = self
            .message(
                &message.encode_to_vec(),
                message_type,
                FieldClass::Always,
                false,
                depth + 1,
                &mut rewritten,
            )
            .map_err(|error| error.to_string())?;
        if !changed {
            return Ok(None);
        }
        let rewritten = M::decode(rewritten.as_slice()).map_err(|error| error.to_string())?;
        serde_json::to_vec(&rewritten)
            .map(Some)
            .map_err(|error| error.to_string())
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
        if out.len() > self.max_output {
            return Err(WalkError::TooLarge { limit: self.max_output });
        }
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
        let message_type = view.message_type.unwrap_or_default();
        let inner = std::str::from_utf8(message_type).map_or(NamedType::Unknown, |name| self.schema.named_type(name));
        match inner {
            NamedType::Payloads(target) => self.fields(input, out, depth, None, |number| {
                (number == PAYLOAD_DATA).then_some(Descend {
                    target,
                    class: FieldClass::Always,
                    system: false,
                })
            }),
            NamedType::Unknown => {
                self.transformer.opaque(format!(
                    "a __temporal_system Nexus envelope of message type {:?}, which this proxy's Temporal API does not have",
                    String::from_utf8_lossy(message_type)
                ))?;
                out.extend_from_slice(input);
                Ok(false)
            }
            NamedType::PayloadFree => {
                out.extend_from_slice(input);
                Ok(false)
            }
        }
    }
}

/// Whether a Nexus failure's metadata says its details are a Temporal `Failure`.
fn carries_temporal_failure(input: &[u8], metadata_field: u32) -> Result<bool, WalkError> {
    let mut reader = FieldReader::new(input);
    let mut carries = false;
    while let Some(field) = reader.next_field()? {
        if field.number == metadata_field && field.wire_type == WIRE_LEN {
            let (key, value) = map_entry(field.content)?;
            if key == NEXUS_FAILURE_TYPE_KEY {
                carries = value == NEXUS_FAILURE_TYPE_TEMPORAL;
            }
        }
    }
    Ok(carries)
}

/// Where a failure's texts are, by the last occurrence of each field.
struct FailureTextFields<'a> {
    message: &'a [u8],
    stack_trace: &'a [u8],
    encoded_attributes: &'a [u8],
    encoded_attributes_count: usize,
}

impl<'a> FailureTextFields<'a> {
    fn find(input: &'a [u8], layout: FailureFields) -> Result<Self, WalkError> {
        let mut found = FailureTextFields {
            message: &[],
            stack_trace: &[],
            encoded_attributes: &[],
            encoded_attributes_count: 0,
        };
        let mut reader = FieldReader::new(input);
        while let Some(field) = reader.next_field()? {
            let is_len = field.wire_type == WIRE_LEN;
            if field.number == layout.message && is_len {
                found.message = field.content;
            } else if field.number == layout.stack_trace && is_len {
                found.stack_trace = field.content;
            } else if field.number == layout.encoded_attributes {
                found.encoded_attributes = field.content;
                found.encoded_attributes_count += 1;
            }
        }
        Ok(found)
    }
}

fn utf8_text(bytes: &[u8], field: &str) -> Result<String, WalkError> {
    String::from_utf8(bytes.to_vec()).map_err(|_| WalkError::malformed(format!("failure {field} is not UTF-8")))
}

/// The texts in a decoded `encoded_attributes` payload, when it holds exactly those.
fn decoded_failure_texts(payload: &[u8]) -> Option<EncodedFailureTexts> {
    let view = PayloadView::parse(payload).ok()?;
    if view.encoding != Some(JSON_PLAIN) || view.metadata_entries != 1 {
        return None;
    }
    serde_json::from_slice(view.data).ok()
}

fn write_nonempty_text(out: &mut Vec<u8>, field: u32, text: &str) {
    if !text.is_empty() {
        write_len_field(out, field, text.as_bytes());
    }
}

/// Descends into the fields that have a rule, as the rule says.
fn by_rule(schema: &MessageSchema) -> impl Fn(u32) -> Option<Descend> + '_ {
    move |number| {
        let rule = schema.rule(number)?;
        Some(Descend {
            target: rule.target,
            class: rule.class,
            system: false,
        })
    }
}

/// The contents of every occurrence of message field `number`, one after another: what
/// protobuf merges them into.
fn all_len_fields(input: &[u8], number: u32) -> Result<Vec<u8>, WalkError> {
    let mut merged = Vec::new();
    let mut reader = FieldReader::new(input);
    while let Some(field) = reader.next_field()? {
        if field.number != number {
            continue;
        }
        if field.wire_type != WIRE_LEN {
            return Err(WalkError::malformed(format!(
                "field {number} should be length-delimited but has wire type {}",
                field.wire_type
            )));
        }
        merged.extend_from_slice(field.content);
    }
    Ok(merged)
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
