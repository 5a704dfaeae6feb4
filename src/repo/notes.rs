//! Git notes under `refs/notes/paved`: the audit trail written back to the origin.
//!
//! Notes are only ever appended to. Each append is fetch (the origin's notes ref becomes the
//! local one) → add the text to the commit's note → push without force. When another writer
//! (another replica) moved the origin's notes ref in between, the push is rejected and the
//! whole cycle runs again, so concurrent writers never erase each other's records.

use super::{Mirror, RepoError};
use crate::config::Secret;
use crate::ids::CommitSha;
use git2::{
    Direction, ErrorClass, ErrorCode, FetchOptions, Oid, PushOptions, RemoteCallbacks, Signature,
};
use std::cell::RefCell;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// The notes ref Paved writes its audit records to.
pub const NOTES_REF: &str = "refs/notes/paved";

/// Fetch-append-push cycles before giving up: the first, plus five retries.
const MAX_ATTEMPTS: u32 = 6;

/// Author and committer of the notes commits.
const NOTES_AUTHOR: (&str, &str) = ("Paved", "paved@localhost");

/// Callbacks giving `token` as HTTPS basic credentials (`x-access-token`), as
/// [`Mirror::fetch`] does. A second request for credentials means they were refused: fail
/// then, rather than let libgit2 ask forever.
pub(super) fn callbacks<'a>(token: Option<&Secret>) -> RemoteCallbacks<'a> {
    let mut callbacks = RemoteCallbacks::new();
    if let Some(token) = token {
        let token = token.clone();
        let mut asked = false;
        callbacks.credentials(move |_url, _user, _allowed| {
            if asked {
                // Class `Http`: worth retrying, with a fresh token (an installation token
                // GitHub stopped taking is dropped when the work fails).
                return Err(git2::Error::new(
                    git2::ErrorCode::Auth,
                    git2::ErrorClass::Http,
                    "the token was refused by the Git server",
                ));
            }
            asked = true;
            git2::Cred::userpass_plaintext("x-access-token", token.expose())
        });
    }
    callbacks
}

/// One lock per mirror folder, so two `Mirror`s of one repository in this process do not
/// move the local notes ref under each other's feet.
fn mirror_lock(path: PathBuf) -> Arc<Mutex<()>> {
    static LOCKS: OnceLock<Mutex<HashMap<PathBuf, Arc<Mutex<()>>>>> = OnceLock::new();
    let mut locks = LOCKS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    locks.entry(path).or_default().clone()
}

/// Whether the note `existing` already holds `text` (each record names its run, attempt
/// and times, so the same text is the same records).
fn holds(existing: &str, text: &str) -> bool {
    let text = text.trim();
    !text.is_empty() && existing.contains(text)
}

/// How a push ended.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Pushed {
    Accepted,
    /// The origin refused the update (usually: its notes ref moved); the reason.
    Rejected(String),
}

impl Mirror {
    /// Appends `text` to the note of `commit` on the origin at `url`, keeping whatever the
    /// note already holds. Retries when another writer moves the origin's notes ref at the
    /// same time; gives up after [`MAX_ATTEMPTS`] cycles with a transient error.
    pub fn append_note(
        &self,
        url: &str,
        token: Option<&Secret>,
        commit: &CommitSha,
        text: &str,
    ) -> Result<(), RepoError> {
        let target = Oid::from_str(commit.as_str())?;
        let lock = mirror_lock(self.path.clone());
        let _guard = lock.lock().unwrap_or_else(|e| e.into_inner());
        let mut last = String::new();
        for attempt in 0..MAX_ATTEMPTS {
            if attempt > 0 {
                // 50 ms, 100 ms, … with jitter, so racing replicas drift apart.
                let base = 50u64 << (attempt - 1).min(5);
                let jitter = rand::random::<u64>() % base;
                std::thread::sleep(Duration::from_millis(base + jitter));
            }
            match self.try_append_note(url, token, target, text)? {
                Pushed::Accepted => return Ok(()),
                Pushed::Rejected(reason) => {
                    tracing::debug!(commit = %commit, attempt, %reason, "notes push rejected; retrying");
                    last = reason;
                }
            }
        }
        Err(RepoError::Git(git2::Error::new(
            ErrorCode::NotFastForward,
            ErrorClass::Reference,
            format!(
                "pushing {NOTES_REF} was rejected {MAX_ATTEMPTS} times (other writers kept moving it): {last}"
            ),
        )))
    }

    fn try_append_note(
        &self,
        url: &str,
        token: Option<&Secret>,
        target: Oid,
        text: &str,
    ) -> Result<Pushed, RepoError> {
        self.sync_notes_ref(url, token)?;
        let content = match self.note_text(target)? {
            // Already there: an earlier push of the same text landed (and the answer, or
            // the record of it, was lost to a crash). Exactly once in effect.
            Some(existing) if holds(&existing, text) => return Ok(Pushed::Accepted),
            Some(mut existing) if !existing.is_empty() => {
                if !existing.ends_with('\n') {
                    existing.push('\n');
                }
                existing.push('\n');
                existing.push_str(text);
                existing
            }
            _ => text.to_string(),
        };
        let sig = Signature::now(NOTES_AUTHOR.0, NOTES_AUTHOR.1)?;
        // The notes commit's parent is the local notes ref, which now equals the origin's.
        self.repo
            .note(&sig, &sig, Some(NOTES_REF), target, &content, true)?;
        crate::chaos::point("note-push");
        self.push_notes(url, token)
    }

    /// Makes the local notes ref equal to the origin's, or absent when the origin has none.
    fn sync_notes_ref(&self, url: &str, token: Option<&Secret>) -> Result<Option<Oid>, RepoError> {
        let mut remote = self.repo.remote_anonymous(url)?;
        let present = {
            let conn = remote.connect_auth(Direction::Fetch, Some(callbacks(token)), None)?;
            let present = conn.list()?.iter().any(|h| h.name() == NOTES_REF);
            present
        };
        // Start from nothing: a local notes commit from a rejected push must not survive.
        match self.repo.find_reference(NOTES_REF) {
            Ok(mut r) => r.delete()?,
            Err(e) if e.code() == ErrorCode::NotFound => {}
            Err(e) => return Err(e.into()),
        }
        if !present {
            return Ok(None);
        }
        let mut opts = FetchOptions::new();
        opts.remote_callbacks(callbacks(token));
        opts.download_tags(git2::AutotagOption::None);
        remote.fetch(
            &[format!("+{NOTES_REF}:{NOTES_REF}")],
            Some(&mut opts),
            None,
        )?;
        match self.repo.refname_to_id(NOTES_REF) {
            Ok(id) => Ok(Some(id)),
            // Deleted on the origin between listing and fetching.
            Err(e) if e.code() == ErrorCode::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Pushes the local notes ref to the origin, without force.
    fn push_notes(&self, url: &str, token: Option<&Secret>) -> Result<Pushed, RepoError> {
        self.push_ref(url, token, &format!("{NOTES_REF}:{NOTES_REF}"))
    }

    /// Pushes `refspec` (`local:remote`, never forced) to the origin at `url`: accepted, or
    /// refused with the origin's (or libgit2's) reason.
    pub(super) fn push_ref(
        &self,
        url: &str,
        token: Option<&Secret>,
        refspec: &str,
    ) -> Result<Pushed, RepoError> {
        // A local origin may hold a ref lock that a writer killed mid-push left behind:
        // every push of that ref would fail until it goes.
        if let Some(origin) = super::locks::local_origin(url) {
            let remote_ref = refspec.rsplit(':').next().unwrap_or(refspec);
            super::locks::clear_stale_origin_locks(
                &origin,
                &[remote_ref],
                super::locks::STALE_AFTER,
            );
        }
        let rejected: RefCell<Option<String>> = RefCell::new(None);
        let result = {
            let mut cbs = callbacks(token);
            cbs.push_update_reference(|refname, status| {
                if let Some(status) = status {
                    *rejected.borrow_mut() = Some(format!("{refname}: {status}"));
                }
                Ok(())
            });
            let mut opts = PushOptions::new();
            opts.remote_callbacks(cbs);
            let mut remote = self.repo.remote_anonymous(url)?;
            remote.push(&[refspec], Some(&mut opts))
        };
        match result {
            Ok(()) => {}
            // libgit2 refuses a non-fast-forward push itself, before sending anything, when
            // the ref the origin advertised is not an ancestor of ours.
            Err(e) if e.code() == ErrorCode::NotFastForward => {
                return Ok(Pushed::Rejected(e.message().to_string()))
            }
            Err(e) => return Err(e.into()),
        }
        Ok(match rejected.into_inner() {
            Some(reason) => Pushed::Rejected(reason),
            None => Pushed::Accepted,
        })
    }

    fn note_text(&self, target: Oid) -> Result<Option<String>, RepoError> {
        match self.repo.find_note(Some(NOTES_REF), target) {
            Ok(n) => Ok(Some(
                String::from_utf8_lossy(n.message_bytes()).into_owned(),
            )),
            Err(e) if e.code() == ErrorCode::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// The note of `commit` in the local `refs/notes/paved` (as of the last fetch or append).
    pub fn notes_for(&self, commit: &CommitSha) -> Result<Option<String>, RepoError> {
        self.note_text(Oid::from_str(commit.as_str())?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::RepoName;
    use paved_testkit::GitRemote;

    #[test]
    fn a_push_over_a_moved_origin_is_detected_as_rejected_and_append_recovers() {
        let tmp = tempfile::tempdir().unwrap();
        let name = RepoName::parse("o/r").unwrap();
        let remote = GitRemote::create(&tmp.path().join("git"), &name).unwrap();
        let c = remote
            .commit(
                "refs/heads/main",
                None,
                &[("README.md".into(), Some(b"r".to_vec()))],
                "root",
            )
            .unwrap();
        let url = remote.clone_url();
        let a = Mirror::open(&tmp.path().join("a"), &name).unwrap();
        let b = Mirror::open(&tmp.path().join("b"), &name).unwrap();
        a.append_note(&url, None, &c, "from a 1\n").unwrap();
        b.append_note(&url, None, &c, "from b\n").unwrap();

        // `a` writes on top of its stale notes ref: the origin moved, the push must fail.
        let sig = Signature::now("t", "t@t").unwrap();
        let target = Oid::from_str(c.as_str()).unwrap();
        a.repo
            .note(&sig, &sig, Some(NOTES_REF), target, "stale\n", true)
            .unwrap();
        match a.push_notes(&url, None).unwrap() {
            Pushed::Rejected(reason) => assert!(!reason.is_empty()),
            Pushed::Accepted => panic!("a non-fast-forward push was accepted"),
        }

        // The full cycle starts again from the origin and keeps everything.
        a.append_note(&url, None, &c, "from a 2\n").unwrap();
        assert_eq!(
            a.notes_for(&c).unwrap().as_deref(),
            Some("from a 1\n\nfrom b\n\nfrom a 2\n")
        );
        let origin =
            git2::Repository::open_bare(tmp.path().join("git").join("o").join("r.git")).unwrap();
        let note = origin.find_note(Some(NOTES_REF), target).unwrap();
        assert_eq!(note.message(), Some("from a 1\n\nfrom b\n\nfrom a 2\n"));
    }

    #[test]
    fn notes_for_is_none_without_notes() {
        let tmp = tempfile::tempdir().unwrap();
        let name = RepoName::parse("o/r").unwrap();
        let m = Mirror::open(tmp.path(), &name).unwrap();
        let c = CommitSha::parse(&"a".repeat(40)).unwrap();
        assert_eq!(m.notes_for(&c).unwrap(), None);
    }
}
