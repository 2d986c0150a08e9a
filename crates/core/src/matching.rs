//! How a key value is normalised before it is compared: the same function
//! runs on the key cells when a table is ingested and on a call's value when
//! it is looked up, so both sides always agree.

use std::borrow::Cow;
use std::str::FromStr;

use phonenumber::country;
use serde::{Deserialize, Serialize};

/// The per-table matching option.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MatchMode {
    /// The trimmed value equals the trimmed key cell.
    #[default]
    Exact,
    /// Equal after Unicode full case folding (`STRASSE` matches `straße`).
    CaseInsensitive,
    /// Equal as E.164 phone numbers, national numbers read in a default region.
    Phone,
    /// The longest key cell that the trimmed value starts with (number
    /// ranges: `+331` beats `+33`).
    Prefix,
    /// [`MatchMode::Prefix`] on phone numbers: the value in E.164, the key
    /// cells as E.164 prefixes (`+33 1`, `0033 1` and, in region FR, `01`
    /// are all `+331`).
    PhonePrefix,
}

impl MatchMode {
    pub fn as_str(self) -> &'static str {
        match self {
            MatchMode::Exact => "exact",
            MatchMode::CaseInsensitive => "case_insensitive",
            MatchMode::Phone => "phone",
            MatchMode::Prefix => "prefix",
            MatchMode::PhonePrefix => "phone_prefix",
        }
    }

    /// A key matches the start of a value, the longest key winning.
    pub fn is_prefix(self) -> bool {
        matches!(self, MatchMode::Prefix | MatchMode::PhonePrefix)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MatcherError {
    #[error("unknown region {0:?}: expected a two-letter ISO 3166 country code such as \"FR\"")]
    UnknownRegion(String),
}

/// A match mode with its resolved default region.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Matcher {
    mode: MatchMode,
    region: Option<country::Id>,
}

impl Matcher {
    /// The region is validated whatever the mode, so a table's settings are
    /// checked once, when they are saved, and not when phone matching is
    /// switched on later.
    pub fn new(mode: MatchMode, region: Option<&str>) -> Result<Matcher, MatcherError> {
        let region = match region.map(str::trim) {
            None | Some("") => None,
            Some(code) => {
                let upper = code.to_ascii_uppercase();
                let valid = upper.len() == 2 && upper.bytes().all(|b| b.is_ascii_uppercase());
                match country::Id::from_str(&upper) {
                    Ok(id) if valid => Some(id),
                    _ => return Err(MatcherError::UnknownRegion(code.to_string())),
                }
            }
        };
        Ok(Matcher { mode, region })
    }

    pub fn mode(&self) -> MatchMode {
        self.mode
    }

    /// The region as given (upper case), if any.
    pub fn region(&self) -> Option<&str> {
        self.region.as_ref().map(|id| id.as_ref())
    }

    /// The comparable form of a raw value, or `None` when there is nothing to
    /// compare: empty after trimming, or (phone mode) not a phone number.
    pub fn normalize<'a>(&self, raw: &'a str) -> Option<Cow<'a, str>> {
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return None;
        }
        match self.mode {
            MatchMode::Exact | MatchMode::Prefix => Some(Cow::Borrowed(trimmed)),
            MatchMode::CaseInsensitive => Some(fold_case(trimmed)),
            MatchMode::Phone | MatchMode::PhonePrefix => {
                let number = phonenumber::parse(self.region, trimmed).ok()?;
                let e164 = phonenumber::format(&number)
                    .mode(phonenumber::Mode::E164)
                    .to_string();
                (!e164.is_empty()).then_some(Cow::Owned(e164))
            }
        }
    }
}

impl Matcher {
    /// The comparable form of a key cell: [`Self::normalize`], except in
    /// `phone_prefix` mode, where a cell is a number's first digits rather
    /// than a number: `+` (or `00`, or the region's national prefix, which
    /// stands for the region's country code) and digits, with spaces,
    /// dashes, dots, slashes and parentheses ignored.
    pub fn normalize_cell<'a>(&self, raw: &'a str) -> Option<Cow<'a, str>> {
        if self.mode != MatchMode::PhonePrefix {
            return self.normalize(raw);
        }
        let digits: String = raw
            .trim()
            .chars()
            .filter(|c| !matches!(c, ' ' | '-' | '.' | '/' | '(' | ')' | '\u{a0}'))
            .collect();
        let international = if let Some(rest) = digits.strip_prefix('+') {
            rest.to_string()
        } else if let Some(rest) = digits.strip_prefix("00") {
            rest.to_string()
        } else {
            let region = self.region.as_ref()?;
            let metadata = phonenumber::metadata::DATABASE.by_id(region.as_ref())?;
            let national = metadata.national_prefix().unwrap_or("");
            let rest = digits.strip_prefix(national).filter(|_| !national.is_empty())?;
            format!("{}{rest}", metadata.country_code())
        };
        if international.is_empty() || !international.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        Some(Cow::Owned(format!("+{international}")))
    }
}

/// Every region code [`Matcher::new`] accepts, in upper case and sorted: the
/// two-letter codes the phone-number library knows.
pub fn known_regions() -> Vec<String> {
    let mut codes = Vec::new();
    for a in 'A'..='Z' {
        for b in 'A'..='Z' {
            let code: String = [a, b].into_iter().collect();
            if country::Id::from_str(&code).is_ok() {
                codes.push(code);
            }
        }
    }
    codes
}

/// Full case folding, borrowing when the text is already folded ASCII (the
/// common case for ids, where allocating per lookup would be wasted).
fn fold_case(s: &str) -> Cow<'_, str> {
    if s.bytes().all(|b| b.is_ascii() && !b.is_ascii_uppercase()) {
        Cow::Borrowed(s)
    } else {
        Cow::Owned(caseless::default_case_fold_str(s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_known_region_is_accepted() {
        let regions = known_regions();
        assert!(regions.len() > 200, "{regions:?}");
        assert!(regions.iter().any(|r| r == "FR"));
        for region in &regions {
            assert!(Matcher::new(MatchMode::Phone, Some(region)).is_ok(), "{region}");
        }
    }

    fn norm(mode: MatchMode, region: Option<&str>, raw: &str) -> Option<String> {
        Matcher::new(mode, region)
            .unwrap()
            .normalize(raw)
            .map(Cow::into_owned)
    }

    #[test]
    fn exact_trims_and_borrows() {
        let m = Matcher::new(MatchMode::Exact, None).unwrap();
        assert!(matches!(m.normalize("  alice "), Some(Cow::Borrowed("alice"))));
        assert_eq!(m.normalize(" \t "), None);
        assert_eq!(norm(MatchMode::Exact, None, "Alice"), Some("Alice".into()));
    }

    #[test]
    fn case_insensitive_uses_full_folding() {
        let ci = |raw| norm(MatchMode::CaseInsensitive, None, raw);
        assert_eq!(ci("STRASSE"), ci("straße"));
        assert_eq!(ci("STRASSE").as_deref(), Some("strasse"));
        assert_eq!(ci(" Alice "), Some("alice".into()));
        assert_eq!(ci("ΣΊΣΥΦΟΣ"), ci("σίσυφος"));
    }

    #[test]
    fn phone_uses_e164_with_the_region() {
        let fr = |raw| norm(MatchMode::Phone, Some("fr"), raw);
        assert_eq!(fr("01 02 03 04 05").as_deref(), Some("+33102030405"));
        assert_eq!(fr("+33102030405").as_deref(), Some("+33102030405"));
        assert_eq!(fr("+33 1 02 03 04 05").as_deref(), Some("+33102030405"));
        assert_eq!(fr("alice"), None);
        assert_eq!(fr(""), None);
        assert_eq!(
            norm(MatchMode::Phone, None, "+1 650 253 0000").as_deref(),
            Some("+16502530000")
        );
    }

    #[test]
    fn phone_prefix_cells_are_e164_prefixes() {
        let m = Matcher::new(MatchMode::PhonePrefix, Some("FR")).unwrap();
        let cell = |raw| m.normalize_cell(raw).map(Cow::into_owned);
        assert_eq!(cell("+33 1").as_deref(), Some("+331"));
        assert_eq!(cell("0033-1").as_deref(), Some("+331"));
        assert_eq!(cell("01").as_deref(), Some("+331"));
        assert_eq!(cell("(+1) 650").as_deref(), Some("+1650"));
        assert_eq!(cell("+"), None);
        assert_eq!(cell("Paris"), None);
        assert_eq!(cell("1"), None);
        // The value is a whole number, in E.164.
        assert_eq!(m.normalize("01 02 03 04 05").as_deref(), Some("+33102030405"));
        let none = Matcher::new(MatchMode::PhonePrefix, None).unwrap();
        assert_eq!(none.normalize_cell("01"), None);
        assert_eq!(none.normalize_cell("+44").as_deref(), Some("+44"));
        // Plain prefixes are the trimmed text.
        let plain = Matcher::new(MatchMode::Prefix, None).unwrap();
        assert_eq!(plain.normalize_cell(" +33 1 ").as_deref(), Some("+33 1"));
    }

    #[test]
    fn region_is_validated_in_every_mode() {
        assert!(Matcher::new(MatchMode::Exact, Some("FR")).is_ok());
        assert_eq!(
            Matcher::new(MatchMode::Phone, Some("fr")).unwrap().region(),
            Some("FR")
        );
        let err = Matcher::new(MatchMode::Exact, Some("XX1")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown region \"XX1\": expected a two-letter ISO 3166 country code such as \"FR\""
        );
        assert!(Matcher::new(MatchMode::Phone, Some("ZZ")).is_err());
        assert!(Matcher::new(MatchMode::Phone, None).is_ok());
    }
}
