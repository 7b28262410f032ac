//! The operator console over sockets: the server the daemon runs on every `Control_Listener`
//! address ([`server`]), the listening sockets with their safety rules ([`listener`]), the stream
//! type both ends use ([`stream`]) and the client connection `cohortctl` uses ([`client`]).
//!
//! The grammar, the output shapes and the wire framing are logic and live in
//! `cohort_engine::console`; this module only moves their bytes.

pub mod client;
pub mod listener;
pub mod server;
pub mod stream;

pub use client::{Client, ClientError, Endpoint};
pub use listener::{BoundAddr, ListenError};
pub use server::{
    ConsoleHandler, ConsoleServer, Identity, ListenNext, ListenSource, Role, ServerConfig,
    ServerError, StopHandle, execute,
};
