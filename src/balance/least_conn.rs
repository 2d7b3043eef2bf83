//! Weighted least connections.
//!
//! Each pick sends the request to the server with the fewest in-flight
//! requests relative to its weight: server `a` is less loaded than `b` when
//! `load(a) / weight(a) < load(b) / weight(b)`, compared exactly as
//! `load(a) * weight(b) < load(b) * weight(a)` in integers, so a server of
//! weight 2 with 2 requests ties with a server of weight 1 with 1 request.
//!
//! Ties are common (an idle upstream has every server at 0), and breaking them
//! by index would send every request of a quiet period to server 0. Instead
//! each pick starts its scan at a rotating position taken from the upstream's
//! [`RoundRobinCursor`] and keeps the first server of least load it meets, so
//! equal loads rotate round robin. The scan is one pass over the servers with
//! no lock and no allocation, and it stops at the first idle server (nothing
//! is lighter), so an upstream that is not saturated costs a few steps
//! whatever its size. The loads it reads are a racy snapshot, which is fine:
//! they change with every request anyway.

use std::sync::atomic::Ordering;

use super::{PickContext, Policy, RoundRobinCursor};

/// Weighted least connections, ties broken round robin.
#[derive(Debug)]
pub(crate) struct LeastConn {
    /// Weight of server `i`, at least 1.
    weights: Box<[u32]>,
    /// Where the next scan starts; shared with the upstream so it outlives
    /// snapshots.
    cursor: RoundRobinCursor,
}

impl LeastConn {
    /// A policy over servers with these weights (a weight of 0 counts as 1),
    /// rotating ties with `cursor`. With no servers it picks none.
    pub(crate) fn new(weights: &[u32], cursor: RoundRobinCursor) -> Self {
        LeastConn {
            weights: weights.iter().map(|&w| w.max(1)).collect(),
            cursor,
        }
    }
}

impl Policy for LeastConn {
    fn pick(&self, cx: &PickContext<'_>) -> Option<usize> {
        let len = self.weights.len();
        if len == 0 {
            return None;
        }
        // A request moves the shared position once; a failover scans from
        // where it stands (see `PickContext::failover`).
        let start = match cx.failover {
            false => self.cursor.fetch_add(1, Ordering::Relaxed),
            true => self.cursor.load(Ordering::Relaxed),
        } % len;
        // (index, load) of the least loaded server seen so far.
        let mut best: Option<(usize, usize)> = None;
        for step in 0..len {
            let i = (start + step) % len;
            if (cx.excluded)(i) {
                continue;
            }
            let load = (cx.load)(i);
            if load == 0 {
                // Nothing is lighter than idle, and this is the first idle
                // server in rotated order: what the full scan would keep.
                return Some(i);
            }
            let better = match best {
                None => true,
                // Strictly lighter: on a tie the server met first (in rotated
                // order) stays.
                Some((b, b_load)) => lighter(load, self.weights[i], b_load, self.weights[b]),
            };
            if better {
                best = Some((i, load));
            }
        }
        best.map(|(i, _)| i)
    }
}

/// Whether `load_a` requests on weight `weight_a` is strictly less load than
/// `load_b` on `weight_b`, i.e. `load_a / weight_a < load_b / weight_b`,
/// without division. The products saturate instead of overflowing, which can
/// only matter beyond 2^32 in-flight requests.
pub(super) fn lighter(load_a: usize, weight_a: u32, load_b: usize, weight_b: u32) -> bool {
    let a = (load_a as u64).saturating_mul(u64::from(weight_b));
    let b = (load_b as u64).saturating_mul(u64::from(weight_a));
    a < b
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balance::Candidates;

    fn pick(p: &LeastConn, loads: &[usize], excluded: &[usize]) -> Option<usize> {
        crate::balance::pick_with(p, loads, excluded)
    }

    #[test]
    fn picks_least_loaded() {
        let p = LeastConn::new(&[1, 1, 1, 1], Default::default());
        for _ in 0..8 {
            assert_eq!(pick(&p, &[3, 5, 1, 2], &[]), Some(2));
            assert_eq!(pick(&p, &[0, 5, 1, 2], &[]), Some(0));
            assert_eq!(pick(&p, &[7, 5, 9, 6], &[]), Some(1));
        }
    }

    #[test]
    fn load_is_relative_to_weight() {
        assert!(!lighter(2, 2, 1, 1) && !lighter(1, 1, 2, 2), "2 on 2 ties 1 on 1");
        assert!(lighter(3, 4, 1, 1), "3/4 < 1/1");
        assert!(!lighter(5, 4, 1, 1), "5/4 > 1/1");
        assert!(lighter(usize::MAX - 1, 1, usize::MAX, 1), "no overflow panic");

        let p = LeastConn::new(&[1, 4], Default::default());
        for _ in 0..4 {
            assert_eq!(pick(&p, &[1, 3], &[]), Some(1));
            assert_eq!(pick(&p, &[1, 5], &[]), Some(0));
        }
        // A tie between weight 2 at load 2 and weight 1 at load 1 rotates.
        let p = LeastConn::new(&[2, 1, 1], Default::default());
        let got: Vec<_> = (0..6).map(|_| pick(&p, &[2, 1, 5], &[]).unwrap()).collect();
        assert!(
            got.contains(&0) && got.contains(&1) && !got.contains(&2),
            "{got:?}"
        );
    }

    #[test]
    fn equal_loads_rotate() {
        let p = LeastConn::new(&[1, 1, 1], Default::default());
        let got: Vec<_> = (0..6).map(|_| pick(&p, &[0, 0, 0], &[]).unwrap()).collect();
        assert_eq!(got, [0, 1, 2, 0, 1, 2]);
        // Only the tied least loaded servers take part in the rotation.
        let p = LeastConn::new(&[1, 1, 1, 1], Default::default());
        let got: Vec<_> = (0..6).map(|_| pick(&p, &[4, 2, 9, 2], &[]).unwrap()).collect();
        assert_eq!(got, [1, 1, 3, 3, 1, 1]);
    }

    #[test]
    fn cursor_is_shared() {
        let cursor = RoundRobinCursor::default();
        let first = LeastConn::new(&[1, 1], cursor.clone());
        assert_eq!(pick(&first, &[0, 0], &[]), Some(0));
        let rebuilt = LeastConn::new(&[1, 1], cursor);
        assert_eq!(pick(&rebuilt, &[0, 0], &[]), Some(1));
    }

    #[test]
    fn excluded_skipped() {
        let p = LeastConn::new(&[1, 1, 1], Default::default());
        for _ in 0..6 {
            assert_eq!(pick(&p, &[0, 5, 9], &[0]), Some(1));
            assert_eq!(pick(&p, &[0, 5, 9], &[0, 1]), Some(2));
            assert_eq!(pick(&p, &[0, 5, 9], &[0, 1, 2]), None);
        }
        assert_eq!(pick(&LeastConn::new(&[], Default::default()), &[], &[]), None);
    }

    #[test]
    fn candidates_offer_every_server_once_lightest_first() {
        let weights = [1, 2, 1, 1, 3];
        let loads = [4, 2, 0, 3, 9];
        let p = LeastConn::new(&weights, Default::default());
        let load = |i: usize| loads[i];
        for _ in 0..5 {
            let got: Vec<_> = Candidates::new(&p, weights.len(), 0, &load).collect();
            // Relative loads 4, 1, 0, 3, 3: 3 and 4 tie and may come in
            // either order.
            assert_eq!(&got[..2], [2, 1]);
            assert!(got[2..4] == [3, 4] || got[2..4] == [4, 3], "{got:?}");
            assert_eq!(got[4], 0);
        }
    }
}
