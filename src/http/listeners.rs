//! Which listener a request arrived on. With `http.metrics_bind` set, `/metrics` is served only
//! on that listener (which serves nothing else), so a scraper can reach it on a private address
//! while the API's listener faces clients. Both listeners belong to one server; a request tells
//! them apart by the local address of its connection.

use std::net::SocketAddr;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{web, Error};

use super::error::ApiError;

/// The path only the metrics listener serves.
const METRICS_PATH: &str = "/metrics";

/// The bound address of the metrics listener, if it has one of its own.
#[derive(Clone, Copy, Debug)]
pub struct MetricsListener(pub Option<SocketAddr>);

/// The middleware (mounted with `actix_web::middleware::from_fn`): a request on the wrong
/// listener for its path is a 404, as if the route did not exist there.
pub async fn split(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let own = req
        .app_data::<web::Data<MetricsListener>>()
        .and_then(|listener| listener.0);
    if let Some(address) = own {
        let on_metrics_listener = req.app_config().local_addr() == address;
        if on_metrics_listener != (req.path() == METRICS_PATH) {
            let refusal = ApiError::NotFound("no such route".into());
            return Ok(req.error_response(refusal));
        }
    }
    Ok(next.call(req).await?.map_into_boxed_body())
}
