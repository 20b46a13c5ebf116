//! crypto cases.

/// Every crypto case, as tests against `$target`.
#[macro_export]
macro_rules! crypto_cases {
    ($target:expr) => {
        $crate::__cases! { $target;
        }
    };
}
