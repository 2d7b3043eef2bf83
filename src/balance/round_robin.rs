//! Smooth weighted round robin, as nginx does it.
//!
//! nginx keeps a `current_weight` per server and, on every pick, adds each
//! server's weight to its current weight, picks the largest, and subtracts the
//! total from the winner. That sequence is periodic with period
//! `sum(weights) / gcd(weights)`, and it interleaves heavy servers with light
//! ones (5,1,1 gives a a b a c a a, not a a a a a b c).
//!
//! Rather than mutating per-server weights under a lock on every request, we
//! compute one period of that sequence when the snapshot is built and walk it
//! with a single atomic cursor. The cursor belongs to the upstream (it is
//! carried over by name when a reload rebuilds the snapshot), so a reload that
//! keeps the same servers and weights continues the rotation where it was.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use super::{PickContext, Policy};

/// The rotation position of one upstream; outlives snapshots.
pub(crate) type RoundRobinCursor = Arc<AtomicUsize>;

/// Smooth weighted round robin over a precomputed period.
#[derive(Debug)]
pub(crate) struct RoundRobin {
    /// One period of nginx's smooth weighted sequence, as server indices.
    sequence: Box<[u32]>,
    cursor: RoundRobinCursor,
}

impl RoundRobin {
    /// A policy over servers with these weights (each at least 1), continuing
    /// from `cursor`.
    pub(crate) fn new(weights: &[u32], cursor: RoundRobinCursor) -> Self {
        RoundRobin {
            sequence: smooth_sequence(weights).into_boxed_slice(),
            cursor,
        }
    }
}

impl RoundRobin {
    /// The next server in the rotation.
    #[cfg(test)]
    fn next(&self) -> usize {
        self.at(self.cursor.fetch_add(1, Ordering::Relaxed))
    }

    /// The server at position `at` of the endless rotation.
    fn at(&self, at: usize) -> usize {
        self.sequence[at % self.sequence.len()] as usize
    }

    /// The first server of the rotation after this request's previous
    /// pick that `cx` does not exclude, leaving the rotation where it is.
    fn next_not_excluded(&self, cx: &PickContext<'_>) -> Option<usize> {
        let from = match cx.walk.get() {
            Some(at) => at.wrapping_add(1),
            None => self.cursor.load(Ordering::Relaxed),
        };
        let at = (0..self.sequence.len())
            .map(|step| from.wrapping_add(step))
            .find(|&at| !(cx.excluded)(self.at(at)))?;
        cx.walk.set(Some(at));
        Some(self.at(at))
    }
}

impl Policy for RoundRobin {
    fn pick(&self, cx: &PickContext<'_>) -> Option<usize> {
        // A request moves the shared rotation once; its failovers continue
        // from there (see `PickContext::failover`).
        match cx.failover {
            false => {
                let at = self.cursor.fetch_add(1, Ordering::Relaxed);
                cx.walk.set(Some(at));
                Some(self.at(at))
            }
            true => self.next_not_excluded(cx),
        }
    }
}

/// One period of nginx's smooth weighted round robin.
fn smooth_sequence(weights: &[u32]) -> Vec<u32> {
    assert!(!weights.is_empty(), "an upstream has at least one server");
    let divisor = weights.iter().copied().fold(0, gcd).max(1);
    let weights: Vec<i64> = weights.iter().map(|&w| i64::from(w.max(1) / divisor)).collect();
    let total: i64 = weights.iter().sum();
    if total == weights.len() as i64 {
        // Equal weights: the algorithm visits the servers in order, so a
        // large plain pool is built in O(n), not O(n²).
        return (0..weights.len() as u32).collect();
    }
    let mut current = vec![0i64; weights.len()];
    (0..total)
        .map(|_| {
            let mut best = 0;
            for (i, w) in weights.iter().enumerate() {
                current[i] += w;
                // Strictly greater: on a tie the earlier server wins, as in nginx.
                if current[i] > current[best] {
                    best = i;
                }
            }
            current[best] -= total;
            best as u32
        })
        .collect()
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn picks(weights: &[u32], n: usize) -> String {
        let rr = RoundRobin::new(weights, Default::default());
        (0..n).map(|_| (b'a' + rr.next() as u8) as char).collect()
    }

    /// Each request's whole failover order, one request after another.
    fn failover_orders(weights: &[u32], requests: usize) -> Vec<String> {
        let rr = RoundRobin::new(weights, Default::default());
        (0..requests)
            .map(|_| {
                super::super::Candidates::new(&rr, weights.len(), 0, &|_| 0)
                    .map(|i| (b'a' + i as u8) as char)
                    .collect()
            })
            .collect()
    }

    #[test]
    fn a_failover_does_not_move_the_rotation() {
        // With `a` failing, every request falls over to `b`; were that
        // second pick to move the rotation too, every request would start
        // at `a` again.
        assert_eq!(failover_orders(&[1, 1], 4), ["ab", "ba", "ab", "ba"]);
        assert_eq!(failover_orders(&[1, 1, 1], 3), ["abc", "bca", "cab"]);
        // First picks follow the weights (a b a), whatever the failovers.
        assert_eq!(failover_orders(&[2, 1], 3), ["ab", "ba", "ab"]);
    }

    #[test]
    fn a_long_failover_walk_is_linear() {
        // 1,000 servers: each request's walk over all of them asks whether
        // a server was offered about once per step, not once per step and
        // server offered before it.
        let rr = RoundRobin::new(&[1; 1000], Default::default());
        for first in 0..3 {
            let asked = std::cell::Cell::new(0usize);
            let offered = std::cell::RefCell::new(Vec::new());
            let walk = std::cell::Cell::new(None);
            for step in 0..1000 {
                let excluded = |i: usize| {
                    asked.set(asked.get() + 1);
                    offered.borrow().contains(&i)
                };
                let cx = PickContext {
                    key: 0,
                    load: &|_| 0,
                    excluded: &excluded,
                    failover: step > 0,
                    walk: &walk,
                };
                let got = rr.pick(&cx).unwrap();
                offered.borrow_mut().push(got);
            }
            let want: Vec<usize> = (first..1000).chain(0..first).collect();
            assert_eq!(*offered.borrow(), want);
            assert!(asked.get() < 2000, "{} questions", asked.get());
        }
    }

    #[test]
    fn smooth_as_nginx() {
        assert_eq!(picks(&[5, 1, 1], 7), "aabacaa");
        assert_eq!(picks(&[5, 1, 1], 14), "aabacaaaabacaa");
    }

    #[test]
    fn equal_weights_alternate() {
        assert_eq!(picks(&[1, 1, 1], 6), "abcabc");
        assert_eq!(picks(&[3, 3], 4), "abab");
    }

    #[test]
    fn equal_weights_shortcut_is_nginxs_sequence() {
        // Equal weights (here 3, reduced by the gcd) visit the servers in
        // order, as nginx's algorithm does; one heavier server does not.
        for n in [1usize, 2, 7, 100] {
            let shortcut = smooth_sequence(&vec![3; n]);
            assert_eq!(shortcut, (0..n as u32).collect::<Vec<_>>());
        }
        let mut weights = vec![1; 5];
        weights[4] = 2;
        assert_eq!(smooth_sequence(&weights), [4, 0, 1, 2, 3, 4]);
    }

    #[test]
    fn weights_reduced_by_gcd() {
        assert_eq!(smooth_sequence(&[10, 20]).len(), 3);
        assert_eq!(picks(&[1, 2], 3), "bab");
    }

    #[test]
    fn cursor_is_shared() {
        let cursor = RoundRobinCursor::default();
        let first = RoundRobin::new(&[1, 1], cursor.clone());
        assert_eq!(first.next(), 0);
        let rebuilt = RoundRobin::new(&[1, 1], cursor);
        assert_eq!(rebuilt.next(), 1);
    }
}
