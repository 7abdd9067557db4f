//! Databases end to end, as root: a real server in the lab's server namespace, its Debian
//! client in the other, `tapwire run` capturing on the server's veth and `tapwire watch`
//! subscribed.
//!
//! PostgreSQL: `psql` in the clear logs in, creates a table, inserts, selects and asks for a
//! table that does not exist; each is one `postgresql` exchange with `db.namespace`, the SQL
//! with its literals hidden, the rows returned and the SQLSTATE of the error; a `psql` with
//! `sslmode=require` is a `tls` handshake on port 5432 instead.
//!
//! MariaDB: the `mariadb` client in the clear: the connection, a table created, rows inserted
//! and selected, a missing table (error 1146, SQLSTATE 42S02), with `db.system.name`
//! `mariadb`; with `--ssl` a `tls` handshake on port 3306. Skipped visibly when not root;
//! a missing server as root is a failure (`.ci/run` installs it).

use std::time::Duration;

use tapwire_integration::lab::{Lab, have, wait_until};

#[test]
fn postgresql_queries_live() {
    let Some(mut lab) = Lab::new() else { return };
    assert!(have("psql"), "psql (installed by .ci/run)");
    lab.start_postgres();
    lab.start_agent_with(&["--tls", "off"]);
    let (mut watch, rx) = lab.watch();
    std::thread::sleep(Duration::from_millis(500)); // the subscription reaches the workers
    let (c, sa) = (lab.c.clone(), lab.sa.clone());
    let psql = |mode: &str, sql: &[&str]| {
        let mut args = vec!["env", "PGPASSWORD=shop-pass"];
        let ssl = format!("PGSSLMODE={mode}");
        args.push(&ssl);
        args.extend(["psql", "-q", "-X", "-h", &sa, "-U", "shop", "-d", "shop"]);
        for q in sql {
            args.extend(["-c", q]);
        }
        let _ = lab.in_ns(&c, &args).output().unwrap();
    };
    psql(
        "disable",
        &[
            "CREATE TABLE books (id int PRIMARY KEY, title text)",
            "INSERT INTO books VALUES (1, 'Dune'), (2, 'Emma')",
            "SELECT title FROM books WHERE id > 0",
            "SELECT * FROM missing",
        ],
    );
    psql("require", &["SELECT 1"]);
    let mut got: Vec<serde_json::Value> = Vec::new();
    wait_until("the PostgreSQL exchanges and the TLS handshake", || {
        while let Ok(l) = rx.recv_timeout(Duration::from_millis(200)) {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&l) {
                got.push(v);
            }
        }
        got.iter().filter(|e| e["protocol"] == "postgresql").count() >= 5
            && got.iter().any(|e| e["protocol"] == "tls")
    });
    let _ = watch.kill();
    let _ = watch.wait();
    let pg: Vec<&serde_json::Value> = got
        .iter()
        .filter(|e| e["protocol"] == "postgresql")
        .collect();
    let ops: Vec<&str> = pg
        .iter()
        .map(|e| e["db"]["operation"]["name"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        ops,
        ["STARTUP", "CREATE", "INSERT", "SELECT", "SELECT"],
        "{pg:#?}"
    );
    for e in &pg {
        assert_eq!(e["db"]["namespace"], "shop");
        assert_eq!(e["server"]["address"], sa.as_str());
    }
    assert_eq!(pg[0]["postgresql"]["user"], "shop");
    assert_eq!(
        pg[2]["db"]["query"]["text"],
        "INSERT INTO books VALUES (?, ?), (?, ?)"
    );
    assert_eq!(pg[3]["db"]["response"]["returned_rows"], 2);
    assert_eq!(pg[3]["db"]["collection"]["name"], "books");
    assert_eq!(pg[4]["status"], "error");
    assert_eq!(pg[4]["db"]["response"]["status_code"], "42P01");
    let json = serde_json::to_string(&got).unwrap();
    assert!(
        !json.contains("shop-pass") && !json.contains("Dune"),
        "no secret, no value"
    );
    let tls = got.iter().find(|e| e["protocol"] == "tls").unwrap();
    assert_eq!(tls["server"]["port"], 5432);
    assert_eq!(tls["status"], "ok", "{tls}");
}

#[test]
fn mariadb_queries_live() {
    let Some(mut lab) = Lab::new() else { return };
    assert!(have("mariadbd"), "mariadb-server (installed by .ci/run)");
    lab.start_mariadb();
    lab.start_agent_with(&["--tls", "off"]);
    let (mut watch, rx) = lab.watch();
    std::thread::sleep(Duration::from_millis(500)); // the subscription reaches the workers
    let (c, sa) = (lab.c.clone(), lab.sa.clone());
    let mariadb = |ssl: &str, sql: &str| {
        let args = [
            "mariadb",
            "-h",
            &sa,
            "-u",
            "shop",
            "-pshop-pass",
            ssl,
            "shop",
            "-e",
            sql,
        ];
        let _ = lab.in_ns(&c, &args).output().unwrap();
    };
    mariadb(
        "--skip-ssl",
        "CREATE TABLE books (id int PRIMARY KEY, title text); \
         INSERT INTO books VALUES (1, 'Dune'), (2, 'Emma'); \
         SELECT title FROM books WHERE id > 0; SELECT * FROM missing",
    );
    mariadb("--ssl", "SELECT 1");
    let mut got: Vec<serde_json::Value> = Vec::new();
    wait_until("the MariaDB exchanges and the TLS handshake", || {
        while let Ok(l) = rx.recv_timeout(Duration::from_millis(200)) {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&l) {
                got.push(v);
            }
        }
        got.iter()
            .any(|e| e["db"]["operation"]["name"] == "COM_QUIT")
            && got.iter().any(|e| e["protocol"] == "tls")
    });
    let _ = watch.kill();
    let _ = watch.wait();
    let my: Vec<&serde_json::Value> = got.iter().filter(|e| e["protocol"] == "mysql").collect();
    let find = |op: &str| {
        my.iter()
            .find(|e| e["db"]["operation"]["name"] == op)
            .unwrap_or_else(|| panic!("{op}: {my:#?}"))
    };
    for e in &my {
        assert_eq!(e["db"]["system"]["name"], "mariadb");
        assert_eq!(e["db"]["namespace"], "shop");
    }
    assert_eq!(find("COM_CONNECT")["mysql"]["user"], "shop");
    assert_eq!(
        find("INSERT")["db"]["query"]["text"],
        "INSERT INTO books VALUES (?, ?), (?, ?)"
    );
    let select = my
        .iter()
        .find(|e| e["db"]["response"]["returned_rows"] == 2)
        .expect("the SELECT with its two rows");
    assert_eq!(select["db"]["collection"]["name"], "books");
    let missing = my
        .iter()
        .find(|e| e["status"] == "error")
        .expect("the missing table");
    assert_eq!(missing["db"]["response"]["status_code"], "1146");
    assert_eq!(missing["mysql"]["error"]["sqlstate"], "42S02");
    let json = serde_json::to_string(&got).unwrap();
    assert!(
        !json.contains("shop-pass") && !json.contains("Dune"),
        "no secret, no value"
    );
    let tls = got.iter().find(|e| e["protocol"] == "tls").unwrap();
    assert_eq!(tls["server"]["port"], 3306);
    assert_eq!(tls["status"], "ok", "{tls}");
}
