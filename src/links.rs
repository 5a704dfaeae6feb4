//! Which values may become links (SPEC 12's review, item 6): only absolute `http:` and
//! `https:` URLs with a host. A script's `url` output is data from a run; linked as it is,
//! `javascript:alert(document.domain)//` would run in the portal's origin when clicked.
//! Every place that turns a value into a link (portal pages, the Graph, Backstage links,
//! comments and deployment statuses) asks here first; anything else is shown as text.

/// `value` when it is an absolute `http(s)://host…` URL, else `None`.
pub fn web_url(value: &str) -> Option<&str> {
    let v = value.trim();
    if v.len() != value.len() || v.chars().any(char::is_control) {
        return None;
    }
    let parsed = url::Url::parse(v).ok()?;
    let web = matches!(parsed.scheme(), "http" | "https")
        && parsed.host_str().is_some_and(|h| !h.is_empty());
    web.then_some(value)
}

#[cfg(test)]
mod tests {
    use super::web_url;

    #[test]
    fn only_http_and_https_urls_are_links() {
        assert_eq!(
            web_url("https://a.example.test/x?y=1"),
            Some("https://a.example.test/x?y=1")
        );
        assert_eq!(
            web_url("http://localhost:8080/"),
            Some("http://localhost:8080/")
        );
        for bad in [
            "javascript:alert(document.domain)//",
            "JavaScript:alert(1)",
            " javascript:alert(1)",
            "data:text/html,<script>alert(1)</script>",
            "vbscript:msgbox",
            "//evil.example/x",
            "https://",
            "file:///etc/passwd",
            "https://a.example\n.test",
            "not a url",
            "",
        ] {
            assert_eq!(web_url(bad), None, "{bad:?} must not be a link");
        }
    }
}
