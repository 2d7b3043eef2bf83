//! Configuration snippets: the TOML most tests start from.
//!
//! TOML is ginx's interface, so a test that is about routes or TLS writes
//! them out; what is here is only what many tests repeat word for word
//! (a listener `web` on port 0 with a default upstream `app`, an upstream
//! with its servers, an admin endpoint on port 0). This module owns text
//! only: writing it to files and starting ginx on it are [`super::cli`]'s
//! and [`super::ginx`]'s.

use std::fmt::Display;
use std::net::SocketAddr;

/// A listener `web` on port 0 whose default upstream is `app`.
const WEB: &str = "[listener.web]\nbind = \"127.0.0.1:0\"\nupstream = \"app\"\n";

/// An admin endpoint on port 0.
pub const ADMIN: &str = "[admin]\nbind = \"127.0.0.1:0\"\n";

/// `["A", "B"]`: a TOML array of server addresses.
pub fn servers<A: Display>(addrs: &[A]) -> String {
    let quoted: Vec<String> = addrs.iter().map(|a| format!("\"{a}\"")).collect();
    format!("[{}]", quoted.join(", "))
}

/// `[upstream.NAME]` with `servers`.
pub fn upstream<A: Display>(name: &str, addrs: &[A]) -> String {
    format!("[upstream.{name}]\nservers = {}\n", servers(addrs))
}

/// A listener `web` on port 0 whose default upstream `app` is
/// `upstream_body` (its `servers` and other keys).
pub fn web(upstream_body: &str) -> String {
    format!("{WEB}\n[upstream.app]\n{upstream_body}")
}

/// A `[listener.web]` on port 0 whose default upstream `app` has `servers`.
pub fn one_listener(addrs: &[SocketAddr]) -> String {
    web(&format!("servers = {}\n", servers(addrs)))
}

/// A main file with the listener of [`web`] that includes `conf.d/*.toml`,
/// where the test defines `app` (with [`upstream`]).
pub fn web_with_includes() -> String {
    format!("include = [\"conf.d/*.toml\"]\n\n{WEB}")
}

/// `text` with [`ADMIN`] added, when it is valid TOML without an `admin`
/// table; `None` otherwise (text that does not parse is left as the test
/// wrote it, so ginx reports exactly its errors).
pub(super) fn with_admin(text: &str) -> Option<String> {
    let table: ::toml::Table = text.parse().ok()?;
    (!table.contains_key("admin")).then(|| format!("{text}\n{ADMIN}"))
}

/// Whether `text` is valid TOML with an `admin` table.
pub(super) fn has_admin(text: &str) -> bool {
    text.parse::<::toml::Table>()
        .is_ok_and(|table| table.contains_key("admin"))
}
