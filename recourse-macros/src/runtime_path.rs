//! How generated code names the runtime crate.

use proc_macro2::{Span, TokenStream};
use quote::{ToTokens, quote};

/// `::recourse` by default, or the path given with `crate = "..."` for
/// re-exports (tokio and serde name this option the same way).
#[derive(Clone)]
pub(crate) struct RuntimePath(TokenStream);

impl RuntimePath {
    pub(crate) fn default_path() -> Self {
        let ident = syn::Ident::new("recourse", Span::call_site());
        Self(quote!(:: #ident))
    }

    pub(crate) fn from_lit(lit: &syn::LitStr) -> syn::Result<Self> {
        let path: syn::Path = lit.parse()?;
        Ok(Self(path.into_token_stream()))
    }

    /// `<runtime>::__private`.
    pub(crate) fn private(&self) -> TokenStream {
        let root = &self.0;
        quote!(#root::__private)
    }
}

impl ToTokens for RuntimePath {
    fn to_tokens(&self, tokens: &mut TokenStream) {
        self.0.to_tokens(tokens);
    }
}
