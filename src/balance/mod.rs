//! Selection policies: which server of an upstream a request tries first.
//!
//! A policy is built once per server set (when a snapshot is built, or when
//! DNS changes a pool's members) and is then read-only apart from atomics,
//! so picking never takes a lock. It knows nothing about health: it answers
//! "the best server for this request that is not excluded", and
//! [`Candidates`] asks it again and again, excluding what it already offered,
//! so the caller ([`crate::forward`]) can walk the servers in the policy's
//! order of preference and skip the ones that are down, each at most once.
//!
//! Next to the policies sit their two inputs: the request's hash key
//! ([`key`]: which bytes of a request consistent hashing hashes) and the
//! random numbers ([`rng`], ginx's one generator, also used for request ids
//! and health-check jitter).

mod hash;
mod key;
mod least_conn;
mod random;
pub(crate) mod rng;
mod round_robin;

use std::cell::Cell;
use std::fmt;

pub(crate) use hash::Ketama;
pub(crate) use key::{hash_key, header_items, request_key};
pub(crate) use least_conn::LeastConn;
pub(crate) use random::Random;
pub(crate) use round_robin::{RoundRobin, RoundRobinCursor};

/// What a policy may look at for one pick.
pub(crate) struct PickContext<'a> {
    /// The request's hash key ([`hash_key`] of the configured key), for
    /// consistent hashing; 0 for other policies.
    pub(crate) key: u64,
    /// In-flight requests of server `i`.
    pub(crate) load: &'a dyn Fn(usize) -> usize,
    /// Whether server `i` was already offered for this request (and must
    /// not be returned again if the policy can avoid it).
    pub(crate) excluded: &'a dyn Fn(usize) -> bool,
    /// Whether this is a later pick for the same request (a failover). A
    /// policy that rotates a position shared by all requests moves it on
    /// the first pick only: were every failover to move it too, a failing
    /// server would be first for every request (with `[failing, good]`,
    /// each request would take two steps and land on `failing` again).
    pub(crate) failover: bool,
    /// Where this request's walk stands in the policy's own order (a
    /// position in its sequence or ring), kept between the picks of one
    /// request: a failover goes on from there instead of scanning again
    /// what it already offered, so walking past `k` servers that are down
    /// costs `O(k)`, not `O(k²)`. `None` before the first pick.
    pub(crate) walk: &'a Cell<Option<usize>>,
}

/// A selection policy over the servers of one tier of an upstream,
/// indexed `0..len`.
pub(crate) trait Policy: Send + Sync + fmt::Debug {
    /// The best server for this request that `cx.excluded` does not
    /// exclude. Returning an excluded index (or `None`) is allowed:
    /// [`Candidates`] then asks again, and after `len` answers scans for
    /// whatever was never offered.
    fn pick(&self, cx: &PickContext<'_>) -> Option<usize>;
}

/// The servers to try for one request, best first, each at most once.
pub(crate) struct Candidates<'a> {
    policy: &'a dyn Policy,
    len: usize,
    key: u64,
    load: &'a (dyn Fn(usize) -> usize + Sync),
    /// How many more times the policy is asked before falling back to a scan.
    asks_left: usize,
    /// Next index of the fallback scan.
    scan: usize,
    offered: Offered,
    /// The policy's position ([`PickContext::walk`]).
    walk: Cell<Option<usize>>,
}

impl<'a> Candidates<'a> {
    /// Candidates among `len` servers chosen by `policy` for a request with
    /// hash `key`, seeing in-flight counts through `load`.
    pub(crate) fn new(
        policy: &'a dyn Policy,
        len: usize,
        key: u64,
        load: &'a (dyn Fn(usize) -> usize + Sync),
    ) -> Self {
        Candidates {
            policy,
            len,
            key,
            load,
            asks_left: len,
            scan: 0,
            offered: Offered::new(len),
            walk: Cell::new(None),
        }
    }
}

impl Iterator for Candidates<'_> {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        while self.asks_left > 0 {
            let failover = self.asks_left < self.len;
            self.asks_left -= 1;
            let offered = &self.offered;
            let excluded = |i: usize| offered.contains(i);
            let cx = PickContext {
                key: self.key,
                load: self.load,
                excluded: &excluded,
                failover,
                walk: &self.walk,
            };
            match self.policy.pick(&cx) {
                Some(i) if i < self.len && self.offered.insert(i) => return Some(i),
                Some(_) => continue,
                None => break,
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

/// A set of server indices. Upstreams of up to 64 servers, which is nearly
/// all of them, use one word. Larger ones keep the first few offered inline
/// and allocate a bitmap only past them: nearly every request is offered one
/// server, so its cost does not grow with the pool.
enum Offered {
    Small(u64),
    /// Over 64 servers: the first `count` offered, in `first`.
    Few {
        count: usize,
        first: [usize; FEW],
        len: usize,
    },
    /// Over 64 servers and more than [`FEW`] offered: one bit per server.
    Many(Box<[u64]>),
}

/// How many offered servers of a large upstream are kept before a bitmap.
const FEW: usize = 4;

impl Offered {
    fn new(len: usize) -> Self {
        if len <= 64 {
            Offered::Small(0)
        } else {
            Offered::Few {
                count: 0,
                first: [0; FEW],
                len,
            }
        }
    }

    fn contains(&self, i: usize) -> bool {
        match self {
            Offered::Small(bits) => bits & (1u64 << i) != 0,
            Offered::Few { count, first, .. } => first[..*count].contains(&i),
            Offered::Many(bits) => bits[i / 64] & (1u64 << (i % 64)) != 0,
        }
    }

    /// Adds `i`; false if it was already there.
    fn insert(&mut self, i: usize) -> bool {
        if self.contains(i) {
            return false;
        }
        match self {
            Offered::Small(bits) => *bits |= 1u64 << i,
            Offered::Few { count, first, .. } if *count < FEW => {
                first[*count] = i;
                *count += 1;
            }
            Offered::Few { first, len, .. } => {
                let mut bits = vec![0u64; len.div_ceil(64)].into_boxed_slice();
                for &j in first.iter().chain([&i]) {
                    bits[j / 64] |= 1u64 << (j % 64);
                }
                *self = Offered::Many(bits);
            }
            Offered::Many(bits) => bits[i / 64] |= 1u64 << (i % 64),
        }
        true
    }
}

/// One pick with the given in-flight counts and exclusions (for tests of
/// the policies).
#[cfg(test)]
pub(crate) fn pick_with(policy: &dyn Policy, loads: &[usize], excluded: &[usize]) -> Option<usize> {
    let load = |i: usize| loads[i];
    let excluded = |i: usize| excluded.contains(&i);
    policy.pick(&PickContext {
        key: 0,
        load: &load,
        excluded: &excluded,
        failover: false,
        walk: &Cell::new(None),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A policy that replays a fixed script.
    #[derive(Debug)]
    struct Script(Vec<usize>, AtomicUsize);

    impl Policy for Script {
        fn pick(&self, _: &PickContext<'_>) -> Option<usize> {
            let n = self.1.fetch_add(1, Ordering::Relaxed);
            Some(self.0[n % self.0.len()])
        }
    }

    fn candidates(p: &dyn Policy, len: usize) -> Vec<usize> {
        Candidates::new(p, len, 0, &|_| 0).collect()
    }

    #[test]
    fn offers_each_server_once_policy_order_first() {
        let p = Script(vec![2, 2, 0], AtomicUsize::new(0));
        let got = candidates(&p, 4);
        assert_eq!(got, [2, 0, 1, 3]);
    }

    #[test]
    fn large_upstreams() {
        let p = Script(vec![99], AtomicUsize::new(0));
        let got = candidates(&p, 100);
        assert_eq!(got.len(), 100);
        assert_eq!(got[0], 99);
        assert_eq!(&got[1..4], [0, 1, 2]);
    }

    #[test]
    fn offered_set_of_a_large_upstream() {
        let mut set = Offered::new(1000);
        let picks = [999, 0, 64, 63, 500, 128, 999, 1];
        let fresh: Vec<bool> = picks.iter().map(|&i| set.insert(i)).collect();
        assert_eq!(fresh, [true, true, true, true, true, true, false, true]);
        for i in 0..1000 {
            assert_eq!(set.contains(i), picks.contains(&i), "server {i}");
        }
        let got = candidates(&Script(vec![7, 7, 3], AtomicUsize::new(0)), 1000);
        let mut sorted = got.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..1000).collect::<Vec<_>>(), "each server once");
        assert_eq!(&got[..2], [7, 3]);
    }
}
