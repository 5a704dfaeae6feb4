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
        // The lifecycle: a drift found by static-site's status.sh, an issue, a reconcile
        // that closes it; an expiry with its warning and the pull request that follows.
        "index.html does not carry the title \"Orders preview\"",
        "\"Drift: payments/orders-preview\"",
        "paved_environments{state=\"drifted\"} 1",
        "`reconcile` by octocat: succeeded",
        "is closed (completed)",
        "paved_environments{state=\"drifted\"} 0",
        "@octocat: at `",
        "`expire`: succeeded (ran delete.sh; state deleted)",
        "\"Remove expired environment payments/cart-preview\" from branch paved/expired/cart-preview-",
        "paved/provision: success — removed the manifest of cart-preview (already deleted): no script ran",
    ] {
        assert!(
            stdout.contains(expected),
            "{expected:?} missing from:\n{stdout}"
        );
    }
}

/// `paved demo --serve`: after the flow it prints the portal's URL and serves it (sign-in
/// through the emulator's OAuth works) until Ctrl-C, then stops cleanly.
#[test]
fn the_demo_keeps_serving_the_portal_until_interrupted() {
    use std::io::{BufRead, BufReader};
    let mut child = Command::new(env!("CARGO_BIN_EXE_paved"))
        .args(["demo", "--serve"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("run paved demo --serve");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let mut url = None;
    let mut serving = false;
    for line in lines.by_ref() {
        let line = line.expect("a line");
        if let Some(rest) = line.strip_prefix("Open ") {
            url = rest.split(' ').next().map(str::to_string);
        }
        if line.starts_with("Serving until Ctrl-C") {
            serving = true;
            break;
        }
    }
    let url = url.expect("the portal's URL is printed");
    assert!(serving, "the demo did not say it keeps serving");
    // The portal answers, and "Sign in with GitHub" signs in (the emulator plays GitHub):
    // followed by hand, as a browser would, carrying the cookies it is given.
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let page = rt.block_on(async {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client");
        assert_eq!(http.get(&url).send().await.expect("GET /").status(), 200);
        let mut cookies: Vec<String> = Vec::new();
        let mut next = format!("{url}login?next=/");
        for _ in 0..5 {
            let r = http
                .get(&next)
                .header("cookie", cookies.join("; "))
                .send()
                .await
                .expect("a step of the sign-in");
            for c in r.headers().get_all("set-cookie") {
                let c = c.to_str().expect("cookie");
                cookies.push(c.split(';').next().expect("pair").to_string());
            }
            match r.headers().get("location") {
                Some(l) => {
                    let l = l.to_str().expect("location");
                    next = if l.starts_with('/') {
                        format!("{}{l}", url.trim_end_matches('/'))
                    } else {
                        l.to_string()
                    };
                }
                None => return r.text().await.expect("page"),
            }
        }
        panic!("the sign-in did not end on a page");
    });
    assert!(page.contains("My environments"), "{page}");
    assert!(page.contains("octocat"), "{page}");
    // Ctrl-C stops it cleanly.
    let pid = child.id() as libc::pid_t;
    // SAFETY: signalling a child process of this test by its pid.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
    let status = child.wait().expect("wait");
    assert!(status.success(), "{status:?}");
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(rest.iter().any(|l| l == "Stopping."), "{rest:?}");
}
