//! The system under test: logtail (`logtail serve` on a generated config), or rsyslog (Debian's
//! `rsyslogd` on a generated config) for the side-by-side comparison. Both listen on the same
//! kinds of sockets and write to the same kinds of outputs, so one workload drives either.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context as _, bail};

use crate::cost::CostMeter;
use crate::generate::{Destination, Transport};
use test_support::net::listening;
use test_support::prometheus_text::scrape;

use crate::process::{Ended, Service, free_port};
use crate::verify::Source;

/// Which gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Product {
    Logtail,
    Rsyslog,
}

/// Where the gateway writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Sink {
    /// A Kafka topic (logtail's Kafka sink; rsyslog's omkafka).
    Kafka,
    /// A local output: logtail's store; rsyslog's omfile (one JSON object per line).
    Local,
    /// Elasticsearch through Kafka (logtail only): the gateway writes to Kafka, an indexer
    /// (`logtail serve` with a `kafka` listener) to the search server.
    Elasticsearch,
    /// Elasticsearch from the gateway itself: logtail's Elasticsearch sink; rsyslog's
    /// omelasticsearch.
    ElasticsearchDirect,
}

impl Sink {
    /// The verifier reads the search server's index.
    pub fn is_elasticsearch(self) -> bool {
        matches!(self, Sink::Elasticsearch | Sink::ElasticsearchDirect)
    }

    /// The gateway writes to Kafka.
    pub fn needs_broker(self) -> bool {
        matches!(self, Sink::Kafka | Sink::Elasticsearch)
    }
}

/// A gateway configured for a run, started and stopped by the scenario.
pub struct Gateway {
    pub product: Product,
    pub sink: Sink,
    binary: PathBuf,
    dir: PathBuf,
    config: PathBuf,
    pub tcp: SocketAddr,
    pub udp: SocketAddr,
    /// The agent listener (logtail only).
    pub agent: SocketAddr,
    pub unix_stream: PathBuf,
    pub unix_datagram: PathBuf,
    /// `IP:PORT` of the metrics endpoint (logtail only).
    pub metrics: Option<String>,
    kafka: Option<(String, String)>,
    /// The search server's base URL (the Elasticsearch sinks).
    elasticsearch: Option<String>,
    service: Option<Service>,
    starts: u32,
    pub cost: CostMeter,
}

/// Settings of the generated configuration.
pub struct GatewayOptions<'a> {
    pub product: Product,
    pub sink: Sink,
    /// The gateway's binary (logtail) or `rsyslogd`.
    pub binary: &'a Path,
    /// `(bootstrap, topic)` for `Sink::Kafka` and `Sink::Elasticsearch`.
    pub kafka: Option<(String, String)>,
    /// The search server's base URL for `Sink::ElasticsearchDirect`.
    pub elasticsearch: Option<String>,
    /// Shards (logtail) / worker threads (rsyslog's imtcp); 0 = the gateway's default.
    pub threads: usize,
}

impl Gateway {
    /// Writes the configuration into `dir`; nothing starts yet.
    ///
    /// # Errors
    /// When no port is free or the configuration cannot be written.
    pub fn prepare(dir: &Path, options: GatewayOptions) -> anyhow::Result<Gateway> {
        let port = free_port()?;
        let loopback = |port| SocketAddr::from(([127, 0, 0, 1], port));
        let metrics_port = free_port()?;
        let agent_port = free_port()?;
        let gateway = Gateway {
            product: options.product,
            sink: options.sink,
            binary: options.binary.to_path_buf(),
            dir: dir.to_path_buf(),
            config: dir.join(match options.product {
                Product::Logtail => "logtail.toml",
                Product::Rsyslog => "rsyslog.conf",
            }),
            tcp: loopback(port),
            udp: loopback(port),
            agent: loopback(agent_port),
            unix_stream: dir.join("log-stream.sock"),
            unix_datagram: dir.join("log.sock"),
            metrics: (options.product == Product::Logtail)
                .then(|| format!("127.0.0.1:{metrics_port}")),
            kafka: options.kafka,
            elasticsearch: options.elasticsearch,
            service: None,
            starts: 0,
            cost: CostMeter::default(),
        };
        if options.sink.needs_broker() && gateway.kafka.is_none() {
            bail!("a Kafka sink needs a broker");
        }
        if options.sink == Sink::ElasticsearchDirect && gateway.elasticsearch.is_none() {
            bail!("an Elasticsearch sink needs a search server");
        }
        if options.sink == Sink::Elasticsearch && options.product == Product::Rsyslog {
            bail!(
                "--sink elasticsearch runs logtail's indexer behind Kafka; rsyslog writes to \
                 Elasticsearch itself: --sink elasticsearch-direct"
            );
        }
        let text = match options.product {
            Product::Logtail => gateway.logtail_config(options.threads),
            Product::Rsyslog => gateway.rsyslog_config(options.threads)?,
        };
        std::fs::write(&gateway.config, text)
            .with_context(|| format!("writing {}", gateway.config.display()))?;
        Ok(gateway)
    }

    fn logtail_config(&self, shards: usize) -> String {
        let mut text = format!(
            "# Generated by logtail-loadtest.\n\
             data_dir = {data:?}\n\
             [ingest]\nshards = {shards}\n\
             [[listen]]\ntype = \"tcp\"\naddress = \"{tcp}\"\n\
             [[listen]]\ntype = \"udp\"\naddress = \"{udp}\"\n\
             [[listen]]\ntype = \"unix-stream\"\npath = {us:?}\n\
             [[listen]]\ntype = \"unix-datagram\"\npath = {ud:?}\n\
             [[listen]]\ntype = \"agent\"\naddress = \"{agent}\"\n\
             [metrics]\naddress = \"{metrics}\"\n",
            data = self.dir.join("data"),
            tcp = self.tcp,
            udp = self.udp,
            us = self.unix_stream,
            ud = self.unix_datagram,
            agent = self.agent,
            metrics = self.metrics.as_deref().unwrap_or("127.0.0.1:0"),
        );
        match (&self.sink, &self.kafka, &self.elasticsearch) {
            (Sink::ElasticsearchDirect, _, Some(url)) => {
                text.push_str(&crate::elasticsearch::logtail_sink_tables(url))
            }
            (Sink::Kafka | Sink::Elasticsearch, Some((bootstrap, topic)), _) => {
                text.push_str(&format!(
                    "[sink]\ntype = \"kafka\"\n[sink.kafka]\nbootstrap_servers = \"{bootstrap}\"\n\
                 topic = \"{topic}\"\n"
                ))
            }
            // A run writes gigabytes: keep them all for the follower.
            _ => text.push_str(
                "[sink]\ntype = \"store\"\n[sink.store]\nmax_total_bytes = 50000000000\n",
            ),
        }
        text
    }

    /// The file rsyslog's `omfile` writes (`Sink::Local`).
    fn rsyslog_output(&self) -> PathBuf {
        self.dir.join("rsyslog-out.jsonl")
    }

    fn rsyslog_config(&self, threads: usize) -> anyhow::Result<String> {
        let work = self.dir.join("rsyslog-work");
        std::fs::create_dir_all(&work)?;
        let workers = if threads > 0 {
            format!(" workerThreads=\"{threads}\"")
        } else {
            String::new()
        };
        let mut text = format!(
            "# Generated by logtail-loadtest.\n\
             global(workDirectory={work:?} maxMessageSize=\"64k\")\n\
             module(load=\"imtcp\" maxSessions=\"20000\"{workers})\n\
             input(type=\"imtcp\" address=\"127.0.0.1\" port=\"{tcp}\")\n\
             module(load=\"imudp\")\n\
             input(type=\"imudp\" address=\"127.0.0.1\" port=\"{udp}\")\n\
             module(load=\"imuxsock\" sysSock.use=\"off\")\n\
             input(type=\"imuxsock\" socket={ud:?})\n",
            tcp = self.tcp.port(),
            udp = self.udp.port(),
            ud = self.unix_datagram,
        );
        match (&self.sink, &self.kafka, &self.elasticsearch) {
            (Sink::ElasticsearchDirect, _, Some(url)) => {
                text.push_str(&rsyslog_json_template(""));
                text.push_str(&rsyslog_elasticsearch_action(url, &self.dir)?);
            }
            (Sink::Kafka, Some((bootstrap, topic)), _) => {
                text.push_str(&rsyslog_json_template(""));
                text.push_str(&format!(
                    "module(load=\"omkafka\")\n\
                     action(type=\"omkafka\" broker=[\"{bootstrap}\"] topic=\"{topic}\" \
                     template=\"ltjson\" partitions.auto=\"on\"\n\
                     \x20      confParam=[\"compression.codec=lz4\", \"linger.ms=5\"])\n"
                ));
            }
            _ => {
                // omfile writes what the template gives: the newline is in the template.
                text.push_str(&rsyslog_json_template("\\n"));
                text.push_str(&format!(
                    "action(type=\"omfile\" file={out:?} template=\"ltjson\")\n",
                    out = self.rsyslog_output()
                ));
            }
        }
        Ok(text)
    }

    /// Where the verifier reads what this gateway wrote: for the Elasticsearch sinks, the
    /// harness reads the search server's index instead (`Sink::Elasticsearch`: this is the
    /// Kafka topic the indexer reads).
    pub fn source(&self) -> Source {
        match (&self.sink, &self.kafka, self.product) {
            (Sink::Kafka | Sink::Elasticsearch, Some((bootstrap, topic)), _) => Source::Kafka {
                bootstrap: bootstrap.clone(),
                topic: topic.clone(),
            },
            (_, _, Product::Logtail) => Source::Store(self.dir.join("data/store")),
            (_, _, Product::Rsyslog) => Source::File(self.rsyslog_output()),
        }
    }

    /// Where senders of `transport` send.
    ///
    /// # Errors
    /// rsyslog has no Unix stream input.
    pub fn destination(&self, transport: Transport) -> anyhow::Result<Destination> {
        Ok(match transport {
            Transport::Tcp => Destination::Inet(self.tcp),
            Transport::Udp => Destination::Inet(self.udp),
            Transport::UnixDatagram => Destination::Unix(self.unix_datagram.clone()),
            Transport::UnixStream if self.product == Product::Rsyslog => {
                bail!("rsyslog has no Unix stream input (imuxsock is datagram only)")
            }
            Transport::UnixStream => Destination::Unix(self.unix_stream.clone()),
            Transport::Agent if self.product == Product::Rsyslog => {
                bail!("the agent transport ships to logtail's agent listener: logtail only")
            }
            Transport::Agent => Destination::Files(crate::agent::logs_dir(&self.dir)),
        })
    }

    /// Starts the gateway and waits until it listens. The first start's CPU is not counted;
    /// a restart's is.
    ///
    /// # Errors
    /// When it does not start, with the end of its log.
    pub fn start(&mut self) -> anyhow::Result<()> {
        let log = self.dir.join(match self.product {
            Product::Logtail => "logtail.log",
            Product::Rsyslog => "rsyslog.log",
        });
        let mut command = Command::new(&self.binary);
        match self.product {
            Product::Logtail => {
                command.args(["serve", "--config"]).arg(&self.config);
            }
            Product::Rsyslog => {
                command.args(["-n", "-iNONE", "-f"]).arg(&self.config);
            }
        }
        let before = std::fs::read_to_string(&log)
            .map(|t| t.matches("gateway running").count())
            .unwrap_or(0);
        let mut service = Service::spawn(self.product_name(), command, &log)?;
        let (product, tcp_port) = (self.product, self.tcp.port());
        service.wait_ready(Duration::from_secs(30), |s| match product {
            Product::Logtail => s.log_text().matches("gateway running").count() > before,
            Product::Rsyslog => listening(tcp_port),
        })?;
        if self.starts == 0 {
            self.cost.start(service.pid());
        } else {
            self.cost.restarted(service.pid());
        }
        self.starts += 1;
        self.service = Some(service);
        Ok(())
    }

    /// Stops the gateway with `signal` (SIGTERM: a clean stop, waited for up to 60 s;
    /// SIGKILL: none).
    pub fn stop(&mut self, signal: i32) -> Option<Ended> {
        let service = self.service.take()?;
        let ended = service.stop(signal, Duration::from_secs(60));
        self.cost.ended(ended.cpu_seconds);
        Some(ended)
    }

    pub fn product_name(&self) -> &'static str {
        match self.product {
            Product::Logtail => "logtail",
            Product::Rsyslog => "rsyslog",
        }
    }

    /// Appends `text` (whole TOML tables) to the generated configuration, before the start.
    ///
    /// # Errors
    /// When the file cannot be written.
    pub fn append_config(&self, text: &str) -> anyhow::Result<()> {
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&self.config)
            .with_context(|| format!("opening {}", self.config.display()))?;
        std::io::Write::write_all(&mut file, text.as_bytes())
            .with_context(|| format!("writing {}", self.config.display()))
    }

    /// Replaces the first `from` in the generated configuration with `to`, before the start.
    ///
    /// # Errors
    /// When the file cannot be read or written, or does not contain `from`.
    pub fn replace_in_config(&self, from: &str, to: &str) -> anyhow::Result<()> {
        let text = std::fs::read_to_string(&self.config)
            .with_context(|| format!("reading {}", self.config.display()))?;
        if !text.contains(from) {
            bail!("{} has no {from:?}", self.config.display());
        }
        std::fs::write(&self.config, text.replacen(from, to, 1))
            .with_context(|| format!("writing {}", self.config.display()))
    }

    /// The gateway's Prometheus text (logtail only).
    pub fn scrape(&self) -> Option<String> {
        scrape(self.metrics.as_deref()?)
    }

    /// Samples the gateway's peak RSS.
    pub fn sample(&mut self) {
        self.cost.sample();
    }
}

/// rsyslog's omelasticsearch action into [`crate::elasticsearch::INDEX`] at `url`, set up like
/// logtail's sink: bulks (`bulkmode`, up to 5 MiB, the dequeue batch of 1000 documents),
/// `create` with ids of Elasticsearch's choosing (rsyslog has no stable id of its own), and an
/// in-memory queue that never drops: 1 M messages, and retrying forever while the server is
/// away (`action.resumeRetryCount = -1`); refused documents go to `es-errors.json` in `dir`.
/// `esVersion.major = 8` leaves out the mapping `_type` that OpenSearch and Elasticsearch 8
/// refuse.
fn rsyslog_elasticsearch_action(url: &str, dir: &Path) -> anyhow::Result<String> {
    let address = url.strip_prefix("http://").unwrap_or(url);
    let Some((host, port)) = address.rsplit_once(':') else {
        bail!("{url}: no port");
    };
    Ok(format!(
        "module(load=\"omelasticsearch\")\n\
         action(type=\"omelasticsearch\" server=\"{host}\" serverport=\"{port}\" \
         searchIndex=\"{index}\" template=\"ltjson\" esVersion.major=\"8\"\n\
         \x20      bulkmode=\"on\" maxbytes=\"5m\" writeoperation=\"create\" \
         errorfile={errors:?}\n\
         \x20      queue.type=\"linkedList\" queue.size=\"1000000\" \
         queue.dequeueBatchSize=\"1000\" action.resumeRetryCount=\"-1\")\n",
        index = crate::elasticsearch::INDEX,
        errors = dir.join("es-errors.json"),
    ))
}

/// An rsyslog template `ltjson` writing about the record logtail writes (header fields and the
/// message, JSON-escaped), followed by `end` (rsyslog string escapes, e.g. `\\n`).
fn rsyslog_json_template(end: &str) -> String {
    let fields = [
        ("facility", "syslogfacility", ""),
        ("severity", "syslogseverity", ""),
        ("timestamp", "timereported", r#" dateFormat="rfc3339""#),
        ("host", "hostname", ""),
        ("app", "app-name", ""),
        ("procid", "procid", ""),
        ("msgid", "msgid", ""),
        ("structured_data", "structured-data", ""),
        ("message", "msg", ""),
        ("received_at", "timegenerated", r#" dateFormat="rfc3339""#),
        ("source", "fromhost-ip", ""),
    ];
    // In rsyslog's config strings `\"` is a quote: each constant opens a JSON key and value,
    // e.g. `{"facility":"` then `","severity":"`.
    let mut text = String::from("template(name=\"ltjson\" type=\"list\") {\n");
    for (i, (key, property, options)) in fields.iter().enumerate() {
        let separator = if i == 0 { "{" } else { r#"\","# };
        text.push_str(&format!(
            r#"  constant(value="{separator}\"{key}\":\"") property(name="{property}" format="json"{options})"#
        ));
        text.push('\n');
    }
    text.push_str(&format!("  constant(value=\"\\\"}}{end}\")\n}}\n"));
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prepare(product: Product, sink: Sink) -> (PathBuf, String) {
        let dir = std::env::temp_dir().join(format!(
            "loadtest-gateway-{}-{product:?}-{sink:?}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let gw = Gateway::prepare(
            &dir,
            GatewayOptions {
                product,
                sink,
                binary: Path::new("/bin/false"),
                kafka: Some(("127.0.0.1:9092".into(), "logs".into())),
                elasticsearch: Some("http://127.0.0.1:9200".into()),
                threads: 0,
            },
        )
        .unwrap();
        let text = std::fs::read_to_string(&gw.config).unwrap();
        (dir, text)
    }

    #[test]
    fn generated_logtail_config_is_valid() {
        for sink in [
            Sink::Kafka,
            Sink::Local,
            Sink::Elasticsearch,
            Sink::ElasticsearchDirect,
        ] {
            let (dir, text) = prepare(Product::Logtail, sink);
            let config = logtail::config::Config::from_toml(&text, Path::new("gen.toml"))
                .unwrap_or_else(|e| panic!("{e}\n{text}"));
            assert_eq!(config.listen.len(), 5);
            assert_eq!(
                config.sink.kind,
                match sink {
                    Sink::Kafka | Sink::Elasticsearch => logtail::config::SinkKind::Kafka,
                    Sink::Local => logtail::config::SinkKind::Store,
                    Sink::ElasticsearchDirect => logtail::config::SinkKind::Elasticsearch,
                }
            );
            std::fs::remove_dir_all(dir).unwrap();
        }
    }

    #[test]
    fn generated_rsyslog_config_has_one_output_and_newlines_only_for_files() {
        let (dir, kafka) = prepare(Product::Rsyslog, Sink::Kafka);
        assert!(kafka.contains("type=\"omkafka\"") && !kafka.contains("omfile"));
        assert!(kafka.contains(r#"constant(value="\"}")"#), "{kafka}");
        assert!(kafka.contains(r#"constant(value="{\"facility\":\"") property(name="syslogfacility" format="json")"#), "{kafka}");
        assert!(
            kafka.contains(
                r#"constant(value="\",\"message\":\"") property(name="msg" format="json")"#
            ),
            "{kafka}"
        );
        std::fs::remove_dir_all(dir).unwrap();
        let (dir, file) = prepare(Product::Rsyslog, Sink::Local);
        assert!(file.contains("type=\"omfile\"") && !file.contains("omkafka"));
        assert!(file.contains(r#"constant(value="\"}\n")"#), "{file}");
        std::fs::remove_dir_all(dir).unwrap();
        let (dir, es) = prepare(Product::Rsyslog, Sink::ElasticsearchDirect);
        assert!(
            es.contains("type=\"omelasticsearch\" server=\"127.0.0.1\" serverport=\"9200\"")
                && es.contains("searchIndex=\"loadtest\"")
                && es.contains("bulkmode=\"on\"")
                && es.contains("action.resumeRetryCount=\"-1\"")
                && !es.contains("omkafka")
                && !es.contains("omfile"),
            "{es}"
        );
        assert!(es.contains(r#"constant(value="\"}")"#), "{es}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
