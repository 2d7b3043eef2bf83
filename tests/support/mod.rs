//! Test harness: real upstream servers on ephemeral ports, a real `ginx`
//! process, and conditions waited on with deadlines.
//!
//! Split by role, as linkerd2-proxy's test support is:
//! - [`backend`]: the servers ginx proxies to (`Backend`, `ProtoBackend`,
//!   `closing_server`), the byte patterns they stream and the certificates
//!   they present;
//! - [`ginx`]: the ginx process (start, listener addresses, logs, signals,
//!   exit);
//! - [`client`]: what a client does (`send`, `get`, h2c, `scrape`, a TLS
//!   client configuration);
//! - [`toml`]: configuration snippets (`web`, `upstream`, `one_listener`);
//! - [`cli`]: the binary as a command (`ginx_cli`, `check`, `dir_with`);
//! - [`recording`]: an origin that records every byte and request it gets.
//!
//! Everything is re-exported here, so a test says `use support::*;`. This
//! module owns only what every role waits with: [`DEADLINE`] and
//! [`eventually`]. A fixed sleep is right only where a test must show that
//! nothing happens (there is no event to wait for) or paces what it sends;
//! each one says which.
// Every test file compiles the harness into its own binary and uses a part
// of it: what one file leaves unused is not dead.
#![allow(dead_code, unused_imports)]

mod backend;
mod cli;
mod client;
mod dns;
mod ginx;
mod recording;
mod toml;

use std::future::Future;
use std::time::{Duration, Instant};

pub use self::backend::*;
pub use self::cli::*;
pub use self::client::*;
pub use self::dns::*;
pub use self::ginx::*;
pub use self::recording::*;
pub use self::toml::*;

/// The default deadline for anything a test waits on.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// How often [`eventually`] asks again.
const POLL: Duration = Duration::from_millis(20);

/// Check `cond` every 20 ms until it holds or `timeout` passes; whether it
/// held.
///
/// `cond` is either a plain check, `|| a.hits() == 1`, or an async one,
/// `async || get(addr, "/").await.text() == "b"` (an async closure may
/// borrow from the test and update what it captured). One function serves
/// both so that no test rolls its own polling loop.
pub async fn eventually<Kind>(timeout: Duration, mut cond: impl Condition<Kind>) -> bool {
    let end = Instant::now() + timeout;
    loop {
        if cond.holds().await {
            return true;
        }
        if Instant::now() > end {
            return false;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// A condition [`eventually`] can wait for. `Kind` only tells the two
/// implementations apart (a closure is one or the other, never both);
/// callers never name it.
pub trait Condition<Kind> {
    /// Whether the condition holds now.
    fn holds(&mut self) -> impl Future<Output = bool>;
}

/// [`Condition`] kind of a plain closure.
pub enum Plain {}

/// [`Condition`] kind of an async closure.
pub enum Async {}

impl<F: FnMut() -> bool> Condition<Plain> for F {
    fn holds(&mut self) -> impl Future<Output = bool> {
        std::future::ready(self())
    }
}

impl<F: AsyncFnMut() -> bool> Condition<Async> for F {
    fn holds(&mut self) -> impl Future<Output = bool> {
        self()
    }
}
