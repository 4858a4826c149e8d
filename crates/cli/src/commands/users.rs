//! `strata users add|remove|passwd|list`: who may read what `strata serve` serves. Passwords
//! are read from a prompt (or from standard input, for scripts), never from the command line,
//! and only their hashes are kept, in the target's catalog.

use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::{Result, anyhow, bail};
use clap::Subcommand;
use strata_server::users::{Role, check_name, secrets};

use crate::GlobalArgs;
use crate::context::load_project;
use crate::report::Console;

/// `strata users` subcommands.
#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Add a user; the password is asked for (or read from standard input).
    Add {
        /// The user name (lower-case letters, digits, `_`, `.`, `-`).
        name: String,
        /// `admin` (everything) or `bi_reader` (reads the gold layer only).
        #[arg(long, default_value = "bi_reader")]
        role: String,
    },
    /// Remove a user.
    Remove { name: String },
    /// Change a user's password (asked for, or read from standard input).
    Passwd { name: String },
    /// List the users and their roles.
    List,
}

/// Run the command.
pub async fn users(global: &GlobalArgs, command: &UsersCommand) -> Result<ExitCode> {
    let project = load_project(global)?;
    let meta = crate::context::open_meta(&project)?;
    let console = Console::new(global);
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let known = |name: &str| -> Result<()> {
        if meta.user(name)?.is_some() {
            return Ok(());
        }
        let names: Vec<String> = meta.users()?.into_iter().map(|u| u.name).collect();
        bail!(
            "there is no user `{name}`{}",
            strata_common::did_you_mean(name, names.iter().map(String::as_str))
        )
    };
    match command {
        UsersCommand::Add { name, role } => {
            check_name(name).map_err(|e| anyhow!(e))?;
            let Some(role) = Role::parse(role) else {
                bail!("`--role {role}`: the roles are admin and bi_reader");
            };
            if meta.user(name)?.is_some() {
                bail!(
                    "user `{name}` exists; change the password with `strata users passwd {name}`"
                );
            }
            let password = read_password(&format!("Password for {name}: "))?;
            let s = secrets(&password).map_err(|e| anyhow!(e))?;
            if !meta.add_user(name, role.as_str(), &s, &now)? {
                bail!("user `{name}` exists");
            }
            console.info(&format!("Added user {name} ({})", role.as_str()));
        }
        UsersCommand::Remove { name } => {
            known(name)?;
            meta.remove_user(name)?;
            console.info(&format!("Removed user {name}"));
        }
        UsersCommand::Passwd { name } => {
            known(name)?;
            let password = read_password(&format!("New password for {name}: "))?;
            let s = secrets(&password).map_err(|e| anyhow!(e))?;
            meta.set_password(name, &s, &now)?;
            console.info(&format!("Changed the password of {name}"));
        }
        UsersCommand::List => {
            let users = meta.users()?;
            if users.is_empty() {
                println!("No users yet: add one with `strata users add NAME --role admin`.");
            }
            for u in users {
                println!("{:<24} {:<10} since {}", u.name, u.role, u.created_at);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A password from a prompt, typed twice, when standard input is a terminal; else the first
/// line of standard input.
fn read_password(prompt: &str) -> Result<String> {
    if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password(prompt)?;
        let again = rpassword::prompt_password("Again: ")?;
        if first != again {
            bail!("the two passwords differ; nothing was changed");
        }
        return Ok(first);
    }
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    let password = line.trim_end_matches(['\r', '\n']).to_string();
    if password.is_empty() {
        bail!(
            "no password on standard input; give it on the first line (or run this in a terminal to be asked)"
        );
    }
    Ok(password)
}
