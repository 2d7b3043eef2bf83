//! A client connection's deadlines: hyper's header-read timeout checked
//! instead of scheduled, and the one timer per connection that fires when
//! the earliest of its deadlines is due.
//!
//! hyper enforces its header-read timeout with a fresh timer for every
//! request head: a boxed sleep registered in the runtime's timer wheel when
//! the connection starts waiting for a request, and removed again as soon as
//! the head has arrived. At tens of thousands of requests per second per core
//! that insert/remove (and the driver wake-ups it causes) is a measurable part
//! of the request path (see docs/performance.md).
//!
//! [`CheckedTimer`] gives hyper sleeps that only *compare* the clock with
//! their deadline when polled and register nothing; a connection's timer
//! also notes each deadline in the connection's [`HeadDeadline`], a store
//! per request head. The connection task holds one [`Alarm`], a single
//! tokio sleep armed at the earliest deadline it knows of (this head
//! deadline, `send_timeout` of a blocked write, the HTTP/2 idle close, the
//! request path's checked deadlines: see [`crate::server::connection`]).
//! When the alarm fires the task re-polls the connection, so hyper sees its
//! expired deadline at once; a deadline that moved later meanwhile (the
//! next request's head) costs one early wake-up and a re-arm. An idle
//! connection therefore wakes once, at its deadline, and a busy one about
//! once per `header_read_timeout`; a request pays a store, never a timer.
//!
//! This timer must not be used where nothing re-polls the future: on its own
//! it never wakes a task.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper::rt::{Sleep, Timer};

use crate::observe::clock;

/// While an HTTP/2 connection has open streams, how often its alarm wakes
/// their requests so they check their deadlines (they run in tasks of their
/// own, which nothing else re-polls); also the precision of
/// `body_read_timeout` and `min_upload_rate`.
pub(crate) const CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// "No deadline", as a millisecond value of [`clock::millis`].
pub(crate) const NEVER: u64 = u64::MAX;

/// A [`Timer`] whose sleeps are plain deadlines; for a connection, it also
/// notes each one in the connection's [`HeadDeadline`].
#[derive(Debug, Clone, Default)]
pub(crate) struct CheckedTimer(Option<Arc<HeadDeadline>>);

impl CheckedTimer {
    /// A timer for one connection, noting its deadlines in `head`.
    pub(crate) fn noting(head: Arc<HeadDeadline>) -> Self {
        CheckedTimer(Some(head))
    }

    fn note(&self, deadline: Instant) {
        if let Some(head) = &self.0 {
            head.0.store(clock::millis_at(deadline), Ordering::Relaxed);
        }
    }
}

impl Timer for CheckedTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Sleep>> {
        self.sleep_until(clock::after(Instant::now(), duration))
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn Sleep>> {
        self.note(deadline);
        Box::pin(Deadline(deadline))
    }

    fn reset(&self, sleep: &mut Pin<Box<dyn Sleep>>, new_deadline: Instant) {
        match sleep.as_mut().downcast_mut_pin::<Deadline>() {
            Some(mut deadline) => {
                self.note(new_deadline);
                deadline.0 = new_deadline;
            }
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

/// The last header-read deadline hyper set on one connection, in
/// [`clock::millis`]; [`NEVER`] before the first. It may be stale (the head
/// arrived): the connection task finds out by re-polling hyper at it.
#[derive(Debug)]
pub(crate) struct HeadDeadline(AtomicU64);

impl Default for HeadDeadline {
    fn default() -> Self {
        HeadDeadline(AtomicU64::new(NEVER))
    }
}

impl HeadDeadline {
    /// The deadline, if it is still ahead of `now`; one that has passed is
    /// forgotten (hyper has seen it by now, or it was stale).
    pub(crate) fn ahead_of(&self, now: u64) -> u64 {
        let deadline = self.0.load(Ordering::Relaxed);
        if deadline <= now {
            self.0.store(NEVER, Ordering::Relaxed);
            return NEVER;
        }
        deadline
    }

    /// The deadline as it stands.
    pub(crate) fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

pin_project_lite::pin_project! {
    /// One connection's timer: a tokio sleep armed at the earliest deadline
    /// it has been told of. It only ever moves earlier while armed (moving a
    /// deadline later is left to the next firing), and is not registered
    /// with the runtime at all while nothing is due.
    pub(crate) struct Alarm {
        #[pin]
        sleep: tokio::time::Sleep,
        // When it fires, in `clock::millis`; NEVER while disarmed.
        armed: u64,
    }
}

impl Alarm {
    /// A disarmed alarm.
    pub(crate) fn new() -> Self {
        Alarm {
            // Never polled while disarmed, so never registered.
            sleep: tokio::time::sleep_until(tokio::time::Instant::now()),
            armed: NEVER,
        }
    }

    /// Fire by `deadline` ([`clock::millis`]) at the latest; a timer reset
    /// only when that is earlier than what is armed.
    pub(crate) fn by(self: Pin<&mut Self>, deadline: u64) {
        let this = self.project();
        if deadline < *this.armed {
            *this.armed = deadline;
            this.sleep.reset(clock::instant(deadline).into());
        }
    }

    /// Ready once the armed deadline has passed; the alarm is then disarmed.
    pub(crate) fn poll_due(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.project();
        if *this.armed == NEVER || this.sleep.poll(cx).is_pending() {
            return Poll::Pending;
        }
        *this.armed = NEVER;
        Poll::Ready(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::poll_fn;

    #[test]
    fn deadlines_compare_the_clock() {
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        let timer = CheckedTimer::default();
        let mut past = timer.sleep(Duration::ZERO);
        assert!(past.as_mut().poll(&mut cx).is_ready());
        let mut future = timer.sleep(Duration::from_secs(60));
        assert!(future.as_mut().poll(&mut cx).is_pending());
        timer.reset(&mut future, Instant::now());
        assert!(future.as_mut().poll(&mut cx).is_ready());
    }

    #[test]
    fn a_connections_timer_notes_its_deadlines() {
        let head = Arc::new(HeadDeadline::default());
        let timer = CheckedTimer::noting(head.clone());
        assert_eq!(head.get(), NEVER);
        let mut sleep = timer.sleep(Duration::from_secs(60));
        let first = head.get();
        assert!(first >= clock::millis() + 59_000, "{first}");
        timer.reset(&mut sleep, Instant::now() + Duration::from_secs(120));
        assert!(head.get() >= first + 59_000);
        assert_eq!(head.ahead_of(clock::millis()), head.get());
        assert_eq!(head.ahead_of(NEVER - 1), NEVER, "a passed deadline is forgotten");
        assert_eq!(head.get(), NEVER);
    }

    #[tokio::test]
    async fn the_alarm_fires_at_its_earliest_deadline() {
        let mut alarm = std::pin::pin!(Alarm::new());
        let due = |alarm: Pin<&mut Alarm>| {
            let waker = std::task::Waker::noop();
            alarm.poll_due(&mut Context::from_waker(waker)).is_ready()
        };
        assert!(!due(alarm.as_mut()), "disarmed");
        let now = clock::millis();
        alarm.as_mut().by(now + 50);
        alarm.as_mut().by(now + 60_000);
        assert!(!due(alarm.as_mut()));
        // Bounded: the alarm fires once 50 ms have passed, not 60 s.
        let fired =
            tokio::time::timeout(Duration::from_secs(10), poll_fn(|cx| alarm.as_mut().poll_due(cx))).await;
        assert!(fired.is_ok(), "fired at the earlier deadline");
        assert!(!due(alarm.as_mut()), "and disarmed");
    }
}
