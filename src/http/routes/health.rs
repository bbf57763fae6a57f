//! `/health`: whether PostgreSQL and RabbitMQ are reachable (for load balancers and compose).
//! Healthy: 200 with the report (and this node's realtime counters); degraded: the usual 503
//! error body, with `Retry-After`.

use actix_web::{web, HttpResponse};

use crate::http::error::ApiError;
use crate::http::AppState;
use crate::realtime::registry::upkeep::SessionCount;

pub async fn health(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let database = state.pool.get().await.is_ok();
    let broker = state.broker_health.is_up();
    if database && broker {
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
