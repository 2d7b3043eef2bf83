//! The words of the configuration's enumerations, one table per setting.
//!
//! This module owns the words an operator writes for a choice (`balance =
//! "least_conn"`) and the value each stands for. Validation accepts them
//! (and lists them in its messages), the JSON Schema offers them, and
//! `--check --diff` and reload logs print them back (each enum's `name()`,
//! which the admin endpoint can use too), all from the tables here, so that
//! no two places can disagree on a spelling.
//! What a value does is the data plane's business.

use std::fmt;
use std::mem::discriminant;

use super::{AccessLogFormat, Balance, CheckKind, HashKey, LogFormat, OnAllDown, RetryOn, UpstreamProtocol};

/// The words of one setting, each with the value it stands for, in the
/// order messages list them. An alias comes after the word it stands for,
/// so that a value is always printed as its main word.
pub(crate) struct Words<T: 'static>(&'static [(&'static str, T)]);

impl<T> Words<T> {
    /// Every word, aliases included: what the setting accepts.
    pub(crate) fn all(&self) -> Vec<&'static str> {
        self.0.iter().map(|(word, _)| *word).collect()
    }

    /// The value `word` stands for.
    pub(crate) fn value(&self, word: &str) -> Option<&'static T> {
        self.0.iter().find(|(w, _)| *w == word).map(|(_, v)| v)
    }

    /// The main word of the first value `is` accepts.
    fn word(&self, is: impl Fn(&T) -> bool) -> &'static str {
        self.0
            .iter()
            .find(|(_, v)| is(v))
            .map(|(word, _)| *word)
            .expect("every value has a word in its table (pinned by the tests)")
    }
}

/// `log_level`: kept as its (lowercased) word, which the log filter takes.
pub(crate) const LOG_LEVELS: [&str; 5] = ["trace", "debug", "info", "warn", "error"];

/// `log_format` of ginx's own log.
pub(crate) static LOG_FORMAT: Words<LogFormat> =
    Words(&[("text", LogFormat::Text), ("json", LogFormat::Json)]);

/// `access_log`'s `format`.
pub(crate) static ACCESS_LOG_FORMAT: Words<AccessLogFormat> = Words(&[
    ("combined", AccessLogFormat::Combined),
    ("json", AccessLogFormat::Json),
    ("text", AccessLogFormat::Text),
]);

/// `balance`. The key of `hash` is its own setting (`hash = "..."`): the
/// one here only stands for the policy.
pub(crate) static BALANCE: Words<Balance> = Words(&[
    ("round_robin", Balance::RoundRobin),
    ("weighted_round_robin", Balance::RoundRobin),
    ("least_conn", Balance::LeastConn),
    ("random", Balance::Random),
    ("hash", Balance::Hash(HashKey::ClientIp)),
]);

/// `protocol` of an upstream.
pub(crate) static PROTOCOL: Words<UpstreamProtocol> = Words(&[
    ("http1", UpstreamProtocol::Http1),
    ("h2", UpstreamProtocol::H2),
    ("h2c", UpstreamProtocol::H2c),
]);

/// `on_all_down`.
pub(crate) static ON_ALL_DOWN: Words<OnAllDown> =
    Words(&[("fail", OnAllDown::Fail), ("try_all", OnAllDown::TryAll)]);

/// A health check's `type`. The `path` of `http` is its own setting.
pub(crate) static CHECK_KIND: Words<CheckKind> = Words(&[
    ("http", CheckKind::Http { path: String::new() }),
    ("tcp", CheckKind::Tcp),
]);

/// A health check's `initial_state`: whether a new server starts up.
pub(crate) static INITIAL_STATE: Words<bool> = Words(&[("up", true), ("down", false)]);

/// The word of an `initial_state`.
pub(crate) fn initial_state(up: bool) -> &'static str {
    INITIAL_STATE.word(|v| *v == up)
}

impl LogFormat {
    /// The word as written in the configuration.
    pub(crate) fn name(self) -> &'static str {
        LOG_FORMAT.word(|v| *v == self)
    }
}

impl AccessLogFormat {
    /// The word as written in the configuration.
    pub(crate) fn name(self) -> &'static str {
        ACCESS_LOG_FORMAT.word(|v| *v == self)
    }
}

impl Balance {
    /// The policy's word as written in the configuration (`hash` without
    /// its key).
    pub(crate) fn name(&self) -> &'static str {
        BALANCE.word(|v| discriminant(v) == discriminant(self))
    }
}

impl UpstreamProtocol {
    /// The word as written in the configuration.
    pub(crate) fn name(self) -> &'static str {
        PROTOCOL.word(|v| *v == self)
    }
}

impl OnAllDown {
    /// The word as written in the configuration.
    pub(crate) fn name(self) -> &'static str {
        ON_ALL_DOWN.word(|v| *v == self)
    }
}

impl CheckKind {
    /// The `type` as written in the configuration (`http` without its path).
    pub(crate) fn name(&self) -> &'static str {
        CHECK_KIND.word(|v| discriminant(v) == discriminant(self))
    }
}

impl RetryOn {
    /// Every `retry_on` entry with the flag it sets, in the order messages
    /// list them: the one table of these words.
    pub(crate) fn flags_mut(&mut self) -> [(&'static str, &mut bool); 4] {
        [
            ("connect", &mut self.connect),
            ("reset", &mut self.reset),
            ("timeout", &mut self.timeout),
            ("5xx", &mut self.status_5xx),
        ]
    }

    /// Every entry with whether it is on.
    pub(crate) fn flags(mut self) -> [(&'static str, bool); 4] {
        self.flags_mut().map(|(word, on)| (word, *on))
    }
}

impl fmt::Display for HashKey {
    /// As written after `hash =`: `client_ip`, `uri`, `header:NAME`,
    /// `cookie:NAME`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HashKey::ClientIp => f.write_str("client_ip"),
            HashKey::Uri => f.write_str("uri"),
            HashKey::Header(name) => write!(f, "header:{name}"),
            HashKey::Cookie(name) => write!(f, "cookie:{name}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every value prints as a word its table maps back to it.
    #[test]
    fn every_value_has_its_word() {
        for f in [LogFormat::Text, LogFormat::Json] {
            assert_eq!(LOG_FORMAT.value(f.name()), Some(&f));
        }
        for f in [
            AccessLogFormat::Text,
            AccessLogFormat::Combined,
            AccessLogFormat::Json,
        ] {
            assert_eq!(ACCESS_LOG_FORMAT.value(f.name()), Some(&f));
        }
        for p in [
            UpstreamProtocol::Http1,
            UpstreamProtocol::H2,
            UpstreamProtocol::H2c,
        ] {
            assert_eq!(PROTOCOL.value(p.name()), Some(&p));
        }
        for o in [OnAllDown::Fail, OnAllDown::TryAll] {
            assert_eq!(ON_ALL_DOWN.value(o.name()), Some(&o));
        }
        let balances = [
            (Balance::RoundRobin, "round_robin"),
            (Balance::LeastConn, "least_conn"),
            (Balance::Random, "random"),
            (Balance::Hash(HashKey::Header("x-user".into())), "hash"),
        ];
        for (b, word) in balances {
            assert_eq!(b.name(), word);
        }
        assert_eq!(BALANCE.value("weighted_round_robin"), Some(&Balance::RoundRobin));
        let path = CheckKind::Http {
            path: "/health".into(),
        };
        assert_eq!((path.name(), CheckKind::Tcp.name()), ("http", "tcp"));
        assert_eq!((initial_state(true), initial_state(false)), ("up", "down"));
        let all = RetryOn {
            status_5xx: true,
            ..RetryOn::default()
        };
        assert_eq!(
            all.flags().map(|(word, _)| word),
            ["connect", "reset", "timeout", "5xx"]
        );
    }
}
