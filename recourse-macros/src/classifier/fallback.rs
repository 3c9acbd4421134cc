//! What an invalid input expands to: the errors, plus an empty
//! `impl Classify` so code using the type (`executor.call` with this error
//! type, `E: Classify` bounds) does not pile secondary errors on top
//! (thiserror's `fallback.rs`).

use proc_macro2::TokenStream;
use quote::quote;

use crate::runtime_path::RuntimePath;

pub(crate) fn expand(input: &syn::DeriveInput, root: &RuntimePath, error: &syn::Error) -> TokenStream {
    let ty = &input.ident;
    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();
    let error = error.to_compile_error();
    quote! {
        #error

        #[automatically_derived]
        impl #impl_generics #root::Classify for #ty #ty_generics #where_clause {}
    }
}
