//! kv cases.

/// Every kv case, as tests against `$target`.
#[macro_export]
macro_rules! kv_cases {
    ($target:expr) => {
        $crate::__cases! { $target;
        }
    };
}
