//! RFC 5424 STRUCTURED-DATA: validated once when the message is parsed, then walked without
//! allocation by whoever consumes it (the JSON encoder).
//!
//! ```text
//! STRUCTURED-DATA = NILVALUE / 1*SD-ELEMENT
//! SD-ELEMENT      = "[" SD-ID *(SP SD-PARAM) "]"
//! SD-PARAM        = PARAM-NAME "=" %d34 PARAM-VALUE %d34
//! SD-ID, PARAM-NAME = 1*32 PRINTUSASCII except '=', SP, ']', %d34
//! PARAM-VALUE     = UTF-8 with '"', '\' and ']' escaped by a backslash
//! ```
//!
//! Invariant: a [`StructuredData`] only ever wraps bytes that `parse` here accepted, so its
//! iterators walk a well-formed section and always see every element and parameter. (They are
//! still written to stop quietly rather than panic on anything else.)
//!
//! Leniency: in strict mode (format forced to RFC 5424) names must be PRINTUSASCII and at most
//! 32 bytes; otherwise any byte except the four delimiters is accepted in any number, blanks
//! may follow `=`, and a PARAM-VALUE may be unquoted (`sub=Vimsvc.ha-eventmgr`, as VMware ESXi
//! sends it): it then ends at the next space or `]`, and one containing `"` is refused as
//! ambiguous (the RFC 5424 parser then keeps the section in the message with a warning). In both
//! modes an unescaped `]` inside a quoted value is accepted (the quote delimits the value
//! unambiguously; several senders do not escape it), and a backslash before any other byte is
//! kept as a literal backslash, as RFC 5424 §6.3.3 requires. Values are not checked for UTF-8:
//! the encoder makes invalid bytes visible instead of rejecting the message.

use memchr::{memchr, memchr2};

use super::ParseError;

/// Longest SD-ID or PARAM-NAME that RFC 5424 allows.
pub const MAX_SD_NAME_LEN: usize = 32;

/// A validated STRUCTURED-DATA section (not the NILVALUE), borrowed from the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StructuredData<'a> {
    raw: &'a [u8],
}

impl<'a> StructuredData<'a> {
    /// The section as received, from the first `[` to the last `]`.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.raw
    }

    /// The SD-ELEMENTs in order (duplicates included, as received).
    pub fn elements(&self) -> SdElements<'a> {
        SdElements { rest: self.raw }
    }
}

/// Iterator over the elements of a [`StructuredData`].
#[derive(Debug, Clone)]
pub struct SdElements<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for SdElements<'a> {
    type Item = SdElement<'a>;

    fn next(&mut self) -> Option<Self::Item> {
        let (element, len) = element(self.rest, false).ok()?;
        self.rest = self.rest.get(len..).unwrap_or_default();
        Some(element)
    }
}

/// One SD-ELEMENT: its SD-ID and its parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SdElement<'a> {
    id: &'a [u8],
    /// ` name="value"` repeated; empty for an element without parameters.
    params: &'a [u8],
}

impl<'a> SdElement<'a> {
    /// The SD-ID, e.g. `exampleSDID@32473`.
    pub fn id(&self) -> &'a [u8] {
        self.id
    }

    /// The parameters in order, as `(name, escaped value)`; see [`unescape`].
    pub fn params(&self) -> SdParams<'a> {
        SdParams { rest: self.params }
    }
}

/// Iterator over the `(PARAM-NAME, escaped PARAM-VALUE)` pairs of an [`SdElement`].
#[derive(Debug, Clone)]
pub struct SdParams<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for SdParams<'a> {
    type Item = (&'a [u8], &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        let (name, value, len) = param(self.rest, false).ok()?;
        self.rest = self.rest.get(len..).unwrap_or_default();
        Some((name, value))
    }
}

/// The unescaped PARAM-VALUE as consecutive borrowed chunks (no allocation): `\"`, `\\` and
/// `\]` become the escaped byte; a backslash before anything else stays.
pub fn unescape(escaped: &[u8]) -> Unescape<'_> {
    Unescape { rest: escaped }
}

/// Iterator returned by [`unescape`].
#[derive(Debug, Clone)]
pub struct Unescape<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Unescape<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let rest = self.rest;
        if rest.is_empty() {
            return None;
        }
        match memchr(b'\\', rest) {
            None => {
                self.rest = &[];
                Some(rest)
            }
            Some(0) => match rest.get(1) {
                Some(b'"' | b'\\' | b']') => {
                    self.rest = &rest[2..];
                    Some(&rest[1..2])
                }
                _ => {
                    self.rest = &rest[1..];
                    Some(&rest[..1])
                }
            },
            Some(at) => {
                self.rest = &rest[at..];
                Some(&rest[..at])
            }
        }
    }
}

/// Validates the STRUCTURED-DATA (one or more elements) at the start of `input`; returns it
/// and its length. What follows it is the caller's business.
pub(crate) fn parse(input: &[u8], strict: bool) -> Result<(StructuredData<'_>, usize), ParseError> {
    let mut len = 0;
    while input.get(len) == Some(&b'[') {
        len += element(&input[len..], strict)?.1;
    }
    if len == 0 {
        return Err(ParseError::InvalidStructuredData);
    }
    Ok((StructuredData { raw: &input[..len] }, len))
}

/// Length of the SD-NAME at the start of `input`.
fn name(input: &[u8], strict: bool) -> Result<usize, ParseError> {
    let len = input
        .iter()
        .position(|&b| matches!(b, b'=' | b' ' | b']' | b'"'))
        .unwrap_or(input.len());
    if len == 0 {
        return Err(ParseError::InvalidStructuredData);
    }
    if strict {
        if len > MAX_SD_NAME_LEN {
            return Err(ParseError::SdNameTooLong);
        }
        if !input[..len].iter().all(|b| (33..=126).contains(b)) {
            return Err(ParseError::InvalidStructuredData);
        }
    }
    Ok(len)
}

/// The SD-ELEMENT at the start of `input` and its length.
fn element(input: &[u8], strict: bool) -> Result<(SdElement<'_>, usize), ParseError> {
    if input.first() != Some(&b'[') {
        return Err(ParseError::InvalidStructuredData);
    }
    let params_start = 1 + name(&input[1..], strict)?;
    let mut at = params_start;
    loop {
        match input.get(at) {
            Some(b']') => break,
            Some(b' ') => at += param(&input[at..], strict)?.2,
            _ => return Err(ParseError::InvalidStructuredData),
        }
    }
    let element = SdElement {
        id: &input[1..params_start],
        params: &input[params_start..at],
    };
    Ok((element, at + 1))
}

/// The ` name="value"` at the start of `input`: name, escaped value and length. Unless
/// `strict`, also ` name= "value"` (blanks after `=`) and ` name=value` with an unquoted
/// value, which ends at the next space or `]` and may not contain `"` (VMware ESXi writes
/// `[Originator@6876 sub=Vimsvc.ha-eventmgr opID=abc-1]`).
fn param(input: &[u8], strict: bool) -> Result<(&[u8], &[u8], usize), ParseError> {
    if input.first() != Some(&b' ') {
        return Err(ParseError::InvalidStructuredData);
    }
    let name_end = 1 + name(&input[1..], strict)?;
    if input.get(name_end) != Some(&b'=') {
        return Err(ParseError::InvalidStructuredData);
    }
    let mut quote = name_end + 1;
    if !strict && input.get(quote) == Some(&b' ') {
        quote += input[quote..].iter().take_while(|&&b| b == b' ').count();
    }
    if input.get(quote) != Some(&b'"') {
        if strict || quote != name_end + 1 {
            return Err(ParseError::InvalidStructuredData);
        }
        let value = &input[quote..];
        // The end of `input` ends it too: an element's parameters are walked without the `]`.
        let len = value
            .iter()
            .position(|&b| matches!(b, b' ' | b']' | b'"'))
            .unwrap_or(value.len());
        if value.get(len) == Some(&b'"') {
            return Err(ParseError::InvalidStructuredData);
        }
        return Ok((&input[1..name_end], &value[..len], quote + len));
    }
    let value_start = quote + 1;
    let mut at = value_start;
    loop {
        let found = memchr2(b'"', b'\\', input.get(at..).unwrap_or_default())
            .ok_or(ParseError::InvalidStructuredData)?;
        at += found;
        if input[at] == b'"' {
            break;
        }
        // A backslash always consumes the next byte, so `\"` never closes the value.
        at += 2;
    }
    Ok((&input[1..name_end], &input[value_start..at], at + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unescaped(value: &[u8]) -> Vec<u8> {
        unescape(value).flatten().copied().collect()
    }

    type Elements<'a> = Vec<(&'a [u8], Vec<(&'a [u8], &'a [u8])>)>;

    fn walk(sd: StructuredData<'_>) -> Elements<'_> {
        sd.elements()
            .map(|e| (e.id(), e.params().collect()))
            .collect()
    }

    #[test]
    fn several_elements_with_and_without_params() {
        let input = br#"[a@1 x="1" y=""][b][c z="q\"\\\]"] rest"#;
        let (sd, len) = parse(input, true).unwrap();
        assert_eq!(len, input.len() - 5);
        assert_eq!(sd.as_bytes(), &input[..len]);
        let expected: Elements = vec![
            (b"a@1", vec![(b"x", b"1"), (b"y", b"")]),
            (b"b", vec![]),
            (b"c", vec![(b"z", br#"q\"\\\]"#)]),
        ];
        assert_eq!(walk(sd), expected);
    }

    #[test]
    fn unescape_replaces_only_the_three_escapes() {
        assert_eq!(unescaped(br#"q\"\\\]"#), br#"q"\]"#);
        assert_eq!(unescaped(br"C:\temp\n"), br"C:\temp\n");
        assert_eq!(unescaped(br"\\n"), br"\n");
        assert_eq!(unescaped(b""), b"");
        assert_eq!(unescaped(br"end\"), br"end\");
    }

    #[test]
    fn unescaped_bracket_inside_quotes_is_accepted() {
        let (sd, _) = parse(br#"[a x="[1]"]"#, true).unwrap();
        assert_eq!(walk(sd), vec![(&b"a"[..], vec![(&b"x"[..], &b"[1]"[..])])]);
    }

    #[test]
    fn malformed_sections_are_rejected() {
        for input in [
            &b""[..],
            b"-",
            b"[",
            b"[]",
            b"[a",
            b"[a ]",
            b"[a x]",
            br#"[a x="1]"#,
            br#"[a x="1\"]"#,
            br#"[a x="1"y="2"]"#,
            br#"[a  x="1"]"#,
            br#"[a ="1"]"#,
            br#"[a"b]"#,
        ] {
            assert!(
                parse(input, false).is_err(),
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn unquoted_values_and_blanks_after_equals_only_when_lenient() {
        let input = br#"[Originator@6876 sub=Vimsvc.ha-eventmgr opID=abc-1 k= "v"][b x=]"#;
        let (sd, len) = parse(input, false).unwrap();
        assert_eq!(len, input.len());
        let expected: Elements = vec![
            (
                b"Originator@6876",
                vec![
                    (b"sub", b"Vimsvc.ha-eventmgr"),
                    (b"opID", b"abc-1"),
                    (b"k", b"v"),
                ],
            ),
            (b"b", vec![(b"x", b"")]),
        ];
        assert_eq!(walk(sd), expected);
        for input in [&b"[a x=1]"[..], br#"[a x= "1"]"#] {
            assert_eq!(parse(input, true), Err(ParseError::InvalidStructuredData));
        }
        // A quote inside an unquoted value is ambiguous; so is an unquoted value after blanks.
        for input in [&br#"[a x=1"2"]"#[..], b"[a x= 1]", b"[a x=1"] {
            assert_eq!(parse(input, false), Err(ParseError::InvalidStructuredData));
        }
    }

    #[test]
    fn strict_mode_limits_names_to_32_printable_bytes() {
        let long_id = format!("[{}]", "i".repeat(33));
        assert_eq!(
            parse(long_id.as_bytes(), true),
            Err(ParseError::SdNameTooLong)
        );
        assert!(parse(long_id.as_bytes(), false).is_ok());
        let ok_id = format!("[{}]", "i".repeat(32));
        assert!(parse(ok_id.as_bytes(), true).is_ok());
        let long_name = format!("[a {}=\"v\"]", "n".repeat(33));
        assert_eq!(
            parse(long_name.as_bytes(), true),
            Err(ParseError::SdNameTooLong)
        );
        assert_eq!(
            parse("[caf\u{e9}]".as_bytes(), true),
            Err(ParseError::InvalidStructuredData)
        );
        assert!(parse("[caf\u{e9}]".as_bytes(), false).is_ok());
    }
}
