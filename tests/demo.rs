//! `paved demo`, the README's first command, run as a user runs it: the real binary, to the
//! end, with what it prints checked.

use std::process::Command;

#[test]
fn the_demo_runs_the_main_job_end_to_end() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = Command::new(env!("CARGO_BIN_EXE_paved"))
        .args(["demo", "--keep"])
        .arg(dir.path())
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run paved demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "paved demo failed:\n{stdout}\n{stderr}"
    );
    for expected in [
        "== PR #1",
        "GET http",
        "Every request Paved made matched GitHub's published REST schema.",
        // The self-service path: a request through the API, to provisioning and the Graph.
        "POST /api/v1/requests answered 201 Created",
        "GET /api/v1/requests/1: READY (requested by octocat)",
        "GET /api/v1/requests/1: SUCCEEDED (requested by octocat)",
        "requestedBy user:demo-org/environments/octocat",
        "approvedBy user:demo-org/environments/hubot",
    ] {
        assert!(
            stdout.contains(expected),
            "{expected:?} missing from:\n{stdout}"
        );
    }
}
