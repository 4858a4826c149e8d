//! A real PostgreSQL server for the tests: one throwaway cluster per test run (Debian's
//! `postgresql-15`, which `.ci/run` installs), on a free loopback port, with password logins
//! over TCP, and TLS with a certificate of a test authority (the role `tls_only` may log in over TLS
//! only). Each test works in a database of its own. The cluster is stopped and removed
//! when the test process ends.
//!
//! Without PostgreSQL these tests fail, saying how to install it; set `STRATA_SKIP_POSTGRES=1`
//! to not run them on purpose (they then say so, and pass without checking).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// The superuser's password (the tests hand it to Strata through the environment).
pub const PASSWORD: &str = "s3cret-Pa55";

pub struct Server {
    pub port: u16,
    bin: PathBuf,
    dir: PathBuf,
}

/// The PostgreSQL binaries: `STRATA_POSTGRES_BIN`, else the newest under /usr/lib/postgresql.
fn find_bin() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("STRATA_POSTGRES_BIN") {
        return Some(PathBuf::from(p));
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let v = e.file_name().to_string_lossy().parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((v, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, b)| b)
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Run a PostgreSQL program as the user that owns the cluster (`postgres` when we are root:
/// the server refuses to run as root).
fn as_owner(program: &Path) -> Command {
    match is_root() {
        true => {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(program);
            c
        }
        false => Command::new(program),
    }
}

fn start() -> Option<Server> {
    if std::env::var_os("STRATA_SKIP_POSTGRES").is_some() {
        assert!(
            std::env::var_os("CI").is_none(),
            "STRATA_SKIP_POSTGRES is set in CI: the PostgreSQL tests must run there"
        );
        eprintln!("NOT RUN: STRATA_SKIP_POSTGRES is set, the PostgreSQL test checked nothing");
        return None;
    }
    let Some(bin) = find_bin() else {
        panic!(
            "PostgreSQL not found: `apt-get install postgresql-15` (as .ci/run does), or point \
             STRATA_POSTGRES_BIN at its bin folder, or set STRATA_SKIP_POSTGRES=1 to not run the \
             PostgreSQL tests"
        );
    };
    let dir = std::env::temp_dir().join(format!("strata-pg-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("cluster folder");
    let pwfile = dir.join("pw");
    std::fs::write(&pwfile, PASSWORD).expect("password file");
    if is_root() {
        let ok = Command::new("chown")
            .args(["-R", "postgres"])
            .arg(&dir)
            .status()
            .expect("chown")
            .success();
        assert!(ok, "chown {} to postgres failed", dir.display());
    }
    let out = as_owner(&bin.join("initdb"))
        .arg("-D")
        .arg(dir.join("data"))
        .args([
            "-U",
            "postgres",
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "-E",
            "UTF8",
            "--locale=C.UTF-8",
            "--no-sync",
        ])
        .arg(format!("--pwfile={}", pwfile.display()))
        .output()
        .expect("run initdb");
    assert!(
        out.status.success(),
        "initdb failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A certificate authority, and the server's certificate for 127.0.0.1 signed by it.
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(&dir)
            .output()
            .expect("run openssl");
        assert!(
            out.status.success(),
            "openssl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=strata-test-ca",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
    ]);
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
    ]);
    std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1\n").expect("san");
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "san.ext",
        "-out",
        "server.crt",
    ]);
    if is_root() {
        Command::new("chown")
            .args(["postgres"])
            .arg(dir.join("server.key"))
            .arg(dir.join("server.crt"))
            .status()
            .expect("chown");
    }
    Command::new("chmod")
        .arg("600")
        .arg(dir.join("server.key"))
        .status()
        .expect("chmod");
    let hba = dir.join("data/pg_hba.conf");
    let rules = std::fs::read_to_string(&hba).expect("pg_hba.conf");
    std::fs::write(
        &hba,
        format!(
            "hostssl all tls_only 127.0.0.1/32 scram-sha-256\nhostnossl all tls_only 127.0.0.1/32 reject\n{rules}"
        ),
    )
    .expect("pg_hba.conf");
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let conf = format!(
        "listen_addresses = '127.0.0.1'\nport = {port}\nunix_socket_directories = '{0}'\nfsync = off\nsynchronous_commit = off\nfull_page_writes = off\nmax_connections = 200\nssl = on\nssl_cert_file = '{0}/server.crt'\nssl_key_file = '{0}/server.key'\n",
        dir.display()
    );
    let mut text = std::fs::read_to_string(dir.join("data/postgresql.conf")).expect("conf");
    text.push_str(&conf);
    std::fs::write(dir.join("data/postgresql.conf"), text).expect("conf");
    let out = as_owner(&bin.join("pg_ctl"))
        .arg("-D")
        .arg(dir.join("data"))
        .arg("-l")
        .arg(dir.join("server.log"))
        .args(["-w", "start"])
        .output()
        .expect("run pg_ctl");
    assert!(
        out.status.success(),
        "pg_ctl start failed: {}{}",
        String::from_utf8_lossy(&out.stderr),
        std::fs::read_to_string(dir.join("server.log")).unwrap_or_default()
    );
    // Stop and remove the cluster once this test process is gone.
    let stop = format!(
        "while kill -0 {pid} 2>/dev/null; do sleep 1; done; {owner} {pg_ctl} -D {data} -m immediate stop >/dev/null 2>&1; rm -rf {dir}",
        pid = std::process::id(),
        owner = if is_root() {
            "runuser -u postgres --"
        } else {
            ""
        },
        pg_ctl = bin.join("pg_ctl").display(),
        data = dir.join("data").display(),
        dir = dir.display(),
    );
    // It outlives this process by design: nothing here waits for it.
    #[allow(clippy::zombie_processes)]
    Command::new("sh")
        .args(["-c", &stop])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the cluster's reaper");
    let server = Server { port, bin, dir };
    server.psql(
        "postgres",
        &format!("create role tls_only login superuser password '{PASSWORD}'"),
    );
    Some(server)
}

/// The test run's server (started by the first test that asks), or None when skipped.
pub fn server() -> Option<&'static Server> {
    static SERVER: OnceLock<Option<Server>> = OnceLock::new();
    SERVER.get_or_init(start).as_ref()
}

impl Server {
    /// A new, empty database named `name` (dropped first if it is there).
    pub fn database(&self, name: &str) -> Database<'_> {
        self.psql("postgres", &format!("drop database if exists {name}"));
        self.psql("postgres", &format!("create database {name}"));
        Database {
            server: self,
            name: name.to_string(),
        }
    }

    /// Run SQL with psql; panics, showing psql's message, if it fails. Returns its output
    /// (unaligned, no headers).
    pub fn psql(&self, database: &str, sql: &str) -> String {
        let out = Command::new(self.bin.join("psql"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
            ])
            .args([
                "-d",
                database,
                "-v",
                "ON_ERROR_STOP=1",
                "-X",
                "-q",
                "-A",
                "-t",
            ])
            .env("PGPASSWORD", PASSWORD)
            .arg("-c")
            .arg(sql)
            .output()
            .expect("run psql");
        assert!(
            out.status.success(),
            "psql failed: {}\n{sql}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Run SQL with psql as `user` with `password`: its output, or psql's message.
    pub fn psql_as(&self, user: &str, password: &str, sql: &str) -> Result<String, String> {
        let out = Command::new(self.bin.join("psql"))
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", user])
            .args(["-d", "postgres", "-X", "-q", "-A", "-t", "-w"])
            .env("PGPASSWORD", password)
            .arg("-c")
            .arg(sql)
            .output()
            .expect("run psql");
        match out.status.success() {
            true => Ok(String::from_utf8_lossy(&out.stdout).trim().to_string()),
            false => Err(String::from_utf8_lossy(&out.stderr).to_string()),
        }
    }

    /// The certificate of the authority that signed the server's.
    pub fn certificate(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    /// The server's log (for failing tests' messages).
    #[allow(dead_code)]
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }
}

/// A test's database.
pub struct Database<'a> {
    pub server: &'a Server,
    pub name: String,
}

impl Database<'_> {
    /// Run SQL in this database; returns psql's unaligned output.
    pub fn sql(&self, sql: &str) -> String {
        self.server.psql(&self.name, sql)
    }

    /// A url for this database without the password (it comes from the environment).
    pub fn url(&self) -> String {
        format!(
            "postgresql://postgres@127.0.0.1:{}/{}",
            self.server.port, self.name
        )
    }
}
