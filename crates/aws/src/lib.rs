//! mvi-aws: the AWS backend. A compiling skeleton until the AWS issue lands.
#![deny(missing_docs)]
