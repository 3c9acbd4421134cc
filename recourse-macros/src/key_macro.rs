//! `recourse::key!("svc.Op")`: a compile-time checked policy key.

use proc_macro2::TokenStream;
use quote::quote;

use crate::recourse_attr::{rewrite, validate};
use crate::runtime_path::RuntimePath;

pub(crate) fn expand(input: TokenStream) -> TokenStream {
    match try_expand(input) {
        Ok(tokens) => tokens,
        Err(error) => error.to_compile_error(),
    }
}

fn try_expand(input: TokenStream) -> syn::Result<TokenStream> {
    let lit: syn::LitStr = syn::parse2(input).map_err(|e| {
        syn::Error::new(e.span(), "expected a policy key string: `recourse::key!(\"service.Operation\")`")
    })?;
    let key = lit.value();
    if let Some(problem) = crate::key::key_problem(&key) {
        return Err(syn::Error::new_spanned(&lit, problem));
    }
    let catalog = validate::load_catalog(&lit, &key)?;
    let spec = validate::entry(&catalog, &lit, &key)?;
    let private = RuntimePath::default_path().private();
    let site = rewrite::site_static(&private, &key, Some((&spec, &*catalog)), None, proc_macro2::Span::call_site());
    let tracking = rewrite::tracking(&catalog.path);
    Ok(quote! {{
        #site
        #tracking
        #private::CheckedKey::new(&__RECOURSE_SITE)
    }})
}
