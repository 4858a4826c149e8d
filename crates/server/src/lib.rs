//! Serving gold to people and tools: metrics defined once in `metrics/*.yml` and queried by
//! name (`strata metrics query MRR --by month`), so "MRR" means one thing everywhere; users
//! and roles; the web UI (`strata serve`).

pub mod catalog;
pub mod dashboards;
pub mod http;
pub mod metrics;
pub mod users;
