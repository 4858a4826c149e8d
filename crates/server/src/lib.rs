//! Serving gold to people and tools. Today: metrics defined once in `metrics/*.yml` and
//! queried by name (`strata metrics query MRR --by month`), so "MRR" means one thing
//! everywhere; dashboards and the BI endpoint bind to the same definitions.

pub mod metrics;
pub mod users;
