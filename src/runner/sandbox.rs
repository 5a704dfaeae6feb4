//! The sandbox every run goes through (SPEC 12): bubblewrap, from the distribution.
//!
//! A definition's scripts are the platform team's reviewed code, but they are still code
//! from a repository, and Paved's own process holds the keys to everything (the GitHub
//! token, the webhook secrets, the portal's session key, the database with every team's
//! outputs). So each run is its own process tree in new mount, PID, IPC and UTS
//! namespaces, as an unprivileged user with no capabilities, and it sees only:
//! - the system's folders (`/usr`, `/bin`, `/sbin`, `/lib*`, `/etc`) and each folder on the
//!   runner's `PATH`, read-only;
//! - its own run folder (`HOME`, `ADE_STORAGE`, the outputs and error-log files), with the
//!   definition in it read-only (Terraform: a private copy it may write `.terraform` into);
//! - a private `/tmp`, `/proc` of its own PID namespace, a minimal `/dev`;
//! - the host folders an operator granted (`[[runner.mounts]]`).
//!
//! Paths Paved knows to be its own (the data folder, the configuration file, key files, the
//! database) are masked even when they sit under a visible folder (a `paved.toml` in
//! `/etc/paved`, say). The network is shared unless the environment type says
//! `network: none`.
//!
//! When Paved runs as root, `bwrap` itself is started as the runner's user (`runner.user`,
//! default `nobody`): the sandbox's user is then that unprivileged user on the host too, not
//! root seen through a user namespace. When Paved runs as another user it cannot change
//! user; the run is that user mapped to `runner.user`'s id inside the sandbox, and what
//! keeps Paved's files out of reach is that they are never mounted.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The system folders every run sees, read-only (those that exist on this host).
pub const SYSTEM_DIRS: &[&str] = &[
    "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc",
];

/// How runs are isolated.
#[derive(Debug, Clone, Default)]
pub enum Sandbox {
    /// `runner.sandbox = "none"`: scripts run as Paved's own user and see what it sees.
    /// Paved warns about it at every start, in `/readyz` and in a gauge.
    #[default]
    None,
    /// Each run in its own bubblewrap sandbox.
    Bubblewrap(Arc<Bubblewrap>),
}

impl Sandbox {
    pub fn is_none(&self) -> bool {
        matches!(self, Sandbox::None)
    }
}

/// A host folder an operator grants every run (`[[runner.mounts]]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub path: PathBuf,
    pub writable: bool,
}

/// The user runs are started as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunAs {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    /// Paved runs as root: `bwrap` is started as this user (setuid/setgid, no groups).
    pub switch: bool,
}

/// A bubblewrap sandbox, resolved once at start.
#[derive(Debug, Clone)]
pub struct Bubblewrap {
    /// The `bwrap` program.
    pub program: PathBuf,
    pub user: RunAs,
    /// Host folders granted to every run.
    pub mounts: Vec<Mount>,
    /// Paved's own paths, masked wherever they would be visible.
    pub hidden: Vec<PathBuf>,
}

/// What one run mounts besides the system folders.
pub(crate) struct RunMounts<'a> {
    /// The run's own folder (writable).
    pub work: &'a Path,
    /// The definition inside it, and whether the run may write into it.
    pub definition: &'a Path,
    pub definition_writable: bool,
    /// The run's `PATH`, whose folders are visible read-only.
    pub path: &'a str,
    /// More read-only folders (a `terraform` binary outside `PATH`).
    pub extra_ro: Vec<PathBuf>,
    /// `false`: the environment type says `network: none`.
    pub network: bool,
    /// The program bound read-only as the run's `ade` command, and where.
    pub ade: Option<(&'a Path, PathBuf)>,
}

impl Bubblewrap {
    /// Resolves the sandbox: `program` (a path, or a name looked up on `search_path`) and
    /// `user` (a name from the user database, or a numeric uid). Errors name what failed.
    pub fn resolve(
        program: &str,
        search_path: &str,
        user: &str,
        mounts: Vec<Mount>,
        hidden: Vec<PathBuf>,
    ) -> Result<Bubblewrap, String> {
        let program = find_program(program, search_path).ok_or_else(|| {
            format!("bubblewrap ({program}) was not found: install the `bubblewrap` package")
        })?;
        let user = run_as(user)?;
        Ok(Bubblewrap {
            program,
            user,
            mounts,
            hidden,
        })
    }

    /// The argv that runs `inner` in the sandbox, with `cwd` as its working folder.
    pub(crate) fn argv(
        &self,
        run: &RunMounts<'_>,
        cwd: &Path,
        inner: &[OsString],
    ) -> Vec<OsString> {
        let mut a = Args(vec![self.program.clone().into_os_string()]);
        a.flag("--die-with-parent");
        a.flag("--new-session");
        a.flag("--unshare-user");
        a.flag("--unshare-pid");
        a.flag("--unshare-ipc");
        a.flag("--unshare-uts");
        a.flag("--unshare-cgroup-try");
        if !run.network {
            a.flag("--unshare-net");
        }
        a.pair("--uid", self.user.uid.to_string());
        a.pair("--gid", self.user.gid.to_string());
        a.pair("--hostname", "paved-run");
        a.flag("--cap-drop");
        a.flag("ALL");
        let mut visible: Vec<PathBuf> = Vec::new();
        for dir in SYSTEM_DIRS {
            a.bind("--ro-bind-try", Path::new(dir));
            visible.push(PathBuf::from(dir));
        }
        // A private /tmp before the run's own folders: a `PATH` folder or a Terraform binary
        // under /tmp (a checkout there) is bound on top of it, not hidden by it.
        a.pair("--proc", "/proc");
        a.pair("--dev", "/dev");
        a.pair("--tmpfs", "/tmp");
        for dir in run.path.split(':').filter(|d| d.starts_with('/')) {
            let dir = Path::new(dir);
            if !visible.iter().any(|v| dir.starts_with(v)) {
                a.bind("--ro-bind-try", dir);
                visible.push(dir.to_path_buf());
            }
        }
        for dir in &run.extra_ro {
            if !visible.iter().any(|v| dir.starts_with(v)) {
                a.bind("--ro-bind-try", dir);
                visible.push(dir.clone());
            }
        }
        for m in &self.mounts {
            a.bind(if m.writable { "--bind" } else { "--ro-bind" }, &m.path);
            visible.push(m.path.clone());
        }
        // Paved's own files, wherever a visible folder holds them.
        for h in &self.hidden {
            if !visible.iter().any(|v| h.starts_with(v)) {
                continue;
            }
            match std::fs::metadata(h) {
                Ok(m) if m.is_dir() => a.pair("--tmpfs", h),
                Ok(_) => {
                    a.flag("--ro-bind");
                    a.flag("/dev/null");
                    a.flag(h);
                }
                Err(_) => {}
            }
        }
        a.bind("--bind", run.work);
        a.bind(
            if run.definition_writable {
                "--bind"
            } else {
                "--ro-bind"
            },
            run.definition,
        );
        if let Some((program, at)) = &run.ade {
            a.flag("--ro-bind");
            a.flag(program);
            a.flag(at);
        }
        a.pair("--chdir", cwd);
        a.flag("--");
        a.0.extend(inner.iter().cloned());
        a.0
    }

    /// Starts `/bin/true` in a sandbox as a run would be started, in a scratch folder under
    /// `work_root`: `Err` says what failed (bwrap's own message), so `paved serve` can
    /// refuse to start with it.
    pub fn probe(&self, work_root: &Path) -> Result<(), String> {
        let scratch = work_root.join(format!("probe-{:016x}", rand::random::<u64>()));
        let definition = scratch.join("definition");
        std::fs::create_dir_all(&definition)
            .map_err(|e| format!("could not create {}: {e}", definition.display()))?;
        let result = (|| {
            self.give(&scratch)?;
            let run = RunMounts {
                work: &scratch,
                definition: &definition,
                definition_writable: false,
                path: "/usr/bin:/bin",
                extra_ro: Vec::new(),
                network: true,
                ade: None,
            };
            let argv = self.argv(
                &run,
                &scratch,
                &["/bin/sh".into(), "-c".into(), "exit 0".into()],
            );
            let mut cmd = std::process::Command::new(&argv[0]);
            cmd.args(&argv[1..])
                .env_clear()
                .env("PATH", "/usr/bin:/bin")
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped());
            self.as_user(&mut cmd);
            let out = cmd
                .output()
                .map_err(|e| format!("could not start {}: {e}", self.program.display()))?;
            if out.status.success() {
                Ok(())
            } else {
                let stderr = String::from_utf8_lossy(&out.stderr);
                Err(format!(
                    "{} failed ({}): {}",
                    self.program.display(),
                    out.status,
                    stderr.trim()
                ))
            }
        })();
        let _ = std::fs::remove_dir_all(&scratch);
        result
    }

    /// Starts the command as the runner's user when Paved is root.
    pub(crate) fn as_user(&self, cmd: &mut std::process::Command) {
        use std::os::unix::process::CommandExt;
        if self.user.switch {
            cmd.uid(self.user.uid).gid(self.user.gid);
        }
    }

    /// Hands a run folder to the runner's user (when Paved is root), so the sandbox may use
    /// it and nothing else of the host.
    pub(crate) fn give(&self, root: &Path) -> Result<(), String> {
        if !self.user.switch {
            return Ok(());
        }
        chown_tree(root, self.user.uid, self.user.gid).map_err(|e| {
            format!(
                "could not give {} to the runner's user: {e}",
                root.display()
            )
        })
    }
}

struct Args(Vec<OsString>);

impl Args {
    fn flag(&mut self, s: impl AsRef<OsStr>) {
        self.0.push(s.as_ref().to_owned());
    }
    fn pair(&mut self, k: &str, v: impl AsRef<OsStr>) {
        self.flag(k);
        self.flag(v);
    }
    fn bind(&mut self, how: &str, p: &Path) {
        self.flag(how);
        self.flag(p);
        self.flag(p);
    }
}

fn chown_tree(p: &Path, uid: u32, gid: u32) -> std::io::Result<()> {
    std::os::unix::fs::lchown(p, Some(uid), Some(gid))?;
    let meta = std::fs::symlink_metadata(p)?;
    if meta.is_dir() {
        for e in std::fs::read_dir(p)? {
            chown_tree(&e?.path(), uid, gid)?;
        }
    }
    Ok(())
}

/// `program` as a path, or looked up on `search_path`.
fn find_program(program: &str, search_path: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let executable = |p: &Path| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if program.contains('/') {
        let p = PathBuf::from(program);
        return executable(&p).then_some(p);
    }
    search_path
        .split(':')
        .filter(|d| d.starts_with('/'))
        .map(|d| Path::new(d).join(program))
        .find(|p| executable(p))
}

/// The runner's user: a name in the user database, or a number.
fn run_as(user: &str) -> Result<RunAs, String> {
    // Safety: geteuid only reads the process's credentials.
    let root = unsafe { libc::geteuid() } == 0;
    let (uid, gid) = match user.parse::<u32>() {
        Ok(uid) => (uid, uid),
        Err(_) => lookup_user(user)?,
    };
    if uid == 0 {
        return Err(format!(
            "runner.user {user:?} is root: runs must be an unprivileged user"
        ));
    }
    Ok(RunAs {
        name: user.to_string(),
        uid,
        gid,
        switch: root,
    })
}

fn lookup_user(name: &str) -> Result<(u32, u32), String> {
    let c_name = std::ffi::CString::new(name)
        .map_err(|_| format!("runner.user {name:?} is not a user name"))?;
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    // Safety: `pwd` and `buf` outlive the call, and getpwnam_r writes only within them.
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    let rc = unsafe {
        libc::getpwnam_r(
            c_name.as_ptr(),
            &mut pwd,
            buf.as_mut_ptr(),
            buf.len(),
            &mut result,
        )
    };
    if rc != 0 || result.is_null() {
        return Err(format!(
            "runner.user {name:?} is not a user of this system (set runner.user to an unprivileged user)"
        ));
    }
    Ok((pwd.pw_uid, pwd.pw_gid))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sandbox(hidden: Vec<PathBuf>) -> Bubblewrap {
        Bubblewrap {
            program: "/usr/bin/bwrap".into(),
            user: RunAs {
                name: "nobody".into(),
                uid: 65534,
                gid: 65534,
                switch: true,
            },
            mounts: vec![Mount {
                path: "/srv/sites".into(),
                writable: true,
            }],
            hidden,
        }
    }

    fn args(b: &Bubblewrap, network: bool) -> Vec<String> {
        let run = RunMounts {
            work: Path::new("/tmp/paved-runs-0/run-1-x"),
            definition: Path::new("/tmp/paved-runs-0/run-1-x/definition"),
            definition_writable: false,
            path: "/usr/local/bin:/usr/bin:/opt/tools/bin:relative",
            extra_ro: vec![],
            network,
            ade: None,
        };
        b.argv(&run, run.definition, &["./deploy.sh".into()])
            .into_iter()
            .map(|s| s.to_string_lossy().into_owned())
            .collect()
    }

    fn has(a: &[String], seq: &[&str]) -> bool {
        a.windows(seq.len()).any(|w| w == seq)
    }

    /// A `PATH` folder or a Terraform binary under /tmp (a checkout there, as CI's clean
    /// clone is) is mounted on top of the run's private /tmp, not hidden under it.
    #[test]
    fn folders_under_tmp_are_bound_after_the_private_tmp() {
        let b = sandbox(vec![]);
        let run = RunMounts {
            work: Path::new("/tmp/paved-runs-0/run-1-x"),
            definition: Path::new("/tmp/paved-runs-0/run-1-x/definition"),
            definition_writable: false,
            path: "/tmp/checkout/bin:/usr/bin",
            extra_ro: vec!["/tmp/checkout/tools".into()],
            network: true,
            ade: None,
        };
        let a: Vec<String> = b
            .argv(&run, run.definition, &["./deploy.sh".into()])
            .into_iter()
            .map(|s| s.to_string_lossy().into_owned())
            .collect();
        let at = |seq: &[&str]| a.windows(seq.len()).position(|w| w == seq);
        let tmp = at(&["--tmpfs", "/tmp"]).expect("a private /tmp");
        for dir in ["/tmp/checkout/bin", "/tmp/checkout/tools"] {
            let bound = at(&["--ro-bind-try", dir, dir]).expect("bound");
            assert!(bound > tmp, "{dir} is hidden by the private /tmp: {a:?}");
        }
    }

    #[test]
    fn the_sandbox_sees_what_spec_12_lists_and_no_more() {
        let a = args(&sandbox(vec![]), true);
        for ns in [
            "--unshare-user",
            "--unshare-pid",
            "--unshare-ipc",
            "--unshare-uts",
        ] {
            assert!(a.contains(&ns.to_string()), "{ns} missing: {a:?}");
        }
        assert!(has(&a, &["--cap-drop", "ALL"]));
        assert!(a.contains(&"--die-with-parent".to_string()));
        assert!(a.contains(&"--new-session".to_string()));
        assert!(
            !a.contains(&"--unshare-net".to_string()),
            "network is shared"
        );
        assert!(has(&a, &["--ro-bind-try", "/usr", "/usr"]));
        assert!(has(
            &a,
            &["--ro-bind-try", "/opt/tools/bin", "/opt/tools/bin"]
        ));
        assert!(
            !a.iter().any(|s| s == "relative"),
            "a relative PATH entry is not mounted"
        );
        assert!(has(&a, &["--bind", "/srv/sites", "/srv/sites"]));
        assert!(has(
            &a,
            &[
                "--bind",
                "/tmp/paved-runs-0/run-1-x",
                "/tmp/paved-runs-0/run-1-x"
            ]
        ));
        assert!(has(
            &a,
            &[
                "--ro-bind",
                "/tmp/paved-runs-0/run-1-x/definition",
                "/tmp/paved-runs-0/run-1-x/definition"
            ]
        ));
        assert!(has(&a, &["--", "./deploy.sh"]));
        assert_eq!(a.last().map(String::as_str), Some("./deploy.sh"));
        assert!(args(&sandbox(vec![]), false).contains(&"--unshare-net".to_string()));
    }

    #[test]
    fn paved_files_under_a_visible_folder_are_masked() {
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("paved.toml");
        std::fs::write(&conf, "x").unwrap();
        // Visible only because it sits under a granted mount.
        let mut b = sandbox(vec![conf.clone(), dir.path().to_path_buf()]);
        b.mounts.push(Mount {
            path: dir.path().to_path_buf(),
            writable: false,
        });
        let a = args(&b, true);
        let conf = conf.display().to_string();
        let d = dir.path().display().to_string();
        assert!(has(&a, &["--ro-bind", "/dev/null", &conf]), "{a:?}");
        assert!(has(&a, &["--tmpfs", &d]), "{a:?}");
        // Not visible at all: nothing to mask.
        let a = args(&sandbox(vec!["/var/lib/paved".into()]), true);
        assert!(!a.iter().any(|s| s == "/var/lib/paved"));
    }

    #[test]
    fn root_is_refused_as_the_runner_user() {
        assert!(run_as("root").unwrap_err().contains("unprivileged"));
        assert!(run_as("0").is_err());
        assert!(run_as("no-such-user-here")
            .unwrap_err()
            .contains("not a user"));
        assert_eq!(run_as("nobody").unwrap().uid, 65534);
    }
}
