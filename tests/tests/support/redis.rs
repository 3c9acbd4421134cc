//! A real `redis-server` for the Redis budget's tests: a process of its own
//! on a free loopback port, with nothing written to disk, that a test can
//! stop and start again on the same port. It is killed on drop.
//!
//! Tests that leave the server running may share the one named by
//! `RECOURSE_REDIS_URL` (`.ci/run` starts one) through
//! [`RedisServer::shared_or_start`]; their keys are unique, so they do not
//! meet.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

/// How long a server may take to answer its first PING.
const READY_WITHIN: Duration = Duration::from_secs(10);

/// A `redis-server` process on 127.0.0.1, or the server of
/// `RECOURSE_REDIS_URL`.
#[derive(Debug)]
pub(crate) struct RedisServer {
    url: String,
    /// `None` for the shared server, which is not the test's to stop.
    port: Option<u16>,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts a server on a free port and waits until it answers PING.
    ///
    /// # Panics
    ///
    /// When `redis-server` is not on PATH, or no server came up.
    pub(crate) fn start() -> Self {
        let mut last = String::new();
        // A free port can be taken between the probe and the server's bind.
        for _ in 0..5 {
            let port = free_port();
            let mut server = Self { url: format!("redis://127.0.0.1:{port}"), port: Some(port), child: None };
            match server.spawn() {
                Ok(()) => return server,
                Err(error) => last = error,
            }
        }
        panic!("no redis-server came up: {last}");
    }

    /// The server of `RECOURSE_REDIS_URL` when it is set, else a new one.
    pub(crate) fn shared_or_start() -> Self {
        match std::env::var("RECOURSE_REDIS_URL") {
            Ok(url) if !url.trim().is_empty() => Self { url, port: None, child: None },
            _ => Self::start(),
        }
    }

    /// `redis://127.0.0.1:<port>`.
    pub(crate) fn url(&self) -> String {
        self.url.clone()
    }

    /// Kills the server (its connections are reset, its data is gone).
    pub(crate) fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port, empty.
    ///
    /// # Panics
    ///
    /// When it does not come up.
    pub(crate) fn restart(&mut self) {
        let port = self.port.expect("only a test's own server is restarted");
        self.stop();
        let deadline = Instant::now() + READY_WITHIN;
        loop {
            match self.spawn() {
                Ok(()) => return,
                // The port may still be held for a moment after the kill.
                Err(error) if Instant::now() < deadline => {
                    let _ = error;
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(error) => panic!("redis-server did not come back on port {port}: {error}"),
            }
        }
    }

    /// A synchronous connection, for a test's own commands.
    ///
    /// # Panics
    ///
    /// When the server does not accept it.
    pub(crate) fn connection(&self) -> redis::Connection {
        redis::Client::open(self.url())
            .and_then(|client| client.get_connection_with_timeout(READY_WITHIN))
            .expect("a connection to the test's redis-server")
    }

    fn spawn(&mut self) -> Result<(), String> {
        let port = self.port.expect("a server of the test's own");
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let mut child = match child {
            Ok(child) => child,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => panic!(
                "redis-server is not on PATH: these tests run a real Redis; install the Debian package \
                 (`apt-get install redis-server`)"
            ),
            Err(error) => panic!("could not start redis-server: {error}"),
        };
        let deadline = Instant::now() + READY_WITHIN;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!("redis-server exited at start on port {port} ({status})"));
            }
            if ping(port) {
                self.child = Some(child);
                return Ok(());
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("redis-server on port {port} did not answer PING within {READY_WITHIN:?}"));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A key no other test (or run) uses.
pub(crate) fn unique_key(name: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |since| since.as_nanos());
    format!("recourse-test:{name}:{}:{nanos}:{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("a free port on 127.0.0.1")
}

/// Whether a server on `port` answers PING.
fn ping(port: u16) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    let mut reply = [0; 7];
    stream.write_all(b"*1\r\n$4\r\nPING\r\n").is_ok() && stream.read_exact(&mut reply).is_ok() && &reply == b"+PONG\r\n"
}
