//! `BrokerError`: how a broker operation fails. Shared by everything that talks to RabbitMQ, so
//! none of them needs another's module for it.

#[derive(Debug, Clone, thiserror::Error)]
pub enum BrokerError {
    #[error("the event broker is unavailable")]
    Unavailable,
    #[error("AMQP: {0}")]
    Amqp(#[from] lapin::Error),
    #[error("AMQP connection pool: {0}")]
    Pool(String),
    #[error(
        "the broker refused the credentials (ACCESS_REFUSED): check amqp.url's user and password"
    )]
    CredentialsRefused,
    /// One of several endpoints failed (`amqp.urls`): which, and why.
    #[error("{0}: {1}")]
    At(String, Box<BrokerError>),
}
