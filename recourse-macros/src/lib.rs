//! Procedural macros for [`recourse`](https://docs.rs/recourse).
//!
//! This crate is an implementation detail: depend on `recourse` and use the
//! re-exports there (`recourse::recourse`, `recourse::Classifier`,
//! `recourse::key!`). Generated code names only `::recourse::__private` and
//! `::core`, or the path given with `crate = "..."`.
#![forbid(unsafe_code)]

mod classifier;
mod error;
mod runtime_path;

use proc_macro::TokenStream;

/// Derives `recourse::Classify` for an error enum (or struct).
///
/// See the `recourse` crate documentation of `Classifier` for the
/// `#[classify(...)]` attributes.
#[proc_macro_derive(Classifier, attributes(classify))]
pub fn derive_classifier(input: TokenStream) -> TokenStream {
    let input = syn::parse_macro_input!(input as syn::DeriveInput);
    classifier::derive(&input).into()
}
