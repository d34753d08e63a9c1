//! Completion of one Kafka record across every target it was fanned out to.
//!
//! The consumer hands each record to its supervisor with an [`Ack`]. The supervisor
//! takes one share per target (destination, later the archive) and releases its own;
//! each target releases its share when it has finished with the event: delivered,
//! filtered out, dead-lettered or parked. When the last share is released the record's
//! offset may be committed. A share that is never released (an actor died mid-way)
//! keeps the offset uncommitted, so the record is redelivered: at-least-once.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Told once, when every target has finished with a record.
pub trait Completion: Send + Sync {
    fn complete(&self);
}

struct Shared {
    pending: AtomicUsize,
    completion: Box<dyn Completion>,
}

/// One share of a record's completion. Dropping it without [`Ack::done`] never
/// completes the record.
pub struct Ack(Arc<Shared>);

impl std::fmt::Debug for Ack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ack")
            .field("pending", &self.0.pending.load(Ordering::Relaxed))
            .finish()
    }
}

impl Ack {
    /// A record with one share, held by whoever receives it first.
    pub fn new(completion: impl Completion + 'static) -> Self {
        Ack(Arc::new(Shared {
            pending: AtomicUsize::new(1),
            completion: Box::new(completion),
        }))
    }

    /// A record nobody tracks (tests, tools).
    pub fn untracked() -> Self {
        struct Nothing;
        impl Completion for Nothing {
            fn complete(&self) {}
        }
        Ack::new(Nothing)
    }

    /// Another share, for one more target.
    pub fn share(&self) -> Ack {
        self.0.pending.fetch_add(1, Ordering::AcqRel);
        Ack(self.0.clone())
    }

    /// This share is finished with the record.
    pub fn done(self) {
        if self.0.pending.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.completion.complete();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;

    struct Flag(Arc<AtomicBool>);
    impl Completion for Flag {
        fn complete(&self) {
            assert!(!self.0.swap(true, Ordering::SeqCst), "completed twice");
        }
    }

    #[test]
    fn completes_once_when_every_share_is_done_and_never_on_drop() {
        let flag = Arc::new(AtomicBool::new(false));
        let ack = Ack::new(Flag(flag.clone()));
        let first = ack.share();
        let second = ack.share();
        ack.done();
        first.done();
        assert!(!flag.load(Ordering::SeqCst), "one share is still out");
        second.done();
        assert!(flag.load(Ordering::SeqCst));

        let lost = Arc::new(AtomicBool::new(false));
        let ack = Ack::new(Flag(lost.clone()));
        let share = ack.share();
        ack.done();
        drop(share);
        assert!(
            !lost.load(Ordering::SeqCst),
            "a dropped share must not complete the record"
        );
    }
}
