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
    /// The broker's certificate failed verification: a wrong `amqp.ca_file` or host name, which
    /// waiting does not fix.
    #[error(
        "the broker's certificate was refused ({0}): check amqp.ca_file and the host in the URL"
    )]
    CertificateRefused(String),
    /// `amqp.ca_file` or the client certificate cannot be used.
    #[error("{0}")]
    Tls(#[from] crate::tls::TlsError),
    /// One of several endpoints failed (`amqp.urls`): which, and why.
    #[error("{0}: {1}")]
    At(String, Box<BrokerError>),
}

impl BrokerError {
    /// An error no retry can fix, so start-up reports it instead of waiting.
    pub fn is_permanent(&self) -> bool {
        match self {
            BrokerError::CertificateRefused(_) | BrokerError::Tls(_) => true,
            BrokerError::At(_, inner) => inner.is_permanent(),
            _ => false,
        }
    }
}
