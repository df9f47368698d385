//! A fault-injecting HTTP proxy in front of a real metrics store: healthy, slow, erroring or
//! resetting on command, and counting what it forwarded. One thread per connection; every
//! reply closes the connection so each request is seen whole.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How the proxy treats the next requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Forward as is.
    Healthy,
    /// Wait this long, then forward.
    Slow(Duration),
    /// Answer HTTP 500 with a Prometheus error body.
    Error,
    /// Close the connection without answering.
    Reset,
}

pub struct FaultProxy {
    port: u16,
    fault: Arc<Mutex<Fault>>,
    forwarded: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl FaultProxy {
    pub fn start(target_port: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind fault proxy");
        let port = listener.local_addr().expect("local addr").port();
        let fault = Arc::new(Mutex::new(Fault::Healthy));
        let forwarded = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (f, n, s) = (fault.clone(), forwarded.clone(), stop.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if s.load(Ordering::Relaxed) {
                    return;
                }
                let Ok(stream) = stream else { continue };
                let mode = *f.lock().unwrap_or_else(|e| e.into_inner());
                let n = n.clone();
                std::thread::spawn(move || serve(stream, target_port, mode, &n));
            }
        });
        Self {
            port,
            fault,
            forwarded,
            stop,
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn set(&self, fault: Fault) {
        *self.fault.lock().unwrap_or_else(|e| e.into_inner()) = fault;
    }

    /// Requests forwarded to the target so far.
    pub fn forwarded(&self) -> usize {
        self.forwarded.load(Ordering::Relaxed)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// Reads one request (head and `Content-Length` body) as raw bytes.
fn read_request(stream: &TcpStream) -> Option<Vec<u8>> {
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut raw = Vec::new();
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.trim().eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().ok()?;
            }
            // Every forwarded request closes its connection.
            if name.trim().eq_ignore_ascii_case("connection") {
                continue;
            }
        }
        if line == "\r\n" {
            raw.extend_from_slice(b"Connection: close\r\n\r\n");
            break;
        }
        raw.extend_from_slice(line.as_bytes());
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    raw.extend_from_slice(&body);
    Some(raw)
}

fn serve(mut client: TcpStream, target: u16, mode: Fault, forwarded: &AtomicUsize) {
    let _ = client.set_read_timeout(Some(Duration::from_secs(30)));
    let Some(request) = read_request(&client) else {
        return;
    };
    match mode {
        Fault::Reset => return,
        Fault::Error => {
            let body = r#"{"status":"error","errorType":"internal","error":"injected failure"}"#;
            let _ = write!(
                client,
                "HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            return;
        }
        Fault::Slow(delay) => std::thread::sleep(delay),
        Fault::Healthy => {}
    }
    let Ok(mut upstream) = TcpStream::connect(("127.0.0.1", target)) else {
        return;
    };
    forwarded.fetch_add(1, Ordering::Relaxed);
    if upstream.write_all(&request).is_err() {
        return;
    }
    let mut reply = Vec::new();
    let _ = upstream.read_to_end(&mut reply);
    let _ = client.write_all(&reply);
}
