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
            let unit = if unit.is_empty() { String::new() } else { format!(" {unit}") };
            return Err(InvalidSetting::new(
                key,
                format!("{value} is out of range: allowed {min} to {max}{unit}"),
            ));
        }
        Ok(())
    }
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
