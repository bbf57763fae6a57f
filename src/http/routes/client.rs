//! `GET /`, `/app.js` and `/app.css`: the browser client. Its three files live in `web/` and
//! are compiled into the binary, so herald serves its own page with no web server beside it and
//! no build step. This module owns how they are answered: each with its Content-Type,
//! `Cache-Control: no-cache` (a browser checks back every time, so a page never runs an older
//! herald's script) and a Content-Security-Policy that lets the page load only its own script
//! and style and talk only to its own origin: the API and the feed WebSocket (CSP's `'self'`
//! covers `ws:`/`wss:` to the same host). No inline script or style, no other origin, no
//! framing.

use actix_web::http::header::{self, HeaderName};
use actix_web::HttpResponse;

const INDEX_HTML: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/web/index.html"));
const APP_JS: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/web/app.js"));
const APP_CSS: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/web/app.css"));

/// What the page may load and where it may connect. `img-src data:` is for the empty icon the
/// page declares (so the browser does not ask for `/favicon.ico`).
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; connect-src 'self'; img-src data:; base-uri 'none'; \
     form-action 'self'; frame-ancestors 'none'";

pub async fn index() -> HttpResponse {
    file(INDEX_HTML, "text/html; charset=utf-8")
}

pub async fn script() -> HttpResponse {
    file(APP_JS, "text/javascript; charset=utf-8")
}

pub async fn style() -> HttpResponse {
    file(APP_CSS, "text/css; charset=utf-8")
}

fn file(body: &'static str, content_type: &'static str) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, content_type))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header((header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .insert_header((
            HeaderName::from_static("cross-origin-opener-policy"),
            "same-origin",
        ))
        .body(body)
}
