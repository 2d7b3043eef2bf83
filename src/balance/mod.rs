//! Selection policies: which server of an upstream a request tries first.
//!
//! A policy is built once per server set (when a snapshot is built) and is
//! then read-only apart from atomics, so picking never takes a lock. It knows
//! nothing about health: [`Candidates`] asks the policy again while it keeps
//! yielding servers already offered, so a skipped server's share spreads over
//! the others the way the policy would spread it, and then falls back to
//! every server not yet offered, so each server is offered at most once per
//! request. The caller ([`crate::proxy`]) decides which candidates are usable.

mod round_robin;

use std::fmt;

pub use round_robin::{RoundRobin, RoundRobinCursor};

/// A selection policy over the servers of one upstream, indexed `0..len`.
pub trait Policy: Send + Sync + fmt::Debug {
    /// The index of the next server this policy would choose.
    fn pick(&self) -> usize;
}

/// The servers to try for one request, best first, each at most once.
pub struct Candidates<'a> {
    policy: &'a dyn Policy,
    len: usize,
    /// How many more times the policy is asked before falling back to a scan.
    asks_left: usize,
    /// Next index of the fallback scan.
    scan: usize,
    offered: Offered,
}

impl<'a> Candidates<'a> {
    /// Candidates among `len` servers chosen by `policy`.
    pub fn new(policy: &'a dyn Policy, len: usize) -> Self {
        Candidates {
            policy,
            len,
            asks_left: len,
            scan: 0,
            offered: Offered::new(len),
        }
    }
}

impl Iterator for Candidates<'_> {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        while self.asks_left > 0 {
            self.asks_left -= 1;
            let i = self.policy.pick();
            if i < self.len && self.offered.insert(i) {
                return Some(i);
            }
        }
        while self.scan < self.len {
            let i = self.scan;
            self.scan += 1;
            if self.offered.insert(i) {
                return Some(i);
            }
        }
        None
    }
}

/// A set of server indices; no allocation for upstreams of up to 64 servers,
/// which is nearly all of them.
enum Offered {
    Small(u64),
    Large(Vec<bool>),
}

impl Offered {
    fn new(len: usize) -> Self {
        if len <= 64 {
            Offered::Small(0)
        } else {
            Offered::Large(vec![false; len])
        }
    }

    /// Adds `i`; false if it was already there.
    fn insert(&mut self, i: usize) -> bool {
        match self {
            Offered::Small(bits) => {
                let bit = 1u64 << i;
                let new = *bits & bit == 0;
                *bits |= bit;
                new
            }
            Offered::Large(seen) => !std::mem::replace(&mut seen[i], true),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A policy that replays a fixed script.
    #[derive(Debug)]
    struct Script(Vec<usize>, AtomicUsize);

    impl Policy for Script {
        fn pick(&self) -> usize {
            let n = self.1.fetch_add(1, Ordering::Relaxed);
            self.0[n % self.0.len()]
        }
    }

    #[test]
    fn offers_each_server_once_policy_order_first() {
        let p = Script(vec![2, 2, 0], AtomicUsize::new(0));
        let got: Vec<_> = Candidates::new(&p, 4).collect();
        assert_eq!(got, [2, 0, 1, 3]);
    }

    #[test]
    fn large_upstreams() {
        let p = Script(vec![99], AtomicUsize::new(0));
        let got: Vec<_> = Candidates::new(&p, 100).collect();
        assert_eq!(got.len(), 100);
        assert_eq!(got[0], 99);
        assert_eq!(&got[1..4], [0, 1, 2]);
    }
}
