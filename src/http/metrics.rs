//! HTTP request metrics: a middleware counting every request by method, route and status, and
//! timing it (`herald_http_requests_total`, `herald_http_request_duration_seconds`). The route
//! label is the matched pattern (`/user/get/{id}`), never the raw path, so ids and probes for
//! unknown paths cannot grow the series without bound.

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::middleware::Next;
use actix_web::{web, Error};
use prometheus::{HistogramVec, IntCounterVec};

use crate::metrics::{Metrics, MetricsError, HTTP_BUCKETS};

/// The HTTP metrics of one instance (app data for [`observe`]).
#[derive(Clone)]
pub struct HttpMetrics {
    requests: IntCounterVec,
    duration: HistogramVec,
}

impl HttpMetrics {
    pub fn new(metrics: &Metrics) -> Result<HttpMetrics, MetricsError> {
        Ok(HttpMetrics {
            requests: metrics.counter_vec(
                "herald_http_requests_total",
                "HTTP requests answered, by method, route pattern and status.",
                &["method", "route", "status"],
            )?,
            duration: metrics.histogram_vec(
                "herald_http_request_duration_seconds",
                "Time from a request's arrival to its response's head (for the WebSocket route, \
                 the handshake), by method and route pattern.",
                &["method", "route"],
                HTTP_BUCKETS,
            )?,
        })
    }
}

/// A method among those the API knows, else `other` (methods are client-chosen text).
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        Method::HEAD => "HEAD",
        Method::PATCH => "PATCH",
        _ => "other",
    }
}

/// The middleware (mounted with `actix_web::middleware::from_fn`).
pub async fn observe(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let started = Instant::now();
    let metrics = req.app_data::<web::Data<HttpMetrics>>().cloned();
    let method = method_label(req.method());
    let response = next.call(req).await?;
    if let Some(metrics) = metrics {
        let route = response
            .request()
            .match_pattern()
            .unwrap_or_else(|| "unmatched".to_owned());
        let status = response.status().as_u16().to_string();
        metrics
            .requests
            .with_label_values(&[method, route.as_str(), status.as_str()])
            .inc();
        metrics
            .duration
            .with_label_values(&[method, route.as_str()])
            .observe(started.elapsed().as_secs_f64());
    }
    Ok(response)
}
