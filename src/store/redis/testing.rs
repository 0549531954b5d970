//! A real `redis-server` for the unit tests, on a free loopback port,
//! with nothing saved to disk; killed when dropped.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::config::RedisConfig;

pub struct TestRedis {
    child: Child,
    pub port: u16,
}

impl TestRedis {
    pub fn start() -> TestRedis {
        let port = free_port();
        let redis = TestRedis {
            child: spawn(port),
            port,
        };
        redis.wait_until_up();
        redis
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn config(&self, prefix: &str) -> RedisConfig {
        RedisConfig {
            url: self.url(),
            username: None,
            password: None,
            key_prefix: prefix.to_owned(),
            timeout: Duration::from_secs(2),
            min_replicas_ack: 0,
            sentinel: None,
        }
    }

    fn wait_until_up(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(port: u16) -> Child {
    Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server is installed (scripts/test installs it)")
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

impl TestRedis {
    /// Stops the server; `restart` brings it back on the same port, empty.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn restart(&mut self) {
        self.stop();
        self.child = spawn(self.port);
        self.wait_until_up();
    }
}
