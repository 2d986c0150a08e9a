//! Names with rules. Each has a private field and a `parse` constructor, so a
//! value of the type is valid by construction.

use std::fmt;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what} {value:?}: {rule}")]
pub struct NameError {
    pub what: &'static str,
    pub value: String,
    pub rule: &'static str,
}

macro_rules! name_type {
    ($(#[$doc:meta])* $name:ident, $what:literal, $max:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn parse(value: &str) -> Result<Self, NameError> {
                let err = |rule| NameError { what: $what, value: value.to_string(), rule };
                if value.is_empty() || value.len() > $max {
                    return Err(err(concat!("must be 1 to ", $max, " characters")));
                }
                let mut chars = value.chars();
                let first = chars.next().unwrap_or(' ');
                if !first.is_ascii_lowercase() && !first.is_ascii_digit() {
                    return Err(err("must start with a lowercase letter or a digit"));
                }
                if !value.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_') {
                    return Err(err("may contain only a-z, 0-9, '-' and '_'"));
                }
                Ok(Self(value.to_string()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::parse(&s).map_err(serde::de::Error::custom)
            }
        }
    };
}

name_type!(
    /// A tenant's slug: its FTP/SFTP user name and the name in URLs.
    TenantSlug, "tenant slug", 63
);
name_type!(
    /// A reference table's name (`crm` by default); also its folder over FTP/SFTP.
    TableName, "table name", 63
);

/// A CSV column name, as the trimmed header cell. Any non-empty text without
/// control characters, at most 256 characters.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct ColumnName(String);

impl ColumnName {
    pub fn parse(value: &str) -> Result<Self, NameError> {
        let value = value.trim();
        let err = |rule| NameError {
            what: "column name",
            value: value.to_string(),
            rule,
        };
        if value.is_empty() || value.chars().count() > 256 {
            return Err(err("must be 1 to 256 characters after trimming"));
        }
        if value.chars().any(char::is_control) {
            return Err(err("must not contain control characters"));
        }
        Ok(Self(value.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ColumnName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for ColumnName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        // A document's name is counted as sent, before trimming (as the
        // API's schema says); a CSV header is counted after.
        if s.chars().count() > 256 {
            return Err(serde::de::Error::custom(NameError {
                what: "column name",
                value: s.chars().take(40).collect::<String>() + "...",
                rule: "must be at most 256 characters",
            }));
        }
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_column_name_in_a_document_is_counted_before_trimming() {
        let padded = format!("\"agent_id{}\"", " ".repeat(300));
        assert!(serde_json::from_str::<ColumnName>(&padded).is_err());
        let name: ColumnName = serde_json::from_str("\"  agent_id \"").unwrap();
        assert_eq!(name.as_str(), "agent_id");
        // A header is trimmed first.
        assert!(ColumnName::parse(&format!("agent_id{}", " ".repeat(300))).is_ok());
    }

    #[test]
    fn names() {
        assert!(TenantSlug::parse("acme-1").is_ok());
        assert!(TenantSlug::parse("Acme").is_err());
        assert!(TenantSlug::parse("").is_err());
        assert!(TenantSlug::parse("../x").is_err());
        assert!(TableName::parse("crm").is_ok());
        assert_eq!(ColumnName::parse("  agent_id ").unwrap().as_str(), "agent_id");
        assert!(ColumnName::parse(" ").is_err());
    }
}
