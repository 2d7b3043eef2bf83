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
//! The same cell tells the task where hyper is in the request cycle (a head
//! parsed, or a head-read sleep started after a response): that is how it
//! knows when an HTTP/1.1 connection is idle and its socket can be taken
//! back from hyper.
//!
//! This timer must not be used where nothing re-polls the future: on its own
//! it never wakes a task.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
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
            head.deadline.store(clock::millis_at(deadline), Ordering::Relaxed);
        }
    }
}

impl Timer for CheckedTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Sleep>> {
        self.sleep_until(clock::after(Instant::now(), duration))
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn Sleep>> {
        // hyper starts a sleep only when it starts waiting for a request
        // head (it resets one only after it fired).
        let deadline = match &self.0 {
            Some(head) => head.waiting_from(deadline),
            None => deadline,
        };
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

/// What one client connection's HTTP/1.1 side tells its task: the last
/// header-read deadline hyper set, in [`clock::millis`] ([`NEVER`] before
/// the first), and where hyper is in the request cycle, so the task knows
/// when hyper holds nothing but buffers (see [`crate::server::connection`]).
/// The deadline may be stale (the head arrived): the connection task finds
/// out by re-polling hyper at it. Written by the connection's own task
/// only (hyper's timer, its service, its io), hence relaxed loads and
/// stores, no read-modify-write.
#[derive(Debug)]
pub(crate) struct HeadDeadline {
    deadline: AtomicU64,
    /// One of `FRESH`, `SERVING`, `WAITING`, `RELEASING`.
    phase: AtomicU8,
    /// A deadline the next head must keep ([`NEVER`]: none): the one of a
    /// connection taken back from hyper while it waited for a head.
    carry: AtomicU64,
}

/// A hyper connection that has not received a request yet.
const FRESH: u8 = 0;
/// A request head was parsed and handed to the service.
const SERVING: u8 = 1;
/// The request before was answered in full and hyper waits for the next
/// head: its state is back at the start, with keep-alive on.
const WAITING: u8 = 2;
/// The task asked hyper to finish while it was `WAITING`, to take the
/// socket back (so its io must not be shut down).
const RELEASING: u8 = 3;

impl Default for HeadDeadline {
    fn default() -> Self {
        HeadDeadline {
            deadline: AtomicU64::new(NEVER),
            phase: AtomicU8::new(FRESH),
            carry: AtomicU64::new(NEVER),
        }
    }
}

impl HeadDeadline {
    /// The deadline, if it is still ahead of `now`; one that has passed is
    /// forgotten (hyper has seen it by now, or it was stale).
    pub(crate) fn ahead_of(&self, now: u64) -> u64 {
        let deadline = self.deadline.load(Ordering::Relaxed);
        if deadline <= now {
            self.deadline.store(NEVER, Ordering::Relaxed);
            return NEVER;
        }
        deadline
    }

    /// The deadline as it stands.
    pub(crate) fn get(&self) -> u64 {
        self.deadline.load(Ordering::Relaxed)
    }

    /// hyper parsed a request head and calls the service with it.
    pub(crate) fn serving(&self) {
        self.phase.store(SERVING, Ordering::Relaxed);
    }

    /// Whether hyper answered a request and waits for the next head since
    /// `get() - header_read_timeout`: then its state is the initial one,
    /// and a graceful shutdown closes it at once, sending nothing.
    pub(crate) fn waiting(&self) -> bool {
        self.phase.load(Ordering::Relaxed) == WAITING
    }

    /// hyper starts waiting for a head, until `deadline` unless a carried
    /// deadline is earlier: the deadline to use.
    fn waiting_from(&self, deadline: Instant) -> Instant {
        if self.phase.load(Ordering::Relaxed) == SERVING {
            self.phase.store(WAITING, Ordering::Relaxed);
        }
        let carry = self.carry.load(Ordering::Relaxed);
        if carry == NEVER {
            return deadline;
        }
        self.carry.store(NEVER, Ordering::Relaxed);
        deadline.min(clock::instant(carry))
    }

    /// The task takes the socket back from hyper: hyper is to finish
    /// without shutting the io down.
    pub(crate) fn release(&self) {
        self.phase.store(RELEASING, Ordering::Relaxed);
    }

    /// Whether hyper is finishing for [`HeadDeadline::release`].
    pub(crate) fn releasing(&self) -> bool {
        self.phase.load(Ordering::Relaxed) == RELEASING
    }

    /// The socket is back from hyper: the next hyper connection starts
    /// fresh, and its first head keeps the deadline this one had.
    pub(crate) fn released(&self) {
        self.phase.store(FRESH, Ordering::Relaxed);
        self.carry.store(self.get(), Ordering::Relaxed);
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
