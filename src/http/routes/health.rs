//! `/health`: whether PostgreSQL and RabbitMQ are reachable (for load balancers and compose).

use actix_web::{web, HttpResponse};

use crate::http::AppState;

pub async fn health(state: web::Data<AppState>) -> HttpResponse {
    let database = state.pool.get().await.is_ok();
    let broker = state.broker_health.is_up();
    let body = serde_json::json!({
        "status": if database && broker { "ok" } else { "degraded" },
        "database": database,
        "broker": broker,
    });
    if database && broker {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}
