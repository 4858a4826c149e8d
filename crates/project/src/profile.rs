//! `profiles.yml`: where a project's targets live, and the selected target.
//!
//! `profiles.yml` is found as dbt finds it, first match wins: `--profiles-dir`,
//! `STRATA_PROFILES_DIR`, `DBT_PROFILES_DIR`, the project folder, then `~/.dbt/`. String values
//! may use `{{ env_var('NAME', 'default') }}` so secrets stay out of files.

use std::path::{Path, PathBuf};

use indexmap::IndexMap;
use serde::Deserialize;
use strata_common::{Location, did_you_mean};

use crate::error::{Error, Result, read_to_string, yaml_error};

/// Warehouse types an embedded target may declare.
pub const EMBEDDED_TYPES: [&str; 2] = ["strata", "duckdb"];

/// Where a `type: postgres` target's models are built, as dbt-postgres spells it.
#[derive(Clone, PartialEq, Eq)]
pub struct PostgresTarget {
    pub host: String,
    pub port: u16,
    pub user: String,
    /// From `env_var()`: never written in the file.
    pub password: Option<String>,
    pub dbname: String,
    /// `disable`, `prefer` (the default), `require`, `verify-ca`, `verify-full`.
    pub sslmode: Option<String>,
    /// The CA certificate `verify-ca` / `verify-full` trust.
    pub sslrootcert: Option<PathBuf>,
    /// Seconds to wait for a connection (`connect_timeout`, default 10).
    pub connect_timeout: u64,
}

/// A metadata store in PostgreSQL.
#[derive(Clone, PartialEq, Eq)]
pub struct SharedMetadata {
    /// The libpq-style url (its password, if any, from `env_var()` or `PGPASSWORD`).
    pub url: String,
    /// The schema holding the store's tables (`metadata_schema`, default `strata_<target>`).
    pub schema: String,
}

impl SharedMetadata {
    /// The store as messages name it: the url without its password, and the schema.
    pub fn display(&self) -> String {
        let shown = match self.url.split_once("://") {
            Some((scheme, rest)) => match rest.rsplit_once('@') {
                Some((info, host)) => format!(
                    "{scheme}://{}@{host}",
                    info.split_once(':').map_or(info, |(user, _)| user)
                ),
                None => self.url.clone(),
            },
            None => self.url.clone(),
        };
        format!("{shown} (schema {})", self.schema)
    }
}

impl std::fmt::Debug for SharedMetadata {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.display())
    }
}

impl std::fmt::Debug for PostgresTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "postgres://{}@{}:{}/{}",
            self.user, self.host, self.port, self.dbname
        )
    }
}

/// The selected output of a profile.
#[derive(Debug, Clone)]
pub struct Target {
    /// The profile's name.
    pub profile_name: String,
    /// The target's name (`dev`, `prod`).
    pub name: String,
    /// The warehouse type (`strata`).
    pub kind: String,
    /// The default schema.
    pub schema: String,
    /// The database (catalog) name relations are qualified with.
    pub database: String,
    /// Threads for parallel execution.
    pub threads: usize,
    /// Lake root: a local folder (absolute) or an object-store URL.
    pub lake: String,
    /// The metadata store (a SQLite file).
    pub metadata: PathBuf,
    /// `type: postgres`: the database models are built in (the lake is then unused).
    pub postgres: Option<PostgresTarget>,
    /// `metadata: postgres://…`: the store is in PostgreSQL, shared by every machine working
    /// on the target (then `metadata` is unused).
    pub shared_metadata: Option<SharedMetadata>,
    /// `engine: ballista`: the Ballista scheduler (`df://host:port`) queries run on; the
    /// lake's tables are still written by this process.
    pub cluster: Option<String>,
    /// Every key of the output, for Jinja's `target`.
    pub raw: IndexMap<String, serde_json::Value>,
}

#[derive(Debug, Deserialize)]
struct ProfileEntry {
    target: Option<String>,
    #[serde(default)]
    outputs: IndexMap<String, IndexMap<String, yaml_serde::Value>>,
}

/// Where `profiles.yml` is, following the lookup order above.
pub fn find_profiles_file(project_dir: &Path, profiles_dir: Option<&Path>) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = Vec::new();
    if let Some(d) = profiles_dir {
        dirs.push(d.to_path_buf());
    }
    for var in ["STRATA_PROFILES_DIR", "DBT_PROFILES_DIR"] {
        if let Ok(d) = std::env::var(var)
            && !d.is_empty()
        {
            dirs.push(PathBuf::from(d));
        }
    }
    dirs.push(project_dir.to_path_buf());
    if let Some(home) = std::env::var_os("HOME") {
        dirs.push(PathBuf::from(home).join(".dbt"));
    }
    if profiles_dir.is_some() {
        // An explicit folder is the only place looked at.
        dirs.truncate(1);
    }
    dirs.into_iter()
        .map(|d| d.join("profiles.yml"))
        .find(|p| p.is_file())
}

/// Load the target `target_name` (or the profile's default) of `profile_name`.
pub fn load_target(
    project_dir: &Path,
    profiles_dir: Option<&Path>,
    profile_name: &str,
    target_name: Option<&str>,
) -> Result<Target> {
    let Some(path) = find_profiles_file(project_dir, profiles_dir) else {
        return Err(Error::user(format!(
            "no profiles.yml found for profile `{profile_name}`"
        ))
        .with_hint(format!(
            "create {}/profiles.yml with a `{profile_name}:` profile (see `strata init`), \
             or point --profiles-dir / STRATA_PROFILES_DIR at the folder holding it",
            project_dir.display()
        )));
    };
    let text_raw = read_to_string(&path)?;
    let text = render_env_vars(&text_raw, "profiles.yml")
        .map_err(|e| e.with_location(Location::file(&path)))?;
    let profiles: IndexMap<String, yaml_serde::Value> =
        yaml_serde::from_str(&text).map_err(|e| yaml_error(path.clone(), &e))?;
    let Some(entry) = profiles.get(profile_name) else {
        let names: Vec<&str> = profiles
            .keys()
            .map(String::as_str)
            .filter(|k| *k != "config")
            .collect();
        return Err(Error::at(
            Location::file(&path),
            format!(
                "profile `{profile_name}` not found{}",
                did_you_mean(profile_name, names.iter().copied())
            ),
        )
        .with_hint(format!(
            "profiles in this file: {}; set `profile:` in the project file to one of them",
            if names.is_empty() {
                "none".to_string()
            } else {
                names.join(", ")
            }
        )));
    };
    let entry: ProfileEntry = yaml_serde::from_value(entry.clone()).map_err(|e| {
        Error::at(
            Location::file(&path),
            format!("profile `{profile_name}` is malformed: {e}"),
        )
        .with_hint("a profile has `target: NAME` and `outputs: {NAME: {type: strata, ...}}`")
    })?;
    let target_name = target_name
        .map(str::to_string)
        .or(entry.target.clone())
        .unwrap_or_else(|| "dev".to_string());
    let Some(output) = entry.outputs.get(&target_name) else {
        let names: Vec<&str> = entry.outputs.keys().map(String::as_str).collect();
        return Err(Error::at(
            Location::file(&path),
            format!(
                "target `{target_name}` not found in profile `{profile_name}`{}",
                did_you_mean(&target_name, names.iter().copied())
            ),
        )
        .with_hint(format!(
            "targets of this profile: {}",
            if names.is_empty() {
                "none".to_string()
            } else {
                names.join(", ")
            }
        )));
    };
    let raw: IndexMap<String, serde_json::Value> = output
        .iter()
        .map(|(k, v)| (k.clone(), crate::config::yaml_to_json(v)))
        .collect();
    let get = |k: &str| raw.get(k).and_then(|v| v.as_str()).map(str::to_string);
    let kind = get("type").unwrap_or_else(|| "strata".to_string());
    if !EMBEDDED_TYPES.contains(&kind.as_str()) && kind != "postgres" {
        return Err(Error::at(
            Location::file(&path),
            format!(
                "target `{target_name}` of profile `{profile_name}` has type `{kind}`, which this build of Strata cannot run{}",
                did_you_mean(&kind, ["strata", "duckdb", "postgres"])
            ),
        )
        .with_hint("use `type: strata` for the embedded DataFusion + Delta Lake warehouse, or `type: postgres` to build inside PostgreSQL"));
    }
    let threads = match raw.get("threads") {
        None => 4,
        Some(v) => v
            .as_u64()
            .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
            .filter(|n| *n > 0)
            .ok_or_else(|| {
                Error::at(
                    Location::file(&path),
                    format!(
                        "target `{target_name}`: `threads` must be a positive integer, got {v}"
                    ),
                )
            })? as usize,
    };
    let written = written_secret(&text_raw, profile_name, &target_name);
    if written == Some("metadata") {
        return Err(Error::at(
            Location::file(&path),
            format!("target `{target_name}`: the `metadata` url holds a password written in the file"),
        )
        .with_hint("keep secrets out of files: leave the password out of the url and set PGPASSWORD, or write the whole url as \"{{ env_var('STRATA_METADATA_URL') }}\""));
    }
    let postgres = match kind.as_str() {
        "postgres" => Some(postgres_target(
            &raw,
            &path,
            &target_name,
            written == Some("password"),
        )?),
        _ => None,
    };
    let schema = get("schema").unwrap_or_else(|| {
        match postgres {
            Some(_) => "public",
            None => "main",
        }
        .to_string()
    });
    // A dbt-duckdb target runs on the embedded warehouse, on purpose: its tables go to the
    // target's own lake (never into or beside the DuckDB file, which is neither read nor
    // written), and relations are named as dbt-duckdb names them (the database is the file's
    // name), so templates render the same names.
    let duckdb = kind == "duckdb";
    let duckdb_file = get("path").filter(|_| duckdb);
    let database = get("database")
        .or_else(|| postgres.as_ref().map(|p| p.dbname.clone()))
        .or_else(|| {
            duckdb.then(|| match duckdb_file.as_deref() {
                None | Some(":memory:") | Some("") => "memory".to_string(),
                Some(p) => Path::new(p)
                    .file_stem()
                    .and_then(|s| s.to_str())
                    .unwrap_or("memory")
                    .to_string(),
            })
        })
        .unwrap_or_else(|| "strata".to_string());
    let default_root = project_dir.join(".strata").join(&target_name);
    let lake = match get("lake").or_else(|| get("path").filter(|_| !duckdb)) {
        Some(l) if l.trim().is_empty() => {
            return Err(Error::at(
                Location::file(&path),
                format!("target `{target_name}`: `lake` is empty"),
            )
            .with_hint(format!(
                "give the folder (or s3:// URL) that holds the tables, or leave `lake` out for the default `.strata/{target_name}`"
            )));
        }
        Some(l) if l.contains("://") => l,
        Some(l) => {
            let lake = absolutize(project_dir, &l);
            if contains_path(&lake, project_dir) {
                return Err(Error::at(
                    Location::file(&path),
                    format!(
                        "target `{target_name}`: the lake `{l}` is the project folder or holds it; \
                         tables would be written among the project's files"
                    ),
                )
                .with_hint(format!(
                    "give the lake a folder of its own, e.g. `.strata/{target_name}` (the default)"
                )));
            }
            lake.display().to_string()
        }
        None => default_root.display().to_string(),
    };
    let shared_metadata = match get("metadata") {
        Some(m) if m.starts_with("postgres://") || m.starts_with("postgresql://") => {
            let schema = get("metadata_schema").unwrap_or_else(|| {
                format!(
                    "strata_{}",
                    target_name
                        .chars()
                        .map(|c| if c.is_ascii_alphanumeric() {
                            c.to_ascii_lowercase()
                        } else {
                            '_'
                        })
                        .collect::<String>()
                )
            });
            Some(SharedMetadata { url: m, schema })
        }
        _ => None,
    };
    let cluster = match get("engine").as_deref() {
        None | Some("datafusion") | Some("embedded") => None,
        Some("ballista") => {
            let scheduler = get("scheduler").unwrap_or_default();
            let ok = scheduler
                .strip_prefix("df://")
                .and_then(|rest| rest.rsplit_once(':'))
                .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
            if !ok {
                return Err(Error::at(
                    Location::file(&path),
                    format!(
                        "target `{target_name}`: `engine: ballista` needs `scheduler: df://host:port`, got `{scheduler}`"
                    ),
                )
                .with_hint("start one with `strata cluster scheduler` (port 50050 by default) and write e.g. `scheduler: df://localhost:50050`"));
            }
            if postgres.is_some() {
                return Err(Error::at(
                    Location::file(&path),
                    format!("target `{target_name}`: `engine: ballista` runs on the lake; a `type: postgres` target runs its queries in PostgreSQL"),
                )
                .with_hint("leave `engine` out of a postgres target"));
            }
            Some(scheduler)
        }
        Some(other) => {
            return Err(Error::at(
                Location::file(&path),
                format!("target `{target_name}`: unknown engine `{other}`"),
            )
            .with_hint(
                "`engine` is `datafusion` (the default, in this process) or `ballista` (a cluster)",
            ));
        }
    };
    let metadata = match get("metadata").filter(|_| shared_metadata.is_none()) {
        Some(m) => absolutize(project_dir, &m),
        None if lake.contains("://") => default_root.join("metadata.sqlite"),
        None => PathBuf::from(&lake).join("metadata.sqlite"),
    };
    if duckdb {
        tracing::warn!(
            "target `{target_name}` of profile `{profile_name}` is a dbt-duckdb target: Strata runs it on its own warehouse, in {lake}{}; set `type: strata` to silence this",
            match &duckdb_file {
                Some(f) => format!(" (the DuckDB file {f} is not read or written)"),
                None => String::new(),
            }
        );
    }
    Ok(Target {
        profile_name: profile_name.to_string(),
        name: target_name,
        kind,
        schema,
        database,
        threads,
        lake,
        metadata,
        postgres,
        shared_metadata,
        cluster,
        raw,
    })
}

/// The connection settings of a `type: postgres` output.
fn postgres_target(
    raw: &IndexMap<String, serde_json::Value>,
    path: &Path,
    target_name: &str,
    password_literal: bool,
) -> Result<PostgresTarget> {
    let bad = |why: String| {
        Error::at(
            Location::file(path),
            format!("target `{target_name}` (type postgres): {why}"),
        )
    };
    let text = |k: &str| -> Option<String> {
        raw.get(k).and_then(|v| match v {
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Number(n) => Some(n.to_string()),
            _ => None,
        })
    };
    if password_literal {
        return Err(bad("`password` is written in the file".into()).with_hint(
            "keep secrets out of files: `password: \"{{ env_var('STRATA_PG_PASSWORD') }}\"`",
        ));
    }
    let need = |k: &str, alt: Option<&str>| -> Result<String> {
        text(k)
            .or_else(|| alt.and_then(text))
            .filter(|v| !v.trim().is_empty())
            .ok_or_else(|| {
                bad(format!("`{k}` is missing")).with_hint(
                    "a postgres target needs host, user, password (from env_var()), port, dbname and schema, as dbt-postgres",
                )
            })
    };
    let port = match text("port") {
        None => 5432,
        Some(p) => p
            .parse()
            .map_err(|_| bad(format!("`port: {p}` is not a port number")))?,
    };
    let connect_timeout = match text("connect_timeout") {
        None => 10,
        Some(t) => t
            .parse()
            .map_err(|_| bad(format!("`connect_timeout: {t}` is not a number of seconds")))?,
    };
    Ok(PostgresTarget {
        host: need("host", None)?,
        port,
        user: need("user", None)?,
        password: text("password").or_else(|| text("pass")),
        dbname: need("dbname", Some("database"))?,
        sslmode: text("sslmode"),
        sslrootcert: text("sslrootcert").map(PathBuf::from),
        connect_timeout,
    })
}

/// Which secret the unrendered text of the output writes out instead of reading it with
/// `env_var()`: `password` (or `pass`), or the password in a `metadata` url.
fn written_secret(text: &str, profile_name: &str, target_name: &str) -> Option<&'static str> {
    let profiles = yaml_serde::from_str::<yaml_serde::Value>(text).ok()?;
    let output = &profiles[profile_name]["outputs"][target_name];
    let in_url = match &output["metadata"] {
        yaml_serde::Value::String(url) if !url.contains("{{") => url
            .split_once("://")
            .and_then(|(_, rest)| rest.rsplit_once('@'))
            .is_some_and(|(info, _)| info.contains(':')),
        _ => false,
    };
    let written = ["password", "pass"].iter().any(|k| match &output[*k] {
        yaml_serde::Value::String(s) => {
            let from_env = s.contains("{{") && s.contains("env_var(");
            !s.is_empty() && !from_env
        }
        yaml_serde::Value::Number(_) => true,
        _ => false,
    });
    match (written, in_url) {
        (true, _) => Some("password"),
        (false, true) => Some("metadata"),
        _ => None,
    }
}

/// Whether `outer` is `inner` or one of its ancestors, comparing real paths when both exist
/// (symbolic links) and cleaned-up paths (`.`, `..`) otherwise.
pub fn contains_path(outer: &Path, inner: &Path) -> bool {
    match (std::fs::canonicalize(outer), std::fs::canonicalize(inner)) {
        (Ok(o), Ok(i)) => i.starts_with(o),
        _ => normalize(inner).starts_with(normalize(outer)),
    }
}

/// A path with `.` and `..` resolved without touching the file system.
pub fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

fn absolutize(base: &Path, p: &str) -> PathBuf {
    let p = PathBuf::from(p);
    if p.is_absolute() { p } else { base.join(p) }
}

/// Render `{{ env_var(...) }}` in `text` (a profiles file, or a setting that holds a
/// secret); `what` names it in an error.
pub fn render_env_vars(text: &str, what: &str) -> Result<String> {
    if !text.contains("{{") && !text.contains("{%") {
        return Ok(text.to_string());
    }
    let mut env = minijinja::Environment::new();
    env.add_function("env_var", crate::jinja::env_var);
    env.render_str(text, ())
        .map_err(|e| Error::user(format!("in {what}: {}", crate::jinja::describe_error(&e))))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, text: &str) {
        std::fs::write(dir.join("profiles.yml"), text).expect("write profiles");
    }

    #[test]
    fn default_target_and_lake() {
        let dir = tempfile::tempdir().expect("tempdir");
        write(
            dir.path(),
            "shop:\n  target: dev\n  outputs:\n    dev: {type: strata, schema: analytics, threads: 2}\n    prod: {type: strata, schema: prod, lake: /data/lake}\n",
        );
        let t = load_target(dir.path(), Some(dir.path()), "shop", None).expect("dev");
        assert_eq!(t.name, "dev");
        assert_eq!(t.schema, "analytics");
        assert_eq!(t.threads, 2);
        assert!(t.lake.ends_with(".strata/dev"));
        let p = load_target(dir.path(), Some(dir.path()), "shop", Some("prod")).expect("prod");
        assert_eq!(p.lake, "/data/lake");
        assert_eq!(p.metadata, PathBuf::from("/data/lake/metadata.sqlite"));
    }

    #[test]
    fn a_dbt_duckdb_target_runs_embedded_and_never_touches_its_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        write(
            dir.path(),
            "shop:\n  target: dev\n  outputs:\n    dev: {type: duckdb, path: data/shop.duckdb, threads: 2}\n    mem: {type: duckdb}\n",
        );
        let t = load_target(dir.path(), Some(dir.path()), "shop", None).expect("dev");
        assert!(t.lake.ends_with(".strata/dev"), "{}", t.lake);
        assert!(!t.lake.contains("shop.duckdb"));
        // Relations are named as dbt-duckdb names them.
        assert_eq!(t.database, "shop");
        let m = load_target(dir.path(), Some(dir.path()), "shop", Some("mem")).expect("mem");
        assert_eq!(m.database, "memory");
        assert!(!dir.path().join("data").exists());
    }

    #[test]
    fn missing_profile_and_target_are_explained() {
        let dir = tempfile::tempdir().expect("tempdir");
        write(
            dir.path(),
            "shop:\n  target: dev\n  outputs:\n    dev: {type: strata}\n",
        );
        let e = load_target(dir.path(), Some(dir.path()), "shpo", None).expect_err("no profile");
        assert!(e.to_string().contains("did you mean `shop`"), "{e}");
        let e =
            load_target(dir.path(), Some(dir.path()), "shop", Some("prd")).expect_err("no target");
        assert!(e.to_string().contains("target `prd` not found"), "{e}");
    }

    #[test]
    fn a_lake_that_holds_the_project_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let project = dir.path().join("shop");
        std::fs::create_dir_all(&project).expect("mkdir");
        for lake in [
            "\"\"",
            "\" \"",
            ".",
            "..",
            "./models/..",
            dir.path().to_str().expect("utf-8"),
        ] {
            write(
                &project,
                &format!("shop:\n  outputs:\n    dev: {{type: strata, lake: {lake}}}\n"),
            );
            let e = load_target(&project, Some(&project), "shop", None).expect_err(lake);
            let text = e.to_string();
            assert!(
                text.contains("is empty") || text.contains("the project folder or holds it"),
                "{lake}: {text}"
            );
            assert!(text.contains("profiles.yml"), "{text}");
        }
        write(
            &project,
            "shop:\n  outputs:\n    dev: {type: strata, lake: ./lake}\n",
        );
        let t = load_target(&project, Some(&project), "shop", None).expect("a folder inside");
        assert!(t.lake.ends_with("lake"));
    }

    #[test]
    fn env_vars_render_in_profiles() {
        let dir = tempfile::tempdir().expect("tempdir");
        write(
            dir.path(),
            "shop:\n  outputs:\n    dev: {type: strata, schema: \"{{ env_var('STRATA_TEST_SCHEMA_X', 'fallback') }}\"}\n",
        );
        let t = load_target(dir.path(), Some(dir.path()), "shop", None).expect("dev");
        assert_eq!(t.schema, "fallback");
    }
}
