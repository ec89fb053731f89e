//! Just enough of a WebDriver client (W3C WebDriver, JSON over HTTP) to drive Debian's
//! `chromium` through `chromedriver` in the console tests.
//!
//! Why not the `fantoccini` or `thirtyfour` crates: both pull in an HTTP client stack and the
//! `webdriver` crate (about forty more crates to build on this 2-core machine), while the
//! protocol the tests use is a dozen JSON requests. This client is std's `TcpStream` and
//! `serde_json`, one request per connection, and builds with the tests.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// The binaries: `$CHROMEDRIVER` / `$CHROMIUM`, else `chromedriver` and `chromium` on the PATH
/// (Debian's `chromium-driver` and `chromium` packages, installed by `tests/run.sh`).
pub fn binaries() -> Option<(PathBuf, PathBuf)> {
    let find = |var: &str, name: &str| {
        std::env::var_os(var)
            .map(PathBuf::from)
            .or_else(|| test_support::ci::on_path(name))
    };
    Some((
        find("CHROMEDRIVER", "chromedriver")?,
        find("CHROMIUM", "chromium")?,
    ))
}

/// A headless Chromium session, closed (and its driver killed) on drop.
pub struct Browser {
    driver: Child,
    port: u16,
    session: String,
}

/// An element reference of the session.
#[derive(Debug, Clone)]
pub struct Element(String);

impl Browser {
    /// Starts `chromedriver` on a free port and a headless Chromium of `width`×`height`.
    pub fn start(driver: &Path, chromium: &Path, width: u32, height: u32) -> Browser {
        let port = test_support::net::free_port().expect("a free port");
        let child = Command::new(driver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let mut browser = Browser {
            driver: child,
            port,
            session: String::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !test_support::net::listening(port) {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                         "--disable-gpu", format!("--window-size={width},{height}")],
            },
        }}});
        let answer = browser.call("POST", "/session", Some(capabilities));
        browser.session = answer["sessionId"]
            .as_str()
            .expect("a session id")
            .to_string();
        browser
    }

    /// One WebDriver request; panics with the driver's error.
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let (status, value) = self.try_call(method, path, body);
        assert!(
            (200..300).contains(&status),
            "WebDriver {method} {path}: {status} {value}"
        );
        value
    }

    /// One WebDriver request: the HTTP status and the answer's `value`.
    fn try_call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).expect("chromedriver");
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.port,
            body.len()
        )
        .expect("send to chromedriver");
        // chromedriver keeps the connection open whatever `Connection` says: read the head,
        // then exactly Content-Length bytes (or chunks until the last one).
        let mut response = Vec::new();
        let mut buf = [0u8; 16 << 10];
        let head_end = loop {
            if let Some(i) = response.windows(4).position(|w| w == b"\r\n\r\n") {
                break i;
            }
            let n = stream.read(&mut buf).expect("read chromedriver");
            assert!(n > 0, "chromedriver closed the connection mid-answer");
            response.extend_from_slice(&buf[..n]);
        };
        let head = String::from_utf8_lossy(&response[..head_end]).to_ascii_lowercase();
        let status: u16 = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("a status");
        let length = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse::<usize>().ok());
        let chunked = head.contains("transfer-encoding: chunked");
        loop {
            let body = &response[head_end + 4..];
            let complete = match length {
                Some(length) => body.len() >= length,
                None => chunked && body.ends_with(b"0\r\n\r\n"),
            };
            if complete {
                break;
            }
            let n = stream.read(&mut buf).expect("read chromedriver");
            if n == 0 {
                break;
            }
            response.extend_from_slice(&buf[..n]);
        }
        let rest = String::from_utf8_lossy(&response[head_end + 4..]).into_owned();
        let body = if chunked { dechunk(&rest) } else { rest };
        let value: Value = serde_json::from_str(&body).expect("JSON from chromedriver");
        (status, value["value"].clone())
    }

    fn at(&self, path: &str) -> String {
        format!("/session/{}{path}", self.session)
    }

    /// Opens `url` and waits until the console's script has set itself up.
    pub fn open(&self, url: &str) {
        self.call("POST", &self.at("/url"), Some(json!({ "url": url })));
        self.wait_until(
            "the console script to start",
            "return document.body && document.body.dataset.ready === '1'",
        );
    }

    /// Runs `script` (a function body; `arguments` are `args`) and returns its value.
    pub fn script(&self, script: &str, args: Vec<Value>) -> Value {
        self.call(
            "POST",
            &self.at("/execute/sync"),
            Some(json!({"script": script, "args": args})),
        )
    }

    /// Polls `script` until it returns something truthy (not null, false, 0 or ""); panics
    /// naming `what` after 10 s.
    pub fn wait_until(&self, what: &str, script: &str) -> Value {
        self.wait_until_for(what, script, Duration::from_secs(10))
    }

    pub fn wait_until_for(&self, what: &str, script: &str, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let value = self.script(script, vec![]);
            let truthy = match &value {
                Value::Null | Value::Bool(false) => false,
                Value::Number(n) => n.as_f64() != Some(0.0),
                Value::String(s) => !s.is_empty(),
                _ => true,
            };
            if truthy {
                return value;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what} (last: {value})"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The first element matching `css`, waiting up to 10 s for it.
    pub fn find(&self, css: &str) -> Element {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (status, value) = self.try_call(
                "POST",
                &self.at("/element"),
                Some(json!({"using": "css selector", "value": css})),
            );
            if status == 200 {
                let id = value
                    .as_object()
                    .and_then(|o| o.values().next())
                    .and_then(Value::as_str)
                    .expect("an element reference");
                return Element(id.to_string());
            }
            assert!(Instant::now() < deadline, "no element {css}: {value}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Runs the WebDriver requests of `act` on the first element matching `css`; the answer of
    /// the last one.
    ///
    /// The page re-renders parts of itself when answers arrive (the facets after the results):
    /// an element found just before that is gone by the request ("stale element reference"), so
    /// the element is looked up again and `act` run again, for up to 10 s.
    fn on_element(&self, css: &str, act: impl Fn(&str) -> (u16, Value)) -> Value {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let e = self.find(css);
            let (status, value) = act(&e.0);
            if (200..300).contains(&status) {
                return value;
            }
            let stale = value["error"] == "stale element reference";
            assert!(
                stale && Instant::now() < deadline,
                "WebDriver request on {css}: {status} {value}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Clicks the first element matching `css`.
    pub fn click(&self, css: &str) {
        self.on_element(css, |id| {
            self.try_call(
                "POST",
                &self.at(&format!("/element/{id}/click")),
                Some(json!({})),
            )
        });
    }

    /// Clears the input `css` and types `text` into it (`\u{E007}` is Enter).
    pub fn type_into(&self, css: &str, text: &str) {
        self.on_element(css, |id| {
            let cleared = self.try_call(
                "POST",
                &self.at(&format!("/element/{id}/clear")),
                Some(json!({})),
            );
            if !(200..300).contains(&cleared.0) {
                return cleared;
            }
            self.try_call(
                "POST",
                &self.at(&format!("/element/{id}/value")),
                Some(json!({ "text": text })),
            )
        });
    }

    /// Sends keys to whatever has the focus.
    pub fn keys(&self, text: &str) {
        let actions: Vec<Value> = text
            .chars()
            .flat_map(|c| {
                [
                    json!({"type": "keyDown", "value": c.to_string()}),
                    json!({"type": "keyUp", "value": c.to_string()}),
                ]
            })
            .collect();
        self.call(
            "POST",
            &self.at("/actions"),
            Some(json!({"actions": [{"type": "key", "id": "keyboard", "actions": actions}]})),
        );
    }

    /// The rendered text of the first element matching `css`.
    pub fn text(&self, css: &str) -> String {
        self.on_element(css, |id| {
            self.try_call("GET", &self.at(&format!("/element/{id}/text")), None)
        })
        .as_str()
        .unwrap_or_default()
        .to_string()
    }

    /// The text of an open `alert()`, if one is open.
    pub fn alert_text(&self) -> Option<String> {
        let (status, value) = self.try_call("GET", &self.at("/alert/text"), None);
        (status == 200).then(|| value.as_str().unwrap_or_default().to_string())
    }

    pub fn resize(&self, width: u32, height: u32) {
        self.call(
            "POST",
            &self.at("/window/rect"),
            Some(json!({"width": width, "height": height})),
        );
    }

    /// Saves a PNG of the viewport to `path`.
    pub fn screenshot(&self, path: &Path) {
        use base64::Engine as _;
        let data = self.call("GET", &self.at("/screenshot"), None);
        let png = base64::engine::general_purpose::STANDARD
            .decode(data.as_str().expect("base64 text"))
            .expect("base64");
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("screenshot dir");
        }
        std::fs::write(path, png).expect("write screenshot");
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = self.try_call("DELETE", &format!("/session/{}", self.session), None);
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// The body of a chunked HTTP answer.
fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if size == 0 || after.len() < size {
            break;
        }
        out.push_str(&after[..size]);
        rest = after[size..].trim_start_matches("\r\n");
    }
    out
}
