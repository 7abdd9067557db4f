//! The tracer against real programs: nginx serving TLS (HTTP/1.1 and HTTP/2 by ALPN), curl
//! (`SSL_read`/`SSL_write`) and Python's `ssl` module (`SSL_read_ex`/`SSL_write_ex`) as
//! clients, all linking the system's `libssl.so.3`; Go programs (`crypto/tls`, built here from
//! `tests/go/` by Debian's Go: a client, and a server as a stripped PIE); a C client with
//! OpenSSL linked in statically (`tests/c/`, attached by symbol; stripped, it is reported), in
//! a network namespace this test creates. Ground truth is what the clients sent and received, which the
//! test chooses.
//!
//! Needs root (BPF, namespaces). Not root: skipped, said on stderr. Root but the tracer cannot
//! load, or a tool is missing: a failure, so `.ci/run` (root) never skips it silently.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tapwire_tls::executable::{self, Executable};
use tapwire_tls::{Chunk, Config, Direction, Tracer, discover};

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// Whether the test can run (root); if not, it says it skips.
fn root() -> bool {
    let yes = is_root();
    if !yes {
        eprintln!("SKIP: the TLS tracer test needs root (BPF, network namespaces)");
    }
    yes
}

fn run(args: &[&str]) {
    let st = Command::new(args[0])
        .args(&args[1..])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap_or_else(|e| panic!("{}: {e} (installed by .ci/run)", args[0]));
    assert!(st.success(), "{args:?} failed");
}

/// A namespace with nginx serving TLS on 127.0.0.1:8443; all removed on drop.
struct Server {
    ns: String,
    dir: PathBuf,
    nginx: Child,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(out) = Command::new("ip")
            .args(["netns", "pids", &self.ns])
            .output()
        {
            for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                let _ = Command::new("kill").args(["-KILL", pid]).status();
            }
        }
        let _ = self.nginx.kill();
        let _ = self.nginx.wait();
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Server {
    fn start(tag: &str) -> Server {
        let ns = format!("twtls-{tag}-{}", std::process::id() % 100_000);
        let dir = std::env::temp_dir().join(&ns);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("www")).unwrap();
        std::fs::write(dir.join("www/hello.txt"), "hello over tls\n").unwrap();
        let big: Vec<u8> = (0..1 << 20).map(|i| b'a' + (i % 26) as u8).collect();
        std::fs::write(dir.join("www/big.bin"), big).unwrap();
        let d = dir.display();
        run(&[
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            &format!("{d}/k.pem"),
            "-out",
            &format!("{d}/c.pem"),
            "-days",
            "1",
            "-subj",
            "/CN=tapwire.test",
        ]);
        let conf = format!(
            "daemon off; user root; worker_processes 1; error_log {d}/error.log; pid {d}/nginx.pid;\n\
             events {{ worker_connections 64; }}\n\
             http {{ access_log off; client_body_temp_path {d}; proxy_temp_path {d};\n\
               fastcgi_temp_path {d}; uwsgi_temp_path {d}; scgi_temp_path {d};\n\
               server {{ listen 127.0.0.1:8443 ssl http2; ssl_certificate {d}/c.pem;\n\
                 ssl_certificate_key {d}/k.pem; root {d}/www; }} }}\n"
        );
        std::fs::write(dir.join("nginx.conf"), conf).unwrap();
        run(&["ip", "netns", "add", &ns]);
        run(&["ip", "-n", &ns, "link", "set", "lo", "up"]);
        let nginx = Command::new("ip")
            .args(["netns", "exec", &ns, "nginx", "-c"])
            .arg(dir.join("nginx.conf"))
            .stderr(Stdio::null())
            .spawn()
            .expect("nginx (installed by .ci/run)");
        let s = Server { ns, dir, nginx };
        let until = Instant::now() + Duration::from_secs(10);
        loop {
            let up = s
                .client(&[
                    "curl",
                    "-skf",
                    "-o",
                    "/dev/null",
                    "https://127.0.0.1:8443/hello.txt",
                ])
                .status()
                .is_ok_and(|st| st.success());
            if up {
                return s;
            }
            assert!(Instant::now() < until, "nginx did not come up");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A command run in the namespace; `ip netns exec` execs it, so its pid is the child's.
    fn client(&self, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns]).args(args);
        c.stdout(Stdio::null()).stderr(Stdio::null());
        c
    }
}

/// The tracer attached to every libssl file mapped now (nginx's among them).
fn tracer(ring_bytes: u32) -> Tracer {
    let mut t = Tracer::load(Config { ring_bytes })
        .unwrap_or_else(|e| panic!("root, but the TLS tracer did not load: {e}"));
    let scan = discover::scan(Path::new("/proc"));
    assert!(!scan.libraries.is_empty(), "nginx maps a libssl");
    for lib in &scan.libraries {
        // A library of some other process may export no SSL_* (a stub): not this test's concern.
        let _ = t.attach_library(lib);
    }
    t
}

/// Run `cmd` to its end while collecting chunks, then collect for `linger` more.
fn collect(t: &mut Tracer, mut cmd: Command, linger: Duration) -> (u32, Vec<Chunk>) {
    let mut child = cmd.spawn().expect("client starts");
    let pid = child.id();
    let mut got = Vec::new();
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        t.poll(Duration::from_millis(20), |c| got.push(c))
            .expect("poll");
        if let Some(status) = child.try_wait().expect("wait") {
            assert!(status.success(), "the client failed: {status}");
            break;
        }
        assert!(Instant::now() < until, "client did not finish");
    }
    let end = Instant::now() + linger;
    while Instant::now() < end {
        t.poll(Duration::from_millis(20), |c| got.push(c))
            .expect("poll");
    }
    (pid, got)
}

/// `curl -sk --http1.1` of `path` on the test's nginx, collected; curl's pid and the chunks.
fn curl(srv: &Server, t: &mut Tracer, path: &str) -> (u32, Vec<Chunk>) {
    let url = format!("https://127.0.0.1:8443{path}");
    let cmd = srv.client(&["curl", "-sk", "--http1.1", &url]);
    collect(t, cmd, Duration::from_millis(300))
}

/// One direction of one connection's plaintext, checked to be contiguous from offset 0.
fn stream(chunks: &[Chunk], pid: u32, dir: Direction) -> Vec<u8> {
    let mine: Vec<&Chunk> = chunks
        .iter()
        .filter(|c| c.conn.pid == pid && c.direction == dir)
        .collect();
    let mut out = Vec::new();
    for c in mine {
        assert_eq!(c.offset, out.len() as u64, "contiguous offsets");
        out.extend_from_slice(&c.data);
    }
    out
}

#[test]
fn curl_and_nginx_plaintext_with_their_connection() {
    if !root() {
        return;
    }
    let srv = Server::start("curl");
    let mut t = tracer(8 << 20);
    let (pid, chunks) = curl(&srv, &mut t, "/hello.txt");
    let sent = stream(&chunks, pid, Direction::Write);
    let got = stream(&chunks, pid, Direction::Read);
    assert!(
        sent.starts_with(b"GET /hello.txt HTTP/1.1\r\n"),
        "{:?}",
        String::from_utf8_lossy(&sent)
    );
    assert!(
        got.starts_with(b"HTTP/1.1 200 OK\r\n"),
        "{:?}",
        String::from_utf8_lossy(&got)
    );
    assert!(got.ends_with(b"hello over tls\n"));
    let first = chunks
        .iter()
        .find(|c| c.conn.pid == pid)
        .expect("curl's chunks");
    assert!(first.new_connection);
    let e = first.endpoints.expect("bound to its socket");
    assert_eq!(e.peer.to_string(), "127.0.0.1:8443");
    assert_eq!(e.local.ip().to_string(), "127.0.0.1");
    // nginx's worker saw the same request, from the server side of the same connection.
    let server: Vec<&Chunk> = chunks
        .iter()
        .filter(|c| c.conn.pid != pid && c.endpoints.is_some_and(|x| x.peer == e.local))
        .collect();
    let req: Vec<u8> = server
        .iter()
        .filter(|c| c.direction == Direction::Read)
        .flat_map(|c| c.data.clone())
        .collect();
    assert!(req.starts_with(b"GET /hello.txt HTTP/1.1\r\n"));
    assert_eq!(
        server[0].endpoints.map(|x| x.local.port()),
        Some(8443),
        "nginx's side is the server's"
    );
    let n = t.counters();
    assert!(n.chunks >= 4 && n.bytes > 0, "{n:?}");
}

#[test]
fn python_ex_calls_large_writes_split_and_truncation_is_a_gap() {
    if !root() {
        return;
    }
    let srv = Server::start("py");
    let mut t = tracer(8 << 20);
    // One 300 KiB write: 16 chunks of 16 KiB (256 KiB) reach the ring, the rest is counted
    // as truncated; then a small write whose offset shows the gap.
    let script = r#"
import socket, ssl
c = ssl.create_default_context(); c.check_hostname = False; c.verify_mode = ssl.CERT_NONE
s = c.wrap_socket(socket.create_connection(("127.0.0.1", 8443)))
body = b"x" * (300 * 1024)
s.sendall(b"POST /hello.txt HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % len(body))
s.sendall(body)
s.sendall(b"GET /hello.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
while s.recv(65536): pass
"#;
    let (pid, chunks) = collect(
        &mut t,
        srv.client(&["python3", "-c", script]),
        Duration::from_millis(300),
    );
    let writes: Vec<&Chunk> = chunks
        .iter()
        .filter(|c| c.conn.pid == pid && c.direction == Direction::Write)
        .collect();
    assert!(
        writes[0].data.starts_with(b"POST /hello.txt HTTP/1.1\r\n"),
        "Python's SSL_write_ex is traced"
    );
    let header = writes[0].data.len() as u64;
    let body: Vec<&&Chunk> = writes.iter().skip(1).take(16).collect();
    assert_eq!(body.len(), 16);
    for (i, c) in body.iter().enumerate() {
        assert_eq!(c.data.len(), 16384, "chunk {i} is at the cap");
        assert_eq!(c.offset, header + 16384 * i as u64);
    }
    let last = writes.last().expect("the GET");
    assert!(last.data.starts_with(b"GET /hello.txt"));
    assert_eq!(
        last.offset,
        header + 300 * 1024,
        "the truncated 44 KiB are a jump in offsets"
    );
    let n = t.counters();
    assert!(n.truncated_bytes >= 44 * 1024, "{n:?}");
}

#[test]
fn a_megabyte_response_arrives_whole() {
    if !root() {
        return;
    }
    let srv = Server::start("big");
    let mut t = tracer(8 << 20);
    let (pid, chunks) = collect(
        &mut t,
        srv.client(&["curl", "-sk", "--http1.1", "https://127.0.0.1:8443/big.bin"]),
        Duration::from_millis(300),
    );
    let got = stream(&chunks, pid, Direction::Read);
    let body_at = got
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("headers end")
        + 4;
    assert_eq!(got.len() - body_at, 1 << 20);
    assert!(
        got[body_at..]
            .iter()
            .enumerate()
            .all(|(i, b)| *b == b'a' + (i % 26) as u8)
    );
    let mut per_conn = HashMap::new();
    for c in chunks.iter().filter(|c| c.conn.pid == pid) {
        *per_conn.entry(c.conn).or_insert(0usize) += 1;
    }
    assert_eq!(per_conn.len(), 1, "one connection: {per_conn:?}");
}

#[test]
fn a_tiny_ring_loses_chunks_and_counts_them() {
    if !root() {
        return;
    }
    let srv = Server::start("tiny");
    // One page: a 1 MiB response cannot fit between two polls.
    let mut t = tracer(4096);
    let mut cmd = srv.client(&["curl", "-sk", "--http1.1", "https://127.0.0.1:8443/big.bin"]);
    // Spawned and waited for without polling, so the ring fills.
    let st = cmd.status().expect("curl");
    assert!(st.success());
    let mut got = Vec::new();
    t.poll(Duration::from_millis(100), |c| got.push(c))
        .expect("poll");
    let n = t.counters();
    assert!(n.lost_chunks > 0 && n.lost_bytes > 0, "{n:?}");
}

#[test]
fn curl_through_the_pipeline_is_one_http_exchange_with_its_process() {
    if !root() {
        return;
    }
    let srv = Server::start("pipe");
    let mut t = tracer(8 << 20);
    let (pid, chunks) = curl(&srv, &mut t, "/hello.txt?token=s3cret");
    // Both ends are traced (nginx and curl load the same libssl): each exchange once, from
    // curl, the client's end; nginx's copy of the connection is counted.
    let (out, feed) = dissect(chunks);
    let mine: Vec<&schemas::Exchange> = out
        .iter()
        .filter(|e| e.process.as_ref().is_some_and(|p| p.pid == pid))
        .collect();
    assert_eq!(mine.len(), 1, "{out:#?}");
    let ex = mine[0];
    assert_eq!(ex.protocol, schemas::Protocol::Http);
    let http = ex.http.as_ref().expect("http fields");
    assert_eq!(http.request.method.as_deref(), Some("GET"));
    assert_eq!(
        http.response.as_ref().and_then(|r| r.status_code),
        Some(200)
    );
    let url = ex.url.as_ref().expect("url");
    assert_eq!(url.path.as_deref(), Some("/hello.txt"));
    // Redacted like any other exchange.
    assert!(
        url.query.as_deref().is_some_and(|q| !q.contains("s3cret")),
        "{url:?}"
    );
    assert_eq!(ex.tls.as_ref().and_then(|t| t.established), Some(true));
    let exe = ex.process.as_ref().and_then(|p| p.executable.as_ref());
    assert_eq!(exe.map(|e| e.name.as_str()), Some("curl"));
    assert_eq!(
        (ex.server.address.as_str(), ex.server.port),
        ("127.0.0.1", 8443)
    );
    assert_ne!(ex.client.port, 8443);
    // nginx's side of the same connection was seen and dropped, not dissected again.
    assert!(feed.stats.duplicate_chunks >= 2, "{:?}", feed.stats);
    assert_eq!(feed.stats.handovers, 0, "{:?}", feed.stats);
    assert!(
        !out.iter()
            .any(|e| e.process.as_ref().is_some_and(|p| p.pid != pid)
                && e.client.port == ex.client.port),
        "{out:#?}"
    );
    let json = serde_json::to_value(ex).expect("serialises");
    assert_eq!(json["tls"]["established"], true);
    assert_eq!(json["process"]["executable"]["name"], "curl");
}

#[test]
fn a_connection_opened_before_the_probes_is_picked_up_at_its_next_request() {
    if !root() {
        return;
    }
    let srv = Server::start("early");
    // A keep-alive connection whose first request is made before the tracer loads; the
    // second waits for a line on stdin.
    let script = r#"
import socket, ssl, sys
c = ssl.create_default_context(); c.check_hostname = False; c.verify_mode = ssl.CERT_NONE
s = c.wrap_socket(socket.create_connection(("127.0.0.1", 8443)))
def get(path):
    s.sendall(b"GET " + path + b" HTTP/1.1\r\nHost: t\r\n\r\n")
    got = b""
    while not got.endswith(b"hello over tls\n"):
        got += s.recv(65536)
get(b"/hello.txt?before")
print("ready", flush=True)
sys.stdin.readline()
get(b"/hello.txt?after")
"#;
    let mut child = srv
        .client(&["python3", "-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut line = String::new();
    use std::io::{BufRead, Write};
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "ready");
    let mut t = tracer(8 << 20);
    // What the agent does after an attach: the connections the process holds now are
    // remembered as opened before the probes.
    let open = tapwire_tls::sockets::established(Path::new("/proc"), &[pid]);
    writeln!(child.stdin.take().unwrap(), "go").unwrap();
    let mut chunks = Vec::new();
    let until = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < until, "the client did not finish");
        t.poll(Duration::from_millis(20), |c| chunks.push(c))
            .unwrap();
    }
    t.poll(Duration::from_millis(300), |c| chunks.push(c))
        .unwrap();
    // Bound to its socket at its first write under the probes; its offsets count from there.
    let first = chunks
        .iter()
        .find(|c| c.conn.pid == pid)
        .expect("the old connection's chunks");
    assert!(
        first.new_connection && first.endpoints.is_some(),
        "{first:?}"
    );
    assert_eq!(first.offset, 0);
    let ep = first.endpoints.unwrap();
    assert!(
        open.connections
            .iter()
            .any(|e| e.local == ep.local && e.peer == ep.peer && e.netns == ep.netns),
        "the connection was listed open before the probes: {open:?} {ep:?}"
    );
    let (out, feed) = dissect_with(chunks, open.connections);
    // Counted as picked up mid-stream, once (nginx's end of it is traced too).
    assert_eq!(feed.stats.midstream, 1, "{:?}", feed.stats);
    let mine: Vec<&schemas::Exchange> = out
        .iter()
        .filter(|e| e.process.as_ref().is_some_and(|p| p.pid == pid))
        .collect();
    assert_eq!(mine.len(), 1, "the request made under the probes: {out:#?}");
    let url = mine[0].url.as_ref().expect("url");
    assert_eq!(url.query.as_deref(), Some("after"));
    assert_eq!(
        mine[0]
            .http
            .as_ref()
            .and_then(|h| h.response.as_ref())
            .and_then(|r| r.status_code),
        Some(200)
    );
}

#[test]
fn an_excluded_process_is_never_traced() {
    if !root() {
        return;
    }
    let srv = Server::start("self");
    // nginx's worker (the process that calls SSL_read/SSL_write) stands for the agent itself.
    let out = Command::new("ip")
        .args(["netns", "pids", &srv.ns])
        .output()
        .expect("ip netns pids");
    let worker: u32 = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .find(|p: &u32| {
            std::fs::read(format!("/proc/{p}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains("worker process"))
        })
        .expect("nginx's worker");
    let mut t = tracer(8 << 20);
    t.exclude_process(worker).expect("exclude");
    let (pid, chunks) = curl(&srv, &mut t, "/hello.txt");
    assert!(
        stream(&chunks, pid, Direction::Write).starts_with(b"GET /hello.txt"),
        "curl is still traced"
    );
    assert!(
        !chunks.iter().any(|c| c.conn.pid == worker),
        "the excluded process sent chunks"
    );
}

/// `chunks` through the reordering stage, the feed and a pipeline, as the agent hands them
/// over: the exchanges, and the feed (for its counters).
fn dissect(chunks: Vec<Chunk>) -> (Vec<schemas::Exchange>, tapwire_tls::Feed) {
    dissect_with(chunks, Vec::new())
}

/// [`dissect`], with connections noted as open before the probes.
fn dissect_with(
    chunks: Vec<Chunk>,
    opened_before: Vec<tapwire_tls::Endpoints>,
) -> (Vec<schemas::Exchange>, tapwire_tls::Feed) {
    let mut feed = tapwire_tls::Feed::new();
    for e in opened_before {
        feed.opened_before(e, 0);
    }
    let mut pipe = pipeline::Pipeline::default();
    let mut out = Vec::new();
    let mut reorder = tapwire_tls::Reorder::new();
    for c in chunks {
        reorder.push(c, |c| feed.push(c, &mut pipe, &mut out));
    }
    reorder.finish(|c| feed.push(c, &mut pipe, &mut out));
    feed.finish(&mut pipe, &mut out);
    pipe.finish(&mut out);
    (out, feed)
}

/// `tests/go/<name>.go` built by Debian's Go into a fresh folder with `flags`; the binary's
/// path. `go` missing: a failure as root (`.ci/run` installs it), else `None` (said).
fn go_build(name: &str, flags: &[&str]) -> Option<PathBuf> {
    if Command::new("go").arg("version").output().is_err() {
        assert!(!is_root(), "go is missing (installed by .ci/run)");
        eprintln!("SKIP: go is not installed");
        return None;
    }
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/go/{name}.go"));
    let tag = flags.join("").replace(['-', '=', ' '], "");
    let dir = std::env::temp_dir().join(format!("tw-go-{}-{name}{tag}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bin = dir.join(name);
    let cache = std::env::temp_dir().join("tapwire-gocache");
    let out = Command::new("go")
        .arg("build")
        .args(flags)
        .arg("-o")
        .arg(&bin)
        .arg(&src)
        .env("GO111MODULE", "off")
        .env("GOCACHE", &cache)
        .env("GOPATH", cache.join("gopath"))
        .output()
        .expect("go build");
    assert!(
        out.status.success(),
        "go build {name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(bin)
}

/// The file offset of symbol `name` in the ELF file at `path`, from its symbol table.
fn symbol_offset(path: &Path, name: &str) -> u64 {
    use object::{Object, ObjectSegment, ObjectSymbol};
    let data = std::fs::read(path).unwrap();
    let elf = object::File::parse(&*data).unwrap();
    let sym = elf
        .symbols()
        .find(|s| s.name() == Ok(name))
        .unwrap_or_else(|| panic!("{name} in the symbol table"));
    elf.segments()
        .find_map(|seg| {
            let d = sym.address().checked_sub(seg.address())?;
            (d < seg.size()).then(|| seg.file_range().0 + d)
        })
        .expect("in a segment")
}

#[test]
fn go_functions_are_found_with_and_without_symbols() {
    let Some(plain) = go_build("client", &[]) else {
        return;
    };
    let stripped = go_build("client", &["-ldflags=-s -w"]).unwrap();
    let pie = go_build("client", &["-buildmode=pie"]).unwrap();
    let inspect = |p: &Path| match executable::inspect(p) {
        Executable::Go(go) => go,
        other => panic!("{}: {other:?}", p.display()),
    };
    for bin in [&plain, &pie] {
        let go = inspect(bin);
        assert!(go.version.starts_with("go1."), "{go:?}");
        assert_eq!(go.functions.len(), 2, "{go:?}");
        let data = std::fs::read(bin).unwrap();
        for f in &go.functions {
            assert_eq!(f.entry, symbol_offset(bin, f.name), "{}", f.name);
            assert!(!f.returns.is_empty());
            for r in &f.returns {
                assert!(*r > f.entry);
                assert_eq!(data[*r as usize], 0xc3, "a RET at {r:#x}");
            }
        }
    }
    // Stripped of its symbol table: the same functions through .gopclntab.
    assert!(
        Command::new("nm")
            .arg(&stripped)
            .output()
            .is_ok_and(|o| !o.status.success() || o.stdout.is_empty()),
        "the binary is stripped"
    );
    let go = inspect(&stripped);
    assert_eq!(go.functions.len(), 2, "{go:?}");
    let data = std::fs::read(&stripped).unwrap();
    for f in &go.functions {
        assert!(f.returns.iter().all(|r| data[*r as usize] == 0xc3));
    }
    // Other executables: nothing of their own to trace.
    assert_eq!(
        executable::inspect(Path::new("/usr/bin/curl")),
        Executable::NoTls,
        "curl's TLS is libssl.so's"
    );
    for d in [plain, stripped, pie] {
        let _ = std::fs::remove_dir_all(d.parent().unwrap());
    }
}

/// Attach the Go executable at `bin` (before it runs: uprobes are per file).
fn attach_go(t: &mut Tracer, bin: &Path) {
    let Executable::Go(go) = executable::inspect(bin) else {
        panic!("a Go program");
    };
    let m = std::fs::metadata(bin).unwrap();
    use std::os::unix::fs::MetadataExt;
    let attached = t.attach_go(bin, (m.dev(), m.ino()), &go).expect("attach");
    assert_eq!(attached.len(), 2);
}

#[test]
fn a_go_client_over_http1_and_http2_through_the_pipeline() {
    if !root() {
        return;
    }
    let bin = go_build("client", &[]).expect("go");
    let srv = Server::start("goc");
    let mut t = tracer(8 << 20);
    attach_go(&mut t, &bin);
    let b = bin.to_str().unwrap();
    let (pid1, mut chunks) = collect(
        &mut t,
        srv.client(&[b, "-http1", "https://127.0.0.1:8443/hello.txt?one"]),
        Duration::from_millis(300),
    );
    let sent = stream(&chunks, pid1, Direction::Write);
    assert!(
        sent.starts_with(b"GET /hello.txt?one HTTP/1.1\r\n"),
        "{:?}",
        String::from_utf8_lossy(&sent)
    );
    let got = stream(&chunks, pid1, Direction::Read);
    assert!(got.starts_with(b"HTTP/1.1 200 OK\r\n"));
    assert!(got.ends_with(b"hello over tls\n"));
    let first = chunks.iter().find(|c| c.conn.pid == pid1).unwrap();
    let e = first
        .endpoints
        .expect("bound to its socket from Go's own structures");
    assert_eq!(e.peer.to_string(), "127.0.0.1:8443");
    let (pid2, more) = collect(
        &mut t,
        srv.client(&[b, "https://127.0.0.1:8443/hello.txt?two"]),
        Duration::from_millis(300),
    );
    let h2 = stream(&more, pid2, Direction::Write);
    assert!(
        h2.starts_with(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
        "HTTP/2 by ALPN"
    );
    chunks.extend(more);
    let (out, _) = dissect(chunks);
    for (pid, query, proto) in [(pid1, "one", "1.1"), (pid2, "two", "2")] {
        let mine: Vec<&schemas::Exchange> = out
            .iter()
            .filter(|e| e.process.as_ref().is_some_and(|p| p.pid == pid))
            .collect();
        assert_eq!(mine.len(), 1, "{out:#?}");
        let json = serde_json::to_value(mine[0]).unwrap();
        assert_eq!(json["url"]["path"], "/hello.txt", "{json}");
        assert_eq!(json["url"]["query"], query, "{json}");
        assert_eq!(json["network"]["protocol"]["version"], proto, "{json}");
        assert_eq!(json["http"]["response"]["status_code"], 200, "{json}");
        assert_eq!(json["process"]["executable"]["name"], "client", "{json}");
        assert_eq!(json["tls"]["established"], true);
    }
    let _ = std::fs::remove_dir_all(bin.parent().unwrap());
}

#[test]
fn a_stripped_pie_go_server_is_found_by_the_scan() {
    if !root() {
        return;
    }
    let bin = go_build("server", &["-buildmode=pie", "-ldflags=-s -w"]).expect("go");
    let srv = Server::start("gos");
    let d = srv.dir.display().to_string();
    let mut go = srv.client(&[
        bin.to_str().unwrap(),
        "127.0.0.1:9443",
        &format!("{d}/c.pem"),
        &format!("{d}/k.pem"),
    ]);
    let mut server = go.spawn().expect("go server");
    let until = Instant::now() + Duration::from_secs(10);
    while !srv
        .client(&[
            "curl",
            "-skf",
            "-o",
            "/dev/null",
            "https://127.0.0.1:9443/up",
        ])
        .status()
        .is_ok_and(|s| s.success())
    {
        assert!(Instant::now() < until, "the Go server did not come up");
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut t = Tracer::load(Config {
        ring_bytes: 8 << 20,
    })
    .expect("loads");
    // Each sync reads new executables for 50 ms at most: sync until none is left.
    let scan = discover::scan(Path::new("/proc"));
    let mut attached = 0;
    for _ in 0..200 {
        let report = t.sync(&scan);
        attached += report.attached;
        if report.deferred == 0 {
            break;
        }
    }
    assert!(
        attached >= 2,
        "nginx's libssl and the Go server: {attached}"
    );
    let (_, chunks) = collect(
        &mut t,
        srv.client(&[
            "curl",
            "-sk",
            "--http1.1",
            "https://127.0.0.1:9443/from-curl",
        ]),
        Duration::from_millis(300),
    );
    let server_pid = server.id();
    let req: Vec<u8> = chunks
        .iter()
        .filter(|c| c.conn.pid == server_pid && c.direction == Direction::Read)
        .flat_map(|c| c.data.clone())
        .collect();
    assert!(
        req.starts_with(b"GET /from-curl HTTP/1.1\r\n"),
        "{:?}",
        String::from_utf8_lossy(&req)
    );
    let resp: Vec<u8> = chunks
        .iter()
        .filter(|c| c.conn.pid == server_pid && c.direction == Direction::Write)
        .flat_map(|c| c.data.clone())
        .collect();
    assert!(String::from_utf8_lossy(&resp).contains("hello from go /from-curl"));
    let e = chunks
        .iter()
        .find(|c| c.conn.pid == server_pid)
        .and_then(|c| c.endpoints)
        .expect("bound");
    assert_eq!(e.local.port(), 9443);
    let _ = server.kill();
    let _ = server.wait();
    let _ = std::fs::remove_dir_all(bin.parent().unwrap());
}

#[test]
fn static_openssl_is_traced_by_symbol_and_reported_when_stripped() {
    if !root() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("tw-static-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bin = dir.join("static_client");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/c/static_client.c");
    run(&[
        "gcc",
        "-static",
        "-O1",
        "-o",
        bin.to_str().unwrap(),
        src.to_str().unwrap(),
        "-lssl",
        "-lcrypto",
        "-lpthread",
    ]);
    let stripped = dir.join("static_client_stripped");
    run(&[
        "strip",
        "-o",
        stripped.to_str().unwrap(),
        bin.to_str().unwrap(),
    ]);
    assert_eq!(executable::inspect(&bin), Executable::StaticOpenSsl);
    match executable::inspect(&stripped) {
        Executable::Unsupported(u) => assert_eq!(u.reason, "stripped_static_tls"),
        other => panic!("{other:?}"),
    }
    let srv = Server::start("static");
    let mut t = tracer(8 << 20);
    let m = std::fs::metadata(&bin).unwrap();
    use std::os::unix::fs::MetadataExt;
    let fns = t
        .attach_openssl(&bin, (m.dev(), m.ino()))
        .expect("attached by symbol");
    assert!(
        fns.contains(&"SSL_write") && fns.contains(&"SSL_read"),
        "{fns:?}"
    );
    let (pid, chunks) = collect(
        &mut t,
        srv.client(&[bin.to_str().unwrap(), "8443", "/hello.txt"]),
        Duration::from_millis(300),
    );
    assert!(stream(&chunks, pid, Direction::Write).starts_with(b"GET /hello.txt HTTP/1.1\r\n"));
    assert!(stream(&chunks, pid, Direction::Read).ends_with(b"hello over tls\n"));
    // The stripped copy, running (waiting on a server that listens and never answers), is
    // found by the scan and reported with its process.
    let mut mute = srv
        .client(&[
            "python3",
            "-c",
            "import socket, time\ns = socket.socket()\ns.bind(('127.0.0.1', 7000))\ns.listen()\nprint('listening', flush=True)\ntime.sleep(60)",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // The client must find the server listening (refused, it would exit at once): wait for it
    // to say so rather than for a fixed time a loaded machine can exceed.
    let mut said = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(mute.stdout.take().expect("piped")),
        &mut said,
    )
    .unwrap();
    assert_eq!(said.trim(), "listening");
    let mut waiting = srv
        .client(&[stripped.to_str().unwrap(), "7000", "/"])
        .spawn()
        .unwrap();
    // Scanned until the process shows up with its libraries mapped (a loaded machine can take
    // longer than any fixed wait to start it).
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let found = loop {
        std::thread::sleep(Duration::from_millis(300));
        let scan = discover::scan(Path::new("/proc"));
        let mut report = t.sync(&scan);
        while report.deferred > 0 {
            report = t.sync(&scan);
        }
        if let Some(u) = report
            .unsupported
            .iter()
            .find(|u| u.pids.contains(&waiting.id()))
        {
            break u.clone();
        }
        assert!(std::time::Instant::now() < deadline, "{report:?}");
    };
    assert_eq!(found.why.reason, "stripped_static_tls");
    assert!(found.path.ends_with("static_client_stripped"), "{found:?}");
    for c in [&mut waiting, &mut mute] {
        let _ = c.kill();
        let _ = c.wait();
    }
    let _ = std::fs::remove_dir_all(&dir);
}
