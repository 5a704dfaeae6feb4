//! Imports from other tools (SPEC 15): one open import per repository and source, found
//! again by its pull request, each environment adopted once.

use super::*;
use paved::store::{ImportedEnv, NewImport};

fn new_import(source: &str, branch: &str) -> NewImport {
    NewImport {
        repo: repo("acme/envs"),
        source: source.into(),
        branch: branch.into(),
        environments: vec![ImportedEnv {
            env_name: "shop-dev".into(),
            manifest_path: "environments/payments/shop-dev.yaml".into(),
            source_uri: "https://dc.example/projects/p/users/u/environments/shop-dev".into(),
            outputs: serde_json::json!({"url": {"type": "string", "value": "https://x", "sensitive": false}}),
        }],
    }
}

pub(crate) async fn imports(b: &Backend) {
    let store = b.open().await;
    let id = store
        .open_import(new_import("ade:p", "paved/imports/a"))
        .await
        .unwrap()
        .expect("the first import opens");
    // A second import of the same source while the first is open: refused, the open one named.
    let open = store
        .open_import(new_import("ade:p", "paved/imports/b"))
        .await
        .unwrap()
        .expect_err("one open import per source");
    assert_eq!(
        (open.id, open.branch.as_str(), open.open),
        (id, "paved/imports/a", true)
    );
    // Another source is another import.
    let other = store
        .open_import(new_import("ade:q", "paved/imports/q"))
        .await
        .unwrap();
    assert!(other.is_ok());

    store
        .set_import_pr(
            id,
            "0123456789abcdef0123456789abcdef01234567",
            12,
            "https://github.com/acme/envs/pull/12",
        )
        .await
        .unwrap();
    let found = store
        .import_for_pr(&repo("acme/envs"), 12)
        .await
        .unwrap()
        .expect("by its PR");
    assert_eq!(found.id, id);
    assert_eq!(
        found.head_sha.as_deref(),
        Some("0123456789abcdef0123456789abcdef01234567")
    );
    assert_eq!(
        found.pr_url.as_deref(),
        Some("https://github.com/acme/envs/pull/12")
    );
    assert!(store
        .import_for_pr(&repo("acme/envs"), 13)
        .await
        .unwrap()
        .is_none());

    let env = store
        .imported_environment(id, "shop-dev")
        .await
        .unwrap()
        .expect("recorded");
    assert_eq!(env.outputs["url"]["value"], "https://x");
    assert!(store
        .imported_environment(id, "other")
        .await
        .unwrap()
        .is_none());
    assert!(store.mark_adopted(id, "shop-dev").await.unwrap());
    assert!(
        !store.mark_adopted(id, "shop-dev").await.unwrap(),
        "adopted once"
    );

    // Closed, the source may be imported again.
    store.close_import(id).await.unwrap();
    assert!(
        !store
            .import_for_pr(&repo("acme/envs"), 12)
            .await
            .unwrap()
            .unwrap()
            .open
    );
    assert!(store
        .open_import(new_import("ade:p", "paved/imports/c"))
        .await
        .unwrap()
        .is_ok());
}
