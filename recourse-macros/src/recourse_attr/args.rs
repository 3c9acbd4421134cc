//! `#[recourse(policy = "...", classifier = "...", executor = ..., crate = "...")]`.

use proc_macro2::{Span, TokenStream};
use syn::parse::Parser;

use crate::error::Errors;
use crate::runtime_path::RuntimePath;

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
    let parser = syn::meta::parser(|meta| {
        let duplicate =
            |meta: &syn::meta::ParseNestedMeta<'_>, name: &str| meta.error(format!("duplicate `{name}` argument"));
        if meta.path.is_ident("policy") {
            let lit: syn::LitStr = meta.value()?.parse()?;
            if policy.is_some() {
                return Err(duplicate(&meta, "policy"));
            }
            policy = Some(lit);
        } else if meta.path.is_ident("classifier") {
            let lit: syn::LitStr = meta.value()?.parse()?;
            if classifier.is_some() {
                return Err(duplicate(&meta, "classifier"));
            }
            classifier = Some(lit);
        } else if meta.path.is_ident("executor") {
            let expr: syn::Expr = meta.value()?.parse()?;
            if executor.is_some() {
                return Err(duplicate(&meta, "executor"));
            }
            executor = Some(expr);
        } else if meta.path.is_ident("crate") {
            let lit: syn::LitStr = meta.value()?.parse()?;
            if runtime.is_some() {
                return Err(duplicate(&meta, "crate"));
            }
            runtime = Some(RuntimePath::from_lit(&lit)?);
        } else {
            let name = meta.path.get_ident().map_or_else(|| "?".to_owned(), ToString::to_string);
            return Err(meta.error(format!(
                "unknown `recourse` argument `{name}`; expected `policy`, `classifier`, `executor` or `crate`"
            )));
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
