//! Consistent hashing on a ring (ketama).
//!
//! Every server owns points on a ring of 64-bit positions: `160 * weight` of
//! them (as nginx's `hash ... consistent` and libketama do), point `i` of a
//! server named `name` sitting at the position hashed from `"{name}-{i}"`. A
//! request goes to the owner of the first point at or after its key's
//! position, wrapping around; if that server is excluded, to the owner of the
//! next point of a server that is not. Because a point's position depends
//! only on its server's name and its number, two ginx processes with the same
//! servers build the same ring (whatever the order of the list, whatever the
//! process), and removing one of N servers moves only the keys that landed on
//! its points, about 1/N of them, each to the server that owns the next point.
//!
//! Positions are FNV-1a ([`hash_key`]) of the label, then the splitmix64
//! finalizer. FNV-1a alone is stable but clusters labels that differ only in
//! their last characters (`"a-1"`, `"a-2"`, ...), which makes for uneven arcs;
//! the finalizer spreads every input bit over all 64 output bits. The request
//! key (already FNV-1a of the configured key) goes through the same finalizer
//! before the lookup, for the same reason. Both are fixed: a change remaps
//! every key in production, and the tests pin a few assignments.
//!
//! Memory is 12 bytes a point (a `u64` position and a `u32` server index, in
//! two arrays). Weights go up to 1000 and a pool may have hundreds of servers,
//! so the ring is capped at [`MAX_POINTS`] (2^17, 1.5 MiB): while
//! `160 * total weight` fits, every server gets its full `160 * weight`
//! points; beyond that every server's count is scaled down in proportion
//! (each keeping at least one point). A server's points are always a prefix
//! `0..count` of its labels, so scaling never moves the points that remain;
//! but since the scale depends on the total weight, when the cap binds,
//! adding or removing a server also changes the others' counts slightly and
//! moves a few keys more than the 1/N minimum. 2^17 points keep the full 160
//! per weight for up to 819 units of weight (e.g. 800 servers of weight 1).
//!
//! A lookup is a binary search over the positions (17 steps at most) plus a
//! short walk; nothing is allocated and nothing is written.

use std::fmt::Write as _;

use super::{hash_key, PickContext, Policy};

/// Points per unit of weight.
const POINTS_PER_WEIGHT: u64 = 160;

/// The most points a ring holds (beyond one point for each server).
const MAX_POINTS: u64 = 1 << 17;

/// Consistent hashing over a ring of weighted points.
#[derive(Debug)]
pub(crate) struct Ketama {
    /// Ring positions of the points, ascending.
    positions: Box<[u64]>,
    /// `owners[k]` is the server index of the point at `positions[k]`.
    owners: Box<[u32]>,
}

impl Ketama {
    /// A ring over servers given as (name as configured, weight); a weight
    /// of 0 counts as 1. The ring depends on the names and weights, not on
    /// their order, and the indices `pick` returns are positions in
    /// `servers`.
    pub(crate) fn new(servers: &[(&str, u32)]) -> Self {
        let weight = |s: usize| u64::from(servers[s].1.max(1));
        let total: u64 = (0..servers.len()).map(weight).sum();
        let count = |s: usize| {
            if total * POINTS_PER_WEIGHT <= MAX_POINTS {
                weight(s) * POINTS_PER_WEIGHT
            } else {
                (weight(s) * MAX_POINTS / total).max(1)
            }
        };
        let mut ring: Vec<(u64, u32)> =
            Vec::with_capacity((0..servers.len()).map(count).sum::<u64>() as usize);
        let mut label = String::new();
        for (s, (name, _)) in servers.iter().enumerate() {
            for i in 0..count(s) {
                label.clear();
                write!(label, "{name}-{i}").expect("writing to a String");
                ring.push((position(hash_key(label.as_bytes())), s as u32));
            }
        }
        // Two points at one position (rare) are ordered by server name, not
        // by index, so the list order still does not matter.
        ring.sort_unstable_by(|a, b| {
            a.0.cmp(&b.0)
                .then_with(|| servers[a.1 as usize].0.cmp(servers[b.1 as usize].0))
                .then(a.1.cmp(&b.1))
        });
        Ketama {
            positions: ring.iter().map(|p| p.0).collect(),
            owners: ring.iter().map(|p| p.1).collect(),
        }
    }
}

impl Policy for Ketama {
    fn pick(&self, cx: &PickContext<'_>) -> Option<usize> {
        let len = self.positions.len();
        // The first point at or after the key, wrapping past the end; a
        // failover goes on after the point its previous pick stopped at
        // (every owner before it was offered already).
        let start = match cx.walk.get() {
            Some(at) => at + 1,
            None => {
                let target = position(cx.key);
                self.positions.partition_point(|&p| p < target)
            }
        };
        let mut last_checked = None;
        for step in 0..len {
            let at = (start + step) % len;
            let owner = self.owners[at] as usize;
            // Neighbouring points may share an owner: ask once.
            if last_checked == Some(owner) {
                continue;
            }
            if !(cx.excluded)(owner) {
                cx.walk.set(Some(at));
                return Some(owner);
            }
            last_checked = Some(owner);
        }
        None
    }
}

/// The ring position of a hash: the splitmix64 finalizer, a bijection that
/// spreads every input bit over the whole output.
fn position(hash: u64) -> u64 {
    splitmix64(hash)
}

/// The splitmix64 finalizer (Steele, Lea and Flood), a bijective 64-bit mixer.
fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balance::Candidates;

    fn pick_excluding(ring: &Ketama, key: &str, excluded: &[usize]) -> Option<usize> {
        let excluded = |i: usize| excluded.contains(&i);
        ring.pick(&PickContext {
            key: hash_key(key.as_bytes()),
            load: &|_| 0,
            excluded: &excluded,
            failover: false,
            walk: &std::cell::Cell::new(None),
        })
    }

    fn pick(ring: &Ketama, key: &str) -> usize {
        pick_excluding(ring, key, &[]).unwrap()
    }

    const FIVE: [(&str, u32); 5] = [
        ("10.0.0.1:8080", 1),
        ("10.0.0.2:8080", 1),
        ("10.0.0.3:8080", 1),
        ("app.internal:80", 1),
        ("10.0.0.5:8080", 1),
    ];

    fn keys(n: usize) -> impl Iterator<Item = String> {
        (0..n).map(|i| format!("192.168.{}.{}", i / 256, i % 256))
    }

    /// The server name each of `n` keys maps to.
    fn assignment<'a>(servers: &[(&'a str, u32)], n: usize) -> Vec<&'a str> {
        let ring = Ketama::new(servers);
        keys(n).map(|k| servers[pick(&ring, &k)].0).collect()
    }

    /// Fractions of `n` keys on each server.
    fn shares(servers: &[(&str, u32)], n: usize) -> Vec<f64> {
        let ring = Ketama::new(servers);
        let mut counts = vec![0usize; servers.len()];
        for k in keys(n) {
            counts[pick(&ring, &k)] += 1;
        }
        counts.iter().map(|&c| c as f64 / n as f64).collect()
    }

    #[test]
    fn same_key_same_server() {
        let ring = Ketama::new(&FIVE);
        for k in keys(200) {
            let first = pick(&ring, &k);
            for _ in 0..5 {
                assert_eq!(pick(&ring, &k), first);
            }
            assert_eq!(pick(&Ketama::new(&FIVE), &k), first, "a rebuilt ring agrees");
        }
    }

    #[test]
    fn order_of_servers_does_not_matter() {
        let mut shuffled = FIVE;
        shuffled.reverse();
        shuffled.swap(0, 2);
        assert_eq!(assignment(&FIVE, 10_000), assignment(&shuffled, 10_000));
    }

    #[test]
    fn removing_a_server_moves_only_its_keys() {
        let before = assignment(&FIVE, 10_000);
        let removed = FIVE[2].0;
        let rest: Vec<_> = FIVE.iter().copied().filter(|s| s.0 != removed).collect();
        let after = assignment(&rest, 10_000);
        let mut moved = 0;
        for (b, a) in before.iter().zip(&after) {
            if b != a {
                assert_eq!(*b, removed, "a key moved off a server that stayed");
                moved += 1;
            } else {
                assert_ne!(*b, removed);
            }
        }
        let fraction = moved as f64 / 10_000.0;
        assert!((0.1..0.3).contains(&fraction), "{fraction}");
    }

    #[test]
    fn balanced_and_weighted() {
        for share in shares(&FIVE, 100_000) {
            assert!((share - 0.2).abs() < 0.04, "{share}");
        }
        let weighted = [("a:1", 1), ("b:1", 2), ("c:1", 3), ("d:1", 4)];
        let got = shares(&weighted, 100_000);
        for (i, share) in got.iter().enumerate() {
            let want = f64::from(weighted[i].1) / 10.0;
            assert!(
                (share / want - 1.0).abs() < 0.2,
                "server {i}: {share} vs {want} ({got:?})"
            );
        }
        // Doubling one server's weight roughly doubles its share.
        let mut heavier = FIVE;
        heavier[0].1 = 2;
        let got = shares(&heavier, 100_000);
        assert!((got[0] - 1.0 / 3.0).abs() < 0.05, "{got:?}");
    }

    #[test]
    fn exclusions_walk_distinct_servers() {
        let ring = Ketama::new(&FIVE);
        for k in keys(100) {
            let mut offered = Vec::new();
            while let Some(i) = pick_excluding(&ring, &k, &offered) {
                assert!(!offered.contains(&i));
                offered.push(i);
            }
            assert_eq!(offered.len(), FIVE.len());
            assert_eq!(offered[0], pick(&ring, &k));

            let walked: Vec<_> = Candidates::new(&ring, FIVE.len(), hash_key(k.as_bytes()), &|_| 0).collect();
            assert_eq!(walked, offered, "Candidates follows the ring");
        }
    }

    #[test]
    fn fixed_assignments() {
        // A change here remaps keys in production: only on purpose.
        assert_eq!(position(0), 0xe220_a839_7b1d_cdaf);
        let ring = Ketama::new(&FIVE);
        let expected = [
            ("", "10.0.0.1:8080"),
            ("a", "10.0.0.5:8080"),
            ("c", "10.0.0.3:8080"),
            ("d", "app.internal:80"),
            ("g", "10.0.0.2:8080"),
            ("client-2", "10.0.0.1:8080"),
            ("10.1.2.3", "10.0.0.5:8080"),
            ("10.1.2.5", "10.0.0.2:8080"),
            ("/a", "10.0.0.3:8080"),
        ];
        for (key, server) in expected {
            assert_eq!(FIVE[pick(&ring, key)].0, server, "key {key:?}");
        }
    }

    #[test]
    fn capped_ring() {
        let names: Vec<String> = (0..300)
            .map(|i| format!("10.0.{}.{}:80", i / 256, i % 256))
            .collect();
        let servers: Vec<(&str, u32)> = names.iter().map(|n| (n.as_str(), 1000)).collect();
        let ring = Ketama::new(&servers);
        assert!(ring.positions.len() as u64 <= MAX_POINTS);
        assert!(ring.positions.len() as u64 > MAX_POINTS - 300);
        // Every server keeps points, and small weights keep at least one.
        let mut mixed = servers.clone();
        mixed[0].1 = 1;
        let ring = Ketama::new(&mixed);
        assert!(ring.owners.contains(&0));
        assert!(ring.positions.windows(2).all(|w| w[0] <= w[1]));
    }

    #[test]
    fn single_and_empty() {
        let ring = Ketama::new(&[("only:1", 3)]);
        assert_eq!(pick(&ring, "x"), 0);
        assert_eq!(pick_excluding(&ring, "x", &[0]), None);
        let ring = Ketama::new(&[]);
        assert_eq!(pick_excluding(&ring, "x", &[]), None);
    }
}
