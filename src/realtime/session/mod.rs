//! The session core, whatever the transport (`core`): admitting a session (`admission`), the messages
//! every session actor answers (`protocol`), keeping its frames in position order
//! (`in_order`), filling its gaps from the log (`history`), the registry of this node's
//! sessions (`registry`), the watchdog that keeps them honest (`watchdog`), noticing a client
//! that stopped reading (`write_watch`), routing them again after a lost broker link
//! (`relink`), the caps on how many a user, an address and the instance may hold (`caps`),
//! closing those whose token expired or was revoked (`token_watch`), and having them check
//! their positions when the feed log starts a new epoch after a failover (`epoch_watch`), and the
//! hub on each worker thread that hands live events to that thread's sessions (`worker_hub`).

pub mod admission;
pub mod caps;
pub mod core;
pub mod epoch_watch;
pub mod history;
pub mod in_order;
pub mod protocol;
pub mod registry;
pub mod relink;
pub mod token_watch;
pub mod watchdog;
pub mod worker_hub;
pub mod write_watch;
