//! The App manifest flow: a manifest posted as a browser posts it comes back as a one-time
//! code at its `redirect_url`; the code, traded without authentication, is an App.

use super::*;

fn manifest() -> Value {
    json!({
        "name": "Paved test",
        "url": "https://paved.example.test",
        "hook_attributes": {"url": "https://paved.example.test/webhooks/github"},
        "redirect_url": "http://127.0.0.1:9/done",
        "callback_urls": ["https://paved.example.test/oauth/callback"],
        "public": false,
        "default_permissions": {"checks": "write", "pull_requests": "write", "metadata": "read"},
        "default_events": ["pull_request", "check_run"],
    })
}

/// Posts `m` as a form to `path` (with `?state=s`); returns (status, Location, body).
async fn post_form(emu: &EmulatorHandle, path: &str, m: &Value) -> (u16, String, String) {
    let r = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
        .post(format!("{}{path}?state=s-123", emu.url()))
        .form(&[("manifest", m.to_string())])
        .send()
        .await
        .expect("the emulator answers");
    let status = r.status().as_u16();
    let location = r
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    (status, location, r.text().await.unwrap_or_default())
}

fn code_of(location: &str) -> String {
    let u = url::Url::parse(location).expect("a URL");
    assert_eq!(u.path(), "/done");
    let q: std::collections::HashMap<String, String> = u.query_pairs().into_owned().collect();
    assert_eq!(q.get("state").map(String::as_str), Some("s-123"));
    q.get("code").cloned().expect("a code")
}

#[tokio::test]
async fn a_manifest_becomes_a_code_and_the_code_an_app_once() {
    let key = include_str!("../../../../tests/fixtures/app-private-key.pem");
    let emu = Emulator::start_with(EmulatorConfig {
        manifest_app_key: Some(key.to_string()),
        ..EmulatorConfig::default()
    })
    .await
    .expect("emulator");

    // Nobody signed in to GitHub: no App.
    let (status, _, _) = post_form(&emu, "/settings/apps/new", &manifest()).await;
    assert_eq!(status, 403);
    emu.sign_in_as("mona");

    // A manifest GitHub would refuse: a page that says why, and no code.
    let mut bad = manifest();
    bad["default_events"] = json!(["merge_group"]);
    let (status, location, body) = post_form(&emu, "/settings/apps/new", &bad).await;
    assert_eq!((status, location.as_str()), (422, ""));
    assert!(
        body.contains("merge_group needs the merge_queues permission"),
        "{body}"
    );

    let (status, location, _) = post_form(&emu, "/settings/apps/new", &manifest()).await;
    assert_eq!(status, 302);
    let code = code_of(&location);
    // Traded with no Authorization header, as GitHub documents it.
    let mut anonymous = Client::new(&emu);
    anonymous.token = None;
    let path = format!("/app-manifests/{code}/conversions");
    let app = anonymous.call("POST", &path, None).await;
    assert_eq!(app.status, 201, "{:?}", app.body);
    assert_schema("apps/create-from-manifest", &app, "application/json");
    assert_eq!(app.body["pem"], key);
    assert_eq!(app.body["owner"]["login"], "mona");
    assert_eq!(app.body["events"], json!(["pull_request", "check_run"]));
    let made = emu.created_apps();
    assert_eq!(made.len(), 1);
    assert_eq!(app.body["id"], made[0].id);
    assert_eq!(app.body["webhook_secret"], made[0].webhook_secret.as_str());
    // Once only.
    assert_eq!(anonymous.call("POST", &path, None).await.status, 404);

    // For an organization: the organization owns it.
    let (status, location, _) =
        post_form(&emu, "/organizations/acme/settings/apps/new", &manifest()).await;
    assert_eq!(status, 302);
    let org_app = anonymous
        .call(
            "POST",
            &format!("/app-manifests/{}/conversions", code_of(&location)),
            None,
        )
        .await;
    assert_eq!(org_app.status, 201);
    assert_eq!(org_app.body["owner"]["login"], "acme");
    assert_nothing_wrong(&emu);
}
