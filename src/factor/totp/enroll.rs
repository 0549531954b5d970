//! What the enrollment page shows for a new secret: the otpauth URI, its QR
//! code drawn here as inline SVG (no image service ever sees the secret),
//! and the secret as text for typing in by hand.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use qrcode::QrCode;
use qrcode::render::svg;

use super::code::{DIGITS, STEP_SECS, TotpSecret};

/// Everything but RFC 3986's unreserved characters is escaped, so `:`,
/// `@`, `&`, `#`, `?` and spaces in an issuer or email cannot change where
/// the label or a parameter ends (spaces as `%20`: apps differ on `+`).
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The Key URI Format that authenticator apps scan.
pub fn otpauth_uri(issuer: &str, email: &str, secret: &TotpSecret) -> String {
    let issuer = utf8_percent_encode(issuer, COMPONENT);
    let email = utf8_percent_encode(email, COMPONENT);
    format!(
        "otpauth://totp/{issuer}:{email}?secret={}&issuer={issuer}&algorithm=SHA1&digits={DIGITS}&period={STEP_SECS}",
        secret.to_base32()
    )
}

/// The QR code as an `<svg>` element to put straight into the page.
pub fn qr_svg(uri: &str) -> Result<String, qrcode::types::QrError> {
    let svg = QrCode::new(uri.as_bytes())?
        .render::<svg::Color<'_>>()
        .min_dimensions(200, 200)
        .build();
    // The XML declaration is for standalone files; inside HTML it is noise.
    Ok(match svg.find("<svg") {
        Some(start) => svg[start..].to_owned(),
        None => svg,
    })
}

/// Base32 in groups of four, easier to read off and type.
pub fn grouped(base32: &str) -> String {
    base32
        .as_bytes()
        .chunks(4)
        .map(|group| std::str::from_utf8(group).unwrap_or_default())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret() -> TotpSecret {
        TotpSecret::from_bytes(*b"12345678901234567890")
    }

    #[test]
    fn the_uri_has_every_parameter_apps_need() {
        assert_eq!(
            otpauth_uri("authgate", "alice@example.com", &secret()),
            "otpauth://totp/authgate:alice%40example.com\
             ?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=authgate\
             &algorithm=SHA1&digits=6&period=30"
        );
    }

    #[test]
    fn issuer_and_email_cannot_break_out_of_their_place() {
        let uri = otpauth_uri("ACME Corp: Ops&Co", "a+b#c?d@example.com", &secret());
        let parsed = url::Url::parse(&uri).unwrap();
        assert_eq!(parsed.scheme(), "otpauth");
        assert_eq!(parsed.host_str(), Some("totp"));
        assert_eq!(parsed.fragment(), None);
        assert_eq!(
            parsed.path(),
            "/ACME%20Corp%3A%20Ops%26Co:a%2Bb%23c%3Fd%40example.com"
        );
        let pairs: Vec<(String, String)> = parsed.query_pairs().into_owned().collect();
        assert_eq!(pairs.len(), 5, "{pairs:?}");
        assert!(pairs.contains(&("issuer".into(), "ACME Corp: Ops&Co".into())));
        assert!(pairs.contains(&("secret".into(), secret().to_base32())));
    }

    #[test]
    fn the_qr_code_is_an_inline_svg_element() {
        let uri = otpauth_uri("authgate", "alice@example.com", &secret());
        let svg = qr_svg(&uri).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..40]);
        assert!(svg.ends_with("</svg>"));
        assert!(svg.contains("<path"));
    }

    #[test]
    fn the_secret_text_comes_in_groups_of_four() {
        assert_eq!(
            grouped(&secret().to_base32()),
            "GEZD GNBV GY3T QOJQ GEZD GNBV GY3T QOJQ"
        );
        assert_eq!(grouped("ABCDEF"), "ABCD EF");
    }
}
