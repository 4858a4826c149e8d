//! A step's process: the command line of a `strata` step or a shell command, started in a
//! process group of its own (through `setpriv --pdeathsig KILL` where that exists), run to
//! its end or its timeout, with the end of its output kept.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command;

use crate::execute::{AttemptEnd, Interval, Launch, Status};
use crate::pipeline::{Action, Sensor};

/// The most of a step's output kept with its attempt (the end of it).
const LOG_TAIL: usize = 8 * 1024;

/// The process of a `strata` step or a shell command (`vars`: its `--vars`; a `build` or
/// `run` over a data interval builds microbatch models' batches of that interval).
pub(crate) fn command(
    action: &Action,
    launch: &Launch,
    vars: Option<&str>,
    interval: Option<Interval>,
) -> Command {
    let strata = |args: Vec<String>| {
        let mut c = process(&launch.strata);
        c.args(&launch.global_args);
        if let Some(vars) = vars {
            c.arg("--vars").arg(vars);
        }
        c.args(args);
        c
    };
    let mut cmd = match action {
        Action::Command(text) => {
            let mut c = process("sh");
            c.arg("-c").arg(text);
            c
        }
        Action::Ingest { select } => {
            let mut args = vec!["ingest".to_string()];
            if let Some(s) = select {
                args.extend(["--select".into(), s.clone()]);
            }
            strata(args)
        }
        Action::Strata {
            command,
            select,
            exclude,
            full_refresh,
        } => {
            let mut args = vec![command.clone()];
            if let Some(s) = select {
                args.extend(["--select".into(), s.clone()]);
            }
            if let Some(e) = exclude {
                args.extend(["--exclude".into(), e.clone()]);
            }
            if *full_refresh {
                args.push("--full-refresh".into());
            }
            if let Some(i) = interval
                && matches!(command.as_str(), "build" | "run")
            {
                let time = |t: DateTime<Utc>| t.format("%Y-%m-%d %H:%M:%S").to_string();
                args.extend([
                    "--event-time-start".into(),
                    time(i.start),
                    "--event-time-end".into(),
                    time(i.end),
                ]);
            }
            strata(args)
        }
        Action::Sensor(Sensor::Freshness(select)) => {
            let mut args = vec!["source".to_string(), "freshness".to_string()];
            if let Some(s) = select {
                args.extend(["--select".into(), s.clone()]);
            }
            strata(args)
        }
        Action::Sensor(Sensor::Sql(condition)) => strata(vec![
            "show".into(),
            "--inline".into(),
            format!("select case when ({condition}) then 1 else 0 end as holds"),
            "--output".into(),
            "json".into(),
            "--limit".into(),
            "1".into(),
        ]),
        Action::Sensor(Sensor::Files(_)) => Command::new("true"),
    };
    cmd.current_dir(&launch.project_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    // A group of its own, so a timeout stops what it started too.
    #[cfg(unix)]
    cmd.process_group(0);
    cmd
}

/// A step's process. On Linux it is started through `setpriv --pdeathsig KILL` (util-linux)
/// where that exists, so it dies with the process that started it: a scheduler killed
/// mid-step leaves nothing running that its successor would run again.
fn process(program: impl AsRef<std::ffi::OsStr>) -> Command {
    static SETPRIV: std::sync::OnceLock<Option<PathBuf>> = std::sync::OnceLock::new();
    let setpriv = SETPRIV.get_or_init(|| {
        if !cfg!(target_os = "linux") {
            return None;
        }
        std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join("setpriv"))
                .find(|p| p.is_file())
        })
    });
    match setpriv {
        Some(setpriv) => {
            let mut c = Command::new(setpriv);
            c.args(["--pdeathsig", "KILL", "--"]).arg(program);
            c
        }
        None => Command::new(program),
    }
}

/// Stop a step's process and everything it started.
async fn stop(child: &mut tokio::process::Child) {
    if let Some(pid) = child.id() {
        kill_group(i64::from(pid));
    }
    let _ = child.kill().await;
}

/// Kill the process group a step's process leads (`pid`), if it is still there.
pub(crate) fn kill_group(pid: i64) {
    #[cfg(unix)]
    if let Some(pid) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    {
        let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
    }
    #[cfg(not(unix))]
    let _ = pid;
}

/// Whether a process with this id exists (one we may not signal counts: it exists).
pub(crate) fn alive(pid: u32) -> bool {
    #[cfg(unix)]
    {
        match i32::try_from(pid)
            .ok()
            .and_then(rustix::process::Pid::from_raw)
        {
            Some(pid) => !matches!(
                rustix::process::test_kill_process(pid),
                Err(rustix::io::Errno::SRCH)
            ),
            None => false,
        }
    }
    #[cfg(not(unix))]
    {
        let _ = pid;
        true
    }
}

/// Run a process to its end or its timeout, keeping the end of its output.
pub(crate) async fn run_process(
    mut cmd: Command,
    timeout: Option<Duration>,
    spawned: &(dyn Fn(u32) + Sync),
) -> AttemptEnd {
    let mut child = match cmd.spawn() {
        Ok(c) => {
            if let Some(pid) = c.id() {
                spawned(pid);
            }
            c
        }
        Err(e) => {
            return AttemptEnd {
                status: Status::Failed,
                seconds: 0.0,
                exit_code: None,
                message: format!("cannot start it: {e}"),
                log: String::new(),
            };
        }
    };
    let out = child.stdout.take().map(|s| tokio::spawn(tail(s)));
    let err = child.stderr.take().map(|s| tokio::spawn(tail(s)));
    let waited = match timeout {
        Some(limit) => match tokio::time::timeout(limit, child.wait()).await {
            Ok(w) => Some(w),
            Err(_) => {
                stop(&mut child).await;
                None
            }
        },
        None => Some(child.wait().await),
    };
    let mut log = String::new();
    for part in [out, err].into_iter().flatten() {
        if let Ok(text) = part.await {
            log.push_str(&text);
        }
    }
    let log = keep_end(log);
    let last_line = last_line(&log);
    match waited {
        None => AttemptEnd {
            status: Status::TimedOut,
            seconds: 0.0,
            exit_code: None,
            message: format!(
                "stopped after its timeout of {}",
                crate::pipeline::show_duration(timeout.unwrap_or_default())
            ),
            log,
        },
        Some(Err(e)) => AttemptEnd {
            status: Status::Failed,
            seconds: 0.0,
            exit_code: None,
            message: format!("lost it: {e}"),
            log,
        },
        Some(Ok(status)) if status.success() => AttemptEnd {
            status: Status::Success,
            seconds: 0.0,
            exit_code: Some(0),
            message: last_line,
            log,
        },
        Some(Ok(status)) => AttemptEnd {
            status: Status::Failed,
            seconds: 0.0,
            exit_code: status.code(),
            message: match (status.code(), failure_line(&log)) {
                (Some(code), Some(failure)) => format!("exit code {code}: {failure}"),
                (Some(code), None) if last_line.is_empty() => format!("exit code {code}"),
                (Some(code), None) => format!("exit code {code}: {last_line}"),
                (None, _) => "killed by a signal".into(),
            },
            log,
        },
    }
}

/// A log's non-empty lines, without the clock in front of a `strata` command's lines.
fn plain_lines(log: &str) -> Vec<&str> {
    log.lines()
        .map(|l| {
            let l = l.trim();
            match l.split_once("  ") {
                Some((clock, rest))
                    if clock.len() == 8
                        && clock.bytes().all(|b| b.is_ascii_digit() || b == b':') =>
                {
                    rest.trim()
                }
                _ => l,
            }
        })
        .filter(|l| !l.is_empty())
        .collect()
}

/// Why a `strata` command failed: its first `Failure in …` with the line that explains it,
/// or its `error: …`. Warnings printed after them do not hide them.
fn failure_line(log: &str) -> Option<String> {
    let lines = plain_lines(log);
    if let Some(i) = lines.iter().position(|l| l.starts_with("Failure in ")) {
        return Some(match lines.get(i + 1) {
            Some(why) if !why.starts_with("Failure in ") && !why.starts_with("Warning in ") => {
                format!("{}: {why}", lines[i])
            }
            _ => lines[i].to_string(),
        });
    }
    lines
        .iter()
        .find(|l| l.starts_with("error: "))
        .map(|l| l.to_string())
}

/// The line that says most about how a process ended: its last, leaving out a `strata`
/// command's closing tally (`Done. PASS=…`) and the clock in front of its lines.
fn last_line(log: &str) -> String {
    let lines = plain_lines(log);
    lines
        .iter()
        .rev()
        .find(|l| !l.starts_with("Done. PASS="))
        .or(lines.last())
        .map(|l| l.to_string())
        .unwrap_or_default()
}

/// Read a stream to its end, keeping its last [`LOG_TAIL`] bytes.
async fn tail(mut stream: impl AsyncRead + Unpin) -> String {
    let mut kept: Vec<u8> = Vec::new();
    let mut buf = [0u8; 8192];
    while let Ok(n) = stream.read(&mut buf).await {
        if n == 0 {
            break;
        }
        kept.extend_from_slice(&buf[..n]);
        if kept.len() > 2 * LOG_TAIL {
            kept.drain(..kept.len() - LOG_TAIL);
        }
    }
    String::from_utf8_lossy(&kept).into_owned()
}

fn keep_end(text: String) -> String {
    if text.len() <= LOG_TAIL {
        return text;
    }
    let mut cut = text.len() - LOG_TAIL;
    while !text.is_char_boundary(cut) {
        cut += 1;
    }
    text[cut..].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_is_named_before_the_warnings_after_it() {
        let log = "04:00:01  1 of 2 FAIL 1 assert_x .... [FAIL 1 in 0.1s]\n\n\
                   04:00:02  Completed with 1 error:\n\n\
                   04:00:02  Failure in test assert_x (tests/assert_x.sql)\n\
                   04:00:02    Got 1 result, configured to fail if != 0\n\n\
                   04:00:02  Warning in test volume (models/m.yml)\n\
                   04:00:02    not enough history\n\n\
                   04:00:02  Done. PASS=1 WARN=1 ERROR=1 SKIP=0 TOTAL=3\n";
        assert_eq!(
            failure_line(log).as_deref(),
            Some(
                "Failure in test assert_x (tests/assert_x.sql): Got 1 result, configured to fail if != 0"
            )
        );
        assert_eq!(last_line(log), "not enough history");
        assert_eq!(
            failure_line("error: no such file\n  hint: x\n").as_deref(),
            Some("error: no such file")
        );
        assert_eq!(failure_line("plain output\n"), None);
    }
}
