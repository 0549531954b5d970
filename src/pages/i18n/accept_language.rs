//! `Accept-Language` (RFC 9110 §12.5.4): the tags a browser asks for, best
//! first.

/// The header's language tags by descending q-value (ties keep their
/// order), without those of `q=0` and without `*`. A malformed q-value
/// counts as 0: asked for in doubt, never preferred.
pub fn preferred_tags(header: &str) -> impl Iterator<Item = &str> {
    let mut tags: Vec<(&str, u16)> = header
        .split(',')
        .take(MAX_TAGS)
        .filter_map(|item| {
            let mut parts = item.split(';');
            let tag = parts.next()?.trim();
            let q = parts
                .find_map(|p| p.trim().strip_prefix("q=").or(p.trim().strip_prefix("Q=")))
                .map_or(Some(1000), quality)
                .unwrap_or(0);
            (q > 0 && !tag.is_empty() && tag != "*").then_some((tag, q))
        })
        .collect();
    tags.sort_by_key(|&(_, q)| std::cmp::Reverse(q));
    tags.into_iter().map(|(tag, _)| tag)
}

/// A header longer than this is someone else's problem: the first tags
/// are the ones that count.
const MAX_TAGS: usize = 16;

/// `q` in thousandths: `0`, `0.5`, `1`, `1.000`.
fn quality(text: &str) -> Option<u16> {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    if fraction.len() > 3 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let thousandths = format!("{fraction:0<3}").parse::<u16>().ok()?;
    match whole {
        "0" => Some(thousandths),
        "1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(header: &str) -> Vec<&str> {
        preferred_tags(header).collect()
    }

    #[test]
    fn tags_come_best_first() {
        assert_eq!(tags("de"), ["de"]);
        assert_eq!(tags("de-DE,de;q=0.9,en;q=0.8"), ["de-DE", "de", "en"]);
        assert_eq!(tags("en;q=0.5, fr;q=0.7 ,de"), ["de", "fr", "en"]);
        assert_eq!(tags("fr;q=0.5, de;q=0.5"), ["fr", "de"], "ties keep order");
        assert_eq!(tags("en; q=0.8, de"), ["de", "en"], "space before q");
    }

    #[test]
    fn refused_and_wildcard_tags_are_dropped() {
        assert_eq!(tags("de;q=0, en"), ["en"]);
        assert_eq!(tags("*, de;q=0.1"), ["de"]);
        assert_eq!(tags(""), Vec::<&str>::new());
        assert_eq!(tags(" , ;q=1"), Vec::<&str>::new());
    }

    #[test]
    fn q_values_are_read_strictly() {
        assert_eq!(quality("1"), Some(1000));
        assert_eq!(quality("1.000"), Some(1000));
        assert_eq!(quality("0.5"), Some(500));
        assert_eq!(quality("0.05"), Some(50));
        assert_eq!(quality("0"), Some(0));
        assert_eq!(quality("1.5"), None);
        assert_eq!(quality("2"), None);
        assert_eq!(quality("0.1234"), None);
        assert_eq!(quality("x"), None);
        assert_eq!(
            tags("de;q=abc, en;q=0.1"),
            ["en"],
            "malformed q counts as 0"
        );
    }
}
