//! `GET /`, `/app.js` and `/app.css`: the browser client; and `/stomp.html` with `/stomp.js`
//! and the vendored `sockjs-client` and `@stomp/stompjs` under `/vendor/`: the feed test page. Its three files live in `web/` and
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
const STOMP_HTML: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/web/stomp.html"));
const STOMP_JS: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/web/stomp.js"));
/// Vendored, unchanged, from the npm packages `sockjs-client` 1.6.1 (MIT) and `@stomp/stompjs`
/// 7.5.0 (Apache-2.0); their licences are beside them in `web/vendor/`.
const SOCKJS_JS: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/web/vendor/sockjs.min.js"
));
const STOMPJS_JS: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/web/vendor/stomp.umd.min.js"
));
const SOCKJS_LICENSE: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/web/vendor/sockjs-client.LICENSE"
));
const STOMPJS_LICENSE: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/web/vendor/stompjs.LICENSE"
));

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

/// The feed test page (`/stomp.html`): STOMP over SockJS or a WebSocket, or SSE.
pub async fn stomp_page() -> HttpResponse {
    file(STOMP_HTML, "text/html; charset=utf-8")
}

pub async fn stomp_script() -> HttpResponse {
    file(STOMP_JS, "text/javascript; charset=utf-8")
}

pub async fn sockjs_script() -> HttpResponse {
    file(SOCKJS_JS, "text/javascript; charset=utf-8")
}

pub async fn stompjs_script() -> HttpResponse {
    file(STOMPJS_JS, "text/javascript; charset=utf-8")
}

pub async fn sockjs_license() -> HttpResponse {
    file(SOCKJS_LICENSE, "text/plain; charset=utf-8")
}

pub async fn stompjs_license() -> HttpResponse {
    file(STOMPJS_LICENSE, "text/plain; charset=utf-8")
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
