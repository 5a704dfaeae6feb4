//! `runner: terraform`: previews summarised from `terraform show -json`; the approved plan
//! file applied as it is at merge; a merge whose inputs moved so that the new plan would
//! destroy more than the approved one, refused with nothing run.

use super::planned::{approve, checked};
use crate::common::recorder::{manifest_of, path_of};
use paved_testkit::FileChange;

const MAIN_TF: &str = r#"variable "size" {
  type = string
}
variable "label" {
  type    = string
  default = "a"
}
resource "terraform_data" "db" {
  triggers_replace = [var.size]
}
resource "terraform_data" "tag" {
  input = var.label
}
"#;

const DEFINITION: &str = "name: tfdb
version: 1.0.0
summary: A database made by Terraform (Paved's tests)
runner: terraform
templatePath: main.tf
parameters:
  - id: size
    name: Size
    type: string
    allowed: [small, large]
  - id: label
    name: Label
    type: string
    default: a
";

fn files(main_tf: &str) -> Vec<FileChange> {
    vec![
        (
            "catalog/tfdb/environment.yaml".into(),
            Some(DEFINITION.as_bytes().to_vec()),
        ),
        (
            "catalog/tfdb/main.tf".into(),
            Some(main_tf.as_bytes().to_vec()),
        ),
    ]
}

fn tfdb(size: &str, label: &str) -> Vec<u8> {
    manifest_of(
        "tf1",
        "dev",
        "tfdb",
        &format!("    size: {size}\n    label: {label}\n"),
    )
    .into_bytes()
}

/// The real `terraform` where it is installed, else the stand-in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terraform_previews_apply_the_approved_plan_and_refuse_to_destroy_more() {
    let binaries = paved_testkit::terraform_binaries();
    scenario(binaries[0].clone()).await;
}

/// The project's stand-in, held to the same assertions (it is what runs where Terraform is
/// not installed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_terraform_stand_in_previews_as_terraform_does() {
    let binaries = paved_testkit::terraform_binaries();
    let stand_in = binaries
        .last()
        .cloned()
        .expect("the stand-in is always listed");
    scenario(stand_in).await;
}

async fn scenario(binary: std::path::PathBuf) {
    let env = super::planned::start_with(files(MAIN_TF), |c| {
        c.runner.terraform_binary = Some(binary);
    })
    .await;
    let manifest = path_of("tf1");

    let (pr, v, comment) = checked(&env, &[(manifest.clone(), Some(tfdb("small", "a")))], 4).await;
    assert_eq!(v["paved/plan"].state, "success", "{:?}", v["paved/plan"]);
    assert_eq!(v["paved/plan"].description.as_deref(), Some("2 to create"));
    assert!(
        comment.contains("**create** `terraform_data.db`"),
        "{comment}"
    );
    let (merge, _) = env.merge(&pr).await;
    assert_eq!(env.provision_status(&merge).await.state, "success");
    // Nothing moved: the approved plan file itself was applied.
    let ops = env.operations(&merge).await;
    let log = ops[0]["log"].as_str().unwrap_or_default();
    assert!(
        log.contains("apply -input=false -no-color <run dir>/plan.tfplan"),
        "{log}"
    );

    // A new size replaces the database.
    let (_, v, comment) = checked(&env, &[(manifest.clone(), Some(tfdb("large", "a")))], 4).await;
    assert_eq!(
        v["paved/plan"].description.as_deref(),
        Some("1 to replace (terraform_data.db)")
    );
    assert!(
        comment.contains("**replace** `terraform_data.db`"),
        "{comment}"
    );

    // A new label only updates the tag: approved so.
    let (relabel, v, _) = checked(&env, &[(manifest.clone(), Some(tfdb("small", "b")))], 4).await;
    assert_eq!(v["paved/plan"].description.as_deref(), Some("1 to update"));
    approve(&env, &relabel, &[(7, "admin1")]);

    // Meanwhile the platform team changes the template: a new label now replaces the tag.
    let changed = MAIN_TF.replace(
        "  input = var.label\n",
        "  input = var.label\n  triggers_replace = [var.label]\n",
    );
    let gov = env.open(&files(&changed));
    env.merge(&gov).await;
    // The relabel merges: planned again, it would replace what was approved as an update.
    let (merge, _) = env.merge(&relabel).await;
    let provision = env.provision_status(&merge).await;
    assert_eq!(provision.state, "failure", "{provision:?}");
    let ops = env.operations(&merge).await;
    let error = ops[0]["error"].as_str().unwrap_or_default().to_string();
    assert!(error.contains("replace terraform_data.tag"), "{error}");
    assert!(error.contains("approved preview did not"), "{error}");
    let log = ops[0]["log"].as_str().unwrap_or_default();
    assert!(!log.contains("$ terraform apply"), "nothing ran: {log}");
    // The environment keeps what it had.
    let detail = env.environment("tf1").await;
    assert_eq!(
        detail["environment"]["parameters"]["label"], "a",
        "{detail:#}"
    );
    let comment = super::planned::last_comment(&env, relabel.number);
    assert!(comment.contains("approved preview did not"), "{comment}");
}
