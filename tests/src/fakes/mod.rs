//! Local stateful fakes of vendor APIs, written from the vendors' published API references.
//! Each is served by the loopback HTTP server of `crate::webhook` (`Webhook::start` +
//! `respond_with`), keeps the state a real account would hold, and enforces the documented
//! limits (batch maximums, auth, rate limits answering 429 with `Retry-After`).

pub mod hubspot;
pub mod intercom;
pub mod salesforce;
pub mod slack;
pub mod stripe;
