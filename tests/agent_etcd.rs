//! `logtail agent --etcd`: collect entries from a real etcd key, changed while the agent runs.

use test_fixtures as common;

use std::time::Duration;

use common::agent::{AgentDir, append, numbered};
use common::etcd::{Etcd, binary_or_skip};

const WAIT: Duration = Duration::from_secs(30);
const KEY: &str = "/logtail/agents/testhost/config";

fn entry(t: &AgentDir, name: &str, file: &str) -> String {
    format!(
        r#"{{"name": "{name}", "paths": [{:?}], "start_at": "beginning"}}"#,
        t.logs(file)
    )
}

fn write_line(file: &mut std::fs::File, n: usize) {
    std::io::Write::write_all(file, format!("{}\n", numbered(n)).as_bytes()).unwrap();
}

#[test]
fn etcd_key_changes_start_and_stop_entries_and_bad_values_keep_the_last_good_one() {
    let Some(binary) = binary_or_skip("etcd_key_changes_start_and_stop_entries") else {
        return;
    };
    let t = AgentDir::new();
    let mut etcd = Etcd::start(&binary, t.dir.path());
    t.write_config("");
    etcd.put(
        KEY,
        &format!(r#"{{"collect": [{}]}}"#, entry(&t, "a", "a.log")),
    );
    let endpoint = etcd.endpoint.clone();
    let args = ["--etcd", &endpoint, "--host", "testhost"];
    let agent = t.start(&args);
    let (mut a, mut b) = (append(&t.logs("a.log")), append(&t.logs("b.log")));
    write_line(&mut a, 1);
    write_line(&mut b, 2);
    t.wait_for_line(&numbered(1), WAIT);

    // Entry b added: its file is collected within a second of the put.
    etcd.put(
        KEY,
        &format!(
            r#"{{"collect": [{}, {}]}}"#,
            entry(&t, "a", "a.log"),
            entry(&t, "b", "b.log")
        ),
    );
    let took = t.wait_for_line(&numbered(2), WAIT);
    eprintln!("etcd put -> first line of the new entry shipped: {took:?}");
    assert!(took < Duration::from_secs(1), "took {took:?}");

    // Entry a removed: a stops (its checkpoint stays), b is not disturbed.
    etcd.put(
        KEY,
        &format!(r#"{{"collect": [{}]}}"#, entry(&t, "b", "b.log")),
    );
    t.wait_for_log("collect entry a: removed", WAIT);
    write_line(&mut a, 3);
    write_line(&mut b, 4);
    t.wait_for_line(&numbered(4), WAIT);
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        !t.shipped().contains(&numbered(3)),
        "a removed entry was still read"
    );

    // Invalid JSON, then an unknown field: rejected and logged with key, revision and field;
    // b keeps running.
    let revision = etcd.put(KEY, "{\"collect\": [");
    t.wait_for_log(
        &format!("etcd key {KEY} (revision {revision}): collect: EOF while parsing"),
        WAIT,
    );
    let revision = etcd.put(
        KEY,
        &format!(
            r#"{{"collect": [{{"name": "b", "paths": [{:?}], "pathz": []}}]}}"#,
            t.logs("b.log")
        ),
    );
    t.wait_for_log(
        &format!("etcd key {KEY} (revision {revision}): collect[0].pathz: unknown field `pathz`"),
        WAIT,
    );
    assert_eq!(
        t.agent_log()
            .matches("keeping the last good configuration")
            .count(),
        2
    );
    write_line(&mut b, 5);
    t.wait_for_line(&numbered(5), WAIT);
    assert!(!t.agent_log().contains("collect entry b: removed"));

    // etcd gone, agent restarted: it collects what it collected, from its cache of the last
    // good value, and resumes b exactly.
    agent.sigterm_and_wait();
    etcd.kill();
    write_line(&mut b, 6);
    let agent = t.start(&args);
    t.wait_for_line(&numbered(6), WAIT);
    let shipped = t.shipped();
    assert_eq!(
        shipped.iter().filter(|l| **l == numbered(2)).count(),
        1,
        "b read twice"
    );
    assert!(
        t.checkpoints().contains("a.log"),
        "a's checkpoint was dropped"
    );
    agent.sigterm_and_wait();
}
