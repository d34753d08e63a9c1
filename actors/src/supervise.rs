//! Containing a panic at an actor's boundary. A destination's client and transforms
//! are the code that meets tenants' data and vendors' answers; a panic there is caught
//! where the actor calls them, turned into a failure of that call (the client rebuilt
//! with backoff, the events kept), and counted, while every other actor goes on. A
//! panic anywhere else still ends the process (see `exit_on_panic` in the binary),
//! because an actor interrupted mid-update can't be trusted to account for its events.
//!
//! The process's panic hook runs before any unwinding is caught, so it asks
//! [`contained`] whether the panicking thread is inside a boundary.

use std::cell::Cell;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::task::{Context, Poll};

thread_local! {
    static DEPTH: Cell<u32> = const { Cell::new(0) };
}

/// Whether this thread is running code inside a boundary, whose panic is caught.
pub fn contained() -> bool {
    DEPTH.with(|depth| depth.get() > 0)
}

/// Marks the thread as inside a boundary while it lives, even if the code unwinds.
struct Inside;

impl Inside {
    fn enter() -> Inside {
        DEPTH.with(|depth| depth.set(depth.get() + 1));
        Inside
    }
}

impl Drop for Inside {
    fn drop(&mut self) {
        DEPTH.with(|depth| depth.set(depth.get().saturating_sub(1)));
    }
}

/// What a caught panic said.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_string()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "a panic without a message".to_string()
    }
}

/// Runs `f`; a panic becomes `Err` with its message.
pub fn guard<R>(f: impl FnOnce() -> R) -> Result<R, String> {
    let _inside = Inside::enter();
    catch_unwind(AssertUnwindSafe(f)).map_err(|payload| panic_message(payload.as_ref()))
}

/// A future whose panic, in any poll, becomes `Err` with its message. It is not
/// polled again after a panic.
pub struct Guarded<F> {
    inner: Option<Pin<Box<F>>>,
}

impl<F> std::fmt::Debug for Guarded<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guarded").field("done", &self.inner.is_none()).finish()
    }
}

pub fn guarded<F: Future>(future: F) -> Guarded<F> {
    Guarded {
        inner: Some(Box::pin(future)),
    }
}

impl<F: Future> Future for Guarded<F> {
    type Output = Result<F::Output, String>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let Some(inner) = self.inner.as_mut() else {
            return Poll::Ready(Err("polled after a panic".into()));
        };
        match guard(|| inner.as_mut().poll(cx)) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(output)) => {
                self.inner = None;
                Poll::Ready(Ok(output))
            }
            Err(message) => {
                self.inner = None;
                Poll::Ready(Err(message))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_inside_is_caught_and_the_thread_knows_it_is_inside() {
        assert!(!contained());
        let inside = guard(contained);
        assert_eq!(inside, Ok(true));
        assert!(!contained(), "left the boundary");
        let caught = guard(|| -> u32 { panic!("poison event m7") });
        assert_eq!(caught, Err("poison event m7".to_string()));
        assert!(!contained(), "left the boundary though it unwound");
    }

    #[actix::test]
    async fn a_future_that_panics_in_a_poll_resolves_to_its_message() {
        let ok = guarded(async { 5 }).await;
        assert_eq!(ok, Ok(5));
        let failed = guarded(async {
            actix::clock::sleep(std::time::Duration::from_millis(1)).await;
            let id = 9;
            if id == 9 {
                panic!("event {id} broke the encoder");
            }
            id
        })
        .await;
        assert_eq!(failed, Err("event 9 broke the encoder".to_string()));
        assert!(!contained());
    }
}
