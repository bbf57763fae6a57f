//! `/metrics`: this instance's Prometheus metrics in the text format (see `crate::metrics` and
//! the README's list). Readings cheaper to take now than to keep current (sessions, the broker
//! link, the relay's lead and lag) are taken first; a database that cannot be asked leaves the
//! lag at its last reading rather than failing the scrape.

use actix_web::{web, HttpResponse};

use crate::http::error::ApiError;
use crate::http::AppState;
use crate::metrics::CONTENT_TYPE;
use crate::realtime::session::registry::upkeep::SessionCount;
use crate::realtime::stats::Gauges;
use crate::store::events;

pub async fn metrics(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let relay_lag = match state.pool.get().await {
        Ok(mut conn) => events::relay_state(&mut conn)
            .await
            .ok()
            .map(|relay| relay.lag()),
        Err(_) => None,
    };
    let sessions = state.registry.send(SessionCount).await.ok();
    state.stats.set_gauges(Gauges {
        mode: state.realtime.queue_mode.as_str(),
        sessions,
        link_up: state.broker_health.is_up(),
        relay_leading: state.relay.is_leading(),
        relay_lag,
    });
    let text = state.metrics.render().map_err(|error| {
        log::error!("rendering the metrics: {error}");
        ApiError::Internal
    })?;
    Ok(HttpResponse::Ok().content_type(CONTENT_TYPE).body(text))
}
