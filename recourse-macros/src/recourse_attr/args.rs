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
    // Every argument is read, so that one bad argument neither hides the
    // next nor makes a `policy` after it look missing.
    let parser = syn::meta::parser(|meta| {
        let name = meta.path.get_ident().map_or_else(|| "?".to_owned(), ToString::to_string);
        let duplicate = |meta: &syn::meta::ParseNestedMeta<'_>| meta.error(format!("duplicate `{name}` argument"));
        match name.as_str() {
            "policy" => {
                let lit: syn::LitStr = meta.value()?.parse()?;
                match policy {
                    Some(_) => errors.push(duplicate(&meta)),
                    None => policy = Some(lit),
                }
            }
            "classifier" => {
                let lit: syn::LitStr = meta.value()?.parse()?;
                match classifier {
                    Some(_) => errors.push(duplicate(&meta)),
                    None => classifier = Some(lit),
                }
            }
            "executor" => {
                let expr: syn::Expr = meta.value()?.parse()?;
                match executor {
                    Some(_) => errors.push(duplicate(&meta)),
                    None => executor = Some(expr),
                }
            }
            "crate" => {
                let lit: syn::LitStr = meta.value()?.parse()?;
                match runtime {
                    Some(_) => errors.push(duplicate(&meta)),
                    None => match RuntimePath::from_lit(&lit) {
                        Ok(path) => runtime = Some(path),
                        Err(e) => errors.push(e),
                    },
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
    if policy.is_none() {
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
