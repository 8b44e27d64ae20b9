//! Beyond one server: a test-owned 3-node JetStream cluster on loopback (three nats-server processes with routes,
//! JetStream on each, their own stores). The daemon, given the three URLs and `replicas = 3`, creates R3 streams
//! and drains through the loss of the stream leader, of the consumer leader and of the node it is connected to,
//! each killed while it drains and restarted: every message exactly once, the consumer drained, nothing
//! dead-lettered. The stalls and redeliveries the leader changes cost are printed (see README).

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use common::*;

const LIMIT: Duration = Duration::from_secs(120);

/// One node of the cluster.
struct Node {
    name: String,
    client_port: u16,
    monitor_port: u16,
    conf: std::path::PathBuf,
    log: std::path::PathBuf,
    child: Option<Child>,
}

/// Three nats-server processes routed to each other, JetStream on each.
struct Cluster {
    nodes: Vec<Node>,
    _dir: TempDir,
}

impl Cluster {
    fn start() -> Cluster {
        let dir = TempDir::new("cluster");
        let routes: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let route_list: Vec<String> = routes.iter().map(|p| format!("\"nats-route://127.0.0.1:{p}\"")).collect();
        let mut nodes = Vec::new();
        for (i, route) in routes.iter().enumerate() {
            let name = format!("n{i}");
            let (client_port, monitor_port) = (free_port(), free_port());
            let conf = dir.path().join(format!("{name}.conf"));
            let store = dir.path().join(format!("{name}-store"));
            std::fs::write(
                &conf,
                format!(
                    "server_name: {name}\nlisten: \"127.0.0.1:{client_port}\"\nhttp: \"127.0.0.1:{monitor_port}\"\n\
                     jetstream {{ store_dir: \"{}\" }}\n\
                     cluster {{ name: dbew, listen: \"127.0.0.1:{route}\", routes: [{}] }}\n",
                    store.display(),
                    route_list.join(", ")
                ),
            )
            .unwrap();
            let log = dir.path().join(format!("{name}.log"));
            nodes.push(Node { name, client_port, monitor_port, conf, log, child: None });
        }
        let mut cluster = Cluster { nodes, _dir: dir };
        for i in 0..3 {
            cluster.spawn(i);
        }
        cluster
    }

    fn spawn(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&node.log).unwrap();
        let child = Command::new(nats_server_bin())
            .arg("-c")
            .arg(&node.conf)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start nats-server");
        node.child = Some(child);
    }

    fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn urls(&self) -> String {
        self.nodes.iter().map(|n| format!("nats://127.0.0.1:{}", n.client_port)).collect::<Vec<_>>().join(",")
    }

    fn index_of(&self, name: &str) -> usize {
        self.nodes.iter().position(|n| n.name == name).unwrap_or_else(|| panic!("no node {name}"))
    }

    /// Every node sees the three-node JetStream cluster with a meta leader elected.
    async fn ready(&self) {
        for n in &self.nodes {
            wait_until(LIMIT, &format!("{} in a JetStream cluster with a leader", n.name), || async {
                let Some((200, body)) = http_get(n.monitor_port, "/jsz").await else { return false };
                let Ok(v) = serde_json::from_str::<serde_json::Value>(&body) else { return false };
                let meta = &v["meta_cluster"];
                meta["leader"].as_str().is_some_and(|l| !l.is_empty()) && meta["cluster_size"] == 3
            })
            .await;
        }
    }

    /// The node holding the daemon's connection (its client name), by each node's /connz.
    async fn connected_node(&self) -> Option<usize> {
        for (i, n) in self.nodes.iter().enumerate() {
            if n.child.is_none() {
                continue;
            }
            if let Some((200, body)) = http_get(n.monitor_port, "/connz").await
                && body.contains("\"name\": \"db-event-writer\"")
            {
                return Some(i);
            }
        }
        None
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill(i);
        }
    }
}

/// Publishes `range` with a message id each, retrying what a leader change refuses (the id makes a retry of a
/// stored message a duplicate, not a second message).
async fn publish_retrying(js: &jetstream::Context, subject: &str, range: std::ops::Range<usize>) {
    for i in range {
        let started = Instant::now();
        loop {
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("Nats-Msg-Id", format!("m-{i}").as_str());
            let attempt =
                async { js.publish_with_headers(subject.to_owned(), headers, metric(i).into()).await.ok()?.await.ok() };
            if tokio::time::timeout(Duration::from_secs(5), attempt).await.ok().flatten().is_some() {
                break;
            }
            assert!(started.elapsed() < LIMIT, "message {i} could not be published for {LIMIT:?}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// The longest time the row count stood still while a node was down.
struct Cost {
    what: &'static str,
    stall: Duration,
    /// Messages not yet written when the node was killed.
    backlog: usize,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_three_node_cluster_loses_leaders_and_the_daemons_node_mid_drain_and_nothing_is_lost_or_doubled() {
    let mut cluster = Cluster::start();
    cluster.ready().await;
    let db = TestDb::create().await;
    let dir = TempDir::new("cluster-daemon");
    let mut stream = TestStream::telemetry(&unique("cl"));
    stream.batch_size = 500;
    stream.extra = "ack_wait = \"5s\"\n".to_owned();
    let port = free_port();
    let urls = cluster.urls();
    let text = config_text(&urls, &db.url, std::slice::from_ref(&stream)).replacen(
        "[database]",
        "replicas = 3\n\n[database]",
        1,
    ) + &format!("\n[http]\nlisten = \"127.0.0.1:{port}\"\nrefresh = \"500ms\"\n");
    migrate(&common::config(&urls, &db.url, std::slice::from_ref(&stream))).await;
    let path = dir.path().join("streams.toml");
    std::fs::write(&path, text).unwrap();
    // async-nats takes a list of addresses, not a comma-separated string.
    let addrs: Vec<async_nats::ServerAddr> = urls.split(',').map(|u| u.parse().unwrap()).collect();
    let client = async_nats::connect(addrs).await.unwrap();
    let js = jetstream::new(client);
    let mut daemon = Daemon::spawn(&path, dir.path().join("daemon.log"));
    wait_for_consumer(&js, &stream, LIMIT).await;

    // What the daemon created is replicated three times.
    let mut s = js.get_stream(&stream.jetstream).await.unwrap();
    assert_eq!(s.info().await.unwrap().config.num_replicas, 3, "the source stream is R3");
    let started = Instant::now();
    while js.get_stream("DLQ").await.is_err() {
        assert!(started.elapsed() < LIMIT, "no DLQ stream; daemon log:\n{}", daemon.log_text());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(js.get_stream("DLQ").await.unwrap().info().await.unwrap().config.num_replicas, 3, "the DLQ is R3");

    let subject = stream.subject("h");
    const PER_PHASE: usize = 8_000;
    let mut costs = Vec::new();
    for (phase, what) in ["stream leader", "consumer leader", "the daemon's node"].into_iter().enumerate() {
        // A backlog, then the node goes while the daemon drains it.
        publish_retrying(&js, &subject, phase * PER_PHASE..(phase + 1) * PER_PHASE).await;
        let victim = match phase {
            0 => {
                let info = s.info().await.unwrap();
                cluster.index_of(&info.cluster.as_ref().and_then(|c| c.leader.clone()).expect("a stream leader"))
            }
            1 => {
                let c = js.get_stream(&stream.jetstream).await.unwrap();
                let info = c.consumer_info(&stream.consumer).await.unwrap();
                cluster.index_of(&info.cluster.as_ref().and_then(|c| c.leader.clone()).expect("a consumer leader"))
            }
            _ => cluster.connected_node().await.expect("the daemon is connected to a node"),
        };
        let before = db.count("timeseries_metrics").await;
        cluster.kill(victim);
        let killed = Instant::now();
        // Progress resumes on the two nodes left: the stall is how long the count stood still after the kill.
        let mut stall = Duration::ZERO;
        let target = (phase + 1) * PER_PHASE;
        let mut last = before;
        let mut last_change = killed;
        let deadline = Instant::now() + LIMIT;
        loop {
            let n = db.count("timeseries_metrics").await;
            if n != last {
                stall = stall.max(last_change.elapsed());
                (last, last_change) = (n, Instant::now());
            }
            if n as usize >= target {
                break;
            }
            assert!(Instant::now() < deadline, "phase {phase} ({what} down): {n} of {target} rows after {LIMIT:?}");
            // Polling the row count (the stall is measured at this resolution), not waiting for an event.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        costs.push(Cost { what, stall, backlog: target - before as usize });
        cluster.spawn(victim);
        cluster.ready().await;
    }
    wait_drained(&js, &stream, LIMIT).await;
    assert_eq!(db.count("timeseries_metrics").await as usize, 3 * PER_PHASE, "every message exactly once");
    let distinct: i64 = db
        .client()
        .await
        .query_one("SELECT count(DISTINCT device_id) FROM platform.timeseries_metrics", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(distinct as usize, 3 * PER_PHASE, "and no message twice");
    assert!(dead_letters(&js, &stream.name).await.is_empty(), "nothing dead-lettered");
    let (_, m) = http_get(port, "/metrics").await.unwrap();
    let redelivered = sample(
        &m,
        &format!(r#"db_event_writer_messages_redelivered_total{{stream="{}",processor="telemetry"}}"#, stream.name),
    )
    .unwrap_or(0.0);
    for c in &costs {
        eprintln!("cluster: {} killed with {} messages to go: longest stall {:?}", c.what, c.backlog, c.stall);
        assert!(c.backlog > 0, "the {} was killed after the drain ended, not during it", c.what);
    }
    eprintln!("cluster: {redelivered} redeliveries over the three failures ({} messages)", 3 * PER_PHASE);
    daemon.signal("TERM");
    assert!(daemon.wait_exit(LIMIT).success(), "{}", daemon.log_text());
}
