//! The console's files, compiled into the binary and served with their security headers.
//!
//! Three hand-written files under `console/` at the repository root (`index.html`, `app.css`,
//! `app.js`), embedded with `include_bytes!`: the binary is the whole deployment, and there is
//! no build step (no Node) between an edit and `cargo build`. Each asset is gzip-compressed once,
//! on its first request, and kept ([`OnceLock`]); a client that sends `Accept-Encoding: gzip`
//! gets those bytes (app.js: about a quarter of its size). Every response carries a strong
//! `ETag` (the CRC-32C of the file and its length) and `Cache-Control: no-cache`, so a browser
//! revalidates with `If-None-Match` and gets a bodyless 304 until the binary changes.

use std::sync::OnceLock;

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// One embedded file.
pub struct Asset {
    pub content_type: &'static str,
    pub bytes: &'static [u8],
    gzipped: OnceLock<Vec<u8>>,
    etag: OnceLock<HeaderValue>,
}

impl Asset {
    const fn new(content_type: &'static str, bytes: &'static [u8]) -> Asset {
        Asset {
            content_type,
            bytes,
            gzipped: OnceLock::new(),
            etag: OnceLock::new(),
        }
    }

    fn etag(&self) -> &HeaderValue {
        self.etag.get_or_init(|| {
            let tag = format!(
                "\"{:08x}-{:x}\"",
                crc32c::crc32c(self.bytes),
                self.bytes.len()
            );
            HeaderValue::from_str(&tag).unwrap_or(HeaderValue::from_static("\"0\""))
        })
    }

    fn gzipped(&self) -> &[u8] {
        self.gzipped.get_or_init(|| {
            use std::io::Write as _;
            let mut encoder =
                flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
            // Writing to a Vec cannot fail.
            let _ = encoder.write_all(self.bytes);
            encoder.finish().unwrap_or_default()
        })
    }

    /// The response to a GET of this asset with the request's `headers`: 304 when the
    /// browser's copy is current, else the bytes, gzipped when the client accepts it.
    pub fn respond(&'static self, headers: &HeaderMap) -> Response {
        let etag = self.etag().clone();
        let fresh = headers
            .get(header::IF_NONE_MATCH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.split(',').any(|t| t.trim().as_bytes() == etag.as_bytes()));
        let common = [
            (header::ETAG, etag),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (header::VARY, HeaderValue::from_static("Accept-Encoding")),
        ];
        if fresh {
            return (StatusCode::NOT_MODIFIED, common).into_response();
        }
        let gzip = headers
            .get(header::ACCEPT_ENCODING)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.split(',').any(|e| e.trim().starts_with("gzip")));
        let content_type = (
            header::CONTENT_TYPE,
            HeaderValue::from_static(self.content_type),
        );
        if gzip {
            let encoding = (header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
            (common, [content_type, encoding], self.gzipped()).into_response()
        } else {
            (common, [content_type], self.bytes).into_response()
        }
    }
}

pub static INDEX_HTML: Asset = Asset::new(
    "text/html; charset=utf-8",
    include_bytes!("../../../console/index.html"),
);
pub static APP_CSS: Asset = Asset::new(
    "text/css; charset=utf-8",
    include_bytes!("../../../console/app.css"),
);
pub static APP_JS: Asset = Asset::new(
    "text/javascript; charset=utf-8",
    include_bytes!("../../../console/app.js"),
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gzip_is_served_to_who_accepts_it_and_an_etag_match_is_304() {
        let mut headers = HeaderMap::new();
        let plain = APP_JS.respond(&headers);
        assert_eq!(plain.status(), StatusCode::OK);
        assert!(plain.headers().get(header::CONTENT_ENCODING).is_none());
        let etag = plain.headers()[header::ETAG].clone();

        headers.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_static("br, gzip;q=0.9"),
        );
        let gzipped = APP_JS.respond(&headers);
        assert_eq!(gzipped.headers()[header::CONTENT_ENCODING], "gzip");
        let mut unzipped = Vec::new();
        std::io::Read::read_to_end(
            &mut flate2::read::GzDecoder::new(APP_JS.gzipped()),
            &mut unzipped,
        )
        .unwrap();
        assert_eq!(unzipped, APP_JS.bytes);
        assert!(APP_JS.gzipped().len() < APP_JS.bytes.len() / 2);

        headers.insert(header::IF_NONE_MATCH, etag);
        assert_eq!(APP_JS.respond(&headers).status(), StatusCode::NOT_MODIFIED);
    }
}
