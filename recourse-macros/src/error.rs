//! Error accumulation and reporting helpers shared by every macro.

use std::fmt::Display;

use proc_macro2::TokenStream;
use quote::ToTokens;

/// Collects several errors so one expansion reports all of them
/// (serde's `Ctxt`). Must be consumed with [`Errors::finish`].
#[derive(Default)]
pub(crate) struct Errors(Option<syn::Error>);

impl Errors {
    pub(crate) fn push(&mut self, error: syn::Error) {
        match &mut self.0 {
            Some(acc) => acc.combine(error),
            None => self.0 = Some(error),
        }
    }

    pub(crate) fn spanned(&mut self, tokens: impl ToTokens, message: impl Display) {
        self.push(syn::Error::new_spanned(tokens, message));
    }

    pub(crate) fn finish(mut self) -> syn::Result<()> {
        self.0.take().map_or(Ok(()), Err)
    }
}

impl Drop for Errors {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            assert!(self.0.is_none(), "recourse-macros: collected errors were never reported");
        }
    }
}

/// Keeps the user's item next to the error (tokio-macros PR #4162): no
/// cascading "cannot find function" errors, and IDEs keep working inside
/// the body.
pub(crate) fn item_with_error(mut item: TokenStream, error: &syn::Error) -> TokenStream {
    item.extend(error.to_compile_error());
    item
}
