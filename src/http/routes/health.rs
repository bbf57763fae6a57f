//! `/health`: whether PostgreSQL and RabbitMQ are reachable (for load balancers and compose).
//! Healthy: 200 with the report (this node's realtime counters, and the relay's positions and
//! lag: events committed but not yet confirmed by the broker); degraded: the usual 503 error
//! body, with `Retry-After`.

use actix_web::{web, HttpResponse};

use crate::http::error::ApiError;
use crate::http::AppState;
use crate::realtime::session::registry::upkeep::SessionCount;
use crate::store::events;

pub async fn health(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let relay = match state.pool.get().await {
        Ok(mut conn) => events::relay_state(&mut conn).await.ok(),
        Err(_) => None,
    };
    let database = relay.is_some();
    let broker = state.broker_health.is_up();
    if let (Some(relay), true) = (relay, broker) {
        let sessions = state.registry.send(SessionCount).await.unwrap_or_default();
        let stats = state.stats.snapshot();
        Ok(HttpResponse::Ok().json(serde_json::json!({
            "status": "ok",
            "database": true,
            "broker": true,
            "realtime": {
                "mode": state.realtime.queue_mode.as_str(),
                "sessions": sessions,
                "published": stats.published,
                "consumed": stats.consumed,
                "delivered": stats.delivered,
                "dropped_slow": stats.dropped_slow,
                "resumes": stats.resumes,
                "replayed": stats.replayed,
                "resets": stats.resets,
                "duplicates_dropped": stats.duplicates,
            },
            "relay": {
                "leading": state.relay.is_leading(),
                "relayed": stats.relayed,
                "position": relay.numbered_seq,
                "published": relay.published_seq,
                "lag": relay.lag(),
            },
        })))
    } else {
        Err(ApiError::Unavailable(format!(
            "degraded: database {}, broker {}",
            if database { "up" } else { "down" },
            if broker { "up" } else { "down" },
        )))
    }
}
