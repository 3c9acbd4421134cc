//! `#[recourse(policy = "...", classifier = "...", executor = ..., crate = "...")]`.

use proc_macro2::{Span, TokenStream};
use syn::parse::Parser;

use crate::error::Errors;
use crate::key::suggest;
use crate::runtime_path::RuntimePath;

/// The arguments `#[recourse]` takes.
const KNOWN: [&str; 4] = ["policy", "classifier", "executor", "crate"];

pub(crate) struct Args {
    pub(crate) policy: syn::LitStr,
    pub(crate) classifier: Option<syn::LitStr>,
    pub(crate) executor: Option<syn::Expr>,
    pub(crate) runtime: RuntimePath,
}

/// Parses the arguments, reporting every bad one at once; duplicates are
/// spanned on their second occurrence (serde's `Attr::set`).
pub(crate) fn parse(args: TokenStream) -> syn::Result<Args> {
    let mut errors = Errors::default();
    let mut policy: Option<syn::LitStr> = None;
    let mut classifier: Option<syn::LitStr> = None;
    let mut executor: Option<syn::Expr> = None;
    let mut runtime: Option<RuntimePath> = None;
    // A `policy` whose value does not parse is reported there, not also as
    // missing.
    let mut policy_named = false;
    // Every argument is read, so that one bad argument neither hides the
    // next nor makes a `policy` after it look missing.
    let parser = syn::meta::parser(|meta| {
        let name = meta.path.get_ident().map_or_else(|| "?".to_owned(), ToString::to_string);
        match name.as_str() {
            "policy" => {
                policy_named = true;
                set_once(&mut policy, meta.value()?.parse()?, &meta, &name, &mut errors);
            }
            "classifier" => set_once(&mut classifier, meta.value()?.parse()?, &meta, &name, &mut errors),
            "executor" => set_once(&mut executor, meta.value()?.parse()?, &meta, &name, &mut errors),
            "crate" => {
                let lit: syn::LitStr = meta.value()?.parse()?;
                match RuntimePath::from_lit(&lit) {
                    Ok(path) => set_once(&mut runtime, path, &meta, &name, &mut errors),
                    Err(e) => errors.push(e),
                }
            }
            _ => {
                let hint = suggest(&name, KNOWN).map(|s| format!("did you mean `{s}`? ")).unwrap_or_default();
                errors.push(meta.error(format!(
                    "unknown `recourse` argument `{name}`; {hint}expected `policy`, `classifier`, `executor` or `crate`"
                )));
                // Skip its value, so the arguments after it are read too.
                if meta.input.peek(syn::Token![=]) {
                    let _: syn::Expr = meta.value()?.parse()?;
                } else if !meta.input.is_empty() && !meta.input.peek(syn::Token![,]) {
                    let _: proc_macro2::Group = meta.input.parse()?;
                }
            }
        }
        Ok(())
    });
    if let Err(e) = parser.parse2(args) {
        errors.push(e);
    }
    if policy.is_none() && !policy_named {
        errors.push(syn::Error::new(
            Span::call_site(),
            "missing `policy` argument: write `#[recourse(policy = \"service.Operation\")]`",
        ));
    }
    errors.finish()?;
    Ok(Args {
        policy: policy.expect("checked above"),
        classifier,
        executor,
        runtime: runtime.unwrap_or_else(RuntimePath::default_path),
    })
}

/// Keeps the first value of an argument; a second one is an error on its
/// own token.
fn set_once<T>(slot: &mut Option<T>, value: T, meta: &syn::meta::ParseNestedMeta<'_>, name: &str, errors: &mut Errors) {
    match slot {
        Some(_) => errors.push(meta.error(format!("duplicate `{name}` argument"))),
        None => *slot = Some(value),
    }
}

#[cfg(test)]
mod tests {
    use quote::quote;

    fn messages(args: proc_macro2::TokenStream) -> Vec<String> {
        match super::parse(args) {
            Ok(_) => Vec::new(),
            Err(error) => error.into_iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    fn a_policy_that_does_not_parse_is_not_also_missing() {
        assert_eq!(messages(quote!(policy = 3)), ["expected string literal"]);
    }

    #[test]
    fn a_duplicate_is_reported_once_and_the_rest_still_read() {
        let all = messages(quote!(policy = "a.b", policy = "a.c", executr = e));
        assert_eq!(all.len(), 2, "{all:?}");
        assert_eq!(all[0], "duplicate `policy` argument");
        assert!(all[1].starts_with("unknown `recourse` argument `executr`; did you mean `executor`?"), "{all:?}");
        assert!(messages(quote!(policy = "a.b", classifier = "never", executor = e, crate = "::recourse")).is_empty());
        assert_eq!(messages(quote!(classifier = "never")).len(), 1);
    }
}
