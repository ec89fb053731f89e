//! The query string of an API request, read once into typed values ("parse, don't validate"):
//! `name=value` pairs separated by `&`, percent-encoded, `+` for a space. Each endpoint names
//! the parameters it takes; anything else, a repeated parameter, or a value that does not read
//! is a 400 naming the parameter.

use percent_encoding::percent_decode;

use super::ApiError;
use crate::query::{Field, Matcher};
use crate::search::{Order, PageKey};

/// The parameters of one request.
pub(super) struct Params {
    pairs: Vec<(String, String)>,
}

/// Every `name=value` pair of `query`, decoded (bytes that are not UTF-8 become U+FFFD).
pub(super) fn raw_pairs(query: &str) -> impl Iterator<Item = (String, String)> + '_ {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(name), decode(value))
        })
}

fn decode(text: &str) -> String {
    let spaced = text.replace('+', " ");
    percent_decode(spaced.as_bytes())
        .decode_utf8_lossy()
        .into_owned()
}

impl Params {
    /// Reads `query`, taking only the parameters in `allowed` (and `access_token`, checked
    /// before the handler runs).
    pub(super) fn parse(query: Option<&str>, allowed: &[&str]) -> Result<Params, ApiError> {
        let mut pairs: Vec<(String, String)> = Vec::new();
        for (name, value) in raw_pairs(query.unwrap_or("")) {
            if name == "access_token" {
                continue;
            }
            if !allowed.contains(&name.as_str()) {
                return Err(ApiError::bad_parameter(
                    &name,
                    format!(
                        "unknown parameter {name:?}: this endpoint takes {}",
                        allowed.join(", ")
                    ),
                ));
            }
            if pairs.iter().any(|(seen, _)| *seen == name) {
                return Err(ApiError::bad_parameter(
                    &name,
                    format!("parameter {name:?} is given twice"),
                ));
            }
            pairs.push((name, value));
        }
        Ok(Params { pairs })
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// `q`, compiled (empty or absent: every record). A bad query is a 400 with its `column`.
    pub(super) fn query(&self) -> Result<Matcher, ApiError> {
        let text = self.get("q").unwrap_or("");
        Matcher::compile(text).map_err(|e| {
            ApiError::bad_parameter("q", e.to_string())
                .with("column", e.column)
                .with("query", text)
        })
    }

    /// A time parameter (`from`, `to`) as unix µs ([`crate::time::parse_time`]'s forms).
    pub(super) fn time(&self, name: &str) -> Result<Option<i64>, ApiError> {
        self.get(name)
            .filter(|text| !text.is_empty())
            .map(|text| crate::time::parse_time(text).map_err(|e| ApiError::bad_parameter(name, e)))
            .transpose()
    }

    /// `from` and `to`, with `from` before `to`.
    pub(super) fn range(&self) -> Result<(Option<i64>, Option<i64>), ApiError> {
        let (from, to) = (self.time("from")?, self.time("to")?);
        if let (Some(from), Some(to)) = (from, to)
            && from >= to
        {
            return Err(ApiError::bad_parameter(
                "to",
                "the range is empty: 'to' must be after 'from'",
            ));
        }
        Ok((from, to))
    }

    /// A whole number in `min..=max`, `default` when absent.
    pub(super) fn number(
        &self,
        name: &str,
        default: usize,
        min: usize,
        max: usize,
    ) -> Result<usize, ApiError> {
        let Some(text) = self.get(name) else {
            return Ok(default);
        };
        match text.parse::<usize>() {
            Ok(n) if (min..=max).contains(&n) => Ok(n),
            _ => Err(ApiError::bad_parameter(
                name,
                format!("{name}={text:?}: allowed a whole number from {min} to {max}"),
            )),
        }
    }

    /// `order`: `newest` (the default) or `oldest`.
    pub(super) fn order(&self) -> Result<Order, ApiError> {
        match self.get("order") {
            None | Some("newest") => Ok(Order::NewestFirst),
            Some("oldest") => Ok(Order::OldestFirst),
            Some(other) => Err(ApiError::bad_parameter(
                "order",
                format!("order={other:?}: allowed \"newest\" or \"oldest\""),
            )),
        }
    }

    /// `q` as given (empty when absent), for a backend that reads the text itself.
    pub(super) fn query_text(&self) -> &str {
        self.get("q").unwrap_or("")
    }

    /// `cursor`: the `next` of a previous page.
    pub(super) fn cursor(&self) -> Result<Option<PageKey>, ApiError> {
        self.cursor_of(PageKey::from_cursor)
    }

    /// `cursor`, read by `read` (each backend has its own).
    pub(super) fn cursor_of<T>(
        &self,
        read: impl Fn(&str) -> Option<T>,
    ) -> Result<Option<T>, ApiError> {
        self.get("cursor")
            .filter(|text| !text.is_empty())
            .map(|text| {
                read(text).ok_or_else(|| {
                    ApiError::bad_parameter(
                        "cursor",
                        format!(
                            "cursor={text:?} is not a cursor: pass the 'next' of a previous page"
                        ),
                    )
                })
            })
            .transpose()
    }

    /// `field`: a field name as the query language names it (required).
    pub(super) fn field(&self) -> Result<(String, Field, bool), ApiError> {
        let name = self.get("field").filter(|n| !n.is_empty()).ok_or_else(|| {
            ApiError::bad_parameter(
                "field",
                "missing 'field': which field to count, e.g. field=host",
            )
        })?;
        if name.contains([':', ' ', '(', ')', '*', '?', '"']) {
            return Err(ApiError::bad_parameter(
                "field",
                format!("field={name:?} is not a field name"),
            ));
        }
        let (field, list) =
            Field::named(name).map_err(|e| ApiError::bad_parameter("field", e.kind.to_string()))?;
        Ok((name.to_string(), field, list))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_decoded_checked_and_typed() {
        let params = Params::parse(
            Some("q=host%3Aweb-*+timeout&limit=20&order=oldest&access_token=x"),
            &["q", "limit", "order"],
        )
        .unwrap();
        assert_eq!(params.get("q"), Some("host:web-* timeout"));
        assert_eq!(params.number("limit", 100, 1, 1000).unwrap(), 20);
        assert_eq!(params.order().unwrap(), Order::OldestFirst);
        assert!(params.query().is_ok());

        let error = |query: &str, allowed: &[&str]| {
            let e = Params::parse(Some(query), allowed)
                .and_then(|p| {
                    p.query()?;
                    p.number("limit", 100, 1, 1000)?;
                    p.range()?;
                    Ok(())
                })
                .unwrap_err();
            (
                e.status.as_u16(),
                serde_json::Value::Object(e.body).to_string(),
            )
        };
        assert_eq!(
            error("lmit=5", &["q", "limit"]),
            (
                400,
                r#"{"error":"unknown parameter \"lmit\": this endpoint takes q, limit","parameter":"lmit"}"#
                    .into()
            )
        );
        assert_eq!(
            error("q=a&q=b", &["q"]),
            (
                400,
                r#"{"error":"parameter \"q\" is given twice","parameter":"q"}"#.into()
            )
        );
        assert_eq!(
            error("q=timeout+AND+(disk+OR+)", &["q"]),
            (
                400,
                r#"{"column":22,"error":"unexpected ')' at column 22","parameter":"q","query":"timeout AND (disk OR )"}"#
                    .into()
            )
        );
        assert_eq!(
            error("limit=0", &["limit"]),
            (
                400,
                r#"{"error":"limit=\"0\": allowed a whole number from 1 to 1000","parameter":"limit"}"#
                    .into()
            )
        );
        assert_eq!(
            error("from=2026-11-21&to=2026-11-20", &["from", "to"]).1,
            r#"{"error":"the range is empty: 'to' must be after 'from'","parameter":"to"}"#
        );
        assert!(
            error("from=yesterday", &["from"])
                .1
                .contains(r#""parameter":"from""#)
        );
    }
}
