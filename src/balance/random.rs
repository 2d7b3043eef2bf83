//! Weighted random with the power of two choices.
//!
//! Each pick draws two distinct servers at random, each with probability
//! proportional to its weight, and takes the one with fewer in-flight
//! requests relative to its weight (on a tie, the first drawn). Picking the
//! better of two random servers keeps the maximum load far lower than one
//! random choice does, yet needs neither a global scan (as least connections
//! does) nor shared state between proxies or threads: the loads it compares
//! may be stale or racy and it still spreads well. With no load at all the
//! first draw always wins, so the traffic follows the weights exactly.
//!
//! A draw is a binary search of a uniform number below the total weight in a
//! table of cumulative weights, built once with the policy. A draw that lands
//! on a server the caller excludes (or on the first server, for the second
//! draw) is retried a few times; when they all miss, which happens only once
//! most of the weight is excluded, one weighted draw among the remaining
//! servers is made by a linear scan, so the distribution stays exact and a
//! pick never loops unboundedly.
//!
//! The random numbers come from ginx's one per-thread generator
//! ([`super::rng`]); nothing is shared between threads, so picking takes no
//! lock and no atomic.

use super::least_conn::lighter;
use super::rng::random_below;
use super::{PickContext, Policy};

/// How many random draws are tried before the linear fallback.
const DRAW_TRIES: usize = 8;

/// Weighted random, better of two choices.
#[derive(Debug)]
pub(crate) struct Random {
    /// Weight of server `i`, at least 1.
    weights: Box<[u32]>,
    /// `cumulative[i]` is the sum of `weights[..=i]`; the last is the total.
    cumulative: Box<[u64]>,
}

impl Random {
    /// A policy over servers with these weights (a weight of 0 counts as 1).
    /// With no servers it picks none.
    pub(crate) fn new(weights: &[u32]) -> Self {
        let weights: Box<[u32]> = weights.iter().map(|&w| w.max(1)).collect();
        let cumulative = weights
            .iter()
            .scan(0u64, |sum, &w| {
                *sum += u64::from(w);
                Some(*sum)
            })
            .collect();
        Random { weights, cumulative }
    }

    fn total(&self) -> u64 {
        self.cumulative.last().copied().unwrap_or(0)
    }

    /// A server drawn with probability proportional to its weight among
    /// those `skip` does not reject; `None` if it rejects all of them.
    fn draw(&self, skip: impl Fn(usize) -> bool) -> Option<usize> {
        let tries = if self.weights.is_empty() { 0 } else { DRAW_TRIES };
        for _ in 0..tries {
            let r = random_below(self.total());
            // The first server whose cumulative weight exceeds r.
            let i = self.cumulative.partition_point(|&c| c <= r);
            if !skip(i) {
                return Some(i);
            }
        }
        let allowed = |i: &usize| !skip(*i);
        let remaining: u64 = (0..self.weights.len())
            .filter(allowed)
            .map(|i| u64::from(self.weights[i]))
            .sum();
        if remaining == 0 {
            return None;
        }
        let mut r = random_below(remaining);
        for i in (0..self.weights.len()).filter(allowed) {
            let w = u64::from(self.weights[i]);
            if r < w {
                return Some(i);
            }
            r -= w;
        }
        unreachable!("r is below the sum of the weights scanned")
    }
}

impl Policy for Random {
    fn pick(&self, cx: &PickContext<'_>) -> Option<usize> {
        let first = self.draw(cx.excluded)?;
        let Some(second) = self.draw(|i| i == first || (cx.excluded)(i)) else {
            return Some(first);
        };
        // The second wins only if strictly lighter: ties go to the first.
        if lighter(
            (cx.load)(second),
            self.weights[second],
            (cx.load)(first),
            self.weights[first],
        ) {
            Some(second)
        } else {
            Some(first)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balance::Candidates;

    fn pick(p: &Random, loads: &[usize], excluded: &[usize]) -> Option<usize> {
        crate::balance::pick_with(p, loads, excluded)
    }

    /// How often each server is picked, as fractions of `n` picks.
    fn shares(p: &Random, loads: &[usize], excluded: &[usize], n: usize) -> Vec<f64> {
        let mut counts = vec![0usize; loads.len()];
        for _ in 0..n {
            counts[pick(p, loads, excluded).unwrap()] += 1;
        }
        counts.iter().map(|&c| c as f64 / n as f64).collect()
    }

    #[test]
    fn zero_load_follows_weights() {
        let weights = [1, 2, 3, 4];
        let p = Random::new(&weights);
        let got = shares(&p, &[0; 4], &[], 100_000);
        for (i, share) in got.iter().enumerate() {
            let want = f64::from(weights[i]) / 10.0;
            assert!(
                (share - want).abs() < 0.01,
                "server {i}: {share} vs {want} ({got:?})"
            );
        }
    }

    #[test]
    fn zero_weight_counts_as_one() {
        let p = Random::new(&[0, 1]);
        let got = shares(&p, &[0; 2], &[], 100_000);
        assert!((got[0] - 0.5).abs() < 0.01, "{got:?}");
    }

    #[test]
    fn less_loaded_wins_most_often() {
        // With three servers the two drawn are distinct, so the most loaded
        // never wins and the least loaded wins whenever it is drawn (2/3).
        let p = Random::new(&[1, 1, 1]);
        let got = shares(&p, &[0, 5, 10], &[], 100_000);
        assert!((got[0] - 2.0 / 3.0).abs() < 0.01, "{got:?}");
        assert!((got[1] - 1.0 / 3.0).abs() < 0.01, "{got:?}");
        assert_eq!(got[2], 0.0);

        // Load relative to weight: 4 on weight 4 is lighter than 2 on 1.
        let p = Random::new(&[4, 1]);
        assert_eq!(shares(&p, &[4, 2], &[], 1000)[0], 1.0);

        // Among many servers, a single idle one gets far more than its share.
        let p = Random::new(&[1; 10]);
        let mut loads = [3; 10];
        loads[7] = 0;
        let got = shares(&p, &loads, &[], 100_000);
        assert!(got[7] > 0.15, "{got:?}");
    }

    #[test]
    fn excluded_never_returned_while_others_remain() {
        let p = Random::new(&[1, 1, 1, 1]);
        for _ in 0..10_000 {
            let i = pick(&p, &[0, 3, 0, 1], &[0, 2]).unwrap();
            assert!(i == 1 || i == 3);
            assert_eq!(pick(&p, &[0; 4], &[0, 1, 2]), Some(3));
        }
        assert_eq!(pick(&p, &[0; 4], &[0, 1, 2, 3]), None);

        // The heavy server excluded: the draws nearly always miss, and the
        // linear fallback still finds the light ones, in proportion.
        let p = Random::new(&[1_000_000, 1, 3]);
        let got = shares(&p, &[0; 3], &[0], 100_000);
        assert_eq!(got[0], 0.0);
        assert!((got[1] - 0.25).abs() < 0.01, "{got:?}");
    }

    #[test]
    fn single_server_and_none() {
        let p = Random::new(&[5]);
        assert_eq!(pick(&p, &[100], &[]), Some(0));
        assert_eq!(pick(&p, &[100], &[0]), None);
        assert_eq!(pick(&Random::new(&[]), &[], &[]), None);
    }

    #[test]
    fn candidates_offer_every_server_once() {
        let weights = [1, 5, 2, 1, 1, 3, 1];
        let p = Random::new(&weights);
        let load = |i: usize| i % 3;
        for _ in 0..1000 {
            let mut got: Vec<_> = Candidates::new(&p, weights.len(), 0, &load).collect();
            got.sort_unstable();
            assert_eq!(got, [0, 1, 2, 3, 4, 5, 6]);
        }
    }
}
