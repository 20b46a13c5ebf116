//! mvi-py: the Python binding. A compiling skeleton until the Python issue lands.
#![deny(missing_docs)]
