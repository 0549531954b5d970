//! The operator's brand (`[portal]`): title, logo, style sheet and footer
//! links, and what `templates_dir` holds (templates, `i18n/<tag>.toml`).
//! Everything is read once at start and served from memory, from the
//! gateway's own origin, so the pages' Content-Security-Policy (`'self'`)
//! covers it.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use minijinja::{Environment, context};

use super::StaticFile;
use super::assets::fnv1a;
use super::i18n::{CatalogueError, Catalogues};
use crate::config::{ImageType, PortalConfig};

/// Why the pages cannot be made from `[portal]`; each names the key.
#[derive(Debug, thiserror::Error)]
pub enum PagesError {
    #[error("{key}: {}: cannot be read: {source}", path.display())]
    Read {
        key: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("portal.templates_dir: template {name}: {detail}")]
    Template { name: String, detail: String },
    #[error("portal.templates_dir: {}: {source}", path.display())]
    Catalogue {
        path: PathBuf,
        source: CatalogueError,
    },
    #[error("portal.logo_file: {}: the content is not a {} image", path.display(), image.extension())]
    NotAnImage { path: PathBuf, image: ImageType },
    #[error(
        "portal.default_language: no catalogue for {0:?} (built in: en, de; templates_dir/i18n/{0}.toml adds one)"
    )]
    UnknownLanguage(String),
}

impl PagesError {
    pub(super) fn template(name: &str, err: &minijinja::Error) -> Self {
        PagesError::Template {
            name: name.to_owned(),
            detail: err.to_string(),
        }
    }
}

/// The brand as the pages show it.
pub(super) struct Brand {
    title: String,
    logo: Option<BrandFile>,
    style_sheet: Option<BrandFile>,
    /// `(text, url)`.
    footer_links: Vec<(String, String)>,
}

impl Default for Brand {
    fn default() -> Self {
        Brand {
            title: "authgate".to_owned(),
            logo: None,
            style_sheet: None,
            footer_links: Vec::new(),
        }
    }
}

/// An operator's file, served under `{prefix}/static/brand/…`.
struct BrandFile {
    /// After `static/`: `brand/logo.png`.
    name: String,
    content_type: &'static str,
    body: Bytes,
    /// With a hash of the content, as the built-in assets.
    url: String,
}

impl BrandFile {
    fn read(
        key: &'static str,
        path: &Path,
        name: String,
        content_type: &'static str,
        prefix: &str,
    ) -> Result<Self, PagesError> {
        let body = std::fs::read(path).map_err(|source| PagesError::Read {
            key,
            path: path.to_owned(),
            source,
        })?;
        let url = format!("{prefix}/static/{name}?v={:016x}", fnv1a(&body));
        Ok(BrandFile {
            name,
            content_type,
            body: Bytes::from(body),
            url,
        })
    }
}

impl Brand {
    pub(super) fn load(portal: &PortalConfig, prefix: &str) -> Result<Self, PagesError> {
        let logo = portal.logo.as_ref().map(|logo| {
            let name = format!("brand/logo.{}", logo.image.extension());
            let content_type = logo.image.content_type();
            let file = BrandFile::read("portal.logo_file", &logo.path, name, content_type, prefix)?;
            match is_image(logo.image, &file.body) {
                true => Ok(file),
                false => Err(PagesError::NotAnImage {
                    path: logo.path.clone(),
                    image: logo.image,
                }),
            }
        });
        let style_sheet = portal.css_file.as_ref().map(|path| {
            let name = "brand/portal.css".to_owned();
            let content_type = "text/css; charset=utf-8";
            BrandFile::read("portal.css_file", path, name, content_type, prefix)
        });
        Ok(Brand {
            title: portal.title.clone(),
            logo: logo.transpose()?,
            style_sheet: style_sheet.transpose()?,
            footer_links: portal
                .footer_links
                .iter()
                .map(|link| (link.text.clone(), link.url.to_string()))
                .collect(),
        })
    }

    pub(super) fn add_globals(&self, env: &mut Environment<'static>) {
        env.add_global("portal_title", self.title.clone());
        if let Some(logo) = &self.logo {
            env.add_global("logo_url", logo.url.clone());
        }
        if let Some(style_sheet) = &self.style_sheet {
            env.add_global("brand_stylesheet_url", style_sheet.url.clone());
        }
        let links: Vec<minijinja::Value> = self
            .footer_links
            .iter()
            .map(|(text, url)| context! { text, url })
            .collect();
        env.add_global("footer_links", links);
    }

    /// The brand file called `name` (after `static/`).
    pub(super) fn file(&self, name: &str) -> Option<StaticFile> {
        [&self.logo, &self.style_sheet]
            .into_iter()
            .flatten()
            .find(|file| file.name == name)
            .map(|file| StaticFile {
                content_type: file.content_type,
                body: file.body.clone(),
            })
    }
}

/// Whether `body` starts as a file of type `image` does: the logo is
/// served with the type its name says (and `nosniff`), so a page saved as
/// `logo.png` by mistake is refused at start rather than shown broken.
fn is_image(image: ImageType, body: &[u8]) -> bool {
    match image {
        ImageType::Png => body.starts_with(b"\x89PNG\r\n\x1a\n"),
        ImageType::Jpeg => body.starts_with(b"\xff\xd8\xff"),
        ImageType::Gif => body.starts_with(b"GIF87a") || body.starts_with(b"GIF89a"),
        ImageType::Webp => body.len() >= 12 && &body[..4] == b"RIFF" && &body[8..12] == b"WEBP",
        ImageType::Ico => body.starts_with(b"\0\0\x01\0"),
        ImageType::Svg => {
            let head = &body[..body.len().min(4096)];
            String::from_utf8_lossy(head).contains("<svg")
        }
    }
}

/// The `.html` files at the top of `templates_dir`, by file name: those
/// named as built-in templates replace them, others are there to be
/// included or extended.
pub(super) fn templates(dir: &Path) -> Result<Vec<(String, String)>, PagesError> {
    let mut templates = Vec::new();
    for (name, path) in files_ending(dir, ".html")? {
        templates.push((name, read_text(&path)?));
    }
    Ok(templates)
}

/// `templates_dir/i18n/<tag>.toml`: a new language, or other words for a
/// known one.
pub(super) fn add_catalogues(dir: &Path, catalogues: &mut Catalogues) -> Result<(), PagesError> {
    let dir = dir.join("i18n");
    if !dir.is_dir() {
        return Ok(());
    }
    for (name, path) in files_ending(&dir, ".toml")? {
        let tag = name.trim_end_matches(".toml");
        catalogues
            .add(tag, &read_text(&path)?)
            .map_err(|source| PagesError::Catalogue { path, source })?;
    }
    Ok(())
}

/// The regular files in `dir` whose names end in `suffix`, sorted by name.
fn files_ending(dir: &Path, suffix: &str) -> Result<Vec<(String, PathBuf)>, PagesError> {
    let unreadable = |source| PagesError::Read {
        key: "portal.templates_dir",
        path: dir.to_owned(),
        source,
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(unreadable)? {
        let entry = entry.map_err(unreadable)?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(suffix) && entry.path().is_file() {
            files.push((name, entry.path()));
        }
    }
    files.sort();
    Ok(files)
}

fn read_text(path: &Path) -> Result<String, PagesError> {
    std::fs::read_to_string(path).map_err(|source| PagesError::Read {
        key: "portal.templates_dir",
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_logo_must_be_the_image_its_name_says() {
        assert!(is_image(ImageType::Png, b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR"));
        assert!(!is_image(ImageType::Png, b"<!doctype html>"));
        assert!(is_image(ImageType::Jpeg, b"\xff\xd8\xff\xe0"));
        assert!(is_image(ImageType::Gif, b"GIF89a..."));
        assert!(is_image(ImageType::Webp, b"RIFF\x10\0\0\0WEBPVP8 "));
        assert!(!is_image(ImageType::Webp, b"RIFF\x10\0\0\0WAVE"));
        assert!(is_image(ImageType::Ico, b"\0\0\x01\0\x01\0"));
        assert!(is_image(
            ImageType::Svg,
            b"<?xml version=\"1.0\"?>\n<svg xmlns=\"x\"/>"
        ));
        assert!(!is_image(ImageType::Svg, b"<html></html>"));
        assert!(!is_image(ImageType::Png, b""));
    }
}
