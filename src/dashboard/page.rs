//! The dashboard's page: one HTML file with its styles and script inline
//! and its charts drawn as SVG by that script, so it loads from the
//! dashboard's address alone (no CDN, no fonts: the machine may be
//! offline).

/// The page, as served at `/`.
pub(super) const HTML: &str = include_str!("page.html");
