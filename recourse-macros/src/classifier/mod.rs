//! `#[derive(Classifier)]`: parse → validate → expand, with a fallback stub
//! impl when the input is wrong (thiserror's pattern).
//!
//! * `attr.rs` reads `#[classify(...)]` into set-once, spanned options.
//! * `ast.rs` is the input as the other phases see it.
//! * `valid.rs` checks it and decides each variant's classification.
//! * `expand.rs` writes the `impl Classify`.
//! * `fallback.rs` writes the errors plus an empty `impl Classify`.

mod ast;
mod attr;
mod expand;
mod fallback;
mod valid;

use proc_macro2::TokenStream;

use crate::error::Errors;

pub(crate) fn derive(input: &syn::DeriveInput) -> TokenStream {
    let mut errors = Errors::default();
    let parsed = ast::Input::from_syn(input, &mut errors);
    let arms = valid::resolve(&parsed, &mut errors);
    let root = parsed.runtime_path();
    match errors.finish() {
        Ok(()) => expand::expand(&parsed, &root, &arms),
        Err(error) => fallback::expand(input, &root, &error),
    }
}
