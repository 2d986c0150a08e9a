//! The one integration-test binary of `callmeta-siprec`, a module per
//! feature. `fixtures` runs every vendor fixture end to end and snapshots its
//! flattened keys (`UPDATE_SNAPSHOTS=1` rewrites the snapshots).

mod fixtures;
mod hostile;
mod media;
mod metadata;
mod sdp;
mod sip;
mod support;
