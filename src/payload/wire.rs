//! Protobuf wire-format primitives: varints, tags, field spans and length prefixes.

use super::WalkError;

pub const WIRE_VARINT: u8 = 0;
pub const WIRE_FIXED64: u8 = 1;
pub const WIRE_LEN: u8 = 2;
pub const WIRE_START_GROUP: u8 = 3;
pub const WIRE_END_GROUP: u8 = 4;
pub const WIRE_FIXED32: u8 = 5;

/// Deepest nesting of groups skipped as unknown fields.
const MAX_GROUP_DEPTH: u32 = 64;

/// Reads a varint at `*pos`, advancing it.
#[inline]
pub fn read_varint(buf: &[u8], pos: &mut usize) -> Result<u64, WalkError> {
    let mut value: u64 = 0;
    for shift in 0..10 {
        let Some(&byte) = buf.get(*pos) else {
            return Err(WalkError::malformed("truncated varint"));
        };
        *pos += 1;
        value |= u64::from(byte & 0x7f) << (shift * 7);
        if byte < 0x80 {
            return Ok(value);
        }
    }
    Err(WalkError::malformed("varint longer than 10 bytes"))
}

/// Number of bytes `value` takes as a varint.
pub fn varint_len(value: u64) -> usize {
    let bits = 64 - (value | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

pub fn write_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

pub fn write_tag(out: &mut Vec<u8>, field: u32, wire_type: u8) {
    write_varint(out, (u64::from(field) << 3) | u64::from(wire_type));
}

pub fn write_len_field(out: &mut Vec<u8>, field: u32, bytes: &[u8]) {
    write_tag(out, field, WIRE_LEN);
    write_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// One field as found on the wire.
#[derive(Debug, Clone, Copy)]
pub struct Field<'a> {
    pub number: u32,
    pub wire_type: u8,
    /// Offset of the field's first byte (its tag) in the message.
    pub start: usize,
    /// Offset just past the tag.
    pub tag_end: usize,
    /// For length-delimited fields, the content; otherwise empty.
    pub content: &'a [u8],
    /// For varint fields, the value.
    pub varint: u64,
}

/// Iterates over the fields of one message, validating the framing as it goes.
pub struct FieldReader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> FieldReader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    /// Offset just past the last field returned.
    pub fn position(&self) -> usize {
        self.pos
    }

    #[inline]
    pub fn next_field(&mut self) -> Result<Option<Field<'a>>, WalkError> {
        if self.pos >= self.buf.len() {
            return Ok(None);
        }
        let start = self.pos;
        let (number, wire_type) = read_tag(self.buf, &mut self.pos)?;
        let mut field = Field {
            number,
            wire_type,
            start,
            tag_end: self.pos,
            content: &[],
            varint: 0,
        };
        match wire_type {
            WIRE_VARINT => field.varint = read_varint(self.buf, &mut self.pos)?,
            WIRE_FIXED64 => self.advance(8)?,
            WIRE_FIXED32 => self.advance(4)?,
            WIRE_LEN => {
                let len = read_varint(self.buf, &mut self.pos)?;
                let len = usize::try_from(len).map_err(|_| WalkError::malformed("length overflows"))?;
                let content_start = self.pos;
                self.advance(len)?;
                field.content = &self.buf[content_start..self.pos];
            }
            WIRE_START_GROUP => skip_group(self.buf, &mut self.pos, number, 1)?,
            WIRE_END_GROUP => return Err(WalkError::malformed("end-group tag without a start")),
            _ => unreachable!("read_tag rejects other wire types"),
        }
        Ok(Some(field))
    }

    fn advance(&mut self, len: usize) -> Result<(), WalkError> {
        match self.pos.checked_add(len) {
            Some(end) if end <= self.buf.len() => {
                self.pos = end;
                Ok(())
            }
            _ => Err(WalkError::malformed("field runs past the end of its message")),
        }
    }
}

#[inline]
fn read_tag(buf: &[u8], pos: &mut usize) -> Result<(u32, u8), WalkError> {
    let tag = read_varint(buf, pos)?;
    let number = tag >> 3;
    let wire_type = (tag & 7) as u8;
    if number == 0 || number > u64::from(u32::MAX >> 3) {
        return Err(WalkError::malformed("invalid field number"));
    }
    if wire_type > WIRE_FIXED32 {
        return Err(WalkError::malformed("invalid wire type"));
    }
    Ok((number as u32, wire_type))
}

/// Skips the fields of a group up to and including its matching end tag.
fn skip_group(buf: &[u8], pos: &mut usize, group_number: u32, depth: u32) -> Result<(), WalkError> {
    if depth > MAX_GROUP_DEPTH {
        return Err(WalkError::TooDeep { limit: MAX_GROUP_DEPTH });
    }
    loop {
        if *pos >= buf.len() {
            return Err(WalkError::malformed("unterminated group"));
        }
        let (number, wire_type) = read_tag(buf, pos)?;
        let skip = match wire_type {
            WIRE_VARINT => {
                read_varint(buf, pos)?;
                0
            }
            WIRE_FIXED64 => 8,
            WIRE_FIXED32 => 4,
            WIRE_LEN => {
                usize::try_from(read_varint(buf, pos)?).map_err(|_| WalkError::malformed("length overflows"))?
            }
            WIRE_START_GROUP => {
                skip_group(buf, pos, number, depth + 1)?;
                0
            }
            _ if number == group_number => return Ok(()),
            _ => return Err(WalkError::malformed("mismatched end-group tag")),
        };
        match pos.checked_add(skip) {
            Some(end) if end <= buf.len() => *pos = end,
            _ => return Err(WalkError::malformed("field runs past the end of its group")),
        }
    }
}

/// Writes a length-delimited body produced by `write_body`, prefixed with its length, and
/// returns the offset in `out` where the body starts.
///
/// The prefix is sized from `expected_len` and moved only when the body's real length
/// needs a different number of bytes, so nested messages are written once, in place.
pub fn write_length_prefixed<E>(
    out: &mut Vec<u8>,
    expected_len: usize,
    write_body: impl FnOnce(&mut Vec<u8>) -> Result<(), E>,
) -> Result<usize, E> {
    let reserved = varint_len(expected_len as u64);
    let prefix_at = out.len();
    out.resize(prefix_at + reserved, 0);
    write_body(out)?;
    let body_len = out.len() - prefix_at - reserved;
    let needed = varint_len(body_len as u64);
    if needed != reserved {
        let body_start = prefix_at + reserved;
        if needed > reserved {
            out.resize(out.len() + (needed - reserved), 0);
            out.copy_within(body_start..body_start + body_len, prefix_at + needed);
        } else {
            out.copy_within(body_start..body_start + body_len, prefix_at + needed);
            out.truncate(prefix_at + needed + body_len);
        }
    }
    let mut value = body_len as u64;
    for byte in &mut out[prefix_at..prefix_at + needed] {
        *byte = (value as u8 & 0x7f) | 0x80;
        value >>= 7;
    }
    out[prefix_at + needed - 1] &= 0x7f;
    Ok(prefix_at + needed)
}
