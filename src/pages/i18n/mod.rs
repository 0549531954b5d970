//! The portal's words, one message catalogue per language (TOML, a
//! `key = "text"` per message under `[page]` tables), parsed once at start.
//! English and German are built in; an operator adds a language, or
//! changes some words, with `templates_dir/i18n/<tag>.toml`. A key a
//! catalogue lacks falls back to English.
//!
//! Messages that the gateway itself puts on a page (its errors) are keyed
//! by their English text under `[message]`, gettext-style: a message with
//! no translation is shown in English.

mod accept_language;

use std::collections::HashMap;

pub use accept_language::preferred_tags;

/// The language every catalogue falls back to.
pub const ENGLISH: Language = Language(0);

const BUILT_IN: [(&str, &str); 2] = [
    ("en", include_str!("en.toml")),
    ("de", include_str!("de.toml")),
];

/// A language the portal can speak: an index into [`Catalogues`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Language(usize);

/// A catalogue that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CatalogueError {
    #[error("catalogue {tag}: not TOML: {problem}")]
    Syntax { tag: String, problem: String },
    #[error("catalogue {tag}: {key}: not a string")]
    NotText { tag: String, key: String },
    #[error("catalogue {tag}: the file name is not a language tag (like de or pt-br)")]
    BadTag { tag: String },
}

/// Every language's messages, flattened to dotted keys (`login.title`).
pub struct Catalogues {
    /// English first: [`ENGLISH`] is index 0.
    languages: Vec<Catalogue>,
}

struct Catalogue {
    /// Lower case, as in `<html lang>`.
    tag: String,
    texts: HashMap<String, String>,
}

impl Catalogues {
    /// English and German.
    pub fn built_in() -> Self {
        let mut catalogues = Catalogues {
            languages: Vec::new(),
        };
        for (tag, source) in BUILT_IN {
            // Both are part of the binary and covered by tests.
            catalogues
                .add(tag, source)
                .unwrap_or_else(|e| panic!("built-in {e}"));
        }
        catalogues
    }

    /// Adds the language `tag`, or, when it is known, puts `source`'s
    /// messages over its own.
    pub fn add(&mut self, tag: &str, source: &str) -> Result<(), CatalogueError> {
        let tag = tag.to_ascii_lowercase();
        if !is_language_tag(&tag) {
            return Err(CatalogueError::BadTag { tag });
        }
        let table: toml::Table = toml::from_str(source).map_err(|e| CatalogueError::Syntax {
            tag: tag.clone(),
            problem: e.message().to_owned(),
        })?;
        let mut texts = HashMap::new();
        flatten(&tag, "", table, &mut texts)?;
        match self.language(&tag) {
            Some(Language(known)) => self.languages[known].texts.extend(texts),
            None => self.languages.push(Catalogue { tag, texts }),
        }
        Ok(())
    }

    /// The language called `tag` exactly (any case).
    pub fn language(&self, tag: &str) -> Option<Language> {
        self.languages
            .iter()
            .position(|c| c.tag.eq_ignore_ascii_case(tag))
            .map(Language)
    }

    /// The first language of `Accept-Language` (by q-value) that has a
    /// catalogue: the tag itself, else its primary language (`de-DE`
    /// gets `de`); `fallback` when none has one.
    pub fn negotiate(&self, accept_language: Option<&str>, fallback: Language) -> Language {
        accept_language
            .into_iter()
            .flat_map(preferred_tags)
            .find_map(|tag| {
                let primary = tag.split('-').next().unwrap_or(tag);
                self.language(tag).or_else(|| self.language(primary))
            })
            .unwrap_or(fallback)
    }

    pub fn tag(&self, language: Language) -> &str {
        &self.languages[language.0].tag
    }

    /// The text of `key` in `language`, else in English.
    pub fn text(&self, language: Language, key: &str) -> Option<&str> {
        let own = self.languages.get(language.0)?.texts.get(key);
        own.or_else(|| self.languages[ENGLISH.0].texts.get(key))
            .map(String::as_str)
    }

    /// A message the gateway put on a page, translated when the
    /// catalogue knows it.
    pub fn message<'a>(&'a self, language: Language, english: &'a str) -> &'a str {
        self.languages[language.0]
            .texts
            .get(&format!("message.{english}"))
            .map_or(english, String::as_str)
    }

    /// Every key of `language`'s own catalogue (not the fallbacks).
    pub fn keys(&self, language: Language) -> impl Iterator<Item = &str> {
        self.languages[language.0].texts.keys().map(String::as_str)
    }

    /// Every language, English first.
    pub fn languages(&self) -> impl Iterator<Item = Language> {
        (0..self.languages.len()).map(Language)
    }
}

/// `de`, `pt-br`, `zh-hant`: letters and digits in parts of up to 8,
/// as BCP 47 has them (no check of the registry).
fn is_language_tag(tag: &str) -> bool {
    tag.split('-').all(|part| {
        (1..=8).contains(&part.len()) && part.bytes().all(|b| b.is_ascii_alphanumeric())
    }) && tag
        .split('-')
        .next()
        .is_some_and(|p| p.bytes().all(|b| b.is_ascii_alphabetic()))
}

fn flatten(
    tag: &str,
    prefix: &str,
    table: toml::Table,
    into: &mut HashMap<String, String>,
) -> Result<(), CatalogueError> {
    for (name, value) in table {
        let key = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}.{name}")
        };
        match value {
            toml::Value::String(text) => {
                into.insert(key, text);
            }
            toml::Value::Table(inner) => flatten(tag, &key, inner, into)?,
            _ => {
                return Err(CatalogueError::NotText {
                    tag: tag.to_owned(),
                    key,
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn german_is_complete_and_says_nothing_english_does_not() {
        let catalogues = Catalogues::built_in();
        let german = catalogues.language("de").unwrap();
        let mut english: Vec<&str> = catalogues.keys(ENGLISH).collect();
        let mut german: Vec<&str> = catalogues.keys(german).collect();
        english.sort_unstable();
        german.sort_unstable();
        let english_words: Vec<&str> = english
            .iter()
            .copied()
            .filter(|k| !k.starts_with("message."))
            .collect();
        let german_words: Vec<&str> = german
            .iter()
            .copied()
            .filter(|k| !k.starts_with("message."))
            .collect();
        assert_eq!(english_words, german_words);
        assert!(english_words.len() > 40, "{english_words:?}");
    }

    #[test]
    fn a_missing_key_falls_back_to_english() {
        let mut catalogues = Catalogues::built_in();
        catalogues
            .add("fr", "[login]\ntitle = \"Connexion\"")
            .unwrap();
        let french = catalogues.language("FR").unwrap();
        assert_eq!(catalogues.text(french, "login.title"), Some("Connexion"));
        assert_eq!(catalogues.text(french, "login.password"), Some("Password"));
        assert_eq!(catalogues.text(french, "no.such.key"), None);
        assert_eq!(catalogues.tag(french), "fr");
    }

    #[test]
    fn an_operator_catalogue_changes_words_of_a_known_language() {
        let mut catalogues = Catalogues::built_in();
        let languages = catalogues.languages().count();
        catalogues
            .add("de", "[login]\ntitle = \"Willkommen\"")
            .unwrap();
        assert_eq!(catalogues.languages().count(), languages);
        let german = catalogues.language("de").unwrap();
        assert_eq!(catalogues.text(german, "login.title"), Some("Willkommen"));
        assert_eq!(catalogues.text(german, "login.password"), Some("Passwort"));
    }

    #[test]
    fn bad_catalogues_are_refused_with_their_key() {
        let mut catalogues = Catalogues::built_in();
        let err = catalogues.add("fr", "[login]\ntitle = 3").unwrap_err();
        assert!(err.to_string().contains("login.title"), "{err}");
        assert!(catalogues.add("fr", "title = ").is_err());
        assert!(catalogues.add("../x", "").is_err());
        assert!(catalogues.add("", "").is_err());
        assert!(catalogues.add("pt-br", "").is_ok());
    }

    #[test]
    fn negotiation_follows_q_values_and_primary_languages() {
        let catalogues = Catalogues::built_in();
        let german = catalogues.language("de").unwrap();
        let pick = |header| catalogues.negotiate(Some(header), ENGLISH);
        assert_eq!(pick("de"), german);
        assert_eq!(pick("de-DE,de;q=0.9,en;q=0.8"), german);
        assert_eq!(pick("en;q=0.5, de-AT;q=0.7"), german);
        assert_eq!(pick("fr, de;q=0.1"), german);
        assert_eq!(pick("fr, en;q=0.9, de;q=0.1"), ENGLISH);
        assert_eq!(pick("de;q=0, en;q=0.1"), ENGLISH);
        assert_eq!(pick("fr"), ENGLISH);
        assert_eq!(catalogues.negotiate(Some("fr"), german), german);
        assert_eq!(catalogues.negotiate(None, german), german);
    }

    #[test]
    fn messages_are_translated_by_their_english_text() {
        let catalogues = Catalogues::built_in();
        let german = catalogues.language("de").unwrap();
        let text = "Invalid email or password.";
        assert_ne!(catalogues.message(german, text), text);
        assert_eq!(catalogues.message(ENGLISH, text), text);
        assert_eq!(catalogues.message(german, "Unknown."), "Unknown.");
    }
}
