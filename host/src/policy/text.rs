//! Making a string that came out of a policy safe to log, store and send:
//! bounded length, and no control characters (a policy must not be able to
//! forge log lines with newlines, rewrite a terminal with escapes, or hide
//! text behind NULs). Pure.

/// Longest policy text kept anywhere (refusals, reasons, log lines), in bytes
/// before the ellipsis.
pub(super) const MAX_POLICY_TEXT_BYTES: usize = 1024;

/// `text` with every control character replaced by a visible escape (`\n`,
/// `\r`, `\t`, `\u{..}`), so nothing a policy says can start a new log
/// line or drive a terminal, and cut to at most `max` bytes (at a character
/// boundary, ending in `…` when cut).
pub(super) fn sanitize(text: &str, max: usize) -> String {
    const ELLIPSIS: char = '…';
    let room = max.saturating_sub(ELLIPSIS.len_utf8());
    let mut out = String::with_capacity(text.len().min(max));
    // The length of `out` at the last piece that left room for the ellipsis.
    let mut fits = 0;
    let mut buf = [0u8; 4];
    for c in text.chars() {
        let escaped;
        let piece: &str = match c {
            '\n' => "\\n",
            '\r' => "\\r",
            '\t' => "\\t",
            c if is_unsafe(c) => {
                escaped = format!("\\u{{{:x}}}", u32::from(c));
                &escaped
            }
            c => c.encode_utf8(&mut buf),
        };
        if out.len() + piece.len() > max {
            out.truncate(fits);
            out.push(ELLIPSIS);
            return out;
        }
        out.push_str(piece);
        if out.len() <= room {
            fits = out.len();
        }
    }
    out
}

/// Control characters, and the Unicode format characters that reorder or
/// hide text (bidirectional overrides, zero-width joiners, BOM).
fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{200b}'..='\u{200f}' | '\u{2028}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{feff}'
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(
            sanitize("a\nb\r\tc\u{1b}[2J\u{0}\u{202e}d", 100),
            "a\\nb\\r\\tc\\u{1b}[2J\\u{0}\\u{202e}d"
        );
        assert_eq!(sanitize("plain ünïcode ok", 100), "plain ünïcode ok");
    }

    #[test]
    fn long_text_is_cut_on_a_character_boundary() {
        let cut = sanitize(&"é".repeat(1000), 11);
        assert_eq!(cut, format!("{}…", "é".repeat(4)));
        assert!(cut.len() <= 11);
        let escaped = sanitize(&"\n".repeat(100), 9);
        assert_eq!(escaped, "\\n\\n\\n…");
        assert_eq!(sanitize("short", 5), "short");
        assert_eq!(sanitize("", 0), "");
    }
}
