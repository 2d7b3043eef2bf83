//! hyper's header-read timeout, checked instead of scheduled.
//!
//! hyper enforces its header-read timeout with a fresh timer for every
//! request head: a boxed sleep registered in the runtime's timer wheel when
//! the connection starts waiting for a request, and removed again as soon as
//! the head has arrived. At tens of thousands of requests per second per core
//! that insert/remove (and the driver wake-ups it causes) is a measurable part
//! of the request path (see docs/performance.md).
//!
//! [`CheckedTimer`] gives hyper sleeps that only *compare* the clock with
//! their deadline when polled and register nothing. That is enough because
//! every client connection task also holds one [`CHECK_INTERVAL`] tick that
//! re-polls the connection (see [`crate::server`]): hyper polls its header
//! sleep whenever the connection is waiting for bytes, so an expired deadline
//! is noticed within one tick. The cost moves from every request to one timer
//! per connection per second.
//!
//! This timer must not be used where nothing re-polls the future: on its own
//! it never wakes a task.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper::rt::{Sleep, Timer};

/// How often each connection task re-polls its connection so that expired
/// deadlines are noticed; also the precision of the header-read timeout.
pub(crate) const CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// A [`Timer`] whose sleeps are plain deadlines.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct CheckedTimer;

impl Timer for CheckedTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Sleep>> {
        self.sleep_until(Instant::now() + duration)
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn Sleep>> {
        Box::pin(Deadline(deadline))
    }

    fn reset(&self, sleep: &mut Pin<Box<dyn Sleep>>, new_deadline: Instant) {
        match sleep.as_mut().downcast_mut_pin::<Deadline>() {
            Some(mut deadline) => deadline.0 = new_deadline,
            None => *sleep = self.sleep_until(new_deadline),
        }
    }
}

/// Ready once its instant has passed; never registers a waker.
#[derive(Debug)]
struct Deadline(Instant);

impl Future for Deadline {
    type Output = ();

    fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
        if Instant::now() >= self.0 {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

impl Sleep for Deadline {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_compare_the_clock() {
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        let timer = CheckedTimer;
        let mut past = timer.sleep(Duration::ZERO);
        assert!(past.as_mut().poll(&mut cx).is_ready());
        let mut future = timer.sleep(Duration::from_secs(60));
        assert!(future.as_mut().poll(&mut cx).is_pending());
        timer.reset(&mut future, Instant::now());
        assert!(future.as_mut().poll(&mut cx).is_ready());
    }
}
