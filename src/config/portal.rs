//! `[portal]`: the operator's brand on the portal's pages (title, logo,
//! style sheet, templates, footer links) and the language pages fall back
//! to. The files are checked here; `pages` reads and serves them.

use super::files::readable_file;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::ConfigError;

/// The serde mirror of `[portal]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawPortal {
    pub title: String,
    /// An image, served under `{prefix}/static/brand/`.
    pub logo_file: String,
    /// A style sheet linked after the built-in one.
    pub css_file: String,
    /// Templates named as the built-in ones replace them; `i18n/<tag>.toml`
    /// adds or changes a language.
    pub templates_dir: String,
    pub footer_links: Vec<RawFooterLink>,
    pub default_language: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFooterLink {
    pub text: String,
    pub url: String,
}

impl Default for RawPortal {
    fn default() -> Self {
        RawPortal {
            title: "authgate".into(),
            logo_file: String::new(),
            css_file: String::new(),
            templates_dir: String::new(),
            footer_links: Vec::new(),
            default_language: "en".into(),
        }
    }
}

/// `[portal]`, validated.
#[derive(Debug, Clone)]
pub struct PortalConfig {
    /// In every page's `<title>` and the logo's `alt`.
    pub title: String,
    pub logo: Option<Logo>,
    pub css_file: Option<PathBuf>,
    pub templates_dir: Option<PathBuf>,
    pub footer_links: Vec<FooterLink>,
    /// Lower case; whether a catalogue exists is checked when the pages
    /// load (an operator's `templates_dir` may add it).
    pub default_language: String,
}

/// `portal.logo_file` and the image type its name says.
#[derive(Debug, Clone)]
pub struct Logo {
    pub path: PathBuf,
    pub image: ImageType,
}

/// The image types a logo may have: what browsers show in `<img>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageType {
    Png,
    Jpeg,
    Gif,
    Webp,
    Svg,
    Ico,
}

impl ImageType {
    fn of(path: &Path) -> Option<Self> {
        let extension = path.extension()?.to_str()?.to_ascii_lowercase();
        Some(match extension.as_str() {
            "png" => ImageType::Png,
            "jpg" | "jpeg" => ImageType::Jpeg,
            "gif" => ImageType::Gif,
            "webp" => ImageType::Webp,
            "svg" => ImageType::Svg,
            "ico" => ImageType::Ico,
            _ => return None,
        })
    }

    pub fn content_type(self) -> &'static str {
        match self {
            ImageType::Png => "image/png",
            ImageType::Jpeg => "image/jpeg",
            ImageType::Gif => "image/gif",
            ImageType::Webp => "image/webp",
            ImageType::Svg => "image/svg+xml",
            ImageType::Ico => "image/x-icon",
        }
    }

    /// The file name it is served under.
    pub fn extension(self) -> &'static str {
        match self {
            ImageType::Png => "png",
            ImageType::Jpeg => "jpg",
            ImageType::Gif => "gif",
            ImageType::Webp => "webp",
            ImageType::Svg => "svg",
            ImageType::Ico => "ico",
        }
    }
}

#[derive(Debug, Clone)]
pub struct FooterLink {
    pub text: String,
    pub url: url::Url,
}

type Result<T> = std::result::Result<T, ConfigError>;

pub(super) fn portal(raw: &RawPortal) -> Result<PortalConfig> {
    let title = raw.title.trim();
    if title.is_empty() {
        return Err(ConfigError::at("portal.title", "must not be empty"));
    }
    Ok(PortalConfig {
        title: title.to_owned(),
        logo: given(&raw.logo_file).map(logo).transpose()?,
        css_file: given(&raw.css_file).map(style_sheet).transpose()?,
        templates_dir: given(&raw.templates_dir).map(templates_dir).transpose()?,
        footer_links: raw
            .footer_links
            .iter()
            .enumerate()
            .map(|(i, link)| footer_link(i, link))
            .collect::<Result<_>>()?,
        default_language: default_language(&raw.default_language)?,
    })
}

fn given(value: &str) -> Option<&str> {
    Some(value.trim()).filter(|v| !v.is_empty())
}

fn logo(value: &str) -> Result<Logo> {
    let key = "portal.logo_file";
    let path = readable_file(key, value)?;
    let image = ImageType::of(&path).ok_or_else(|| {
        ConfigError::at(
            key,
            format!("{value:?} is not an image: the name must end in .png, .jpg, .jpeg, .gif, .webp, .svg or .ico"),
        )
    })?;
    Ok(Logo { path, image })
}

fn style_sheet(value: &str) -> Result<PathBuf> {
    let key = "portal.css_file";
    let path = readable_file(key, value)?;
    if path.extension().and_then(|e| e.to_str()) != Some("css") {
        return Err(ConfigError::at(
            key,
            format!("{value:?} is not a style sheet: the name must end in .css"),
        ));
    }
    Ok(path)
}

fn templates_dir(value: &str) -> Result<PathBuf> {
    let path = Path::new(value);
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_dir() => Ok(path.to_owned()),
        Ok(_) => Err(ConfigError::at(
            "portal.templates_dir",
            format!("{value:?} is not a directory"),
        )),
        Err(err) => Err(ConfigError::at(
            "portal.templates_dir",
            format!("{value:?} cannot be read: {err}"),
        )),
    }
}

/// Only http(s) URLs: a `javascript:` link would run on the portal's
/// origin when clicked.
fn footer_link(index: usize, raw: &RawFooterLink) -> Result<FooterLink> {
    let key = format!("portal.footer_links[{index}]");
    let text = raw.text.trim();
    if text.is_empty() {
        return Err(ConfigError::at(format!("{key}.text"), "must not be empty"));
    }
    let url = url::Url::parse(raw.url.trim())
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some())
        .ok_or_else(|| {
            ConfigError::at(
                format!("{key}.url"),
                format!("{:?} is not an absolute http:// or https:// URL", raw.url),
            )
        })?;
    Ok(FooterLink {
        text: text.to_owned(),
        url,
    })
}

fn default_language(value: &str) -> Result<String> {
    let tag = value.trim().to_ascii_lowercase();
    let well_formed = !tag.is_empty()
        && tag.split('-').all(|part| {
            (1..=8).contains(&part.len()) && part.bytes().all(|b| b.is_ascii_alphanumeric())
        });
    if !well_formed {
        return Err(ConfigError::at(
            "portal.default_language",
            format!("{value:?} is not a language tag, such as \"en\" or \"de\""),
        ));
    }
    Ok(tag)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(raw: &RawPortal, key: &str, text: &str) {
        let err = portal(raw).expect_err("should be refused");
        assert_eq!(err.key(), Some(key), "{err}");
        assert!(err.to_string().contains(text), "{err}");
    }

    #[test]
    fn the_defaults_are_the_plain_portal() {
        let portal = portal(&RawPortal::default()).unwrap();
        assert_eq!(portal.title, "authgate");
        assert!(portal.logo.is_none() && portal.css_file.is_none());
        assert!(portal.templates_dir.is_none() && portal.footer_links.is_empty());
        assert_eq!(portal.default_language, "en");
    }

    #[test]
    fn files_must_exist_and_have_their_type() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, "x").unwrap();
            path.to_string_lossy().into_owned()
        };
        let mut raw = RawPortal {
            logo_file: write("logo.PNG"),
            css_file: write("brand.css"),
            templates_dir: dir.path().to_string_lossy().into_owned(),
            ..RawPortal::default()
        };
        let ok = portal(&raw).unwrap();
        assert_eq!(ok.logo.unwrap().image.content_type(), "image/png");
        raw.logo_file = write("logo.html");
        refused(&raw, "portal.logo_file", "is not an image");
        raw.logo_file = dir.path().join("none.png").to_string_lossy().into_owned();
        refused(&raw, "portal.logo_file", "cannot be read");
        raw.logo_file = String::new();
        raw.css_file = write("brand.js");
        refused(&raw, "portal.css_file", "must end in .css");
        raw.css_file = String::new();
        raw.templates_dir = write("file");
        refused(&raw, "portal.templates_dir", "is not a directory");
    }

    #[test]
    fn footer_links_are_http_only() {
        let link = |url: &str| RawFooterLink {
            text: "Help".into(),
            url: url.into(),
        };
        let mut raw = RawPortal {
            footer_links: vec![
                link("https://example.com/help"),
                link("javascript:alert(1)"),
            ],
            ..RawPortal::default()
        };
        refused(&raw, "portal.footer_links[1].url", "javascript:alert(1)");
        raw.footer_links[1] = link("/relative");
        refused(&raw, "portal.footer_links[1].url", "absolute");
        raw.footer_links[1] = RawFooterLink {
            text: " ".into(),
            url: "http://example.com".into(),
        };
        refused(&raw, "portal.footer_links[1].text", "empty");
        raw.footer_links.pop();
        assert_eq!(portal(&raw).unwrap().footer_links[0].text, "Help");
    }

    #[test]
    fn title_and_language_are_checked() {
        let raw = RawPortal {
            title: " ".into(),
            ..RawPortal::default()
        };
        refused(&raw, "portal.title", "empty");
        let raw = RawPortal {
            default_language: "de_DE".into(),
            ..RawPortal::default()
        };
        refused(&raw, "portal.default_language", "language tag");
        let raw = RawPortal {
            default_language: "DE".into(),
            ..RawPortal::default()
        };
        assert_eq!(portal(&raw).unwrap().default_language, "de");
    }
}
