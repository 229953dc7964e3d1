//! A tansu broker on a free loopback port for the length of a test (memory storage), from
//! the binary in `STOCKPULSE_TANSU`: quick protocol tests only (see docs/operator.md for
//! what tansu lacks).

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::{free_port, tool, wait_for_port};

pub struct Tansu {
    child: Child,
    pub bootstrap: String,
}

impl Tansu {
    pub fn start() -> Tansu {
        let binary = tool("STOCKPULSE_TANSU");
        let port = free_port();
        let url = format!("tcp://127.0.0.1:{port}");
        let child = Command::new(&binary)
            .args(["broker", "--listener-url", &url, "--advertised-listener-url", &url])
            .args(["--storage-engine", "memory://tansu/"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        let tansu = Tansu { child, bootstrap: format!("127.0.0.1:{port}") };
        wait_for_port(&tansu.bootstrap, "tansu", Duration::from_secs(20));
        tansu
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
