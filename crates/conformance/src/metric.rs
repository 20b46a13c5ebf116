//! metric cases.

/// Every metric case, as tests against `$target`.
#[macro_export]
macro_rules! metric_cases {
    ($target:expr) => {
        $crate::__cases! { $target;
        }
    };
}
