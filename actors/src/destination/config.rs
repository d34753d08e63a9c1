//! Destination settings live in the shared configuration crate, so the control plane
//! checks them without the actors; this is their place in the destination's folder.

pub use switchyard_config::destination::*;
