//! The one random-number source of ginx: a per-thread xorshift64* generator.
//!
//! This module owns how random numbers are made; what they are for is its
//! callers' business: the `random` policy's draws ([`super::random`]), request
//! ids ([`crate::forward`]), health-check jitter ([`crate::health`]). None of
//! them needs cryptographic quality, all of them need it cheap: a draw is a
//! thread-local read, three shifts and a multiply, with no lock and no atomic,
//! because nothing is shared between threads.
//!
//! Each thread's state is seeded on first use from std's [`RandomState`],
//! whose keys come from the operating system's random source once per thread,
//! so threads, processes and runs all draw different streams.

use std::cell::Cell;
use std::hash::{BuildHasher, RandomState};

thread_local! {
    /// xorshift64* state of this thread; 0 until seeded (0 is the one state
    /// xorshift never leaves, so it can mark "unseeded").
    static STATE: Cell<u64> = const { Cell::new(0) };
}

/// The next number of this thread's generator, uniform over all of `u64`.
pub(crate) fn random_u64() -> u64 {
    STATE.with(|state| {
        let mut x = state.get();
        if x == 0 {
            x = seed();
        }
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        state.set(x);
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    })
}

/// A uniform number in `0..n` (`n > 0`), by the high half of a 128-bit
/// product rather than a modulo (Lemire); the bias left is below `n / 2^64`.
pub(crate) fn random_below(n: u64) -> u64 {
    ((u128::from(random_u64()) * u128::from(n)) >> 64) as u64
}

/// A non-zero seed, different for every thread, process and run.
fn seed() -> u64 {
    match RandomState::new().hash_one(0u8) {
        0 => 0x9e37_79b9_7f4a_7c15,
        x => x,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threads_draw_different_streams() {
        let a: Vec<u64> = (0..4).map(|_| random_u64()).collect();
        let b = std::thread::spawn(|| (0..4).map(|_| random_u64()).collect::<Vec<u64>>())
            .join()
            .unwrap();
        assert_ne!(a, b);
        assert!(a.windows(2).all(|w| w[0] != w[1]));
    }

    #[test]
    fn below_stays_below() {
        assert!((0..10_000).all(|_| random_below(7) < 7));
        assert_eq!(random_below(1), 0);
    }
}
