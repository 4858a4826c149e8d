//! `deps`: install the packages of `packages.yml` (or `dependencies.yml`) into the
//! project's `packages-install-path` (`dbt_packages/`), pinned in `package-lock.yml`, as
//! `dbt deps` does.
//!
//! - `local:` packages are linked (a symlink to the folder, as dbt makes);
//! - `git:` packages are cloned with the `git` program, at `revision` (a tag, branch or
//!   commit; pinned to the commit), `subdirectory` when given;
//! - hub packages (`package: org/name`, `version:` a version or a list of ranges) are found in
//!   the package hub's index (`DBT_PACKAGE_HUB_URL`, default hub.getdbt.com) and downloaded as
//!   tarballs, through the caller's [`Fetch`].
//!
//! The lock records each package as resolved (git commits, hub versions) with a hash of the
//! declared packages computed as dbt computes it, so a lock written by dbt is used as is;
//! while the declarations do not change, `deps` installs from the lock.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};
use strata_common::Location;

use crate::error::{Error, Result, read_to_string, yaml_error};

/// Downloads for hub packages: the body of a URL.
pub trait Fetch {
    /// The bytes at `url`, or a message saying why not.
    fn get(&self, url: &str) -> std::result::Result<Vec<u8>, String>;
}

/// How `deps` runs.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Resolve again even when the lock matches (`--upgrade`).
    pub upgrade: bool,
    /// Only write the lock (`--lock`).
    pub lock_only: bool,
    /// The package hub (ending in `/`).
    pub hub_url: String,
}

/// A package as declared.
#[derive(Debug, Clone, PartialEq)]
enum Spec {
    Local {
        local: String,
    },
    Git {
        git: String,
        revision: Option<String>,
        subdirectory: Option<String>,
        warn_unpinned: Option<bool>,
    },
    Hub {
        package: String,
        version: Value,
        install_prerelease: bool,
    },
}

/// A package as resolved: what the lock records.
#[derive(Debug, Clone)]
pub struct Pinned {
    /// Its project name (the folder it is installed as).
    pub name: String,
    /// `local`, `git` or `hub`.
    pub source: &'static str,
    /// The path, URL or `org/name`.
    pub location: String,
    /// The git commit or hub version (empty for local packages).
    pub version: String,
    subdirectory: Option<String>,
}

/// What `deps` did.
#[derive(Debug)]
pub struct Outcome {
    /// The packages, in install order.
    pub packages: Vec<Pinned>,
    /// Whether `package-lock.yml` was (re)written.
    pub lock_written: bool,
    /// Whether the packages were installed (not with `--lock`).
    pub installed: bool,
}

const LOCK_FILE: &str = "package-lock.yml";

/// Resolve, lock and install the packages of the project at `root`.
pub fn install(
    root: &Path,
    install_path: &str,
    options: &Options,
    fetch: &dyn Fetch,
) -> Result<Outcome> {
    let Some((file, specs)) = declared(root)? else {
        return Ok(Outcome {
            packages: Vec::new(),
            lock_written: false,
            installed: false,
        });
    };
    let hash = sha1_hash(&specs);
    let lock_path = root.join(LOCK_FILE);
    let work = tempdir()?;
    let result = (|| {
        let locked = match (options.upgrade, read_lock(&lock_path)?) {
            (false, Some((pinned, h))) if h == hash => Some(pinned),
            _ => None,
        };
        let lock_written = locked.is_none();
        let packages = match locked {
            Some(p) => p,
            None => {
                let mut resolver = Resolver {
                    options,
                    fetch,
                    work: &work,
                    out: Vec::new(),
                };
                for spec in &specs {
                    resolver.resolve(spec, root, &file)?;
                }
                write_lock(&lock_path, &resolver.out, &hash)?;
                resolver.out
            }
        };
        if options.lock_only {
            return Ok(Outcome {
                packages,
                lock_written,
                installed: false,
            });
        }
        // Install beside the old folder, then swap: a failure leaves what was installed.
        let dest = root.join(install_path);
        let staging = dest.with_file_name(format!(
            ".{}.installing",
            dest.file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("packages")
        ));
        if staging.exists() {
            std::fs::remove_dir_all(&staging).map_err(|e| Error::io("remove", &staging, e))?;
        }
        std::fs::create_dir_all(&staging).map_err(|e| Error::io("create", &staging, e))?;
        for p in &packages {
            if let Err(e) = place(p, root, &staging.join(&p.name), options, fetch, &work) {
                let _ = std::fs::remove_dir_all(&staging);
                return Err(e);
            }
        }
        if dest.exists() {
            std::fs::remove_dir_all(&dest).map_err(|e| Error::io("remove", &dest, e))?;
        }
        std::fs::rename(&staging, &dest).map_err(|e| Error::io("create", &dest, e))?;
        Ok(Outcome {
            packages,
            lock_written,
            installed: true,
        })
    })();
    let _ = std::fs::remove_dir_all(&work);
    result
}

/// The declared packages, with the file declaring them.
fn declared(dir: &Path) -> Result<Option<(PathBuf, Vec<Spec>)>> {
    let Some(file) = ["packages.yml", "dependencies.yml"]
        .iter()
        .map(|f| dir.join(f))
        .find(|p| p.is_file())
    else {
        return Ok(None);
    };
    let text = read_to_string(&file)?;
    let doc: yaml_serde::Value =
        yaml_serde::from_str(&text).map_err(|e| yaml_error(file.clone(), &e))?;
    let entries = match doc.get("packages") {
        None | Some(yaml_serde::Value::Null) => Vec::new(),
        Some(yaml_serde::Value::Sequence(s)) => s.clone(),
        Some(_) => {
            return Err(Error::at(
                Location::file(&file),
                "`packages:` must be a list",
            ));
        }
    };
    let mut specs = Vec::new();
    for entry in entries {
        specs.push(spec(&crate::config::yaml_to_json(&entry), &file)?);
    }
    Ok(Some((file, specs)))
}

fn spec(entry: &Value, file: &Path) -> Result<Spec> {
    let text = |k: &str| entry.get(k).and_then(Value::as_str).map(str::to_string);
    let bad = |m: String| Error::at(Location::file(file), m);
    if let Some(local) = text("local") {
        return Ok(Spec::Local { local });
    }
    if let Some(git) = text("git") {
        let revision = match entry.get("revision") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            Some(_) => return Err(bad(format!("package `{git}`: `revision` must be text"))),
        };
        return Ok(Spec::Git {
            git,
            revision,
            subdirectory: text("subdirectory"),
            warn_unpinned: entry.get("warn-unpinned").and_then(Value::as_bool),
        });
    }
    if let Some(package) = text("package") {
        if !package.contains('/') {
            return Err(bad(format!(
                "package `{package}`: hub packages are named `org/name`, such as dbt-labs/dbt_utils"
            )));
        }
        let version = entry.get("version").cloned().ok_or_else(|| {
            bad(format!(
                "package `{package}` needs a `version` (such as 1.3.0, or [\">=1.0.0\", \"<2.0.0\"])"
            ))
        })?;
        let version = match version {
            Value::Number(n) => Value::String(n.to_string()),
            v => v,
        };
        return Ok(Spec::Hub {
            package,
            version,
            install_prerelease: entry
                .get("install-prerelease")
                .or_else(|| entry.get("install_prerelease"))
                .and_then(Value::as_bool)
                .unwrap_or(false),
        });
    }
    Err(bad(format!(
        "a package entry needs `local:`, `git:` or `package:`, not {entry}"
    )))
}

/// The hash dbt writes as `sha1_hash`: SHA-1 of the sorted JSON of each declared package as
/// dbt's contract classes serialize it.
fn sha1_hash(specs: &[Spec]) -> String {
    use sha1::Digest;
    let mut lines: Vec<String> = specs
        .iter()
        .map(|s| {
            let v = match s {
                Spec::Local { local } => json!({"local": local, "unrendered": {}}),
                Spec::Git {
                    git,
                    revision,
                    subdirectory,
                    warn_unpinned,
                } => json!({"git": git, "revision": revision, "subdirectory": subdirectory,
                    "unrendered": {}, "warn-unpinned": warn_unpinned}),
                Spec::Hub {
                    package,
                    version,
                    install_prerelease,
                } => json!({"install_prerelease": install_prerelease, "package": package,
                    "unrendered": {}, "version": version}),
            };
            python_json(&v)
        })
        .collect();
    lines.sort();
    format!("{:x}", sha1::Sha1::digest(lines.join("\n").as_bytes()))
}

/// JSON as Python's `json.dumps(v, sort_keys=True)` writes it.
fn python_json(v: &Value) -> String {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let items: Vec<String> = keys
                .iter()
                .map(|k| format!("{}: {}", python_string(k), python_json(&m[*k])))
                .collect();
            format!("{{{}}}", items.join(", "))
        }
        Value::Array(a) => format!(
            "[{}]",
            a.iter().map(python_json).collect::<Vec<_>>().join(", ")
        ),
        Value::String(s) => python_string(s),
        Value::Null => "null".into(),
        other => other.to_string(),
    }
}

fn python_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || (c as u32) > 0x7e => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn read_lock(path: &Path) -> Result<Option<(Vec<Pinned>, String)>> {
    if !path.is_file() {
        return Ok(None);
    }
    let text = read_to_string(path)?;
    let doc: yaml_serde::Value =
        yaml_serde::from_str(&text).map_err(|e| yaml_error(path.to_path_buf(), &e))?;
    let doc = crate::config::yaml_to_json(&doc);
    let hash = doc["sha1_hash"].as_str().unwrap_or_default().to_string();
    let mut out = Vec::new();
    for p in doc["packages"].as_array().into_iter().flatten() {
        let text = |k: &str| p.get(k).and_then(Value::as_str).map(str::to_string);
        let version = match p.get("version").or_else(|| p.get("revision")) {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => String::new(),
        };
        let (source, location) = match (text("local"), text("git"), text("package")) {
            (Some(l), _, _) => ("local", l),
            (_, Some(g), _) => ("git", g),
            (_, _, Some(h)) => ("hub", h),
            _ => {
                return Err(Error::at(
                    Location::file(path),
                    format!("an entry has no `local`, `git` or `package`: {p}"),
                )
                .with_hint("delete package-lock.yml and run `strata deps` to write it again"));
            }
        };
        let name = text("name").unwrap_or_else(|| short_name(&location));
        out.push(Pinned {
            name,
            source,
            location,
            version,
            subdirectory: text("subdirectory"),
        });
    }
    Ok(Some((out, hash)))
}

fn write_lock(path: &Path, packages: &[Pinned], hash: &str) -> Result<()> {
    let entries: Vec<Value> = packages
        .iter()
        .map(|p| {
            let mut e = serde_json::Map::new();
            match p.source {
                "local" => {
                    e.insert("local".into(), json!(p.location));
                }
                "git" => {
                    e.insert("git".into(), json!(p.location));
                    e.insert("revision".into(), json!(p.version));
                    if let Some(s) = &p.subdirectory {
                        e.insert("subdirectory".into(), json!(s));
                    }
                }
                _ => {
                    e.insert("package".into(), json!(p.location));
                    e.insert("version".into(), json!(p.version));
                }
            }
            e.insert("name".into(), json!(p.name));
            Value::Object(e)
        })
        .collect();
    let doc = json!({"packages": entries, "sha1_hash": hash});
    let text = yaml_serde::to_string(&doc).map_err(|e| Error::Internal(e.to_string()))?;
    std::fs::write(path, text).map_err(|e| Error::io("write", path, e))
}

/// The last part of a URL or `org/name`, without `.git`.
fn short_name(location: &str) -> String {
    location
        .trim_end_matches('/')
        .trim_end_matches(".git")
        .rsplit('/')
        .next()
        .unwrap_or(location)
        .to_string()
}

fn tempdir() -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!(
        "strata-deps-{}-{}",
        std::process::id(),
        chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default()
    ));
    std::fs::create_dir_all(&dir).map_err(|e| Error::io("create", &dir, e))?;
    Ok(dir)
}

/// Resolves declared packages (and the packages they declare) to pinned ones.
struct Resolver<'a> {
    options: &'a Options,
    fetch: &'a dyn Fetch,
    work: &'a Path,
    out: Vec<Pinned>,
}

impl Resolver<'_> {
    fn resolve(&mut self, spec: &Spec, base: &Path, file: &Path) -> Result<()> {
        let (pinned, dir) = match spec {
            Spec::Local { local } => {
                let dir = base.join(local);
                let name = project_name(&dir, file, local)?;
                (
                    Pinned {
                        name,
                        source: "local",
                        location: local.clone(),
                        version: String::new(),
                        subdirectory: None,
                    },
                    Some(dir),
                )
            }
            Spec::Git {
                git,
                revision,
                subdirectory,
                ..
            } => {
                let cloned = self.work.join(format!("git-{}", self.out.len()));
                let sha = git_checkout(git, revision.as_deref(), &cloned, file)?;
                let name = match subdirectory {
                    Some(s) => project_name(&cloned.join(s), file, git)?,
                    None => project_name(&cloned, file, git)?,
                };
                // Kept where the install looks for it, so it is not cloned a second time.
                let checkout = self.work.join(format!("install-{name}"));
                if !checkout.exists() {
                    std::fs::rename(&cloned, &checkout)
                        .map_err(|e| Error::io("move", &cloned, e))?;
                }
                let dir = match subdirectory {
                    Some(s) => checkout.join(s),
                    None => checkout.clone(),
                };
                (
                    Pinned {
                        name,
                        source: "git",
                        location: git.clone(),
                        version: sha,
                        subdirectory: subdirectory.clone(),
                    },
                    Some(dir),
                )
            }
            Spec::Hub {
                package,
                version,
                install_prerelease,
            } => {
                let (name, chosen, deps) = hub_version(
                    self.fetch,
                    &self.options.hub_url,
                    package,
                    version,
                    *install_prerelease,
                    file,
                )?;
                for d in deps {
                    let dep = self::spec(&d, file)?;
                    self.resolve(&dep, base, file)?;
                }
                (
                    Pinned {
                        name,
                        source: "hub",
                        location: package.clone(),
                        version: chosen,
                        subdirectory: None,
                    },
                    None,
                )
            }
        };
        if let Some(existing) = self.out.iter().find(|p| p.name == pinned.name) {
            if existing.location != pinned.location || existing.version != pinned.version {
                return Err(Error::at(
                    Location::file(file),
                    format!(
                        "package `{}` is wanted twice: {} {} and {} {}",
                        pinned.name,
                        existing.location,
                        existing.version,
                        pinned.location,
                        pinned.version
                    ),
                )
                .with_hint("declare one version of it"));
            }
            return Ok(());
        }
        self.out.push(pinned);
        // The packages a package declares, relative to it.
        if let Some(dir) = dir
            && let Some((pkg_file, specs)) = declared(&dir)?
        {
            for s in &specs {
                self.resolve(s, &dir, &pkg_file)?;
            }
        }
        Ok(())
    }
}

fn project_name(dir: &Path, file: &Path, what: &str) -> Result<String> {
    let (config, _) = crate::config::ProjectConfig::load(dir).map_err(|e| {
        Error::at(
            Location::file(file),
            format!(
                "package `{what}`: {} is not a dbt package ({e})",
                dir.display()
            ),
        )
        .with_hint("a package is a folder with a dbt_project.yml")
    })?;
    Ok(config.name)
}

/// Clone `url` into `dest` at `revision` (default: the default branch); the commit.
fn git_checkout(url: &str, revision: Option<&str>, dest: &Path, file: &Path) -> Result<String> {
    let fail = |what: String| {
        Error::at(Location::file(file), format!("package `{url}`: {what}")).with_hint(
            "check the URL and revision, that `git` is installed and the repository reachable; \
             or copy the package into the project and declare it as `- local: path`",
        )
    };
    let git = |args: &[&str], dir: Option<&Path>| -> Result<String> {
        let mut c = Command::new("git");
        if let Some(d) = dir {
            c.current_dir(d);
        }
        let out = c
            .args(args)
            .env("GIT_TERMINAL_PROMPT", "0")
            .output()
            .map_err(|e| fail(format!("cannot run git ({e})")))?;
        if !out.status.success() {
            return Err(fail(format!(
                "git {} failed: {}",
                args.first().copied().unwrap_or_default(),
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    let dest_s = dest.to_string_lossy();
    git(&["clone", "--quiet", url, &dest_s], None)?;
    if let Some(rev) = revision {
        git(&["checkout", "--quiet", rev], Some(dest))
            .map_err(|_| fail(format!("revision `{rev}` does not exist")))?;
    }
    git(&["rev-parse", "HEAD"], Some(dest))
}

/// The newest version of a hub package matching `wanted`: its name, version and the
/// packages it depends on.
fn hub_version(
    fetch: &dyn Fetch,
    hub: &str,
    package: &str,
    wanted: &Value,
    prerelease: bool,
    file: &Path,
) -> Result<(String, String, Vec<Value>)> {
    let url = format!("{hub}api/v1/{package}.json");
    let body = fetch.get(&url).map_err(|e| {
        Error::at(
            Location::file(file),
            format!("package `{package}`: cannot read the package hub ({url}): {e}"),
        )
        .with_hint(
            "hub packages need the network (DBT_PACKAGE_HUB_URL names another hub); \
             otherwise declare the package as `git:` or `local:`, or copy it into dbt_packages/",
        )
    })?;
    let index: Value = serde_json::from_slice(&body).map_err(|e| {
        Error::at(
            Location::file(file),
            format!("package `{package}`: the hub's answer at {url} is not JSON ({e})"),
        )
    })?;
    let ranges: Vec<String> = match wanted {
        Value::Array(a) => a
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect(),
        Value::String(s) => vec![s.clone()],
        other => vec![other.to_string()],
    };
    let mut best: Option<(Vec<u64>, String)> = None;
    for version in index["versions"]
        .as_object()
        .into_iter()
        .flat_map(|m| m.keys())
    {
        let Some((parts, pre)) = semver(version) else {
            continue;
        };
        if pre && !prerelease {
            continue;
        }
        if ranges.iter().all(|r| matches_range(&parts, r))
            && best.as_ref().is_none_or(|(b, _)| parts > *b)
        {
            best = Some((parts, version.clone()));
        }
    }
    let (_, chosen) = best.ok_or_else(|| {
        let mut known: Vec<&String> = index["versions"]
            .as_object()
            .map(|m| m.keys().collect())
            .unwrap_or_default();
        known.sort();
        Error::at(
            Location::file(file),
            format!(
                "package `{package}`: no version matches {} (the hub has {})",
                ranges.join(", "),
                known
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )
    })?;
    let entry = &index["versions"][&chosen];
    let name = entry["name"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| short_name(package));
    let deps = entry["packages"].as_array().cloned().unwrap_or_default();
    Ok((name, chosen, deps))
}

/// `1.2.3` (or `1.2.3-rc1`): the numbers, and whether it is a pre-release.
fn semver(v: &str) -> Option<(Vec<u64>, bool)> {
    let v = v.trim().trim_start_matches('v');
    let (core, pre) = match v.split_once(['-', '+']) {
        Some((c, _)) => (c, v.contains('-')),
        None => (v, false),
    };
    let mut parts: Vec<u64> = core
        .split('.')
        .map(|p| p.parse().ok())
        .collect::<Option<_>>()?;
    parts.resize(3, 0);
    Some((parts, pre))
}

/// Whether a version satisfies `>=1.0.0`, `<2.0.0`, `=1.2.3`, `1.2.3`, ...
fn matches_range(v: &[u64], range: &str) -> bool {
    let r = range.trim();
    let (op, rest) = [">=", "<=", "==", ">", "<", "="]
        .iter()
        .find_map(|op| r.strip_prefix(op).map(|rest| (*op, rest)))
        .unwrap_or(("=", r));
    let Some((bound, _)) = semver(rest) else {
        return false;
    };
    match op {
        ">=" => v >= bound.as_slice(),
        "<=" => v <= bound.as_slice(),
        ">" => v > bound.as_slice(),
        "<" => v < bound.as_slice(),
        _ => v == bound.as_slice(),
    }
}

/// Put one pinned package at `dest`.
fn place(
    p: &Pinned,
    root: &Path,
    dest: &Path,
    options: &Options,
    fetch: &dyn Fetch,
    work: &Path,
) -> Result<()> {
    let fail = |what: String| Error::user(format!("package `{}`: {what}", p.name));
    match p.source {
        "local" => {
            let src = std::fs::canonicalize(root.join(&p.location))
                .map_err(|e| fail(format!("{} ({e})", root.join(&p.location).display())))?;
            link_or_copy(&src, dest)
        }
        "git" => {
            // Resolved in this run: already checked out at the locked commit.
            let checkout = work.join(format!("install-{}", p.name));
            if !checkout.exists() {
                git_checkout(
                    &p.location,
                    Some(&p.version),
                    &checkout,
                    &root.join(LOCK_FILE),
                )?;
            }
            let src = match &p.subdirectory {
                Some(s) => checkout.join(s),
                None => checkout.clone(),
            };
            let _ = std::fs::remove_dir_all(src.join(".git"));
            copy_dir(&src, dest)
        }
        _ => {
            let index = options.hub_url.clone() + &format!("api/v1/{}.json", p.location);
            let body = fetch
                .get(&index)
                .map_err(|e| fail(format!("cannot read {index}: {e}")))?;
            let index: Value = serde_json::from_slice(&body)
                .map_err(|e| fail(format!("the hub's answer is not JSON ({e})")))?;
            let tarball = index["versions"][&p.version]["downloads"]["tarball"]
                .as_str()
                .ok_or_else(|| fail(format!("the hub has no tarball for version {}", p.version)))?
                .to_string();
            let bytes = fetch
                .get(&tarball)
                .map_err(|e| fail(format!("cannot download {tarball}: {e}")))?;
            let archive = work.join(format!("{}.tar.gz", p.name));
            std::fs::write(&archive, bytes).map_err(|e| Error::io("write", &archive, e))?;
            let unpacked = work.join(format!("unpack-{}", p.name));
            std::fs::create_dir_all(&unpacked).map_err(|e| Error::io("create", &unpacked, e))?;
            let out = Command::new("tar")
                .arg("-xzf")
                .arg(&archive)
                .arg("-C")
                .arg(&unpacked)
                .output()
                .map_err(|e| fail(format!("cannot run tar ({e})")))?;
            if !out.status.success() {
                return Err(fail(format!(
                    "{tarball} is not a .tar.gz archive: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                )));
            }
            // A GitHub tarball holds one folder.
            let mut dirs: Vec<PathBuf> = std::fs::read_dir(&unpacked)
                .map_err(|e| Error::io("read", &unpacked, e))?
                .flatten()
                .map(|e| e.path())
                .filter(|d| d.is_dir())
                .collect();
            let src = match (dirs.len(), unpacked.join("dbt_project.yml").is_file()) {
                (_, true) => unpacked.clone(),
                (1, false) => dirs.remove(0),
                _ => return Err(fail(format!("{tarball} does not hold one package folder"))),
            };
            copy_dir(&src, dest)
        }
    }
}

fn link_or_copy(src: &Path, dest: &Path) -> Result<()> {
    #[cfg(unix)]
    if std::os::unix::fs::symlink(src, dest).is_ok() {
        return Ok(());
    }
    copy_dir(src, dest)
}

fn copy_dir(src: &Path, dest: &Path) -> Result<()> {
    for entry in walkdir::WalkDir::new(src) {
        let entry =
            entry.map_err(|e| Error::user(format!("cannot read {}: {e}", src.display())))?;
        let rel = entry.path().strip_prefix(src).unwrap_or(entry.path());
        let target = dest.join(rel);
        if entry.file_type().is_dir() {
            std::fs::create_dir_all(&target).map_err(|e| Error::io("create", &target, e))?;
        } else {
            std::fs::copy(entry.path(), &target).map_err(|e| Error::io("write", &target, e))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lock_hash_is_dbts() {
        // Computed by dbt-core 1.11's _create_sha1_hash for the same packages.yml entries.
        let file = Path::new("packages.yml");
        let specs: Vec<Spec> = [
            json!({"local": "../x"}),
            json!({"git": "https://github.com/a/b.git", "revision": "v1"}),
            json!({"package": "dbt-labs/dbt_utils", "version": [">=1.0.0", "<2.0.0"]}),
            json!({"package": "calogica/dbt_date", "version": "0.10.0"}),
            json!({"git": "https://x/y.git", "revision": "main", "subdirectory": "sub"}),
        ]
        .iter()
        .map(|v| spec(v, file).expect("spec"))
        .collect();
        assert_eq!(
            sha1_hash(&specs),
            "6ac6327361757a0ee3d16f27eec7304ea48f1a97"
        );
    }

    #[test]
    fn version_ranges() {
        let v = |s: &str| semver(s).expect("version").0;
        assert!(matches_range(&v("1.3.0"), ">=1.0.0"));
        assert!(!matches_range(&v("2.0.0"), "<2.0.0"));
        assert!(matches_range(&v("1.3.0"), "1.3.0"));
        assert!(matches_range(&v("1.3"), "=1.3.0"));
        assert!(semver("1.0.0-rc1").expect("pre").1);
    }
}
