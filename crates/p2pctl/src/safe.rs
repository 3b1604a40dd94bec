//! Terminal safety (SPEC §11): text that other people chose — messages,
//! broadcasts, user names, anything the daemon relays from the server or a
//! peer — is shown with its control characters made visible, so nobody can
//! move the cursor, rewrite lines, set the window title or write the
//! clipboard (OSC 52) through our output.
//!
//! Every escaped character is written as Rust writes it with
//! `char::escape_unicode`: `\u{1b}` for ESC, `\u{9b}` for the C1 CSI,
//! `\u{202e}` for RIGHT-TO-LEFT OVERRIDE. What is escaped:
//!
//! - C0 controls U+0000–U+001F and DEL U+007F (ESC starts every escape
//!   sequence; CR and BS rewrite what is on the line; BEL rings);
//! - C1 controls U+0080–U+009F (some terminals read U+009B as CSI and
//!   U+009D as OSC, with no ESC at all);
//! - the bidi embeddings, overrides and isolates U+202A–U+202E and
//!   U+2066–U+2069, which reorder the rest of the line and can make text
//!   look like something it is not ("Trojan Source").
//!
//! A message body ([`text`]) keeps its own line breaks and tabs, which are
//! legitimate and harmless: a newline is printed as a newline followed by
//! [`CONTINUATION`], so a message cannot fake a line that looks like the
//! start of another entry. Everything else ([`line`]: names, times, status
//! fields, error messages) must stay on one line, so newlines and tabs are
//! escaped there too.
//!
//! The escaped form is for reading, not for round-tripping (a literal
//! backslash is left alone); `--json` output carries the exact text.

use std::fmt;

/// What follows a newline inside a message body: a message's second line
/// starts indented, so it can never pass for a new entry of its own (those
/// start at the first column).
pub(crate) const CONTINUATION: &str = "    ";

/// Whether `c` would be escaped in any context: a character that can change
/// what a terminal shows other than by printing itself.
pub(crate) fn is_unsafe(c: char) -> bool {
    matches!(c,
        '\u{0}'..='\u{1f}' | '\u{7f}'..='\u{9f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// One line of foreign text (a name, a time, an error message): every
/// [`is_unsafe`] character escaped, newlines and tabs included.
pub(crate) fn line(s: &str) -> Escaped<'_> {
    Escaped {
        s,
        multi_line: false,
    }
}

/// A message or broadcast body: like [`line`], but a newline stays a line
/// break (followed by [`CONTINUATION`]) and a tab stays a tab.
pub(crate) fn text(s: &str) -> Escaped<'_> {
    Escaped {
        s,
        multi_line: true,
    }
}

/// Foreign text that prints safely; made by [`line`] or [`text`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Escaped<'a> {
    s: &'a str,
    multi_line: bool,
}

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Copy runs of safe characters in one write; most text has no
        // escapes at all.
        let mut rest = self.s;
        while let Some((at, c)) = rest.char_indices().find(|&(_, c)| is_unsafe(c)) {
            f.write_str(&rest[..at])?;
            match c {
                '\n' if self.multi_line => {
                    f.write_str("\n")?;
                    f.write_str(CONTINUATION)?;
                }
                '\t' if self.multi_line => f.write_str("\t")?,
                c => write!(f, "{}", c.escape_unicode())?,
            }
            rest = &rest[at + c.len_utf8()..];
        }
        f.write_str(rest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Characters that must never reach the terminal from [`text`].
    fn forbidden_in_text(c: char) -> bool {
        is_unsafe(c) && c != '\n' && c != '\t'
    }

    #[test]
    fn attacks_are_made_visible() {
        let attack =
            "\u{1b}[2K\r\u{1b}]0;owned\u{7}\u{1b}]52;c;aGk=\u{1b}\\\u{8}\u{9b}31m\u{202e}gpj.exe";
        assert_eq!(
            line(attack).to_string(),
            r"\u{1b}[2K\u{d}\u{1b}]0;owned\u{7}\u{1b}]52;c;aGk=\u{1b}\\u{8}\u{9b}31m\u{202e}gpj.exe"
        );
        assert_eq!(text(attack).to_string(), line(attack).to_string());
    }

    #[test]
    fn message_lines_stay_lines_but_are_indented() {
        assert_eq!(
            text("first\nsecond\tcolumn").to_string(),
            "first\n    second\tcolumn"
        );
        assert_eq!(
            line("first\nsecond\t").to_string(),
            r"first\u{a}second\u{9}"
        );
        assert_eq!(text("crlf\r\n").to_string(), "crlf\\u{d}\n    ");
    }

    #[test]
    fn unicode_that_is_not_a_control_is_kept() {
        let s = "é😀 שלום \u{a0}\u{2028} a literal \\u{1b} stays";
        assert_eq!(line(s).to_string(), s);
        // Bidi marks (not overrides) are ordinary RTL text.
        assert_eq!(line("\u{200f}").to_string(), "\u{200f}");
    }

    proptest! {
        #[test]
        fn output_never_carries_a_control(s in any::<String>()) {
            let one = line(&s).to_string();
            prop_assert!(!one.chars().any(is_unsafe), "{:?}", one);
            let body = text(&s).to_string();
            prop_assert!(!body.chars().any(forbidden_in_text), "{:?}", body);
            // Every line break of a body is one of the message's own, indented.
            prop_assert_eq!(body.matches('\n').count(), s.matches('\n').count());
            for l in body.split('\n').skip(1) {
                prop_assert!(l.starts_with(CONTINUATION));
            }
        }

        #[test]
        fn plain_printable_text_is_unchanged(s in "[^\\p{Cc}\u{202a}-\u{202e}\u{2066}-\u{2069}]*") {
            prop_assert_eq!(line(&s).to_string(), s.clone());
            prop_assert_eq!(text(&s).to_string(), s);
        }

        #[test]
        fn biased_towards_controls(s in "[\u{0}-\u{a0}\u{2028}-\u{206f}a-z]{0,64}") {
            let body = text(&s).to_string();
            prop_assert!(!body.chars().any(forbidden_in_text), "{:?}", body);
            prop_assert!(!line(&s).to_string().chars().any(is_unsafe));
        }
    }
}
