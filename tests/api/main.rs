//! Black-box tests of the API: the real router over HTTP, on a real PostgreSQL.

#[path = "../support/mod.rs"]
mod support;

mod admin;
mod audit;
mod audit_read;
mod auth;
mod comparability;
mod comparisons;
mod connections;
mod contract;
mod disagreements;
mod errors;
mod exercises;
mod faults;
mod governance;
mod health;
mod idempotency;
mod inspect;
mod instances;
mod institutes;
mod matrix;
mod migrations;
mod mutations;
mod observability;
mod openapi;
mod protocols;
mod queue;
mod releases;
mod rls;
mod runs;
mod samples;
mod transcripts;
