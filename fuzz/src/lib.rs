//! The decoders' oracles, shared by the fuzz targets (`fuzz_targets/`, one per decoder
//! family) and by the crates' own tests, which include these modules by path: each
//! crate's tests replay the committed seeds and regressions through the same checks
//! ([`corpus`]) and drive them from proptest strategies ([`strategies`]).
//!
//! Each module names only the crates its including test crate has: [`protocol`]
//! `pb-protocol`, [`cti`] `pb-cti`, [`kv`] `pb-runtime`, [`framing`] `pb-framing`; they
//! reach one another as `super::…`.

pub mod corpus;
pub mod cti;
pub mod framing;
pub mod json;
pub mod kv;
pub mod protocol;
pub mod strategies;
