//! `strata users`: passwords from a prompt or standard input, only hashes kept; the SCRAM
//! verifier kept for the wire is the one PostgreSQL itself accepts.

use crate::project::TestProject;

fn with_stdin(p: &TestProject, args: &[&str], stdin: &str) -> (bool, String) {
    let out = p
        .strata(args)
        .write_stdin(stdin.to_string())
        .output()
        .expect("run strata");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn users_are_added_listed_changed_and_removed_with_only_hashes_kept() {
    let p = TestProject::with_files(&[]);
    let (ok, out) = with_stdin(
        &p,
        &["users", "add", "alice", "--role", "admin"],
        "correct horse battery\n",
    );
    assert!(ok && out.contains("Added user alice (admin)"), "{out}");
    let (ok, out) = with_stdin(&p, &["users", "add", "superset"], "bi-tool-secret\n");
    assert!(
        ok && out.contains("Added user superset (bi_reader)"),
        "{out}"
    );
    let list = p.ok(&["users", "list"]);
    assert!(list.contains("alice") && list.contains("admin"), "{list}");
    assert!(
        list.contains("superset") && list.contains("bi_reader"),
        "{list}"
    );
    // Only hashes are in the catalog.
    let catalog = std::fs::read(p.path().join(".strata/dev/metadata.sqlite")).unwrap_or_default();
    let text = String::from_utf8_lossy(&catalog);
    assert!(!text.contains("correct horse battery") && !text.contains("bi-tool-secret"));
    assert!(text.contains("$argon2id$") && text.contains("SCRAM-SHA-256$4096:"));

    let (ok, out) = with_stdin(&p, &["users", "add", "alice"], "another password\n");
    assert!(!ok && out.contains("user `alice` exists"), "{out}");
    let (ok, out) = with_stdin(&p, &["users", "passwd", "alice"], "short\n");
    assert!(!ok && out.contains("too short"), "{out}");
    let (ok, out) = with_stdin(&p, &["users", "passwd", "alice"], "a new long password\n");
    assert!(ok && out.contains("Changed the password of alice"), "{out}");
    let (ok, out) = with_stdin(&p, &["users", "add", "Bob Smith"], "whatever-long\n");
    assert!(!ok && out.contains("cannot be a user name"), "{out}");
    let (ok, out) = with_stdin(
        &p,
        &["users", "add", "bob", "--role", "owner"],
        "whatever-long\n",
    );
    assert!(
        !ok && out.contains("the roles are admin and bi_reader"),
        "{out}"
    );
    let (ok, out) = with_stdin(&p, &["users", "add", "bob"], "");
    assert!(
        !ok && out.contains("no password on standard input"),
        "{out}"
    );
    // A password is never an argument.
    let out = p.fails(&["users", "add", "bob", "--password", "x"], 2);
    assert!(out.contains("--password"), "{out}");
    let out = p.fails(&["users", "remove", "alicia"], 2);
    assert!(out.contains("did you mean `alice`"), "{out}");
    p.ok(&["users", "remove", "alice"]);
    assert!(!p.ok(&["users", "list"]).contains("alice"));
}

#[test]
fn the_scram_verifier_is_one_postgresql_accepts() {
    let Some(server) = crate::pg_server::server() else {
        return;
    };
    let verifier =
        strata_server::users::scram_verifier("pencil-and-paper", b"0123456789abcdef", 4096);
    server.psql(
        "postgres",
        &format!(
            "drop role if exists scram_check; create role scram_check login password '{verifier}'"
        ),
    );
    // PostgreSQL keeps a verifier given to it as it is: the same text.
    assert_eq!(
        server.psql(
            "postgres",
            "select rolpassword from pg_authid where rolname = 'scram_check'"
        ),
        verifier
    );
    assert_eq!(
        server.psql_as("scram_check", "pencil-and-paper", "select 1"),
        Ok("1".to_string())
    );
    let wrong = server.psql_as("scram_check", "pencil-and-pape", "select 1");
    assert!(wrong.is_err_and(|e| e.contains("password authentication failed")));
}
