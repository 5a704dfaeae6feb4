//! The portal in a real headless Chromium (Debian's `chromium` and `chromium-driver`, over
//! WebDriver), against the real server, real Git and the strict emulator, which also plays
//! GitHub's OAuth web flow. Screenshots of each page are saved under
//! `target/tmp/portal/` (`CARGO_TARGET_TMPDIR`); no page may log a console error, and
//! none may have a serious or critical WCAG 2.1 A/AA violation (axe-core). The browser's
//! helpers are in `portal/browser.rs`.

/// `false`: this binary's harnesses use SQLite.
#[allow(dead_code)]
pub const POSTGRES_SUITE: bool = false;

mod common;

use common::provisioning::Env;
use common::{DEADLINE, REPO};
use fantoccini::Locator;

const CLIENT_ID: &str = "Iv1.paved-portal-tests";
const CLIENT_SECRET: &str = "portal-tests-secret";

#[path = "portal/browser.rs"]
mod browser;

use browser::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_signs_in_asks_for_an_environment_and_another_team_sees_none_of_it() {
    let prepared = Env::prepare_platform(
        |t| {
            // The quick type deploys as its own identity (SPEC 13): the page names it.
            // A second type for the recorder, `roomy`, asks for no tag and no end date:
            // the form asks what the type chosen asks.
            common::recorder::with_quick_approval_and_search_team(t).replace(
                "    timeout: 2s\n",
                "    timeout: 2s\n    identity: quick-deployer\n",
            ) + "  roomy:\n    description: No end, no tags.\n    workflow: default\n    definitions: [recorder]\n    timeout: 2s\n"
        },
        |c, git| c.git_root = Some(git.to_path_buf()),
    )
    .await;
    let github = prepared.h.github.url();
    let e = prepared
        .run_with(move |c| {
            c.runner.identities.insert(
                "quick-deployer".into(),
                paved::config::Identity {
                    name: "quick-deployer".into(),
                    vars: vec![("REGION".into(), "eu-quick".into())],
                    ..Default::default()
                },
            );
            // No public URL: the callback is the host the browser reached.
            c.public_url = None;
            c.portal.client_id = Some(CLIENT_ID.into());
            c.portal.client_secret = Some(paved::config::Secret::new(CLIENT_SECRET));
            c.portal.web_url = github;
        })
        .await;
    e.h.github.register_oauth_app(CLIENT_ID, CLIENT_SECRET);
    let d = driver().await;
    let c = browser(&d).await;

    // Signed out: the sign-in page. Signed in: an empty list that says how to get one.
    c.goto(&format!("{}/", e.h.url())).await.expect("home");
    shot(&c, "sign-in").await;
    sign_in(&e, &c, "octocat").await;
    assert_eq!(title(&c).await, "My environments · Paved");
    assert!(
        text(&c).await.contains("No environments yet"),
        "{}",
        text(&c).await
    );
    shot(&c, "environments-empty").await;

    // The request form asks what the type chosen asks: a field for each tag it requires,
    // and an end date no later than its maxTtl allows.
    c.goto(&format!("{}/templates", e.h.url()))
        .await
        .expect("templates");
    assert_eq!(title(&c).await, "Templates · Paved");
    let form = recorder_form();
    let text_of_form = c
        .find(Locator::Css(&form))
        .await
        .expect("the recorder's form")
        .text()
        .await
        .expect("text");
    assert!(
        text_of_form.contains("quick: at most 3650d")
            && text_of_form.contains("Tag cost-center")
            && text_of_form.contains("Needed by dev, quick."),
        "{text_of_form}"
    );
    shot(&c, "templates").await;
    let asks = async |ty: &str| -> serde_json::Value {
        c.find(Locator::Css(&format!("{form} [name=\"type\"]")))
            .await
            .expect("the type")
            .select_by_value(ty)
            .await
            .expect("choose");
        c.execute(
            "const f = document.querySelector(arguments[0]);
             const tag = f.querySelector('[name=\"tag.cost-center\"]');
             const date = f.querySelector('[name=expiresAt]');
             return { tag: tag.required, date: date.required, max: date.max };",
            vec![serde_json::json!(form)],
        )
        .await
        .expect("the fields")
    };
    let last_day = day_keys(3650).1;
    assert_eq!(
        asks("roomy").await,
        serde_json::json!({"tag": false, "date": false, "max": ""})
    );
    assert_eq!(
        asks("quick").await,
        serde_json::json!({"tag": true, "date": true, "max": last_day})
    );
    // Without the tag, the browser does not send the form: the field says what is missing.
    fill_request(&c, "cart-preview", "").await;
    let missing = c
        .execute(
            "return document.querySelector(arguments[0]).validity.valueMissing;",
            vec![serde_json::json!(format!(
                "{form} [name=\"tag.cost-center\"]"
            ))],
        )
        .await
        .expect("validity");
    assert_eq!(
        missing, true,
        "the missing tag was not caught in the browser"
    );
    // Nor with an end date past quick's 3650 days.
    let late = c
        .find(Locator::Css(&format!("{form} [name=\"expiresAt\"]")))
        .await
        .expect("date");
    late.send_keys(&day_keys(3651).0).await.expect("date");
    let overflow = c
        .execute(
            "return document.querySelector(arguments[0]).validity.rangeOverflow;",
            vec![serde_json::json!(format!("{form} [name=\"expiresAt\"]"))],
        )
        .await
        .expect("validity");
    assert_eq!(
        overflow, true,
        "a date past maxTtl was not caught in the browser"
    );
    assert!(
        c.current_url()
            .await
            .expect("url")
            .path()
            .ends_with("/templates")
            && e.h.github.pull(REPO, 1).is_none(),
        "a form the browser refused was sent"
    );
    // A browser that checks nothing (the form told not to validate) gets the server's
    // answer: the error beside the tag's own field, and no PR opened.
    c.execute(
        "document.querySelector(arguments[0] + ' form').noValidate = true;",
        vec![serde_json::json!(form)],
    )
    .await
    .expect("no validation");
    fill_request(&c, "cart-preview", "").await;
    let err = c
        .wait()
        .for_element(Locator::Css(".field.invalid .error"))
        .await
        .expect("a field error");
    assert!(err.text().await.expect("text").contains("cost-center"));
    assert_eq!(
        c.find(Locator::Css(".field.invalid input"))
            .await
            .expect("the field in error")
            .attr("name")
            .await
            .expect("name"),
        Some("tag.cost-center".to_string())
    );
    shot(&c, "templates-error").await;
    assert!(
        e.h.github.pull(REPO, 1).is_none(),
        "a refused request opened a PR"
    );

    // A good one, with the keyboard alone: the request's page with its pull request.
    c.goto(&format!("{}/templates", e.h.url()))
        .await
        .expect("templates");
    request_by_keyboard(&c, "cart-preview", "cc-1234").await;
    let link = c
        .wait()
        .for_element(Locator::Id("pull-request"))
        .await
        .expect("the PR link");
    assert_eq!(link.text().await.expect("text"), "#1");
    assert!(title(&c).await.starts_with("Request "));
    // It follows the request without reloading itself (no meta refresh); a Refresh link
    // is there for a browser without scripts.
    assert!(text(&c).await.contains("Under way"));
    c.find(Locator::LinkText("Refresh"))
        .await
        .expect("a Refresh link");
    let reloads = c
        .execute(
            "window.pavedTestMark = 'same page';
             return document.querySelectorAll('meta[http-equiv]').length;",
            vec![],
        )
        .await
        .expect("meta");
    assert_eq!(reloads, 0, "the page reloads itself");
    shot(&c, "request").await;
    let pull = e.h.github.pull(REPO, 1).expect("the PR at GitHub");
    assert_eq!(pull["state"], "open");

    // A form post without this session's CSRF token is refused, and opens nothing.
    let session = c
        .get_named_cookie("paved_session")
        .await
        .expect("session cookie")
        .value()
        .to_string();
    let http = reqwest::Client::new();
    let post = |cookie: String, csrf: Option<&str>| {
        let mut form = vec![
            ("repository", REPO.to_string()),
            ("action", "create".to_string()),
            ("template", "recorder".to_string()),
            ("environment", "sneaky".to_string()),
            ("team", "payments".to_string()),
            ("type", "quick".to_string()),
        ];
        if let Some(t) = csrf {
            form.push(("csrf", t.to_string()));
        }
        http.post(format!("{}/requests", e.h.url()))
            .header("cookie", format!("paved_session={cookie}"))
            .form(&form)
            .send()
    };
    assert_eq!(
        post(session.clone(), None).await.expect("post").status(),
        403
    );
    assert_eq!(
        post(session.clone(), Some("0123456789abcdef0123456789abcdef"))
            .await
            .expect("post")
            .status(),
        403
    );
    // Another session's token (a second sign-in, its own token) does not fit this one.
    let other = browser(&d).await;
    sign_in(&e, &other, "octocat").await;
    let other_csrf = other
        .find(Locator::Css("form[action=\"/logout\"] input[name=csrf]"))
        .await
        .expect("csrf field")
        .attr("value")
        .await
        .expect("value")
        .expect("a token");
    assert_eq!(
        post(session.clone(), Some(&other_csrf))
            .await
            .expect("post")
            .status(),
        403
    );
    assert!(
        e.h.github.pull(REPO, 2).is_none(),
        "a refused post opened a PR"
    );
    other.close().await.expect("close");

    // GitHub's side: the PR is checked as octocat's, a teammate approves, it is merged.
    let request_url = c.current_url().await.expect("url").to_string();
    let spec = spec_of(&e, 1);
    e.h.send_pr(&spec).await;
    e.h.github.set_pull_reviews(
        REPO,
        1,
        vec![
            serde_json::json!({"user": {"login": "hubot"}, "state": "APPROVED",
                                "commit_id": spec.head_sha.as_str()}),
        ],
    );
    let mut review = spec.clone();
    review.action = "synchronize".into();
    e.h.send_pr(&review).await;
    let head = spec.head_sha.to_string();
    e.h.github
        .wait_until(DEADLINE, "approval passes", move |gh| {
            gh.latest_statuses(REPO, &head)
                .get("paved/approval")
                .is_some_and(|s| s.state == "success")
        })
        .await
        .expect("approved");
    let (merge, _) = e.merge(&spec).await;
    let status = e.provision_status(&merge).await;
    assert_eq!(status.state, "success", "{status:?}");
    // The request's page, left open, follows it there in place: the same page (its mark
    // is still set), the state changed, and the status line says so to a screen reader.
    common::eventually("the request page says succeeded", async || {
        let t = text(&c).await;
        (t.contains("succeeded") && !t.contains("Under way")).then_some(())
    })
    .await;
    let after = c
        .execute(
            "return { mark: window.pavedTestMark || null,
                      said: document.getElementById('request-announce').textContent };",
            vec![],
        )
        .await
        .expect("the page");
    assert_eq!(after["mark"], "same page", "the page was reloaded");
    assert_eq!(after["said"], "The request is now succeeded.");
    shot(&c, "request-succeeded").await;

    // In the list, with its state; its page, with outputs and the operation's log.
    c.goto(&format!("{}/", e.h.url())).await.expect("home");
    let row = text(&c).await;
    assert!(
        row.contains("cart-preview") && row.contains("ready"),
        "{row}"
    );
    shot(&c, "environments").await;
    // Filtering, with the keyboard: type in the name filter, Enter.
    let list = c.find(Locator::Css("main")).await.expect("main");
    tab_to(&c, "#q").await;
    keys(&c, "nothing-like-it\u{e007}").await;
    replaced(&c, list).await;
    assert!(
        text(&c).await.contains("No environments match"),
        "{}",
        text(&c).await
    );
    let list = c.find(Locator::Css("main")).await.expect("main");
    c.find(Locator::Css("#q"))
        .await
        .expect("the filter")
        .clear()
        .await
        .expect("clear");
    tab_to(&c, "#team").await;
    keys(&c, "payments").await;
    enter_on(&c, ".filters button[type=submit]").await;
    replaced(&c, list).await;
    assert!(
        c.current_url().await.expect("url").query() == Some("team=payments&q=")
            && text(&c).await.contains("cart-preview"),
        "{}",
        text(&c).await
    );
    // On a phone's width the page still reads: the table scrolls inside itself, the page
    // does not.
    c.set_window_size(390, 844).await.expect("a phone's width");
    let wide: serde_json::Value = c
        .execute(
            "return document.documentElement.scrollWidth > window.innerWidth;",
            vec![],
        )
        .await
        .expect("widths");
    assert_eq!(
        wide,
        serde_json::json!(false),
        "the page scrolls sideways on a phone"
    );
    shot(&c, "environments-phone").await;
    c.set_window_size(1200, 900)
        .await
        .expect("a laptop's width");
    c.find(Locator::LinkText("cart-preview"))
        .await
        .expect("the environment's link")
        .click()
        .await
        .expect("click");
    c.wait()
        .for_element(Locator::Css("details"))
        .await
        .expect("an operation");
    assert_eq!(title(&c).await, "cart-preview · Paved");
    let page = text(&c).await;
    assert!(
        page.contains("succeeded") && page.contains("payments"),
        "{page}"
    );
    assert!(page.contains("https://cart-preview.example.test"), "{page}");
    assert!(
        page.contains("Deploy identity") && page.contains("quick-deployer"),
        "the type's deploy identity is named: {page}"
    );
    // Its history: the commit that added it, and the note Paved wrote on the merge.
    assert!(page.contains("added by"), "{page}");
    assert!(
        page.contains("succeeded deploy, PR #1, requested by octocat, approved by hubot"),
        "{page}"
    );
    assert!(
        !page.contains("s3cr3t"),
        "a sensitive output is shown: {page}"
    );
    // Its lifecycle: when it expires, when drift is next checked, and a Reconcile button.
    assert!(
        page.contains("expires (deleted)") && page.contains("next drift check"),
        "{page}"
    );
    assert!(page.contains("Drift: not checked yet."), "{page}");
    shot(&c, "environment").await;
    let env_url = c.current_url().await.expect("url").to_string();
    // Times are shown in the viewer's time zone, the UTC value kept for the tooltip.
    let (shown, utc) = updated_time(&c).await;
    assert_ne!(shown, utc, "the script did not show the local time");
    // A drift shown, as the scheduler's drift check records one (tests/lifecycle.rs runs
    // the check itself; here the page is what is looked at): its state, summary and issue.
    let store = e.h.service.as_ref().expect("running").store.clone();
    store
        .record_drift(
            &e.h.repo,
            "cart-preview",
            paved::store::DriftState::Drifted,
            "drifted: the site was changed by hand (1 of 2 deploys)",
            chrono::Utc::now().timestamp_millis(),
        )
        .await
        .expect("a drift");
    store
        .set_drift_issue(&e.h.repo, "cart-preview", Some(7))
        .await
        .expect("its issue");
    c.goto(&env_url).await.expect("the environment again");
    let drifted = text(&c).await;
    assert!(
        drifted.contains("Drift: drifted") && drifted.contains("changed by hand"),
        "{drifted}"
    );
    c.find(Locator::LinkText("its issue"))
        .await
        .expect("a link to the drift's issue");
    shot(&c, "environment-drifted").await;

    // The Graph around it, drawn on the server: its team, template, type and people.
    c.goto(&format!(
        "{}/graph?around=environment:{REPO}/cart-preview",
        e.h.url()
    ))
    .await
    .expect("graph");
    assert_eq!(title(&c).await, "Graph · Paved");
    let svg = c
        .find(Locator::Css("svg.graph"))
        .await
        .expect("an SVG")
        .html(false)
        .await
        .expect("svg");
    for around in ["payments", "recorder", "quick", "octocat", "hubot"] {
        assert!(
            svg.contains(&format!(">{around}<")),
            "{around} missing: {svg}"
        );
    }
    assert!(
        svg.contains("ownedBy") && svg.contains("approvedBy"),
        "{svg}"
    );
    // The same relations as text, each end a link that centres the graph on it; the
    // drawing's nodes are links of their own, not inside an image.
    let relations = c
        .find(Locator::Css("ul.relations"))
        .await
        .expect("the relations as a list")
        .text()
        .await
        .expect("text");
    assert!(
        relations.contains("environment cart-preview ownedBy team payments")
            && relations.contains("approvedBy user hubot"),
        "{relations}"
    );
    let drawn = c
        .execute(
            "const svg = document.querySelector('svg.graph');
             return { role: svg.getAttribute('role'),
                      links: svg.querySelectorAll('a[href]').length,
                      listed: document.querySelectorAll('ul.relations a[href]').length };",
            vec![],
        )
        .await
        .expect("the drawing");
    assert_eq!(drawn["role"], "group", "{drawn}");
    assert!(drawn["links"].as_u64() >= Some(6), "{drawn}");
    assert!(drawn["listed"].as_u64() >= Some(12), "{drawn}");
    shot(&c, "graph").await;
    c.goto(&env_url).await.expect("back to the environment");

    // Reconcile: the scheduler runs its deploy again, as operation `reconcile`.
    // With the keyboard: Tab to the button, Enter.
    let before = c.find(Locator::Css("main")).await.expect("main");
    enter_on(&c, "form[action$='/reconcile'] button").await;
    // The post redirects back to this page: wait for the old one to go before reading.
    replaced(&c, before).await;
    let now = common::eventually("the reconcile shown", async || {
        let now = text(&c).await;
        if now.contains("succeeded reconcile") {
            return Some(now);
        }
        c.goto(&env_url).await.expect("reload");
        None
    })
    .await;
    assert!(now.contains("requested by octocat"), "{now}");

    // Extend it: a request, i.e. a pull request, as the page says.
    assert!(page.contains("opens a request"), "{page}");
    // With the keyboard: the date typed, Tab to Extend, Enter.
    tab_to(&c, "#expiresAt").await;
    keys(&c, &day_keys(2).0).await;
    enter_on(&c, "input[name=action][value=extend] ~ button").await;
    let link = c
        .wait()
        .for_element(Locator::Id("pull-request"))
        .await
        .expect("the extension's PR");
    assert_eq!(link.text().await.expect("text"), "#2");
    assert!(text(&c).await.contains("extend cart-preview"));
    shot(&c, "request-extend").await;
    // Delete, with the keyboard too: while the extension's pull request is open, the
    // server refuses a second request for it, on a page that keeps the portal's frame.
    c.goto(&env_url).await.expect("back to the environment");
    let before = c.find(Locator::Css("main")).await.expect("main");
    enter_on(&c, "input[name=action][value=delete] ~ button").await;
    replaced(&c, before).await;
    assert_eq!(title(&c).await, "Refused · Paved");
    assert!(
        text(&c).await.contains("already has an open request"),
        "{}",
        text(&c).await
    );
    let nav = nav_text(&c).await;
    assert!(
        nav.contains("Templates") && nav.contains("octocat"),
        "{nav}"
    );
    expected_refusals(&c, &[409]).await;
    shot(&c, "refused").await;
    assert!(
        e.h.github.pull(REPO, 3).is_none(),
        "a refused deletion opened a PR"
    );

    // Another team's member sees none of it: not the request, not the environment, not in
    // the list.
    sign_out(&c).await;
    sign_in(&e, &c, "searcher").await;
    c.goto(&request_url).await.expect("request");
    assert!(
        text(&c).await.contains("No such request"),
        "{}",
        text(&c).await
    );
    // A missing page keeps the portal's frame: the navigation, who is signed in.
    let nav = nav_text(&c).await;
    assert!(
        nav.contains("My environments") && nav.contains("searcher"),
        "{nav}"
    );
    expected_refusals(&c, &[404]).await;
    shot(&c, "not-found").await;
    c.goto(&env_url).await.expect("environment");
    assert!(text(&c).await.contains("No such environment"));
    // Nor can they reconcile it: a form posted with their own session's CSRF token (from
    // a page of theirs) gets the page a missing environment gets, and nothing is queued.
    c.goto(&format!("{}/", e.h.url())).await.expect("home");
    let home = c.find(Locator::Css("main")).await.expect("main");
    c.execute(
        "const f = document.createElement('form'); f.method = 'post'; \
         f.action = arguments[0] + '/reconcile'; \
         const t = document.createElement('input'); t.type = 'hidden'; t.name = 'csrf'; \
         t.value = document.querySelector('input[name=csrf]').value; \
         f.appendChild(t); document.body.appendChild(f); f.submit();",
        vec![serde_json::json!(env_url)],
    )
    .await
    .expect("post");
    replaced(&c, home).await;
    assert!(
        text(&c).await.contains("No such environment"),
        "{}",
        text(&c).await
    );
    let timers = store
        .timers_of(&e.h.repo, "cart-preview")
        .await
        .expect("timers");
    assert!(
        timers
            .iter()
            .all(|t| t.kind != paved::store::TimerKind::Reconcile),
        "{timers:?}"
    );
    c.goto(&format!(
        "{}/graph?around=environment:{REPO}/cart-preview",
        e.h.url()
    ))
    .await
    .expect("graph");
    assert!(
        !text(&c).await.contains("cart-preview"),
        "another team's graph shows it"
    );
    c.goto(&format!("{}/", e.h.url())).await.expect("home");
    assert!(!text(&c).await.contains("cart-preview"));
    // Operations are a platform admin's: for anyone else there is no such page.
    c.goto(&format!("{}/operations", e.h.url()))
        .await
        .expect("operations");
    assert!(text(&c).await.contains("No such page"));
    expected_refusals(&c, &[404]).await;
    c.goto(&format!("{}/", e.h.url())).await.expect("home");
    sign_out(&c).await;
    sign_in(&e, &c, "admin1").await;
    c.find(Locator::LinkText("Operations"))
        .await
        .expect("an admin's link to Operations")
        .click()
        .await
        .expect("click");
    c.wait()
        .for_element(Locator::Css("h1"))
        .await
        .expect("page");
    assert_eq!(title(&c).await, "Operations · Paved");
    let ops = text(&c).await;
    assert!(
        ops.contains("The queue") && ops.contains("Operations not finished"),
        "{ops}"
    );
    assert!(ops.contains("done"), "the queue's counts: {ops}");
    shot(&c, "operations").await;
    c.close().await.expect("close");

    // With JavaScript off, everything still works: reading, a request form, signing out.
    let c = browser_with(&d, false).await;
    sign_in(&e, &c, "octocat").await;
    let list = text(&c).await;
    assert!(
        list.contains("cart-preview") && list.contains("hours"),
        "{list}"
    );
    c.goto(&format!("{}/templates", e.h.url()))
        .await
        .expect("templates");
    c.find(Locator::Css(&format!(
        "{} [name=\"type\"]",
        recorder_form()
    )))
    .await
    .expect("the type")
    .select_by_value("quick")
    .await
    .expect("quick");
    fill_request(&c, "no-script", "cc-1234").await;
    let link = c
        .wait()
        .for_element(Locator::Id("pull-request"))
        .await
        .expect("the PR link, without a script");
    assert_eq!(link.text().await.expect("text"), "#3");
    // Without a script the page does not follow the request: its Refresh link does.
    c.find(Locator::LinkText("Refresh"))
        .await
        .expect("a Refresh link");
    shot_scriptless(&c, "request-without-javascript").await;
    sign_out(&c).await;
    c.close().await.expect("close");
}

/// Without an OAuth app the portal does not pretend: it says how to register one, with the
/// callback URL to give GitHub, and `/login` goes nowhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_oauth_app_the_portal_says_how_to_configure_one() {
    let e = Env::prepare_platform(|t| t, |_, _| {})
        .await
        .run_with(|_| {})
        .await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    for path in ["/", "/login", "/templates"] {
        let r = http
            .get(format!("{}{path}", e.h.url()))
            .send()
            .await
            .expect("page");
        assert_eq!(r.status(), 200, "{path}");
        let page = r.text().await.expect("text");
        assert!(page.contains("Sign-in is not configured"), "{path}: {page}");
        assert!(
            page.contains("http://paved.test/oauth/callback")
                && page.contains("oauth_client_secret"),
            "{path}: {page}"
        );
    }
}

/// A `url` output holding `javascript:…` is shown as text on "My environments" and the
/// environment's page, never as a link; every page and API answer carries the security
/// headers (CSP without inline script, no framing, no sniffing, a referrer policy).
#[tokio::test]
async fn a_javascript_url_output_is_text_and_every_page_sends_security_headers() {
    let prepared = Env::prepare_with(|c, git| c.git_root = Some(git.to_path_buf())).await;
    let github = prepared.h.github.url();
    let e = prepared
        .run_with(move |c| {
            c.public_url = None;
            c.portal.client_id = Some(CLIENT_ID.into());
            c.portal.client_secret = Some(paved::config::Secret::new(CLIENT_SECRET));
            c.portal.web_url = github;
        })
        .await;
    e.h.github.register_oauth_app(CLIENT_ID, CLIENT_SECRET);
    let pr = e.open(&common::recorder::add("evil-link", "jsurl"));
    let (merge, _) = e.merge(&pr).await;
    let status = e.provision_status(&merge).await;
    assert_eq!(status.state, "success", "{status:?}");

    let d = driver().await;
    let c = browser(&d).await;
    sign_in(&e, &c, "octocat").await;
    c.goto(&format!("{}/", e.h.url())).await.expect("home");
    let shown = c
        .find(Locator::Css(".url-text"))
        .await
        .expect("the url output, as text")
        .text()
        .await
        .expect("text");
    assert_eq!(shown, "javascript:alert(document.domain)//");
    let hrefs = c
        .execute(
            "return Array.from(document.querySelectorAll('a')).map(a => a.getAttribute('href'))",
            vec![],
        )
        .await
        .expect("links");
    let hrefs: Vec<String> = serde_json::from_value(hrefs).expect("strings");
    assert!(
        hrefs
            .iter()
            .all(|h| !h.trim().to_ascii_lowercase().starts_with("javascript:")),
        "{hrefs:?}"
    );
    assert!(hrefs.iter().any(|h| h.ends_with("/evil-link")), "{hrefs:?}");
    shot(&c, "environments-javascript-url").await;

    c.goto(&format!("{}/environments/{REPO}/evil-link", e.h.url()))
        .await
        .expect("environment page");
    assert!(
        text(&c)
            .await
            .contains("javascript:alert(document.domain)//"),
        "the value is shown"
    );
    let on_page = c
        .execute(
            "return Array.from(document.querySelectorAll('a')).filter(a => (a.getAttribute('href') || '').toLowerCase().startsWith('javascript:')).length",
            vec![],
        )
        .await
        .expect("count");
    assert_eq!(on_page, serde_json::json!(0));

    // The headers, on the portal's pages, its script and the API alike.
    let http = reqwest::Client::new();
    for path in ["/", "/login", "/portal.js", "/healthz", "/api/v1/entities"] {
        let r = http
            .get(format!("{}{path}", e.h.url()))
            .send()
            .await
            .expect("answer");
        let h = r.headers();
        let csp = h
            .get("content-security-policy")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_else(|| panic!("{path}: no Content-Security-Policy"));
        assert!(
            csp.contains("frame-ancestors 'none'")
                && csp.contains("script-src 'self'")
                && !csp.contains("unsafe-inline"),
            "{path}: {csp}"
        );
        assert_eq!(h["x-frame-options"], "DENY", "{path}");
        assert_eq!(h["x-content-type-options"], "nosniff", "{path}");
        assert!(h.contains_key("referrer-policy"), "{path}");
    }
    // The Graph links only web addresses, and so does the Backstage export built from it.
    let entities = e.get("/api/v1/entities").await.to_string();
    assert!(entities.contains("evil-link"), "{entities}");
    assert!(!entities.contains("javascript:"), "{entities}");
}

/// Issue 19, item 8: pages read Git and GitHub through a short per-repository cache: the
/// list viewed again does not fetch the default branch again, and a request page refreshed
/// (every 3 s while in progress) does not ask GitHub each time.
#[tokio::test]
async fn pages_viewed_again_read_through_a_short_cache() {
    const OCTOCAT_TOKEN: &str = "gho_octocat_portal_cache";
    let prepared = Env::prepare_with(|c, git| c.git_root = Some(git.to_path_buf())).await;
    let github = prepared.h.github.url();
    let e = prepared
        .run_with(move |c| {
            c.public_url = None;
            c.portal.client_id = Some(CLIENT_ID.into());
            c.portal.client_secret = Some(paved::config::Secret::new(CLIENT_SECRET));
            c.portal.web_url = github;
        })
        .await;
    e.h.github.register_oauth_app(CLIENT_ID, CLIENT_SECRET);
    e.h.github.add_user_token(OCTOCAT_TOKEN, "octocat");
    let pr = e.open(&common::recorder::add("cached", "ok"));
    let (merge, _) = e.merge(&pr).await;
    assert_eq!(e.provision_status(&merge).await.state, "success");

    let d = driver().await;
    let c = browser(&d).await;
    sign_in(&e, &c, "octocat").await;
    let fetch_head =
        e.h.data_dir()
            .join("mirrors/acme/environments.git/FETCH_HEAD");
    let fetched_at = || {
        std::fs::metadata(&fetch_head)
            .and_then(|m| m.modified())
            .ok()
    };
    c.goto(&format!("{}/", e.h.url())).await.expect("home");
    let first = fetched_at().expect("the list fetched the default branch");
    for _ in 0..3 {
        c.goto(&format!("{}/", e.h.url())).await.expect("home");
        assert!(text(&c).await.contains("cached"));
    }
    assert_eq!(fetched_at(), Some(first), "the list fetched again");

    // A request, and its page viewed four times: GitHub is asked about its pull request once.
    let expires = (chrono::Utc::now() + chrono::Duration::days(2))
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    let r = reqwest::Client::new()
        .post(format!("{}/api/v1/requests", e.h.url()))
        .bearer_auth(OCTOCAT_TOKEN)
        .json(&serde_json::json!({
            "repository": REPO, "action": "create", "environment": "asked",
            "team": "payments", "type": "dev", "template": "recorder",
            "parameters": {"mode": "ok"}, "expiresAt": expires,
            "tags": {"cost-center": "cc-1234"},
        }))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 201);
    let opened: serde_json::Value = r.json().await.expect("json");
    let id = opened["id"].as_i64().expect("id");
    let number = opened["pullRequest"]["number"].as_u64().expect("number");
    let pull_reads = || {
        e.h.github
            .requests()
            .iter()
            .filter(|r| r.method == "GET" && r.path == format!("/repos/{REPO}/pulls/{number}"))
            .count()
    };
    let before = pull_reads();
    for _ in 0..4 {
        c.goto(&format!("{}/requests/{id}", e.h.url()))
            .await
            .expect("request page");
        assert!(text(&c).await.contains("asked"));
    }
    assert_eq!(pull_reads() - before, 1, "GitHub was asked at every view");
}
