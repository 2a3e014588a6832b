//! What every service shares at run time, so that no service repeats it:
//!
//! * [`config`]: configuration from the environment, with typed errors that say what to fix;
//! * [`connect`]: the NATS connection;
//! * [`serve`]: the command loop that answers a destination's subject (decode, reply cache,
//!   handler, response, then events), and drains on shutdown;
//! * [`reply_cache`]: the JetStream key-value record of answers by `requestId`, so a retried
//!   request is answered again and not acted on twice, whichever replica gets it;
//! * [`call`]: the one way to make a typed call (to the CTI adapter, another service, the
//!   simulator); [`cti`]: the client side of the CTI adapter contract ([`pb_cti`]);
//! * [`owned`]: one owner replica per unit (agent), forwarding and take-over, for the
//!   session and channel-group services;
//! * [`permissions`]: each process's NATS user and subjects (renders the deployment's
//!   `auth.conf`);
//! * [`state`]: per-unit records and the target index in key-value buckets;
//! * [`ops`]: the operations port (liveness, readiness, metrics); [`discovery`]: NATS service
//!   discovery, listing the endpoints each process subscribed; [`metrics`]: the process's
//!   numbers;
//! * [`trace`]: W3C trace context in NATS headers; [`logging`]: logs and OTLP traces;
//! * [`kv`]: key-value bucket helpers; [`pem`]: certificates and keys for the TCP link's
//!   TLS; [`shutdown`].

pub mod call;
pub mod config;
pub mod connect;
pub mod cti;
pub mod discovery;
pub mod kv;
pub mod logging;
pub mod metrics;
pub mod ops;
pub mod owned;
pub mod pem;
pub mod permissions;
pub mod reply_cache;
mod request_key;
pub mod serve;
pub mod shutdown;
pub mod state;
pub mod trace;

pub use call::{CallError, CallErrorKind, call};
pub use config::{Config, ConfigError};
pub use cti::{CtiCallError, CtiClient};
pub use serve::{Handler, Reply};
pub use shutdown::Shutdown;
