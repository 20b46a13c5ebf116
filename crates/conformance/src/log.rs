//! log cases.

/// Every log case, as tests against `$target`.
#[macro_export]
macro_rules! log_cases {
    ($target:expr) => {
        $crate::__cases! { $target;
        }
    };
}
