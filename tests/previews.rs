//! Previews on the pull request (SPEC 14): `plan.sh` and `terraform plan` make `paved/plan`
//! and a "Preview" section of the summary comment; approvals are bound to the preview they
//! were given on; what is applied at merge is what was previewed; GitHub's merge queue gets
//! the checks of its commit.

#[allow(dead_code)]
pub const POSTGRES_SUITE: bool = false;

mod common;

#[path = "previews/planned.rs"]
mod planned;
#[path = "previews/queue.rs"]
mod queue;
#[path = "previews/terraform.rs"]
mod terraform;
