//! A temporary project and helpers to run `strata` in it.

use std::path::{Path, PathBuf};

use assert_cmd::Command;

/// A project in a temporary folder.
pub struct TestProject {
    dir: tempfile::TempDir,
}

/// A loopback port free at the time of asking.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("port")
        .local_addr()
        .expect("addr")
        .port()
}

/// Wait (up to a minute) until something listens on the loopback `port`.
pub fn wait_for_port(port: u16) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "the server did not start"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

impl TestProject {
    /// `strata users add NAME --role ROLE`, the password on stdin.
    pub fn add_user(&self, name: &str, role: &str, password: &str) {
        let out = self
            .strata(&["users", "add", name, "--role", role])
            .write_stdin(format!("{password}\n"))
            .output()
            .expect("users add");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// An empty folder.
    pub fn empty() -> Self {
        Self {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    /// The starter project from `strata init`.
    pub fn starter() -> Self {
        let p = Self::empty();
        strata_in(p.path()).args(["init", "."]).assert().success();
        p
    }

    /// A minimal project: a profile, a project file, and the given files.
    pub fn with_files(files: &[(&str, &str)]) -> Self {
        let p = Self::empty();
        p.write("strata.yml", "name: t\nprofile: t\n");
        p.write(
            "profiles.yml",
            "t:\n  target: dev\n  outputs:\n    dev: {type: strata, schema: main, threads: 4}\n    prod: {type: strata, schema: main, lake: .strata/prod}\n",
        );
        for (path, text) in files {
            p.write(path, text);
        }
        p
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn write(&self, rel: &str, text: &str) {
        let path = self.path().join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("mkdir");
        }
        std::fs::write(path, text).expect("write");
    }

    pub fn remove(&self, rel: &str) {
        std::fs::remove_file(self.path().join(rel)).expect("remove");
    }

    pub fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.path().join(rel)).expect("read")
    }

    /// `strata ARGS` in this project.
    pub fn strata(&self, args: &[&str]) -> Command {
        Command::from_std(self.std_command(args))
    }

    /// `strata ARGS` as a plain process, to spawn and signal.
    pub fn std_command(&self, args: &[&str]) -> std::process::Command {
        let mut c = std_strata_in(self.path());
        c.args(args);
        c
    }

    /// Run `strata ARGS`, expecting success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        self.ok_with(args, &[])
    }

    /// Build the `prod` target and keep its manifest in `prod-state/`, as a CI job keeps
    /// prod's artifacts for `--state`.
    pub fn prod_state(&self) {
        self.ok(&["--target", "prod", "run"]);
        std::fs::create_dir_all(self.path().join("prod-state")).expect("mkdir");
        std::fs::copy(
            self.path().join("target/manifest.json"),
            self.path().join("prod-state/manifest.json"),
        )
        .expect("copy");
    }

    /// Run `strata ARGS`, expecting success; returns stdout + stderr (warnings included).
    pub fn ok_all(&self, args: &[&str]) -> String {
        self.ok_all_with(args, &[])
    }

    /// [`TestProject::ok_all`] with environment variables.
    pub fn ok_all_with(&self, args: &[&str], env: &[(&str, &str)]) -> String {
        let out = self
            .strata(args)
            .envs(env.iter().copied())
            .output()
            .expect("run strata");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success(),
            "strata {args:?} failed:
{text}"
        );
        text
    }

    /// Run `strata ARGS` with `env` set, expecting success; returns stdout.
    pub fn ok_with(&self, args: &[&str], env: &[(&str, &str)]) -> String {
        let out = self
            .strata(args)
            .envs(env.iter().copied())
            .output()
            .expect("run strata");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "strata {args:?} failed ({:?})\nstdout:\n{stdout}\nstderr:\n{}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    }

    /// Run `strata ARGS` with `env` set, expecting exit code `code`; returns stdout + stderr.
    pub fn fails_with(&self, args: &[&str], env: &[(&str, &str)], code: i32) -> String {
        let out = self
            .strata(args)
            .envs(env.iter().copied())
            .output()
            .expect("run strata");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.status.code(), Some(code), "strata {args:?}:\n{text}");
        text
    }

    /// Run `strata ARGS`, expecting exit code `code`; returns stdout + stderr.
    pub fn fails(&self, args: &[&str], code: i32) -> String {
        self.fails_with(args, &[], code)
    }

    /// Start `strata ARGS` and SIGKILL it as soon as it starts writing a new file under the
    /// table folder `table` (relative to the project).
    pub fn kill_while_writing(&self, args: &[&str], table: &str) {
        let before = self.files_under(table);
        let mut child = self.quiet_child(args);
        self.wait_for_new_data_file(table, &before, &mut child);
        child.kill().expect("SIGKILL");
        child.wait().expect("reap");
    }

    /// Start `strata ARGS` and SIGKILL it after `ms` milliseconds.
    pub fn kill_after(&self, args: &[&str], ms: u64) {
        let mut child = self.quiet_child(args);
        std::thread::sleep(std::time::Duration::from_millis(ms));
        child.kill().expect("SIGKILL");
        child.wait().expect("reap");
    }

    /// `strata ARGS` started with its output discarded.
    fn quiet_child(&self, args: &[&str]) -> std::process::Child {
        self.std_command(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn")
    }

    /// Rows of an inline query as CSV lines (header first).
    pub fn query(&self, sql: &str) -> Vec<String> {
        self.ok(&["show", "--inline", sql, "--limit", "-1", "--output", "csv"])
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// Wait (up to 120 s) until `child` starts writing a data file under the table folder
    /// `table` that is not in `before` (not the log, not the write marker).
    pub fn wait_for_new_data_file(
        &self,
        table: &str,
        before: &[PathBuf],
        child: &mut std::process::Child,
    ) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        loop {
            assert!(
                child.try_wait().expect("wait").is_none(),
                "strata finished before it wrote to {table}"
            );
            if self.files_under(table).iter().any(|f| {
                let name = f.to_string_lossy();
                !before.contains(f)
                    && !name.contains("_delta_log")
                    && !name.contains("_strata_write")
            }) {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "nothing written to {table} in 120 s"
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    /// Every file under a folder of the project.
    pub fn files_under(&self, rel: &str) -> Vec<PathBuf> {
        let mut out = Vec::new();
        let mut stack = vec![self.path().join(rel)];
        while let Some(d) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&d) else {
                continue;
            };
            for e in entries.flatten() {
                if e.path().is_dir() {
                    stack.push(e.path());
                } else {
                    out.push(e.path());
                }
            }
        }
        out.sort();
        out
    }
}

/// `strata` with its working directory set to `dir` and no inherited profile settings.
pub fn strata_in(dir: &Path) -> Command {
    Command::from_std(std_strata_in(dir))
}

fn std_strata_in(dir: &Path) -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_strata"));
    c.current_dir(dir)
        .env_remove("DBT_PROFILES_DIR")
        .env_remove("STRATA_PROFILES_DIR")
        .env_remove("STRATA_PROJECT_DIR")
        .env_remove("STRATA_LOG")
        .env("HOME", dir);
    c
}

/// Headless Chromium with the switches every use shares; None (with a note) where Chromium is
/// not installed, except in CI, which installs it.
fn chromium(profile: &Path) -> Option<std::process::Command> {
    let chromium = ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|b| {
            std::process::Command::new(b)
                .arg("--version")
                .output()
                .is_ok()
        });
    let Some(chromium) = chromium else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI needs Chromium (apt-get install chromium)"
        );
        eprintln!("note: no Chromium here; the page is not rendered");
        return None;
    };
    let mut c = std::process::Command::new(chromium);
    c.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--virtual-time-budget=5000",
    ])
    .arg(format!("--user-data-dir={}", profile.display()));
    Some(c)
}

/// The DOM headless Chromium renders for `url`, and what it logged (console messages and
/// page errors are logged as `CONSOLE`); None where Chromium is not installed (see
/// [`chromium`]).
pub fn browser(url: &str) -> Option<(String, String)> {
    let profile = tempfile::tempdir().expect("tempdir");
    let out = chromium(profile.path())?
        .args(["--enable-logging=stderr", "--v=0", "--dump-dom"])
        .arg(url)
        .output()
        .expect("chromium");
    Some((
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    ))
}

/// Save what Chromium draws of `url` as `<name>.png` in the folder `STRATA_SCREENSHOTS` names
/// (CI sets it), 1280 pixels wide, and check a picture was written. Nothing without it.
pub fn screenshot(url: &str, name: &str) {
    let Some(dir) = std::env::var_os("STRATA_SCREENSHOTS") else {
        return;
    };
    let dir = std::path::PathBuf::from(dir);
    std::fs::create_dir_all(&dir).expect("screenshot folder");
    let path = dir.join(format!("{name}.png"));
    let _ = std::fs::remove_file(&path);
    let profile = tempfile::tempdir().expect("tempdir");
    let Some(mut c) = chromium(profile.path()) else {
        return;
    };
    let out = c
        .args(["--hide-scrollbars", "--window-size=1280,1000"])
        .arg(format!("--screenshot={}", path.display()))
        .arg(url)
        .output()
        .expect("chromium");
    let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    assert!(
        size > 2_000,
        "no screenshot of {url} at {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}
