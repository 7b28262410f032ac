//! The group transport: agreed views, reliable FIFO and agreed-order delivery, named groups.
//!
//! Everything here is a sans-IO state machine in the quinn-proto shape: [`Endpoint`] never touches a
//! socket, a clock or a thread. The driver feeds it datagrams ([`Endpoint::handle_packet`]) and time
//! ([`Endpoint::handle_timeout`]), and drains what it wants sent ([`Endpoint::poll_transmit`]) and
//! what it wants the layer above to see ([`Endpoint::poll_event`]). That is what lets the simulator in
//! `engine/tests/sim` run many nodes in one thread and replay any seed exactly.
//!
//! The pieces, each in its own file:
//! - [`time`]: the plain time value the protocol runs on.
//! - [`config`]: [`GroupConfig`], the `msgc_server { }` and `cluster { }` options it consumes.
//! - [`member`]: a member's identity (node name + incarnation).
//! - [`view`]: view ids and agreed member lists.
//! - [`wire`]: the datagram format (smoltcp-style `Packet` view + `Repr`).
//! - [`auth`]: the cluster key's MAC and the per-sender replay window.
//! - [`detector`]: SWIM-style failure detection with Lifeguard local health.
//! - [`heartbeat`]: the cluster-layer heartbeat that catches a stuck process.
//! - [`delivery`]: per-sender FIFO streams, the leader's agreed order, flow control.
//! - [`fragment`]: messages larger than a datagram, cut into pieces and put back together.
//! - [`membership`]: the view change with flush (virtual synchrony), leaves and merges.
//! - [`groups`]: named groups whose joins and leaves are delivered in agreed order.
//! - [`endpoint`]: the state machine that ties them together.

pub mod auth;
pub mod config;
pub mod delivery;
pub mod detector;
pub mod endpoint;
pub mod fragment;
pub mod groups;
pub mod heartbeat;
pub mod member;
pub mod membership;
pub mod time;
pub mod view;
pub mod wire;

pub use auth::{ClusterKey, KeyError};
pub use config::GroupConfig;
pub use endpoint::{Counters, Endpoint, EndpointError, Event, GroupChange, SendError, Transmit};
pub use member::MemberId;
pub use time::Time;
pub use view::{View, ViewId};
pub use wire::Order;
