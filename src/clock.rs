//! The time the lifecycle goes by (SPEC 11): expiry, schedules and drift checks fall due by
//! this clock. In production it is the system's; tests make a [`Clock::manual`] one and move
//! it, so no test ever sleeps until a deadline.
//!
//! Every reading of the time in Paved comes from here: the service's [`Clock`] for what
//! falls due and what a person is shown (expiry dates, "today", the governance what-if), and
//! [`wall`] where the time must be the machine's whatever the clock says: measuring against
//! timestamps the store wrote itself (a delivery's wait, the outbox's age, retention), a
//! run's start and end, and what other parties check (a GitHub App's JWT, a session
//! cookie's expiry).

use chrono::{DateTime, Utc};
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

/// The machine's time (see the module documentation for when it, not the service's clock,
/// is the one to read).
pub fn wall() -> DateTime<Utc> {
    Utc::now()
}

/// A clock shared by the whole service. Cloning shares it.
#[derive(Clone)]
pub struct Clock(Arc<Inner>);

enum Inner {
    System,
    /// Set by hand; every move is announced, so a waiting scheduler looks again at once.
    Manual(Mutex<DateTime<Utc>>, watch::Sender<DateTime<Utc>>),
}

impl Clock {
    pub fn system() -> Clock {
        Clock(Arc::new(Inner::System))
    }

    /// A clock that stays at `at` until moved with [`Clock::advance`] or [`Clock::set`].
    pub fn manual(at: DateTime<Utc>) -> Clock {
        let (tx, _) = watch::channel(at);
        Clock(Arc::new(Inner::Manual(Mutex::new(at), tx)))
    }

    pub fn now(&self) -> DateTime<Utc> {
        match &*self.0 {
            Inner::System => Utc::now(),
            Inner::Manual(at, _) => *at.lock().unwrap_or_else(|p| p.into_inner()),
        }
    }

    /// Moves a manual clock forward (or back, with a negative duration). A system clock is
    /// left alone: it is not ours to move.
    pub fn advance(&self, by: chrono::Duration) {
        if let Inner::Manual(at, _) = &*self.0 {
            let now = *at.lock().unwrap_or_else(|p| p.into_inner()) + by;
            self.set(now);
        }
    }

    /// Sets a manual clock to `to`.
    pub fn set(&self, to: DateTime<Utc>) {
        if let Inner::Manual(at, tx) = &*self.0 {
            *at.lock().unwrap_or_else(|p| p.into_inner()) = to;
            tx.send_replace(to);
        }
    }

    /// A receiver told of every move of a manual clock; `None` for the system clock.
    pub fn moves(&self) -> Option<watch::Receiver<DateTime<Utc>>> {
        match &*self.0 {
            Inner::System => None,
            Inner::Manual(_, tx) => Some(tx.subscribe()),
        }
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::system()
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &*self.0 {
            Inner::System => f.write_str("Clock::system"),
            Inner::Manual(..) => write!(f, "Clock::manual({})", self.now()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_told_and_says_so() {
        let start = DateTime::parse_from_rfc3339("2026-03-28T12:00:00Z")
            .expect("time")
            .with_timezone(&Utc);
        let clock = Clock::manual(start);
        let mut moves = clock.moves().expect("a manual clock announces moves");
        assert_eq!(clock.now(), start);
        clock.advance(chrono::Duration::hours(25));
        assert!(moves.has_changed().expect("sender alive"));
        assert_eq!(
            *moves.borrow_and_update(),
            start + chrono::Duration::hours(25)
        );
        assert_eq!(clock.clone().now(), start + chrono::Duration::hours(25));
        let system = Clock::system();
        assert!(system.moves().is_none());
        let before = Utc::now();
        system.advance(chrono::Duration::days(3));
        assert!(
            system.now() < before + chrono::Duration::hours(1),
            "the system clock is not moved"
        );
    }
}
