//! A tansu broker on a free loopback port for the length of a test (memory storage), from
//! the binary in `STOCKPULSE_TANSU`.

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Tansu {
    child: Child,
    pub bootstrap: String,
}

impl Tansu {
    pub fn start() -> Tansu {
        let binary = super::tool("STOCKPULSE_TANSU");
        let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("free port");
        let url = format!("tcp://127.0.0.1:{port}");
        let child = Command::new(&binary)
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
                "--storage-engine",
                "memory://tansu/",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        let tansu = Tansu { child, bootstrap: format!("127.0.0.1:{port}") };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(&tansu.bootstrap).is_err() {
            assert!(Instant::now() < deadline, "tansu did not listen on {} within 20s", tansu.bootstrap);
            std::thread::sleep(Duration::from_millis(100));
        }
        tansu
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
