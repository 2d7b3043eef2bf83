//! "Did you mean ...?": the closest known name to a misspelt one.
//!
//! One edit distance for every suggestion ginx makes (unknown keys, upstream
//! names, enum-like values), so that they all agree on what "close" is.

/// The candidate closest to `word`, if it is close enough to be a likely
/// typo: at most one edit per three characters (at least one edit), where a
/// swap of two neighbouring characters counts as one edit. Case is ignored.
/// Ties go to the first candidate.
pub(crate) fn closest<'a, I>(word: &str, candidates: I) -> Option<&'a str>
where
    I: IntoIterator<Item = &'a str>,
{
    let word_lower = word.to_lowercase();
    let mut best: Option<(usize, &'a str)> = None;
    for candidate in candidates {
        if candidate == word {
            continue;
        }
        let d = distance(&word_lower, &candidate.to_lowercase());
        let longest = word.chars().count().max(candidate.chars().count());
        let limit = (longest / 3).max(1);
        if d <= limit && best.is_none_or(|(b, _)| d < b) {
            best = Some((d, candidate));
        }
    }
    best.map(|(_, c)| c)
}

/// Optimal string alignment distance: insertions, deletions, substitutions
/// and transpositions of adjacent characters, each costing one.
pub(crate) fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    // Three rows: two back (for transpositions), one back, current.
    let mut before: Vec<usize> = vec![0; b.len() + 1];
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    let mut current: Vec<usize> = vec![0; b.len() + 1];
    for i in 1..=a.len() {
        current[0] = i;
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut d = (previous[j] + 1)
                .min(current[j - 1] + 1)
                .min(previous[j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d = d.min(before[j - 2] + 1);
            }
            current[j] = d;
        }
        std::mem::swap(&mut before, &mut previous);
        std::mem::swap(&mut previous, &mut current);
    }
    previous[b.len()]
}

/// `: did you mean `X`?` when a candidate is close to `word`, else nothing:
/// ready to append to a message.
pub(crate) fn did_you_mean<'a, I>(word: &str, candidates: I) -> Option<String>
where
    I: IntoIterator<Item = &'a str>,
{
    closest(word, candidates).map(|c| format!("did you mean `{c}`?"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances() {
        assert_eq!(distance("", ""), 0);
        assert_eq!(distance("abc", ""), 3);
        assert_eq!(distance("kitten", "sitting"), 3);
        assert_eq!(distance("wieght", "weight"), 1);
        assert_eq!(distance("ap", "app"), 1);
        assert_eq!(distance("ça", "ca"), 1);
    }

    #[test]
    fn closest_only_when_close() {
        let keys = ["bind", "upstream", "route"];
        assert_eq!(closest("upstreem", keys), Some("upstream"));
        assert_eq!(closest("Upstream", keys), Some("upstream"));
        assert_eq!(closest("bogus", keys), None);
        assert_eq!(closest("ap", ["app", "api"]), Some("app"));
        assert_eq!(closest("x", ["app"]), None);
        assert_eq!(
            closest("leastconn", ["round_robin", "least_conn", "random"]),
            Some("least_conn")
        );
        // An exact match is not a suggestion.
        assert_eq!(closest("bind", keys), None);
        assert_eq!(
            did_you_mean("rout", keys).as_deref(),
            Some("did you mean `route`?")
        );
    }
}
