//! `logtail validate`: every problem of a gateway or agent config file, with file, line and
//! key, exit 2; a good file's effective configuration, exit 0. Nothing is started or created.

use test_fixtures as common;

use std::path::Path;

use common::process::logtail;

/// Runs `logtail validate` on `text` written to `dir/NAME`; returns the exit code, stdout and
/// stderr.
fn validate(dir: &Path, name: &str, text: &str, agent: bool) -> (i32, String, String) {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    let mut command = logtail();
    command.args(["validate", "--config"]).arg(&path);
    if agent {
        command.arg("--agent");
    }
    let out = command.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn every_problem_of_a_gateway_file_is_reported_with_its_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("plain-file");
    std::fs::write(&file, b"x").unwrap();
    let text = format!(
        "data_dir = \"{data}\"\n\
         [ingest]\n\
         max_mesage_bytes = 10\n\
         oversize = \"cut\"\n\
         [[listen]]\n\
         type = \"tcpp\"\n\
         address = \"127.0.0.1:601\"\n\
         [[listen]]\n\
         type = \"tcp\"\n\
         address = \"localhost\"\n\
         [[listen]]\n\
         type = \"udp\"\n\
         address = \"0.0.0.0:514\"\n\
         framing = \"newline\"\n\
         [[listen]]\n\
         type = \"tcp\"\n\
         address = \"0.0.0.0:6514\"\n\
         [listen.tls]\n\
         cert_file = \"{dir}/missing-cert.pem\"\n\
         key_file = \"{dir}/missing-key.pem\"\n\
         [sink]\n\
         type = \"kafka\"\n\
         [sink.kafka]\n\
         bootstrap_servers = \"k1:9092,k2\"\n\
         acks = \"2\"\n\
         [metrics]\n\
         address = \"nope\"\n",
        data = file.join("data").display(),
        dir = dir.path().display(),
    );
    let (code, stdout, stderr) = validate(dir.path(), "gw.toml", &text, false);
    assert_eq!(code, 2, "{stderr}");
    assert_eq!(stdout, "");
    let f = dir.path().join("gw.toml");
    let f = f.display();
    let d = dir.path().display();
    let expected = [
        format!("{f}:1: data_dir: {d}/plain-file is not a directory"),
        format!(
            "{f}:3: ingest.max_mesage_bytes: unknown field `max_mesage_bytes`, expected one of \
             `shards`, `max_message_bytes`, `oversize`, `format`, `legacy_timezone`, `limits`"
        ),
        format!("{f}:4: ingest.oversize: unknown variant `cut`, expected `truncate` or `drop`"),
        format!(
            "{f}:6: listen[0].type: unknown variant `tcpp`, expected one of `udp`, `tcp`, \
             `unix-datagram`, `unix-stream`, `agent`, `kafka`"
        ),
        format!(
            "{f}:10: listen[1].address: \"localhost\" is not IP:PORT, e.g. \"0.0.0.0:5514\" or \
             \"[::]:5514\""
        ),
        format!("{f}:14: listen[2].framing: not used by type = \"udp\": a datagram is one message"),
        format!(
            "{f}:19: listen[3].tls.cert_file: cannot read {d}/missing-cert.pem: No such file or \
             directory (os error 2)"
        ),
        format!(
            "{f}:24: sink.kafka.bootstrap_servers: \"k2\" is not HOST:PORT; give \
             HOST:PORT[,HOST:PORT...], e.g. \"127.0.0.1:9092\""
        ),
        format!("{f}:25: sink.kafka.acks: \"2\": allowed \"all\", \"1\" or \"0\""),
        format!("{f}:27: metrics.address: \"nope\" is not IP:PORT, e.g. \"127.0.0.1:9100\""),
        format!("{f}: 10 problem(s)"),
    ];
    assert_eq!(stderr.lines().collect::<Vec<_>>(), expected);
    assert!(
        !file.join("data").exists() && !dir.path().join("data").exists(),
        "validate creates nothing"
    );
}

#[test]
fn every_problem_of_an_agent_file_is_reported_and_indices_stay_the_files() {
    let dir = tempfile::tempdir().unwrap();
    let text = "host = \"a b\"\n\
                [tail]\n\
                max_unacked_batches = 0\n\
                [ship]\n\
                address = \"gw.example:port\"\n\
                [etcd]\n\
                endpoints = [\"http://127.0.0.1:2379\", \"127.0.0.1:2379\"]\n\
                [[collect]]\n\
                name = \"a\"\n\
                [[collect]]\n\
                name = \"b\"\n\
                paths = [\"/var/log/x.log\"]\n\
                start_at = \"middle\"\n\
                [[collect]]\n\
                name = \"c c\"\n\
                paths = [\"/var/log/y.log\"]\n\
                tags = [\"a,b\"]\n";
    let (code, stdout, stderr) = validate(dir.path(), "agent.toml", text, true);
    assert_eq!(code, 2, "{stderr}");
    assert_eq!(stdout, "");
    let f = dir.path().join("agent.toml");
    let f = f.display();
    let expected = [
        format!("{f}:1: host: \"a b\": 1 to 255 printable ASCII characters, no spaces"),
        format!("{f}:3: tail.max_unacked_batches: must be at least 1"),
        format!(
            "{f}:5: ship.address: \"gw.example:port\" is not HOST:PORT (required for type = \
             \"gateway\"), e.g. address = \"127.0.0.1:5515\""
        ),
        format!(
            "{f}:7: etcd.endpoints[1]: \"127.0.0.1:2379\" is not a URL like \
             \"http://127.0.0.1:2379\""
        ),
        // collect[0] lacks `paths` and is taken out; the later entries keep the file's indices.
        format!("{f}:8: collect[0]: missing field `paths`"),
        format!(
            "{f}:13: collect[1].start_at: unknown variant `middle`, expected `end` or `beginning`"
        ),
        format!("{f}:15: collect[2].name: \"c c\": 1 to 64 of A-Z a-z 0-9 . _ -"),
        format!(
            "{f}:17: collect[2].tags[0]: \"a,b\": a tag is non-empty, without commas or control \
             characters"
        ),
        format!("{f}: 8 problem(s)"),
    ];
    assert_eq!(stderr.lines().collect::<Vec<_>>(), expected);
}

#[test]
fn toml_syntax_errors_are_all_reported_with_their_lines() {
    let dir = tempfile::tempdir().unwrap();
    let (code, _, stderr) = validate(
        dir.path(),
        "syntax.toml",
        "[ingest\nshards = = 1\n[[listen]]\ntype = \"udp\"\n",
        false,
    );
    assert_eq!(code, 2, "{stderr}");
    let lines: Vec<_> = stderr.lines().collect();
    assert!(
        lines[0].contains("syntax.toml:1: unclosed table"),
        "{stderr}"
    );
    assert!(lines[1].contains("syntax.toml:2: "), "{stderr}");
    assert!(
        lines
            .last()
            .unwrap()
            .ends_with(&format!("syntax.toml: {} problem(s)", lines.len() - 1)),
        "{stderr}"
    );
    assert!(lines.len() >= 3, "{stderr}");
}

/// `logtail validate`'s output once valid: the header line, then the effective configuration.
fn effective_of(dir: &Path, name: &str, stdout: &str) -> String {
    let header = format!(
        "# {}: valid; the effective configuration:\n",
        dir.join(name).display()
    );
    stdout
        .strip_prefix(&header)
        .unwrap_or_else(|| panic!("{stdout}"))
        .to_owned()
}

/// The effective configuration printed for `text` is TOML that validates to itself: every
/// default filled in, and every typed value written back in the form it is read from.
fn assert_effective_reads_back(dir: &Path, name: &str, text: &str, agent: bool) -> String {
    let (code, stdout, stderr) = validate(dir, name, text, agent);
    assert_eq!(code, 0, "{name}: {stderr}");
    let effective = effective_of(dir, name, &stdout);
    let again = format!("again-{name}");
    let (code, stdout, stderr) = validate(dir, &again, &effective, agent);
    assert_eq!(code, 0, "{again}: {stderr}\n{effective}");
    assert_eq!(effective_of(dir, &again, &stdout), effective);
    effective
}

#[test]
fn the_shipped_configs_are_valid_and_print_their_defaults_as_toml() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    for (name, agent, needles) in [
        (
            "logtail.toml",
            false,
            &[
                "\n[ingest]\n",
                "\nmax_message_bytes = 65536\n",
                "\nfsync = \"interval\"\n",
            ][..],
        ),
        (
            "agent.toml",
            true,
            &[
                "\n[tail]\n",
                "\nmax_unacked_batches = 8\n",
                "\nstart_at = \"end\"\n",
            ][..],
        ),
    ] {
        let text = std::fs::read_to_string(root.join("config").join(name)).unwrap();
        let effective = assert_effective_reads_back(dir.path(), name, &text, agent);
        for needle in needles {
            assert!(
                effective.contains(needle),
                "{name}: {needle:?} in {effective}"
            );
        }
    }
}

#[test]
fn typed_values_are_printed_in_the_form_they_are_read_from() {
    let dir = tempfile::tempdir().unwrap();
    let pki = common::pki::Pki::new(dir.path(), "validate");
    let server = pki.server("localhost");
    let fingerprint = "AB:".repeat(31) + "AB";
    let text = format!(
        r#"
data_dir = "{data}"
[ingest]
legacy_timezone = "+05:30"
[[listen]]
type = "tcp"
address = "127.0.0.1:6514"
idle_timeout_secs = 30
[listen.tls]
cert_file = "{cert}"
key_file = "{key}"
ca_file = "{ca}"
client_auth = "required"
allowed_peers = ["*.Example.com", "web1", "sha256:{fingerprint}"]
min_version = 1.3
[[listen]]
type = "unix-stream"
path = "{data}/log.sock"
socket_mode = "0o660"
[sink]
type = "elasticsearch"
[sink.elasticsearch]
endpoints = ["https://es1:9243/prefix", "http://[::1]:9200"]
index = "logs-{{app}}-%Y.%m"
ca_file = "{ca}"
auth = {{ type = "basic", username = "indexer", password = "secret" }}
[search]
backend = "elasticsearch"
[search.elasticsearch]
index = "logs-*,audit-*"
request_timeout_ms = 2500
[sink.kafka]
acks = "-1"
key = ""
topic_template = "logs-{{app}}"
"#,
        data = dir.path().join("data").display(),
        cert = server.cert.display(),
        key = server.key.display(),
        ca = pki.ca_file().display(),
    );
    let effective = assert_effective_reads_back(dir.path(), "typed.toml", &text, false);
    for needle in [
        "\nlegacy_timezone = \"+05:30\"\n",
        "\nidle_timeout_secs = 30\n",
        "\nhandshake_timeout_secs = 10\n",
        "\nmin_version = \"1.3\"\n",
        &format!(
            "\"*.example.com\",\n    \"web1\",\n    \"sha256:{}\",",
            "ab".repeat(32)
        ),
        "\nsocket_mode = \"0660\"\n",
        "\"https://es1:9243/prefix\",\n    \"http://[::1]:9200\",",
        "\nindex = \"logs-{app}-%Y.%m\"\n",
        &format!("\nca_file = \"{}\"\n", pki.ca_file().display()),
        "\nacks = \"all\"\n",
        "\n[search]\nbackend = \"elasticsearch\"\n",
        "\nindex = \"logs-*,audit-*\"\nrequest_timeout_ms = 2500\n",
        "\nkey = \"\"\n",
        "\ntopic_template = \"logs-{app}\"\n",
        "\ntype = \"basic\"\nusername = \"indexer\"\npassword = \"secret\"\n",
    ] {
        assert!(effective.contains(needle), "{needle:?} in {effective}");
    }
}

#[test]
fn an_unreadable_file_is_one_problem() {
    let dir = tempfile::tempdir().unwrap();
    let out = logtail()
        .args(["validate", "--config"])
        .arg(dir.path().join("missing.toml"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(
        stderr,
        format!(
            "{0}: cannot read: No such file or directory (os error 2)\n{0}: 1 problem(s)\n",
            dir.path().join("missing.toml").display()
        )
    );
}
