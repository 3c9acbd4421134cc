//! `recourse::catalog!()`: the invoking crate's checked catalog, embedded.

use proc_macro2::{Span, TokenStream};
use quote::quote;

use crate::catalog::BudgetDecl;
use crate::key::split;
use crate::recourse_attr::{rewrite, validate};
use crate::runtime_path::RuntimePath;

pub(crate) fn expand(input: TokenStream) -> TokenStream {
    match try_expand(input) {
        Ok(tokens) => tokens,
        Err(error) => error.to_compile_error(),
    }
}

fn try_expand(input: TokenStream) -> syn::Result<TokenStream> {
    if !input.is_empty() {
        return Err(syn::Error::new_spanned(input, "`recourse::catalog!()` takes no arguments"));
    }
    let anchor = syn::LitStr::new("", Span::call_site());
    let catalog = validate::load_catalog(&anchor, "service.Operation")?;
    // A catalog handed to an executor is checked whole: every policy, not
    // only those a call site uses.
    let problems: Vec<&String> = catalog.policies.values().flat_map(|entry| &entry.errors).collect();
    if !problems.is_empty() {
        let problems: Vec<&str> = problems.into_iter().map(String::as_str).collect();
        return Err(syn::Error::new(
            Span::call_site(),
            format!("invalid policy catalog {}:\n{}", catalog.shown, problems.join("\n")),
        ));
    }
    let private = RuntimePath::default_path().private();
    let policies = catalog.policies.iter().map(|(key, entry)| {
        let (namespace, name) = split(key);
        let spec = rewrite::catalog_spec(&private, &entry.spec, &catalog);
        quote!((#private::PolicyKey::from_static(#namespace, #name), #spec))
    });
    let classifiers = &catalog.classifiers;
    let budgets = catalog.budgets.iter().map(|(name, decl)| {
        let decl = rewrite::budget_decl(&private, decl);
        quote!((#name, #decl))
    });
    let custom_budgets =
        catalog.budgets.iter().filter(|(_, decl)| matches!(decl, BudgetDecl::Custom)).map(|(name, _)| name);
    let triggers = &catalog.triggers;
    let shown = &catalog.shown;
    let tracking = rewrite::tracking(&catalog.path);
    let count = catalog.policies.len();
    Ok(quote! {{
        #tracking
        // A `static` of its own: keys own strings, so the array cannot be
        // a promoted constant.
        static __RECOURSE_POLICIES: [(#private::PolicyKey, #private::CatalogEntry); #count] = [#(#policies),*];
        static __RECOURSE_CATALOG: #private::Catalog = #private::Catalog::new(
            #shown,
            &__RECOURSE_POLICIES,
            &[#(#classifiers),*],
            &[#(#budgets),*],
            &[#(#custom_budgets),*],
            &[#(#triggers),*],
        );
        &__RECOURSE_CATALOG
    }})
}
