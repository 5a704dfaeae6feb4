//! A run's private directory (home, `ADE_STORAGE`, outputs, error log, the copy of the
//! definition), and the environment the script gets: built from nothing, the ADE contract
//! last so nothing can shadow it.

use super::identity::{identity_env, IdentityFiles};
use super::{storage, RunSpec};
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// The private directory of one run, and the paths of the ADE contract inside it.
pub struct RunDir {
    pub root: PathBuf,
    pub home: PathBuf,
    pub storage: PathBuf,
    pub outputs: PathBuf,
    pub error_log: PathBuf,
    /// The copy of the definition the run works in.
    pub definition: PathBuf,
    /// What the `ade` command reads and leaves (`PAVED_ADE_CONTEXT`).
    pub ade: PathBuf,
    /// The folder put first on the run's `PATH`: `ade` is there.
    pub bin: PathBuf,
    /// `ADE_PLAN`: the change list a preview writes, or the approved one a deploy reads.
    pub plan: PathBuf,
    /// Terraform: the plan file a preview makes, or the approved one a deploy applies.
    pub tfplan: PathBuf,
    removed: bool,
}

impl RunDir {
    fn create(work_root: &Path, run_id: i64) -> Result<RunDir, String> {
        use rand::Rng;
        use std::os::unix::fs::DirBuilderExt;
        std::fs::create_dir_all(work_root).map_err(|e| {
            format!(
                "could not create the runner work folder {}: {e}",
                work_root.display()
            )
        })?;
        let mut last_err = None;
        for _ in 0..16 {
            let suffix: u64 = rand::thread_rng().gen();
            let root = work_root.join(format!("run-{run_id}-{suffix:016x}"));
            match std::fs::DirBuilder::new().mode(0o700).create(&root) {
                Ok(()) => {
                    return Ok(RunDir {
                        home: root.join("home"),
                        storage: root.join("storage"),
                        outputs: root.join("outputs.json"),
                        error_log: root.join("error.log"),
                        definition: root.join("definition"),
                        ade: root.join("ade"),
                        bin: root.join("bin"),
                        plan: root.join("plan.json"),
                        tfplan: root.join("plan.tfplan"),
                        root,
                        removed: false,
                    })
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => last_err = Some(e),
                Err(e) => {
                    return Err(format!(
                        "could not create a run folder in {}: {e}",
                        work_root.display()
                    ))
                }
            }
        }
        Err(format!(
            "could not create a run folder in {}: {}",
            work_root.display(),
            last_err.map(|e| e.to_string()).unwrap_or_default()
        ))
    }

    pub(super) async fn remove(mut self) {
        self.removed = true;
        let root = self.root.clone();
        let _ = tokio::task::spawn_blocking(move || remove_tree(&root)).await;
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        // Only on cancellation or an early return: the normal path removes it on a
        // blocking thread.
        if !self.removed {
            remove_tree(&self.root);
        }
    }
}

/// Removes a run directory, even when the script left read-only folders in it.
fn remove_tree(root: &Path) {
    if std::fs::remove_dir_all(root).is_ok() || !root.exists() {
        return;
    }
    fn make_writable(p: &Path) {
        use std::os::unix::fs::PermissionsExt;
        let Ok(meta) = std::fs::symlink_metadata(p) else {
            return;
        };
        if meta.is_dir() {
            let _ = std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o700));
            if let Ok(entries) = std::fs::read_dir(p) {
                for e in entries.flatten() {
                    make_writable(&e.path());
                }
            }
        }
    }
    make_writable(root);
    if let Err(e) = std::fs::remove_dir_all(root) {
        tracing::warn!(path = %root.display(), error = %e, "could not remove a run directory");
    }
}

/// Creates the run directory, copies the definition into it and restores `ADE_STORAGE`.
pub(super) async fn prepare(spec: &RunSpec) -> Result<RunDir, String> {
    let work_root = spec.work_root.clone();
    let run_id = spec.run_id;
    let definition_dir = spec.definition_dir.clone();
    let storage = spec.storage.clone();
    let ade = super::ade_context::AdeContext::of(spec);
    let identity = spec.identity.clone();
    let plan = spec.plan.clone();
    let prepared = tokio::task::spawn_blocking(move || -> Result<RunDir, String> {
        let dir = RunDir::create(&work_root, run_id)?;
        for d in [&dir.home, &dir.storage, &dir.ade, &dir.bin] {
            std::fs::create_dir(d).map_err(|e| format!("could not create {}: {e}", d.display()))?;
        }
        let meta = std::fs::metadata(&definition_dir).map_err(|e| {
            format!(
                "definition folder {} is not readable: {e}",
                definition_dir.display()
            )
        })?;
        if !meta.is_dir() {
            return Err(format!(
                "definition folder {} is not a folder",
                definition_dir.display()
            ));
        }
        copy_tree(&definition_dir, &dir.definition).map_err(|e| {
            format!(
                "could not copy definition {}: {e}",
                definition_dir.display()
            )
        })?;
        if let Some(archive) = storage.as_deref() {
            storage::unpack(archive, &dir.storage, storage::STORAGE_LIMIT).map_err(|e| {
                format!("ADE_STORAGE from the previous operation could not be restored: {e}")
            })?;
        }
        ade.write(&dir)?;
        match &plan {
            Some(super::PlanInput::Changes(list)) => std::fs::write(&dir.plan, list)
                .map_err(|e| format!("could not write the approved preview: {e}"))?,
            Some(super::PlanInput::TerraformPlan(file)) => std::fs::write(&dir.tfplan, file)
                .map_err(|e| format!("could not write the approved plan: {e}"))?,
            Some(super::PlanInput::Preview(_)) | None => {}
        }
        if let Some(identity) = &identity {
            IdentityFiles::under(&dir.root)
                .write(identity)
                .map_err(|e| format!("could not write the run's identity files: {e}"))?;
        }
        Ok(dir)
    })
    .await;
    match prepared {
        Ok(r) => r,
        Err(e) => Err(format!("could not prepare the run: {e}")),
    }
}

/// Copies a definition folder: files (with their mode), folders and symlinks as they are.
/// Runs work on a copy so that files a script or Terraform writes next to the definition
/// (`.terraform/`, state, lock files, build output) never leak into the next run or into a
/// concurrent run of the same definition; `ade definitions download` copies it again.
pub fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    let mut entries: Vec<_> = std::fs::read_dir(from)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let src = entry.path();
        let dst = to.join(entry.file_name());
        let ft = entry.file_type()?;
        if ft.is_dir() {
            copy_tree(&src, &dst)?;
        } else if ft.is_file() {
            std::fs::copy(&src, &dst)?;
        } else if ft.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&src)?, &dst)?;
        }
        // Sockets, fifos and devices cannot come from Git; skip them.
    }
    Ok(())
}

/// The script's whole environment. Built from nothing (the caller uses `env_clear`) so the
/// server's own variables (tokens, database URLs, cloud credentials) never reach a script
/// from a repository; only what the service config allows (`spec.env`) is added. The ADE
/// contract comes last so a config variable can never shadow it.
pub(super) fn contract_env(spec: &RunSpec, dir: &RunDir) -> Vec<(OsString, OsString)> {
    let mut env: Vec<(OsString, OsString)> = Vec::new();
    let mut set = |k: &str, v: OsString| {
        env.retain(|(name, _)| name != k);
        env.push((k.into(), v));
    };
    set("LANG", "C.UTF-8".into());
    for (k, v) in &spec.env {
        let valid_name = !k.is_empty() && !k.contains('=') && !k.contains('\0');
        if valid_name && !v.contains('\0') {
            set(k, v.into());
        }
    }
    if let Some(identity) = &spec.identity {
        identity_env(
            identity,
            &IdentityFiles::under(&dir.root),
            spec.run_id,
            &mut set,
        );
    }
    let path = match &spec.ade_program {
        Some(_) => format!("{}:{}", dir.bin.display(), spec.path),
        None => spec.path.clone(),
    };
    set("PATH", path.into());
    set("HOME", dir.home.clone().into_os_string());
    let parameters = match &spec.parameters {
        serde_json::Value::Null => "{}".to_string(),
        p => p.to_string(),
    };
    let contract: [(&str, OsString); 7] = [
        ("OPERATION_NAME", spec.operation.as_str().into()),
        ("OPERATION_PARAMETERS", parameters.into()),
        ("ENVIRONMENT_NAME", spec.environment_name.clone().into()),
        ("ENVIRONMENT_TYPE", spec.environment_type.clone().into()),
        ("STORAGE", dir.storage.clone().into_os_string()),
        ("OUTPUTS", dir.outputs.clone().into_os_string()),
        ("ERROR_LOG", dir.error_log.clone().into_os_string()),
    ];
    for (name, value) in contract {
        set(&format!("ADE_{name}"), value.clone());
        set(&format!("PAVED_{name}"), value);
    }
    set("PAVED_ENVIRONMENT_TEAM", spec.team.clone().into());
    set("PAVED_REPOSITORY", spec.repository.clone().into());
    set("PAVED_COMMIT", spec.commit.clone().into());
    set("PAVED_RUN_ID", spec.run_id.to_string().into());
    // ADE's runner contract for custom images (SPEC 13).
    if let Some(tp) = &spec.template_path {
        set(
            "ADE_TEMPLATE_FILE",
            dir.definition.join(tp).into_os_string(),
        );
    }
    set("ADE_HTTP__OPERATIONID", spec.run_id.to_string().into());
    // Previews (SPEC 14): where a preview writes its changes, or a deploy reads the
    // approved ones.
    match &spec.plan {
        Some(super::PlanInput::Preview(of)) => {
            set("PAVED_PLAN_OPERATION", of.as_str().into());
            set("ADE_PLAN", dir.plan.clone().into_os_string());
            set("PAVED_PLAN", dir.plan.clone().into_os_string());
        }
        Some(super::PlanInput::Changes(_)) => {
            set("ADE_PLAN", dir.plan.clone().into_os_string());
            set("PAVED_PLAN", dir.plan.clone().into_os_string());
        }
        Some(super::PlanInput::TerraformPlan(_)) | None => {}
    }
    set("PAVED_ADE_CONTEXT", dir.ade.clone().into_os_string());
    // A NUL in a value would make the spawn fail; drop the variable instead.
    env.retain(|(_, v)| !v.as_encoded_bytes().contains(&0));
    env
}
