//! PostgreSQL failover, on real servers the test owns: a primary and a streaming standby (initdb and
//! `pg_basebackup` on free ports, synchronous replication so a commit the daemon saw is on the standby too). The
//! daemon's `[database] url` names both hosts with `target_session_attrs=read-write`. While messages flow the
//! standby is promoted and the old primary stopped: the pool drops the dead connections, the breaker covers the
//! gap, the writes go on to the new primary, and every message is there exactly once, nothing dead-lettered.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

const LIMIT: Duration = Duration::from_secs(120);

/// A PostgreSQL server of the test's own, run as the `postgres` user; stopped on drop.
struct Server {
    port: u16,
    data: PathBuf,
    bin: PathBuf,
    log: PathBuf,
}

impl Server {
    /// A primary that streams to standbys (synchronously once the test sets `synchronous_standby_names`).
    fn primary(dir: &Path) -> Server {
        let bin = postgres_bin();
        let data = dir.join("primary");
        chown(dir);
        as_postgres(&bin, "initdb", &["-D", data.to_str().unwrap(), "-A", "trust", "-U", "postgres", "--no-sync"]);
        let port = free_port();
        append(
            &data.join("postgresql.conf"),
            &format!(
                "port = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\nfsync = off\n\
                 max_connections = 40\nwal_level = replica\nmax_wal_senders = 4\nhot_standby = on\n",
                dir.display()
            ),
        );
        std::fs::write(
            data.join("pg_hba.conf"),
            "local all all trust\nhost all all 127.0.0.1/32 trust\nhost replication all 127.0.0.1/32 trust\n",
        )
        .unwrap();
        let server = Server { port, log: dir.join("primary.log"), data, bin };
        server.start();
        server
    }

    /// A streaming standby of `primary` (which it follows until promoted). Once promoted it waits for no standby.
    fn standby_of(primary: &Server, dir: &Path) -> Server {
        let data = dir.join("standby");
        let bin = primary.bin.clone();
        as_postgres(
            &bin,
            "pg_basebackup",
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &primary.port.to_string(),
                "-U",
                "postgres",
                "-D",
                data.to_str().unwrap(),
                "-R",
                "-c",
                "fast",
            ],
        );
        let port = free_port();
        append(&data.join("postgresql.conf"), &format!("port = {port}\n"));
        chown(dir);
        let server = Server { port, log: dir.join("standby.log"), data, bin };
        server.start();
        server
    }

    fn start(&self) {
        let (data, log) = (self.data.to_str().unwrap(), self.log.to_str().unwrap());
        as_postgres(&self.bin, "pg_ctl", &["-D", data, "-l", log, "-w", "-t", "30", "start"]);
    }

    fn promote(&self) {
        as_postgres(&self.bin, "pg_ctl", &["-D", self.data.to_str().unwrap(), "-w", "-t", "30", "promote"]);
    }

    fn stop(&self) {
        let _ = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(self.bin.join("pg_ctl"))
            .args(["-D", self.data.to_str().unwrap(), "-m", "fast", "-w", "stop"])
            .output();
    }

    fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    async fn scalar(&self, db: &str, sql: &str) -> i64 {
        connect(&self.url(db)).await.query_one(sql, &[]).await.unwrap().get(0)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

fn append(path: &Path, text: &str) {
    let mut all = std::fs::read_to_string(path).unwrap();
    all.push_str(text);
    std::fs::write(path, all).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promoting_the_standby_while_messages_flow_loses_and_doubles_nothing() {
    let dir = TempDir::new("failover");
    let primary = Server::primary(dir.path());
    connect(&primary.url("postgres")).await.batch_execute("CREATE DATABASE dbew").await.unwrap();
    let standby = Server::standby_of(&primary, dir.path());
    // From now on every commit waits for the standby to have it: what the daemon acks survives the failover.
    let admin = connect(&primary.url("postgres")).await;
    admin.batch_execute("ALTER SYSTEM SET synchronous_standby_names = '*'").await.unwrap();
    admin.batch_execute("SELECT pg_reload_conf()").await.unwrap();
    wait_until(LIMIT, "the standby streaming synchronously", || async {
        primary.scalar("postgres", "SELECT count(*) FROM pg_stat_replication WHERE sync_state = 'sync'").await == 1
    })
    .await;

    let nats = NatsServer::start();
    let stream = TestStream::telemetry(&unique("fo"));
    migrate(&common::config(&nats.url, &primary.url("dbew"), std::slice::from_ref(&stream))).await;
    let both = format!(
        "postgres://postgres@127.0.0.1:{},127.0.0.1:{}/dbew?target_session_attrs=read-write",
        primary.port, standby.port
    );
    let text = config_text(&nats.url, &both, std::slice::from_ref(&stream))
        .replacen("pool_size = 4", "pool_size = 4\nconnect_timeout = \"2s\"", 1)
        .replacen("[daemon]", "[breaker]\nfailures = 1\ncooldown = \"500ms\"\n\n[daemon]", 1);
    let path = dir.path().join("streams.toml");
    std::fs::write(&path, text).unwrap();
    let js = nats.jetstream().await;
    create_stream(&js, &stream).await;
    let mut daemon = Daemon::spawn(&path, dir.path().join("daemon.log"));

    // Messages flow the whole time: a publisher in the background, 20,000 in batches.
    const TOTAL: usize = 20_000;
    let subject = stream.subject("h");
    let publisher = tokio::spawn({
        let (js, subject) = (js.clone(), subject.clone());
        async move {
            for start in (0..TOTAL).step_by(500) {
                let items: Vec<(String, Vec<u8>)> =
                    (start..start + 500).map(|i| (subject.clone(), metric(i))).collect();
                publish_all(&js, items).await;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    });
    wait_until(LIMIT, "rows on the primary", || async {
        primary.scalar("dbew", "SELECT count(*) FROM platform.timeseries_metrics").await >= 3_000
    })
    .await;

    // Failover: the standby becomes the primary, the old primary goes away.
    let at = Instant::now();
    standby.promote();
    primary.stop();
    let promoted_rows = standby.scalar("dbew", "SELECT count(*) FROM platform.timeseries_metrics").await;
    publisher.await.unwrap();
    wait_until(LIMIT, "every message on the new primary", || async {
        standby.scalar("dbew", "SELECT count(*) FROM platform.timeseries_metrics").await as usize >= TOTAL
    })
    .await;
    let resumed = at.elapsed();
    wait_drained(&js, &stream, LIMIT).await;
    assert_eq!(
        standby.scalar("dbew", "SELECT count(*) FROM platform.timeseries_metrics").await as usize,
        TOTAL,
        "exactly once"
    );
    assert_eq!(
        standby.scalar("dbew", "SELECT count(DISTINCT device_id) FROM platform.timeseries_metrics").await as usize,
        TOTAL
    );
    assert!(dead_letters(&js, &stream.name).await.is_empty(), "nothing dead-lettered");
    eprintln!(
        "failover: {promoted_rows} rows were on the standby at promotion; all {TOTAL} written {resumed:?} after it"
    );
    // The breaker covered the gap, and said so once at each end.
    let log = daemon.log_text();
    assert!(log.contains("database outage") && log.contains("database back"), "{log}");
    daemon.signal("TERM");
    assert!(daemon.wait_exit(LIMIT).success(), "{}", daemon.log_text());
}
