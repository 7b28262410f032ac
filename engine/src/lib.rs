//! Cohort's engine: everything that is logic and no I/O policy.
//!
//! Each module is named for the one thing it is: [`config`] reads Momentum-style configuration
//! files into typed, validated settings.

pub mod config;
pub mod console;
pub mod duravip;
#[doc(hidden)]
pub mod fuzzing;
pub mod group;
pub mod jlog;
pub mod logmove;
pub mod node;
pub mod replicate;
pub mod udp;
