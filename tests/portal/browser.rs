//! The browser the portal's tests drive: a chromedriver, Chromium sessions with JavaScript
//! on or off, screenshots with the console checked and an accessibility audit (axe-core),
//! the keyboard, and the portal's own gestures (signing in and out, the request form).

use crate::common;
use crate::common::provisioning::Env;
use crate::common::REPO;
use fantoccini::actions::{InputSource, KeyAction, KeyActions};
use fantoccini::key::Key;
use fantoccini::{Client, ClientBuilder, Locator};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};

/// A chromedriver on a port of its own, in a process group of its own, stopped with every
/// Chromium it started when dropped. (Killing chromedriver alone left its browsers running:
/// a few hundred of them, and tens of GB, after a day of test runs on one machine.)
pub struct Driver {
    child: Child,
    pub url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        // The group's id is chromedriver's pid; the browsers it launched are in it.
        if let Ok(pid) = i32::try_from(self.child.id()) {
            // SAFETY: kill(2) with a negative pid signals that process group; no memory
            // is involved.
            unsafe {
                libc::kill(-pid, libc::SIGKILL);
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub async fn driver() -> Driver {
    let path = ["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .expect(
            "chromedriver is missing: install Debian's chromium and chromium-driver (script/bootstrap does)",
        );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let child = Command::new(path)
        .arg(format!("--port={port}"))
        .process_group(0)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver starts");
    let url = format!("http://127.0.0.1:{port}");
    let status = format!("{url}/status");
    common::eventually("chromedriver ready", async || {
        let r = reqwest::get(&status).await.ok()?;
        r.status().is_success().then_some(())
    })
    .await;
    Driver { child, url }
}

pub async fn browser(d: &Driver) -> Client {
    browser_with(d, true).await
}

/// A Chromium session, with JavaScript on or off.
pub async fn browser_with(d: &Driver, javascript: bool) -> Client {
    let mut args = vec![
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1200,900",
        "--lang=en-US",
    ];
    if !javascript {
        args.push("--blink-settings=scriptEnabled=false");
    }
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({ "binary": "/usr/bin/chromium", "args": args }),
    );
    caps.insert(
        "goog:loggingPrefs".into(),
        serde_json::json!({"browser": "ALL"}),
    );
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&d.url)
        .await
        .expect("a Chromium session")
}

/// Chromium's console since the last call (ChromeDriver's log endpoint).
#[derive(Debug)]
pub struct BrowserLog;

impl fantoccini::wd::WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(
        &self,
        base: &url::Url,
        session: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base.join(&format!("session/{}/se/log", session.unwrap_or_default()))
    }
    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        (http::Method::POST, Some(r#"{"type":"browser"}"#.into()))
    }
}

/// axe-core, vendored (`tests/fixtures/axe-core/README.md`).
pub const AXE: &str = include_str!("../fixtures/axe-core/axe.min.js");

/// The WCAG rule sets run: 2.0 and 2.1, levels A and AA.
pub const WCAG_AA: [&str; 4] = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"];

/// Runs axe-core's WCAG 2.1 A and AA rules on the page as it is, and fails on any serious
/// or critical violation (printing every violation, whatever its impact, first). The
/// script is injected over WebDriver, which the page's Content-Security-Policy does not
/// govern, so the policy the portal sends stays as strict as it is.
pub async fn audit(c: &Client, name: &str) {
    // Loaded and run in one script: with JavaScript off in the page, each script WebDriver
    // runs starts afresh, so a global set by one is gone in the next.
    let found = c
        .execute_async(
            &format!(
                "const done = arguments[arguments.length - 1];
                 {AXE}
                 ;axe.run(document, {{ runOnly: {{ type: 'tag', values: arguments[0] }},
                                      resultTypes: ['violations'] }})
                   .then(r => done({{ rules: r.passes.length + r.violations.length
                                            + r.incomplete.length + r.inapplicable.length,
                                     violations: r.violations.map(v => ({{
                                       id: v.id, impact: v.impact, help: v.help,
                                       nodes: v.nodes.map(n => n.target.join(' ')) }})) }}))
                   .catch(e => done({{ error: String(e) }}));"
            ),
            vec![serde_json::json!(WCAG_AA)],
        )
        .await
        .expect("axe-core ran");
    assert!(
        found.get("error").is_none(),
        "{name}: axe-core failed: {found}"
    );
    let violations = found["violations"].as_array().cloned().unwrap_or_default();
    for v in &violations {
        eprintln!(
            "axe {name}: {} ({}) {}: {}",
            v["id"], v["impact"], v["help"], v["nodes"]
        );
    }
    let grave: Vec<&serde_json::Value> = violations
        .iter()
        .filter(|v| v["impact"] == "serious" || v["impact"] == "critical")
        .collect();
    assert!(
        found["rules"].as_u64().unwrap_or(0) > 20,
        "{name}: axe-core ran too few rules: {found}"
    );
    assert!(
        grave.is_empty(),
        "{name}: serious or critical WCAG 2.1 AA violations: {grave:#?}"
    );
}

/// Saves a screenshot of the page as `name.png`, checks the console has no error, and
/// audits the page's accessibility ([`audit`]).
pub async fn shot(c: &Client, name: &str) {
    shot_scriptless(c, name).await;
    audit(c, name).await;
}

/// [`shot`] in a browser with JavaScript off: the screenshot and the console, without the
/// audit, which cannot run there (axe-core is a script, and such a page runs no timer or
/// promise). Every page shown this way is audited with scripts on elsewhere in the test
/// (the server sends the same HTML either way).
pub async fn shot_scriptless(c: &Client, name: &str) {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("portal");
    std::fs::create_dir_all(&dir).expect("screenshot dir");
    let png = c.screenshot().await.expect("screenshot");
    std::fs::write(dir.join(format!("{name}.png")), png).expect("write screenshot");
    let log = c.issue_cmd(BrowserLog).await.expect("browser log");
    let errors: Vec<&serde_json::Value> = log
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["level"] == "SEVERE")
        .collect();
    assert!(errors.is_empty(), "{name}: console errors {errors:?}");
}

/// Reads the console, where only the failed loads of pages refused on purpose may be:
/// Chromium logs the answer to a missing page (404) or a refused request (409) as one.
pub async fn expected_refusals(c: &Client, statuses: &[u16]) {
    let log = c.issue_cmd(BrowserLog).await.expect("browser log");
    for e in log.as_array().into_iter().flatten() {
        let m = e["message"].as_str().unwrap_or_default();
        assert!(
            e["level"] != "SEVERE"
                || statuses
                    .iter()
                    .any(|s| m.contains(&format!("status of {s}"))),
            "an unexpected console error: {e}"
        );
    }
}

/// Waits until `old` (a page's `main`) is gone, a form having been posted from it, and the
/// next page has its own.
pub async fn replaced(c: &Client, old: fantoccini::elements::Element) {
    common::eventually("the form posted", async || {
        old.text().await.is_err().then_some(())
    })
    .await;
    c.wait()
        .for_element(Locator::Css("main"))
        .await
        .expect("the next page");
}

pub async fn title(c: &Client) -> String {
    c.title().await.expect("title")
}

/// The navigation bar's text: a page in the portal's frame has it.
pub async fn nav_text(c: &Client) -> String {
    c.find(Locator::Css("nav"))
        .await
        .expect("the navigation bar")
        .text()
        .await
        .expect("text")
}

pub async fn text(c: &Client) -> String {
    c.find(Locator::Css("main"))
        .await
        .expect("main")
        .text()
        .await
        .expect("text")
}

pub async fn sign_in(e: &Env, c: &Client, login: &str) {
    e.h.github.sign_in_as(login);
    c.goto(&format!("{}/", e.h.url())).await.expect("home");
    assert_eq!(title(c).await, "Sign in · Paved");
    c.find(Locator::LinkText("Sign in with GitHub"))
        .await
        .expect("sign-in link")
        .click()
        .await
        .expect("click");
    c.wait()
        .for_element(Locator::Css(".who"))
        .await
        .expect("signed in");
    assert_eq!(
        c.find(Locator::Css(".who"))
            .await
            .expect("who")
            .text()
            .await
            .expect("text"),
        login
    );
}

/// The environment page's "Updated" time: (its text, its UTC `datetime`).
pub async fn updated_time(c: &Client) -> (String, String) {
    let t = c.find(Locator::Css("dl.facts time")).await.expect("a time");
    (
        t.text().await.expect("text"),
        t.attr("datetime").await.expect("attr").expect("datetime"),
    )
}

/// Signs out with the page's button, reached with the keyboard; the sign-in page follows.
pub async fn sign_out(c: &Client) {
    enter_on(c, "form[action=\"/logout\"] button").await;
    c.wait()
        .for_element(Locator::LinkText("Sign in with GitHub"))
        .await
        .expect("signed out");
}

/// The pull request event GitHub sends for a PR the emulator holds.
pub fn spec_of(e: &Env, number: u64) -> paved_testkit::PullRequestSpec {
    let pull = e.h.github.pull(REPO, number).expect("pull at the emulator");
    paved_testkit::PullRequestSpec::of_pull(&pull, &e.h.repo, &e.h.remote.clone_url())
        .expect("a pull request")
}

/// Presses keys as a person does, on whatever has the focus.
pub async fn keys(c: &Client, text: &str) {
    let mut actions = KeyActions::new("keyboard".into());
    for k in text.chars() {
        actions = actions
            .then(KeyAction::Down { value: k })
            .then(KeyAction::Up { value: k });
    }
    c.perform_actions(actions).await.expect("keys");
}

/// Presses Tab until the focus is on what `css` selects, and fails if it never gets there
/// (at most 80 presses) or if anything focused on the way does not show it (an outline
/// of at least 2px; a node of the graph shows it by its circle).
pub async fn tab_to(c: &Client, css: &str) {
    for _ in 0..80 {
        keys(c, &char::from(Key::Tab).to_string()).await;
        let seen = c
            .execute(
                "const e = document.activeElement; const s = getComputedStyle(e);
                 const node = e.closest('svg') && e.querySelector('circle');
                 return { here: e.matches(arguments[0]),
                          what: e.outerHTML.slice(0, 120) + ' (outline: ' + s.outlineStyle
                                + ' ' + s.outlineWidth + ')',
                          shown: e === document.body
                                 || (node ? parseFloat(getComputedStyle(node).strokeWidth) >= 4
                                          : s.outlineStyle !== 'none'
                                            && parseFloat(s.outlineWidth) >= 2) };",
                vec![serde_json::json!(css)],
            )
            .await
            .expect("the focused element");
        assert_eq!(
            seen["shown"], true,
            "the focus does not show on {}",
            seen["what"]
        );
        if seen["here"] == true {
            return;
        }
    }
    panic!("Tab never reached {css}");
}

/// Tabs to `css` and presses Enter on it.
pub async fn enter_on(c: &Client, css: &str) {
    tab_to(c, css).await;
    keys(c, &char::from(Key::Enter).to_string()).await;
}

/// The recorder's form, for CSS selectors.
pub fn recorder_form() -> String {
    format!("#{}-recorder", REPO.replace('/', "-"))
}

/// A day `days` from today as a date input takes it from the keyboard in the browser's
/// locale (en-US: month, day, year), and as the form sends it.
pub fn day_keys(days: i64) -> (String, String) {
    let day = chrono::Utc::now() + chrono::Duration::days(days);
    (
        day.format("%m%d%Y").to_string(),
        day.format("%Y-%m-%d").to_string(),
    )
}

/// Asks for an environment from the recorder's form with the keyboard alone: Tab to each
/// field, type (a select takes the first letters of its option), Enter to send.
pub async fn request_by_keyboard(c: &Client, name: &str, cost_center: &str) {
    let form = recorder_form();
    let at = |f: &str| format!("{form} [name=\"{f}\"]");
    tab_to(c, &at("environment")).await;
    keys(c, name).await;
    tab_to(c, &at("team")).await;
    keys(c, "payments").await;
    tab_to(c, &at("type")).await;
    keys(c, "quick").await;
    tab_to(c, &at("expiresAt")).await;
    keys(c, &day_keys(1).0).await;
    tab_to(c, &at("tag.cost-center")).await;
    keys(c, cost_center).await;
    enter_on(c, &format!("{form} button[type=submit]")).await;
}

/// Fills the recorder form with the mouse: `cost_center` empty leaves out the tag the type
/// requires.
pub async fn fill_request(c: &Client, name: &str, cost_center: &str) {
    let form = recorder_form();
    let at = |f: &str| format!("{form} [name=\"{f}\"]");
    let input = c
        .find(Locator::Css(&at("environment")))
        .await
        .expect("name field");
    input.clear().await.expect("clear");
    input.send_keys(name).await.expect("type name");
    for (f, v) in [("team", "payments"), ("type", "quick")] {
        c.find(Locator::Css(&at(f)))
            .await
            .expect("select")
            .select_by_value(v)
            .await
            .expect("choose");
    }
    // A date input takes keys in the browser's locale (en-US: month, day, year), as a
    // person types them; no script is needed, so this works with JavaScript off too.
    c.find(Locator::Css(&at("expiresAt")))
        .await
        .expect("date")
        .send_keys(&day_keys(1).0)
        .await
        .expect("date");
    let t = c
        .find(Locator::Css(&at("tag.cost-center")))
        .await
        .expect("the cost-center tag's field");
    t.clear().await.expect("clear");
    if !cost_center.is_empty() {
        t.send_keys(cost_center).await.expect("tag");
    }
    c.find(Locator::Css(&format!("{form} button[type=submit]")))
        .await
        .expect("submit")
        .click()
        .await
        .expect("submit");
}
