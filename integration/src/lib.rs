//! End-to-end tests of the tapwire agent live in `tests/`; the fixture recorder
//! (`record.sh`), its servers and its clients live next to them.

use std::path::PathBuf;

/// The `tapwire` binary of this build (the workspace build puts it in the target folder,
/// next to the test executables' `deps/`).
pub fn tapwire() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe
        .parent()
        .and_then(|d| d.parent())
        .expect("target folder");
    let bin = dir.join("tapwire");
    assert!(
        bin.exists(),
        "{} not built: run `cargo build -p tapwire-agent` first",
        bin.display()
    );
    bin
}

/// Network namespaces, real servers and the agent, for the end-to-end tests (root only).
pub mod fake_k8s;
pub mod hostile;
pub mod pcapgen;

pub mod lab {
    use std::io::{BufRead, BufReader};
    use std::path::PathBuf;
    use std::process::{Child, Command, Stdio};
    use std::sync::mpsc;
    use std::time::{Duration, Instant};

    pub static TAPWIRE_PATH: std::sync::LazyLock<String> =
        std::sync::LazyLock::new(|| crate::tapwire().to_string_lossy().into_owned());
    pub const API: &str = "127.0.0.1:19465";

    /// The tapwire binary, with the TLS plaintext source off (`TAPWIRE_TLS=off`) unless the
    /// test passes `--tls`: uprobes see every process on the machine, so one test's HTTPS would
    /// otherwise reach another test's agent.
    pub fn tapwire_cmd() -> Command {
        let mut c = Command::new(&*TAPWIRE_PATH);
        c.env("TAPWIRE_TLS", "off");
        c
    }

    /// The lines a child prints on its (piped) stdout, as they come.
    pub fn lines_of(child: &mut Child) -> mpsc::Receiver<String> {
        let out = child.stdout.take().expect("stdout is piped");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        rx
    }

    pub fn have(cmd: &str) -> bool {
        Command::new("sh")
            .args(["-c", &format!("command -v {cmd}")])
            .output()
            .is_ok_and(|o| o.status.success())
    }

    pub fn sh(args: &[&str]) {
        let st = Command::new(args[0])
            .args(&args[1..])
            .status()
            .expect("run");
        assert!(st.success(), "{args:?} failed");
    }

    /// The namespaces, their processes and a scratch folder; all removed on drop.
    /// A self-signed certificate for `cn` (RSA, one day) written to `dir`: (cert, key).
    pub fn self_signed(dir: &std::path::Path, cn: &str) -> (PathBuf, PathBuf) {
        let (cert, key) = (dir.join("c.pem"), dir.join("k.pem"));
        let subject = format!("/CN={cn}");
        sh(&[
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            key.to_str().unwrap(),
            "-out",
            cert.to_str().unwrap(),
            "-days",
            "1",
            "-subj",
            &subject,
        ]);
        (cert, key)
    }

    pub struct Lab {
        /// Server and client namespaces.
        pub s: String,
        pub c: String,
        /// The server's address on the veth pair.
        pub sa: String,
        /// The server namespace's veth end.
        pub dev: String,
        pub dir: PathBuf,
        pub procs: Vec<Child>,
    }

    impl Drop for Lab {
        fn drop(&mut self) {
            // Everything still running in the namespaces (nginx's workers too), then our children.
            for ns in [&self.s, &self.c] {
                if let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() {
                    for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                        let _ = Command::new("kill").args(["-KILL", pid]).status();
                    }
                }
            }
            for p in &mut self.procs {
                let _ = p.kill();
                let _ = p.wait();
            }
            for ns in [&self.s, &self.c] {
                let _ = Command::new("ip").args(["netns", "del", ns]).status();
            }
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    impl Lab {
        pub fn new() -> Option<Lab> {
            // SAFETY-free check of the effective user: `id -u`.
            let uid = Command::new("id").arg("-u").output().ok()?;
            if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
                eprintln!("SKIP: live agent test needs root (network namespaces, AF_PACKET)");
                return None;
            }
            for cmd in ["ip", "nginx", "curl"] {
                if !have(cmd) {
                    eprintln!("SKIP: live agent test needs {cmd}");
                    return None;
                }
            }
            // Unique per test, also when tests share a process (cargo test runs them as threads).
            static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
            let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let id = (std::process::id() % 1_000) * 10 + n % 10;
            let net = 100 + id % 100;
            let lab = Lab {
                s: format!("twl-s{id}"),
                c: format!("twl-c{id}"),
                sa: format!("10.79.{net}.1"),
                dev: format!("twl-s{id}"),
                dir: std::env::temp_dir().join(format!("tapwire-live-{id}")),
                procs: Vec::new(),
            };
            let ca = format!("10.79.{net}.2");
            let cdev = format!("twl-c{id}");
            let _ = std::fs::remove_dir_all(&lab.dir);
            std::fs::create_dir_all(lab.dir.join("www")).unwrap();
            sh(&["ip", "netns", "add", &lab.s]);
            sh(&["ip", "netns", "add", &lab.c]);
            sh(&[
                "ip", "link", "add", &lab.dev, "type", "veth", "peer", "name", &cdev,
            ]);
            sh(&["ip", "link", "set", &lab.dev, "netns", &lab.s]);
            sh(&["ip", "link", "set", &cdev, "netns", &lab.c]);
            sh(&[
                "ip",
                "-n",
                &lab.s,
                "addr",
                "add",
                &format!("{}/24", lab.sa),
                "dev",
                &lab.dev,
            ]);
            sh(&[
                "ip",
                "-n",
                &lab.c,
                "addr",
                "add",
                &format!("{ca}/24"),
                "dev",
                &cdev,
            ]);
            for (ns, dev) in [(&lab.s, &lab.dev), (&lab.c, &cdev)] {
                sh(&["ip", "-n", ns, "link", "set", "lo", "up"]);
                sh(&["ip", "-n", ns, "link", "set", dev, "up"]);
            }
            Some(lab)
        }

        /// `args` run in namespace `ns`; an agent started so has the TLS plaintext source off
        /// unless the test passes `--tls` (see [`tapwire_cmd`]).
        pub fn in_ns(&self, ns: &str, args: &[&str]) -> Command {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns]).args(args);
            c.env("TAPWIRE_TLS", "off");
            c
        }

        pub fn start_nginx(&mut self) {
            let www = self.dir.join("www");
            std::fs::write(www.join("index.html"), "hello from nginx\n").unwrap();
            let d = self.dir.display();
            let conf = format!(
                "daemon off; user root; worker_processes 1; error_log {d}/error.log; pid {d}/nginx.pid;\n\
             events {{ worker_connections 64; }}\n\
             http {{ access_log off; client_body_temp_path {d}; proxy_temp_path {d};\n\
               fastcgi_temp_path {d}; uwsgi_temp_path {d}; scgi_temp_path {d};\n\
               server {{ listen {}:80; root {}; }} }}\n",
                self.sa,
                www.display()
            );
            std::fs::write(self.dir.join("nginx.conf"), conf).unwrap();
            let conf_path = self.dir.join("nginx.conf");
            let child = self
                .in_ns(
                    &self.s.clone(),
                    &["nginx", "-c", conf_path.to_str().unwrap()],
                )
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            self.procs.push(child);
            self.wait_for(&self.c.clone(), &format!("http://{}/", self.sa));
        }

        pub fn start_agent(&mut self) -> usize {
            self.start_agent_with(&[])
        }

        /// The agent on the server's veth with `extra` arguments; its stderr goes to
        /// `agent.log` in the lab folder.
        pub fn start_agent_with(&mut self, extra: &[&str]) -> usize {
            let spool = self.dir.join("spool");
            let log = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.dir.join("agent.log"))
                .unwrap();
            let mut args = vec![
                &*TAPWIRE_PATH as &str,
                "run",
                "--interface",
                &self.dev,
                "--listen",
                API,
                "--spool-dir",
                spool.to_str().unwrap(),
                "--spool-limit",
                "64MiB",
                "--workers",
                "2",
            ];
            args.extend_from_slice(extra);
            let child = self
                .in_ns(&self.s, &args)
                .stderr(Stdio::from(log))
                .spawn()
                .unwrap();
            self.procs.push(child);
            self.wait_for(&self.s.clone(), &format!("http://{API}/healthz"));
            self.procs.len() - 1
        }

        /// `tapwire watch` subscribed to the lab's agent from the server namespace, printing
        /// NDJSON; the lines it prints, as they come.
        pub fn watch(&self) -> (Child, mpsc::Receiver<String>) {
            self.watch_with(&[])
        }

        /// [`Lab::watch`] with more arguments (`--since 1m`, say).
        pub fn watch_with(&self, extra: &[&str]) -> (Child, mpsc::Receiver<String>) {
            let api = format!("http://{API}");
            let mut args = vec![&*TAPWIRE_PATH as &str, "watch", "--agent", &api];
            args.extend_from_slice(extra);
            let mut child = self
                .in_ns(&self.s, &args)
                .stdout(Stdio::piped())
                .spawn()
                .unwrap();
            let rx = lines_of(&mut child);
            (child, rx)
        }

        /// redis-server on the server address, port 6379.
        pub fn start_redis(&mut self) {
            self.start_redis_with(&["--port", "6379"]);
        }

        /// redis-server on the server address with `ports` (and any other options), no
        /// persistence.
        pub fn start_redis_with(&mut self, ports: &[&str]) {
            let mut args = vec!["redis-server", "--bind", &self.sa];
            args.extend_from_slice(ports);
            args.extend_from_slice(&["--save", "", "--appendonly", "no", "--protected-mode", "no"]);
            let child = self
                .in_ns(&self.s, &args)
                .stdout(Stdio::null())
                .spawn()
                .unwrap();
            self.procs.push(child);
        }

        /// `tapwire pcap --agent <the lab's agent> ARGS` from the server namespace.
        pub fn pcap(&self, args: &[&str]) -> std::process::ExitStatus {
            let api = format!("http://{API}");
            let mut all = vec![&*TAPWIRE_PATH as &str, "pcap", "--agent", &api];
            all.extend_from_slice(args);
            self.in_ns(&self.s, &all).status().unwrap()
        }

        /// dnsmasq on the server address, port 53, answering `records` (dnsmasq options).
        pub fn start_dnsmasq(&mut self, records: &[&str]) {
            let listen = format!("--listen-address={}", self.sa);
            let pid = format!("--pid-file={}/dnsmasq.pid", self.dir.display());
            let mut args = vec![
                "dnsmasq",
                "--no-daemon",
                "--bind-interfaces",
                &listen,
                "--no-resolv",
                "--no-hosts",
                &pid,
            ];
            args.extend_from_slice(records);
            let child = self
                .in_ns(&self.s, &args)
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            self.procs.push(child);
        }

        /// PostgreSQL (Debian's, the newest under `/usr/lib/postgresql`) on the server address,
        /// port 5432, TLS available, with a `shop` role (password `shop-pass`, SCRAM) owning a
        /// `shop` database; returns once it accepts connections. A private cluster in the lab
        /// folder, owned by the `postgres` user as PostgreSQL requires.
        pub fn start_postgres(&mut self) {
            let bin = std::fs::read_dir("/usr/lib/postgresql")
                .expect("PostgreSQL is installed (by .ci/run)")
                .flatten()
                .map(|e| e.path().join("bin"))
                .max()
                .expect("a PostgreSQL version");
            let pg = self.dir.join("pg");
            std::fs::create_dir_all(pg.join("sock")).unwrap();
            let (cert, key) = self_signed(&pg, "db.tapwire.test");
            sh(&["chmod", "711", self.dir.to_str().unwrap()]);
            sh(&["chown", "-R", "postgres", pg.to_str().unwrap()]);
            sh(&["chmod", "600", key.to_str().unwrap()]);
            let as_postgres = [
                "setpriv",
                "--reuid=postgres",
                "--regid=postgres",
                "--init-groups",
                "--",
            ];
            let data = pg.join("data");
            let initdb = bin.join("initdb");
            let mut args = as_postgres.to_vec();
            args.extend([
                initdb.to_str().unwrap(),
                "-D",
                data.to_str().unwrap(),
                "-U",
                "postgres",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
            ]);
            let st = Command::new(args[0])
                .args(&args[1..])
                .stdout(Stdio::null())
                .status()
                .unwrap();
            assert!(st.success(), "initdb");
            let hba = data.join("pg_hba.conf");
            let mut conf = std::fs::read_to_string(&hba).unwrap();
            conf.push_str("host all all 10.79.0.0/16 scram-sha-256\n");
            std::fs::write(&hba, conf).unwrap();
            let server = bin.join("postgres");
            let (listen, sock) = (
                format!("listen_addresses={}", self.sa),
                format!("unix_socket_directories={}", pg.join("sock").display()),
            );
            let (cert_opt, key_opt) = (
                format!("ssl_cert_file={}", cert.display()),
                format!("ssl_key_file={}", key.display()),
            );
            let mut args = as_postgres.to_vec();
            args.extend([
                server.to_str().unwrap(),
                "-D",
                data.to_str().unwrap(),
                "-c",
                &listen,
                "-c",
                &sock,
                "-c",
                "ssl=on",
                "-c",
                &cert_opt,
                "-c",
                &key_opt,
                "-c",
                "fsync=off",
            ]);
            let child = self
                .in_ns(&self.s.clone(), &args)
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            self.procs.push(child);
            let socket = pg.join("sock").display().to_string();
            let until = Instant::now() + Duration::from_secs(20);
            loop {
                let mut psql = as_postgres.to_vec();
                psql.extend([
                    "psql",
                    "-q",
                    "-h",
                    &socket,
                    "-U",
                    "postgres",
                    "-c",
                    "CREATE ROLE shop LOGIN PASSWORD 'shop-pass'",
                    "-c",
                    "CREATE DATABASE shop OWNER shop",
                ]);
                let ok = Command::new(psql[0])
                    .args(&psql[1..])
                    .stderr(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success());
                if ok {
                    break;
                }
                assert!(Instant::now() < until, "PostgreSQL did not start");
                std::thread::sleep(Duration::from_millis(100));
            }
        }

        /// MariaDB (Debian's) on the server address, port 3306, TLS available, with a `shop`
        /// user (password `shop-pass`) owning a `shop` database; returns once it accepts
        /// connections. A private data folder in the lab folder, owned by `mysql`.
        pub fn start_mariadb(&mut self) {
            let my = self.dir.join("my");
            std::fs::create_dir_all(&my).unwrap();
            let (cert, key) = self_signed(&my, "db.tapwire.test");
            sh(&["chmod", "711", self.dir.to_str().unwrap()]);
            sh(&["chown", "-R", "mysql", my.to_str().unwrap()]);
            let data = format!("--datadir={}", my.join("data").display());
            let st = Command::new("mariadb-install-db")
                .args(["--no-defaults", &data, "--user=mysql", "--skip-test-db"])
                .arg("--auth-root-authentication-method=socket")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .unwrap();
            assert!(st.success(), "mariadb-install-db");
            let socket = my.join("sock").display().to_string();
            let args = [
                "mariadbd".to_string(),
                "--no-defaults".into(),
                "--user=mysql".into(),
                data,
                format!("--socket={socket}"),
                format!("--pid-file={}", my.join("pid").display()),
                format!("--log-error={}", my.join("log").display()),
                format!("--bind-address={}", self.sa),
                "--port=3306".into(),
                format!("--ssl-cert={}", cert.display()),
                format!("--ssl-key={}", key.display()),
                "--skip-name-resolve".into(),
                "--skip-log-bin".into(),
                "--innodb-buffer-pool-size=16M".into(),
            ];
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let child = self
                .in_ns(&self.s.clone(), &args)
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            self.procs.push(child);
            let until = Instant::now() + Duration::from_secs(30);
            loop {
                let ok = Command::new("mariadb")
                    .args(["-S", &socket, "-u", "root", "-e"])
                    .arg(
                        "CREATE DATABASE shop; CREATE USER 'shop'@'%' IDENTIFIED BY 'shop-pass'; \
                         GRANT ALL ON shop.* TO 'shop'@'%';",
                    )
                    .stderr(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success());
                if ok {
                    break;
                }
                assert!(Instant::now() < until, "MariaDB did not start");
                std::thread::sleep(Duration::from_millis(100));
            }
        }

        pub fn wait_for(&self, ns: &str, url: &str) {
            let until = Instant::now() + Duration::from_secs(10);
            while Instant::now() < until {
                let ok = self
                    .in_ns(ns, &["curl", "-sf", "-o", "/dev/null", url])
                    .status()
                    .is_ok_and(|s| s.success());
                if ok {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            panic!("{url} did not come up in {ns}");
        }

        /// curl from the client namespace.
        pub fn get(&self, path: &str) {
            let url = format!("http://{}{path}", self.sa);
            let st = self
                .in_ns(&self.c, &["curl", "-s", "-o", "/dev/null", &url])
                .status()
                .unwrap();
            assert!(st.success());
        }

        pub fn status(&self) -> serde_json::Value {
            let out = self
                .in_ns(
                    &self.s,
                    &["curl", "-sf", &format!("http://{API}/v1/status")],
                )
                .output()
                .unwrap();
            serde_json::from_slice(&out.stdout).expect("status JSON")
        }

        pub fn signal(&mut self, i: usize, sig: &str) -> std::process::ExitStatus {
            // `ip netns exec` execs the command, so the child's pid is the agent's.
            let pid = self.procs[i].id().to_string();
            sh(&["kill", sig, &pid]);
            self.procs[i].wait().unwrap()
        }

        pub fn spool_files(&self) -> Vec<PathBuf> {
            let mut v = Vec::new();
            for w in std::fs::read_dir(self.dir.join("spool")).unwrap().flatten() {
                for f in std::fs::read_dir(w.path()).unwrap().flatten() {
                    v.push(f.path());
                }
            }
            v.sort();
            v
        }
    }

    pub fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
        let until = Instant::now() + Duration::from_secs(10);
        while Instant::now() < until {
            if f() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("timed out waiting for {what}");
    }
}
