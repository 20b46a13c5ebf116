//! mvi facade
