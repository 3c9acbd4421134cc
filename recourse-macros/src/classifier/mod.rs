//! `#[derive(Classifier)]`: parse → validate → expand, with a fallback stub
//! impl when the input is wrong (thiserror's pattern).

use proc_macro2::TokenStream;

pub(crate) fn derive(input: &syn::DeriveInput) -> TokenStream {
    let _ = input;
    TokenStream::new()
}
