//! Fuzzes the payload schema built at run time: the compiled-in descriptor set edited by the
//! input (fields added, retyped or dropped, methods added), then a message walked by it.
//!
//! Input: a sequence of 4-byte edits, up to a 0xff byte; the rest is a message to walk. Each
//! edit is `[operation, message selector, field number, type selector]`.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use prost::Message as _;
use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{DescriptorProto, FieldDescriptorProto, FileDescriptorSet, MethodDescriptorProto};
use temporal_codec_proxy::payload::schema::{COMPILED_IN_DESCRIPTORS, FieldClass, Schema};
use temporal_codec_proxy::payload::view::{PayloadView, holds_payload};
use temporal_codec_proxy::payload::{PayloadTransformer, WalkError, rewrite};

static COMPILED_IN: LazyLock<FileDescriptorSet> =
    LazyLock::new(|| FileDescriptorSet::decode(COMPILED_IN_DESCRIPTORS).expect("the compiled-in set decodes"));
/// Full names of the compiled-in message types, as field types to point at.
static TYPE_NAMES: LazyLock<Vec<String>> = LazyLock::new(|| {
    let mut names = Vec::new();
    for file in &COMPILED_IN.file {
        for message in &file.message_type {
            names.push(format!(".{}.{}", file.package(), message.name()));
        }
    }
    names
});

fuzz_target!(|data: &[u8]| {
    let (edits, message) = match data.iter().position(|&byte| byte == 0xff) {
        Some(end) => (&data[..end], &data[end + 1..]),
        None => (data, &[][..]),
    };
    let mut set = COMPILED_IN.clone();
    for edit in edits.chunks_exact(4) {
        apply(&mut set, edit);
    }
    // Whatever the edits did, building the schema gives a schema or an error, never a panic.
    let Ok(schema) = Schema::from_descriptors(&set, "fuzzed descriptors".into()) else {
        return;
    };
    let Some(selector) = message.first() else {
        return;
    };
    let message_type = u16::from(*selector) % schema.messages().len() as u16;
    for strict in [false, true] {
        let _ = rewrite(&schema, &message[1..], message_type, &mut Copier { strict });
    }
});

/// Copies every payload, as a codec would rewrite it; `strict` refuses what a request
/// refuses (unknown `Any` types and envelopes, unknown fields holding payloads).
struct Copier {
    strict: bool,
}

impl PayloadTransformer for Copier {
    fn enters(&self, _class: FieldClass) -> bool {
        true
    }

    fn transform(&mut self, payload: &[u8], _view: &PayloadView<'_>, out: &mut Vec<u8>) -> Result<bool, WalkError> {
        out.extend_from_slice(payload);
        Ok(false)
    }

    fn opaque(&self, what: String) -> Result<(), WalkError> {
        if self.strict { Err(WalkError::Opaque(what)) } else { Ok(()) }
    }

    fn unknown_field(&mut self, message: &str, number: u32, content: &[u8]) -> Result<(), WalkError> {
        if self.strict && holds_payload(content) {
            return Err(WalkError::UnknownPayloadField {
                message: message.to_owned(),
                field: number,
            });
        }
        Ok(())
    }
}

fn apply(set: &mut FileDescriptorSet, edit: &[u8]) {
    let [operation, selector, number, type_selector] = [edit[0], edit[1], edit[2], edit[3]];
    let type_name = &TYPE_NAMES[usize::from(type_selector) * TYPE_NAMES.len() / 256];
    let Some(message) = nth_message(set, usize::from(selector)) else {
        return;
    };
    match operation % 4 {
        0 => message.field.push(FieldDescriptorProto {
            name: Some(format!("fuzzed_{number}")),
            number: Some(i32::from(number) + 1),
            label: Some(if type_selector % 2 == 0 { Label::Optional } else { Label::Repeated } as i32),
            r#type: Some(Type::Message as i32),
            type_name: Some(type_name.clone()),
            ..Default::default()
        }),
        1 => {
            let at = usize::from(number) % message.field.len().max(1);
            if let Some(field) = message.field.get_mut(at) {
                field.type_name = Some(type_name.clone());
                field.r#type = Some(Type::Message as i32);
            }
        }
        2 => {
            if !message.field.is_empty() {
                message.field.remove(usize::from(number) % message.field.len());
            }
        }
        _ => {
            if let Some(service) = set.file.iter_mut().flat_map(|file| file.service.iter_mut()).next() {
                service.method.push(MethodDescriptorProto {
                    name: Some(format!("Fuzzed{number}")),
                    input_type: Some(type_name.clone()),
                    output_type: Some(type_name.clone()),
                    client_streaming: Some(type_selector % 3 == 0),
                    server_streaming: Some(type_selector % 5 == 0),
                    ..Default::default()
                });
            }
        }
    }
}

fn nth_message(set: &mut FileDescriptorSet, selector: usize) -> Option<&mut DescriptorProto> {
    let count: usize = set.file.iter().map(|file| file.message_type.len()).sum();
    let mut index = selector * count / 256;
    for file in &mut set.file {
        if index < file.message_type.len() {
            return file.message_type.get_mut(index);
        }
        index -= file.message_type.len();
    }
    None
}
