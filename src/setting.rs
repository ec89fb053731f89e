//! What a component's config section says when one of its values cannot be used.
//!
//! Each component owns its section of the configuration file (the listener's struct lives with
//! the source, the Kafka sink's with the sink, as in Vector), typed so that a value is parsed
//! once, when the file is read. Most bad values are refused by serde while deserializing (the
//! error then carries the line and the key). What serde cannot see, a value out of range or two
//! keys that contradict each other, a section reports as an [`InvalidSetting`] from its own
//! check; [`crate::config`] adds the file name and the section's path in front of the key.

/// A key of a config section and why its value cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct InvalidSetting {
    /// The key, relative to the section that reported it (`max_message_bytes`,
    /// `tls.cert_file`); [`InvalidSetting::within`] prefixes the enclosing sections.
    pub key: String,
    /// What is wrong and what is allowed, e.g. `0 is out of range: allowed 1 to 65536`.
    pub message: String,
}

impl InvalidSetting {
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        InvalidSetting {
            key: key.into(),
            message: message.into(),
        }
    }

    /// The same error, with its key inside `section` (`listen[2]` + `path` → `listen[2].path`).
    #[must_use]
    pub fn within(mut self, section: &str) -> Self {
        self.key = if self.key.is_empty() {
            section.to_owned()
        } else {
            format!("{section}.{}", self.key)
        };
        self
    }

    /// Checks that `value` lies in `min..=max`, naming `unit` in the message.
    ///
    /// # Errors
    /// `key: V is out of range: allowed MIN to MAX UNIT` when it does not.
    pub fn check_range<T: PartialOrd + std::fmt::Display>(
        key: &str,
        value: T,
        min: T,
        max: T,
        unit: &str,
    ) -> Result<(), InvalidSetting> {
        if value < min || value > max {
            let unit = if unit.is_empty() {
                String::new()
            } else {
                format!(" {unit}")
            };
            return Err(InvalidSetting::new(
                key,
                format!("{value} is out of range: allowed {min} to {max}{unit}"),
            ));
        }
        Ok(())
    }
}

/// `HOST:PORT`, the host a name or an IP address (IPv6 in brackets), the port 1 to 65535.
///
/// # Errors
/// What is wrong, quoting `address`.
pub fn check_host_port(address: &str) -> Result<(), String> {
    let bad = || format!("{address:?} is not HOST:PORT");
    let (host, port) = address.rsplit_once(':').ok_or_else(bad)?;
    let port_ok = port.parse::<u16>().is_ok_and(|p| p > 0);
    let host_ok = if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        v6.parse::<std::net::Ipv6Addr>().is_ok()
    } else {
        !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
    };
    if port_ok && host_ok {
        Ok(())
    } else {
        Err(bad())
    }
}

/// What tells that a config file changed, for reloading it live: its modification time, size
/// and inode (an editor that writes a new file and renames it changes the inode).
pub fn file_stamp(path: &std::path::Path) -> Option<(std::time::SystemTime, u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len(), meta.ino()))
}

/// For `#[serde(deserialize_with = "crate::setting::millis", serialize_with = "crate::setting::as_millis")]`: a key given in whole milliseconds
/// (`fsync_interval_ms = 1000`) read straight into a [`std::time::Duration`].
///
/// # Errors
/// serde's, when the value is not a non-negative integer.
pub fn millis<'de, D: serde::Deserializer<'de>>(d: D) -> Result<std::time::Duration, D::Error> {
    <u64 as serde::Deserialize>::deserialize(d).map(std::time::Duration::from_millis)
}

/// For `#[serde(serialize_with = "crate::setting::as_millis")]`: the inverse of [`millis`].
///
/// # Errors
/// The serializer's.
pub fn as_millis<S: serde::Serializer>(d: &std::time::Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// For a `*_secs` key read into a [`std::time::Duration`]: whole seconds.
///
/// # Errors
/// The serializer's.
pub fn as_seconds<S: serde::Serializer>(d: &std::time::Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_secs())
}

/// For a `*_secs` key where 0 means "off" (read into `None`): whole seconds, 0 for `None`.
///
/// # Errors
/// The serializer's.
pub fn as_optional_seconds<S: serde::Serializer>(
    d: &Option<std::time::Duration>,
    s: S,
) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.map_or(0, |d| d.as_secs()))
}

/// Serializes each listed setting as the text it is read from (its `Display`), for settings
/// compiled from a string (`#[serde(try_from = "String")]`): what `logtail validate` prints must
/// read back as the same configuration.
macro_rules! serialize_as_text {
    ($($setting:ty),* $(,)?) => {$(
        impl serde::Serialize for $setting {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
    )*};
}
pub(crate) use serialize_as_text;

/// A typed setting refusing its value while serde deserializes it (the error of its
/// `TryFrom<String>`, say): the message names what is allowed, e.g. `"2": allowed "all", "1" or
/// "0"`. [`from_toml`] reports it as an [`InvalidSetting`] whose key is where serde was
/// (`sink.kafka.acks`), the form of every other bad value.
///
/// serde carries only the text of an error, so the text is marked (`REFUSAL_MARK`) to tell a
/// refusal from serde's own errors (a wrong type, an unknown key), which keep toml's line and
/// column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal(pub String);

/// Opens the text of a [`Refusal`] inside a serde error. A control character: no message of
/// serde's or toml's starts with one.
const REFUSAL_MARK: char = '\u{1}';

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{REFUSAL_MARK}{}", self.0)
    }
}

/// A serde error's text as users should read it: a [`Refusal`]'s without its mark (for
/// loaders other than [`from_toml`], e.g. JSON).
pub fn unmarked(message: &str) -> &str {
    message.strip_prefix(REFUSAL_MARK).unwrap_or(message)
}

/// Why TOML text could not be read into a configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TomlError {
    /// Not TOML, or not the schema (unknown key, wrong type, unknown enum variant): toml's
    /// message, with the line and column.
    Syntax(String),
    /// A typed setting refused its value ([`Refusal`]), under the key path serde was at.
    Invalid(InvalidSetting),
}

impl std::fmt::Display for TomlError {
    /// toml's message, or `KEY: MESSAGE`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TomlError::Syntax(message) => f.write_str(message),
            TomlError::Invalid(invalid) => invalid.fmt(f),
        }
    }
}

/// Deserializes `text`, reporting a value refused by a typed setting as an [`InvalidSetting`]
/// with its full key path.
///
/// # Errors
/// A [`TomlError`].
pub fn from_toml<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, TomlError> {
    let deserializer =
        toml::Deserializer::parse(text).map_err(|e| TomlError::Syntax(e.to_string()))?;
    serde_path_to_error::deserialize(deserializer).map_err(|e| {
        let key = e.path().to_string();
        let error = e.into_inner();
        match error.message().strip_prefix(REFUSAL_MARK) {
            Some(message) => TomlError::Invalid(InvalidSetting::new(key, message)),
            None => TomlError::Syntax(error.to_string()),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::InvalidSetting;

    #[test]
    fn within_prefixes_the_section_path() {
        let e = InvalidSetting::new("path", "required").within("listen[2]");
        assert_eq!(e.to_string(), "listen[2].path: required");
        let whole = InvalidSetting::new("", "no listener").within("listen");
        assert_eq!(whole.key, "listen");
    }

    #[test]
    fn check_range_names_the_bounds_and_unit() {
        assert_eq!(InvalidSetting::check_range("n", 5, 1, 10, "bytes"), Ok(()));
        let e = InvalidSetting::check_range("n", 0, 1, 10, "bytes").unwrap_err();
        assert_eq!(e.to_string(), "n: 0 is out of range: allowed 1 to 10 bytes");
    }
}

#[cfg(test)]
mod toml_tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(try_from = "String")]
    struct Even(u32);

    impl TryFrom<String> for Even {
        type Error = Refusal;
        fn try_from(text: String) -> Result<Even, Refusal> {
            match text.parse::<u32>() {
                Ok(n) if n % 2 == 0 => Ok(Even(n)),
                _ => Err(Refusal(format!("{text:?}: allowed an even number"))),
            }
        }
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Inner {
        even: Even,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Outer {
        inner: Inner,
    }

    #[test]
    fn a_refusal_is_reported_under_its_key_path_and_other_errors_keep_their_line() {
        let outer: Outer = from_toml("[inner]\neven = \"4\"\n").unwrap();
        assert_eq!(outer.inner.even.0, 4);
        assert_eq!(
            from_toml::<Outer>("[inner]\neven = \"3\"\n").unwrap_err(),
            TomlError::Invalid(InvalidSetting::new(
                "inner.even",
                "\"3\": allowed an even number"
            ))
        );
        let TomlError::Syntax(message) = from_toml::<Outer>("[inner]\nodd = 3\n").unwrap_err()
        else {
            panic!("an unknown key is a syntax error");
        };
        assert!(
            message.contains("line 2") && message.contains("odd"),
            "{message}"
        );
    }

    #[test]
    fn unmarked_shows_a_refusal_as_its_message_and_leaves_other_text_alone() {
        assert_eq!(
            unmarked(&Refusal("\"3\": odd".into()).to_string()),
            "\"3\": odd"
        );
        assert_eq!(unmarked("unknown field `odd`"), "unknown field `odd`");
    }
}
