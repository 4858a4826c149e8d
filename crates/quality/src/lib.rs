//! Data quality beyond pass/fail. Today: column profiles of a table and the data tests they
//! suggest (`strata profile`).

pub mod profile;
