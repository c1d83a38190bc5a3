//! A user's locale: a BCP 47 language tag (RFC 5646) in the form messages can use, language,
//! optional script, optional region (`fr`, `fr-CA`, `zh-Hant-TW`, `es-419`), normalised to the
//! canonical case (`fr-ca` → `fr-CA`). Variants, extensions and private-use subtags are refused:
//! templates are chosen by language (then `en`), so they would change nothing. Templates fall
//! back `fr-CA` → `fr` → `en` (see [`crate::templates`]).

use std::fmt;

/// A parsed, normalised locale.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Locale(String);

impl Locale {
    /// Parses a tag; `None` if it is not `language[-Script][-REGION]`.
    #[must_use]
    pub fn parse(raw: &str) -> Option<Self> {
        if raw.len() > 16 {
            return None;
        }
        let mut parts = raw.split(['-', '_']);
        let language = parts.next()?;
        if !(2..=3).contains(&language.len()) || !language.bytes().all(|b| b.is_ascii_alphabetic())
        {
            return None;
        }
        let mut out = language.to_ascii_lowercase();
        let mut rest: Vec<&str> = parts.collect();
        if let Some(script) = rest.first()
            && script.len() == 4
            && script.bytes().all(|b| b.is_ascii_alphabetic())
        {
            out.push('-');
            out.push_str(&script[..1].to_ascii_uppercase());
            out.push_str(&script[1..].to_ascii_lowercase());
            rest.remove(0);
        }
        match rest.as_slice() {
            [] => {}
            [region]
                if (region.len() == 2 && region.bytes().all(|b| b.is_ascii_alphabetic()))
                    || (region.len() == 3 && region.bytes().all(|b| b.is_ascii_digit())) =>
            {
                out.push('-');
                out.push_str(&region.to_ascii_uppercase());
            }
            _ => return None,
        }
        Some(Self(out))
    }

    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Locale {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn language_tags_are_checked_and_normalised() {
        for (raw, want) in [
            ("fr", "fr"),
            ("FR", "fr"),
            ("fr-ca", "fr-CA"),
            ("fr_CA", "fr-CA"),
            ("zh-hant-tw", "zh-Hant-TW"),
            ("zh-Hant", "zh-Hant"),
            ("es-419", "es-419"),
            ("fil", "fil"),
        ] {
            assert_eq!(Locale::parse(raw).map(|l| l.0), Some(want.into()), "{raw}");
        }
        for bad in [
            "",
            "f",
            "french",
            "fr-",
            "fr-C",
            "fr-CAN",
            "fr-1234",
            "de-DE-1996",
            "en-US-u-ca-gregory",
            "x-private",
            "fr CA",
            "<script>",
            "fr-CA-",
            "é",
        ] {
            assert_eq!(Locale::parse(bad), None, "{bad}");
        }
    }
}
