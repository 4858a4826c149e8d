//! The words a configuration key may take (`materialized: table`, `on_schema_change: fail`),
//! parsed once into enums: a value outside the list is refused when the project loads, naming
//! the file, instead of being compared as text wherever it is used.

/// Define an enum of config words with `parse` and `as_str`.
macro_rules! config_words {
    ($(#[$doc:meta])* $name:ident = $key:literal {
        $($(#[$vdoc:meta])* $variant:ident = $word:literal),+ $(,)?
    }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vdoc])* $variant),+
        }

        impl $name {
            /// The configuration key taking these words.
            pub const KEY: &'static str = $key;
            /// Every word accepted.
            pub const WORDS: &'static [&'static str] = &[$($word),+];

            /// Read a configuration value; the error lists the words accepted.
            pub fn parse(word: &str) -> Result<Self, String> {
                match word {
                    $($word => Ok(Self::$variant),)+
                    other => Err(format!(
                        "`{}: {other}` is not supported; use one of: {}{}",
                        Self::KEY,
                        Self::WORDS.join(", "),
                        crate::did_you_mean(other, Self::WORDS.iter().copied()),
                    )),
                }
            }

            /// The word as configs write it.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $word),+
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

config_words! {
    /// How a model is persisted (`materialized`).
    Materialized = "materialized" {
        /// Stored as SQL.
        View = "view",
        /// A table rebuilt in full.
        Table = "table",
        /// A table new rows are added to or merged into.
        Incremental = "incremental",
        /// Inlined as a CTE where it is used.
        Ephemeral = "ephemeral",
        /// The history of a query's rows (snapshots only).
        Snapshot = "snapshot",
    }
}

config_words! {
    /// How an incremental model adds its rows (`incremental_strategy`).
    IncrementalStrategy = "incremental_strategy" {
        /// Add the rows.
        Append = "append",
        /// Update rows by `unique_key`, insert the others.
        Merge = "merge",
        /// Delete every row of a returned key, insert the rows.
        DeleteInsert = "delete+insert",
        /// One time period at a time.
        Microbatch = "microbatch",
    }
}

config_words! {
    /// What an incremental run does when the query's columns differ from the table's.
    OnSchemaChange = "on_schema_change" {
        /// Keep the table's columns.
        Ignore = "ignore",
        /// Stop, writing nothing.
        Fail = "fail",
        /// Add new columns.
        AppendNewColumns = "append_new_columns",
        /// Take the query's columns.
        SyncAllColumns = "sync_all_columns",
    }
}

config_words! {
    /// How a snapshot detects a changed record (`strategy`).
    SnapshotStrategy = "strategy" {
        /// By an `updated_at` column.
        Timestamp = "timestamp",
        /// By comparing `check_cols`.
        Check = "check",
    }
}

config_words! {
    /// What a snapshot does with records gone from its query (`hard_deletes`).
    HardDeletes = "hard_deletes" {
        /// Nothing.
        Ignore = "ignore",
        /// Close their current version.
        Invalidate = "invalidate",
        /// Close it and add a version marking them deleted.
        NewRecord = "new_record",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_parse_and_refuse_with_the_list() {
        assert_eq!(
            IncrementalStrategy::parse("delete+insert"),
            Ok(IncrementalStrategy::DeleteInsert)
        );
        assert_eq!(IncrementalStrategy::DeleteInsert.as_str(), "delete+insert");
        let err = OnSchemaChange::parse("append_new_column").expect_err("typo");
        assert!(err.contains("use one of: ignore, fail"), "{err}");
        assert!(err.contains("did you mean `append_new_columns`"), "{err}");
    }
}
