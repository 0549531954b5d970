//! A browser and its system in short, from the `User-Agent`: what "Your
//! sessions" shows for each session. A small parser of the common
//! families, not a full one: a session record keeps two bytes, never the
//! header itself (a million sessions in memory), and a page saying
//! "Firefox on Linux" needs nothing finer.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Browser {
    Chrome,
    Edge,
    Firefox,
    Safari,
    Opera,
    Curl,
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Os {
    Windows,
    Macos,
    Linux,
    Android,
    Ios,
    ChromeOs,
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Device {
    pub browser: Browser,
    pub os: Os,
}

impl Device {
    /// The families of `user_agent`. Order matters: Edge and Opera say
    /// "Chrome" too, Chrome says "Safari", Android says "Linux", iOS says
    /// "like Mac OS X".
    pub fn of(user_agent: &str) -> Device {
        let has = |token: &str| user_agent.contains(token);
        let browser = if user_agent.starts_with("curl/") {
            Browser::Curl
        } else if has("Edg/") || has("Edge/") || has("EdgA/") || has("EdgiOS/") {
            Browser::Edge
        } else if has("OPR/") || has("Opera") {
            Browser::Opera
        } else if has("Firefox/") || has("FxiOS/") {
            Browser::Firefox
        } else if has("Chrome/") || has("CriOS/") || has("Chromium/") {
            Browser::Chrome
        } else if has("Safari/") && has("Version/") {
            Browser::Safari
        } else {
            Browser::Other
        };
        let os = if has("Android") {
            Os::Android
        } else if has("iPhone") || has("iPad") || has("iPod") {
            Os::Ios
        } else if has("Windows") {
            Os::Windows
        } else if has("Mac OS X") || has("Macintosh") {
            Os::Macos
        } else if has("CrOS") {
            Os::ChromeOs
        } else if has("Linux") || has("X11") {
            Os::Linux
        } else {
            Os::Other
        };
        Device { browser, os }
    }

    /// "Firefox on Linux", "curl", "Unknown browser".
    pub fn label(self) -> String {
        let browser = match self.browser {
            Browser::Chrome => "Chrome",
            Browser::Edge => "Edge",
            Browser::Firefox => "Firefox",
            Browser::Safari => "Safari",
            Browser::Opera => "Opera",
            Browser::Curl => "curl",
            Browser::Other => "Unknown browser",
        };
        let os = match self.os {
            Os::Windows => "Windows",
            Os::Macos => "macOS",
            Os::Linux => "Linux",
            Os::Android => "Android",
            Os::Ios => "iOS",
            Os::ChromeOs => "ChromeOS",
            Os::Other => return browser.to_owned(),
        };
        format!("{browser} on {os}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_common_user_agents_are_named_in_short() {
        let cases = [
            (
                "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
                "Chrome on Linux",
            ),
            (
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 Edg/131.0.2903.86",
                "Edge on Windows",
            ),
            (
                "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
                "Firefox on Linux",
            ),
            (
                "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15",
                "Safari on macOS",
            ),
            (
                "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
                "Safari on iOS",
            ),
            (
                "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) CriOS/131.0.6778.73 Mobile/15E148 Safari/604.1",
                "Chrome on iOS",
            ),
            (
                "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.6778.81 Mobile Safari/537.36",
                "Chrome on Android",
            ),
            (
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 OPR/114.0.0.0",
                "Opera on Windows",
            ),
            ("curl/8.11.0", "curl"),
            ("", "Unknown browser"),
            ("python-requests/2.32", "Unknown browser"),
        ];
        for (agent, label) in cases {
            assert_eq!(Device::of(agent).label(), label, "{agent}");
        }
    }
}
