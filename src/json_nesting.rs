//! Refuses JSON nested deeper than a limit, before any recursive parser sees it.

/// JSON nested deeper than the limit a caller set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("JSON is nested deeper than {limit} levels")]
pub struct TooDeep {
    pub limit: usize,
}

/// Checks that no array or object in `json` lies more than `limit` levels deep.
///
/// Recursive-descent parsers spend stack on every level, so a small body of nothing but
/// `[` can exhaust a thread's stack and abort the whole process; this scan keeps a counter
/// instead. It does not validate the JSON: brackets inside strings are skipped, and the
/// parser that runs afterwards reports any other mistake.
pub fn check(json: &[u8], limit: usize) -> Result<(), TooDeep> {
    let mut depth = 0usize;
    let mut at = 0;
    while at < json.len() {
        match json[at] {
            b'"' => at = string_end(json, at + 1),
            b'[' | b'{' => {
                depth += 1;
                if depth > limit {
                    return Err(TooDeep { limit });
                }
                at += 1;
            }
            b']' | b'}' => {
                depth = depth.saturating_sub(1);
                at += 1;
            }
            _ => at += 1,
        }
    }
    Ok(())
}

/// The position just past the closing quote of the string whose contents start at `from`
/// (the end of `json` when it is unterminated).
fn string_end(json: &[u8], mut from: usize) -> usize {
    while let Some(offset) = memchr::memchr2(b'"', b'\\', &json[from..]) {
        let found = from + offset;
        if json[found] == b'"' {
            return found + 1;
        }
        // An escape: the character after the backslash, a quote included, is its own.
        from = found + 2;
        if from >= json.len() {
            return json.len();
        }
    }
    json.len()
}

#[cfg(test)]
mod tests {
    use super::{TooDeep, check};

    #[test]
    fn counts_arrays_and_objects_but_not_brackets_inside_strings() {
        assert_eq!(check(br#"{"payloads":[{"metadata":{"encoding":"e30="}}]}"#, 4), Ok(()));
        assert_eq!(
            check(br#"{"payloads":[{"metadata":{"encoding":"e30="}}]}"#, 3),
            Err(TooDeep { limit: 3 })
        );
        assert_eq!(check(br#"{"a":"[[[[[[[[[[[[[[[[[[[[[[[[[[[["}"#, 2), Ok(()));
        assert_eq!(check(br#"{"a":"quote \" then [[[[[[[[ and \\"}"#, 1), Ok(()));
        assert_eq!(check(br#"["\\", [[["#, 2), Err(TooDeep { limit: 2 }));
        assert_eq!(check(br#""unterminated \"#, 0), Ok(()));
    }

    #[test]
    fn a_million_levels_are_refused_without_recursion() {
        let body = [b"{\"payloads\":[{\"data\":".as_slice(), &vec![b'['; 1_000_000]].concat();
        assert_eq!(check(&body, 32), Err(TooDeep { limit: 32 }));
    }
}
