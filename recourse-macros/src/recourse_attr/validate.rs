//! Shape checks on the annotated function and its catalog entry, each a
//! spanned error.

use super::args::Args;
use crate::catalog::{self, Catalog, LoadError, PolicySpec};
use crate::key::{key_problem, suggest};

/// How the function's attempts may run.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Attempts are built by a closure: several may be in flight (hedging).
    Concurrent,
    /// The function borrows something mutably: attempts run one after
    /// another in an inline loop, never hedged.
    Sequential,
}

pub(crate) struct Checked {
    pub(crate) catalog: std::sync::Arc<Catalog>,
    pub(crate) spec: PolicySpec,
    pub(crate) mode: Mode,
}

/// Checks the function's shape, then the key against the catalog.
pub(crate) fn check(func: &syn::ItemFn, args: &Args) -> syn::Result<Checked> {
    let sig = &func.sig;
    if sig.asyncness.is_none() {
        return Err(syn::Error::new_spanned(sig.fn_token, "`#[recourse]` can only be applied to an `async fn`"));
    }
    if let Some(constness) = &sig.constness {
        return Err(syn::Error::new_spanned(constness, "`#[recourse]` cannot be applied to a `const fn`"));
    }
    if let Some(variadic) = &sig.variadic {
        return Err(syn::Error::new_spanned(variadic, "`#[recourse]` does not support variadic functions"));
    }
    match &sig.output {
        syn::ReturnType::Default => {
            return Err(syn::Error::new_spanned(
                &sig.ident,
                "`#[recourse]` functions must return `Result<T, E>`: the error decides whether to retry",
            ));
        }
        syn::ReturnType::Type(_, ty) if certainly_not_result(ty) => {
            return Err(syn::Error::new_spanned(
                ty,
                "`#[recourse]` functions must return `Result<T, E>`: the error decides whether to retry",
            ));
        }
        syn::ReturnType::Type(..) => {}
    }
    let mut mode = Mode::Concurrent;
    for input in &sig.inputs {
        match input {
            syn::FnArg::Receiver(receiver) => {
                if receiver.reference.is_none() || !matches!(&*receiver.ty, syn::Type::Reference(_)) {
                    return Err(syn::Error::new_spanned(
                        receiver,
                        "`#[recourse]` re-runs the body for every attempt, so it cannot consume `self`; take `&self` (or `&mut self`)",
                    ));
                }
                if receiver.mutability.is_some() {
                    mode = Mode::Sequential;
                }
            }
            syn::FnArg::Typed(arg) => {
                if let syn::Type::Reference(r) = &*arg.ty
                    && r.mutability.is_some()
                {
                    mode = Mode::Sequential;
                }
            }
        }
    }

    let key = args.policy.value();
    if let Some(problem) = key_problem(&key) {
        return Err(syn::Error::new_spanned(&args.policy, problem));
    }
    let catalog = load_catalog(&args.policy, &key)?;
    let spec = entry(&catalog, &args.policy, &key)?;
    if let Some(classifier) = &args.classifier {
        let name = classifier.value();
        if !catalog.knows_classifier(name.trim()) {
            let hint = suggest(name.trim(), catalog.classifier_names())
                .map(|s| format!("; did you mean \"{s}\"?"))
                .unwrap_or_default();
            return Err(syn::Error::new_spanned(
                classifier,
                format!(
                    "unknown classifier \"{name}\"{hint}\nbuilt-ins are {}; declare classifiers registered in code in {} under `[classifiers] names = [...]`",
                    catalog::BUILTIN_CLASSIFIERS.join(", "),
                    catalog.shown
                ),
            ));
        }
    }
    if mode == Mode::Sequential && spec.hedging() {
        return Err(syn::Error::new_spanned(
            &args.policy,
            format!(
                "policy \"{key}\" enables hedging ({}), but `{}` borrows something mutably (`&mut`), so its attempts cannot run concurrently\nturn hedging off for this key, or take `&self`/`&T` and use interior mutability",
                catalog.shown, sig.ident
            ),
        ));
    }
    Ok(Checked { catalog, spec, mode })
}

/// The file that invokes the macro (`None` outside a compiler, e.g. in
/// this crate's unit tests).
fn source_file() -> Option<std::path::PathBuf> {
    if proc_macro::is_available() { proc_macro::Span::call_site().local_file() } else { None }
}

pub(crate) fn load_catalog(lit: &syn::LitStr, key: &str) -> syn::Result<std::sync::Arc<Catalog>> {
    let catalog = catalog::load(source_file().as_deref()).map_err(|e| match e {
        LoadError::Missing { looked_at } => syn::Error::new_spanned(
            lit,
            format!(
                "no policy catalog found (looked for `{looked_at}`)\ncreate `recourse.toml` next to Cargo.toml declaring this key:\n\n    [policies.\"{key}\"]\n    max_attempts = 3\n\nor point `[package.metadata.recourse] catalog = \"...\"` at a shared file"
            ),
        ),
        LoadError::Unreadable { shown, error } => {
            syn::Error::new_spanned(lit, format!("cannot read policy catalog `{shown}`: {error}"))
        }
    })?;
    if !catalog.errors.is_empty() {
        return Err(syn::Error::new_spanned(lit, format!("invalid policy catalog:\n{}", catalog.errors.join("\n"))));
    }
    Ok(catalog)
}

/// The catalog entry for `key`, or an "unknown policy" error with a
/// suggestion.
pub(crate) fn entry(catalog: &Catalog, lit: &syn::LitStr, key: &str) -> syn::Result<PolicySpec> {
    match catalog.policies.get(key) {
        Some(entry) if entry.errors.is_empty() => Ok(entry.spec.clone()),
        Some(entry) => {
            let mut errors = entry.errors.clone();
            errors.sort_by_key(|e| line_of(e));
            Err(syn::Error::new_spanned(
                lit,
                format!("invalid policy \"{key}\" in {}:\n{}", catalog.shown, errors.join("\n")),
            ))
        }
        None => {
            let hint = match suggest(key, catalog.policies.keys().map(String::as_str)) {
                Some(s) => format!("; did you mean \"{s}\"?"),
                None => format!("; declare it in {} as `[policies.\"{key}\"]`", catalog.shown),
            };
            Err(syn::Error::new_spanned(lit, format!("unknown policy \"{key}\"{hint}")))
        }
    }
}

/// Return types that can never be a `Result` (aliases of `Result` are
/// left to the type checker, which reports them at the return type).
fn certainly_not_result(ty: &syn::Type) -> bool {
    const NOT_RESULT: &[&str] = &[
        "bool", "char", "str", "u8", "u16", "u32", "u64", "u128", "usize", "i8", "i16", "i32", "i64", "i128", "isize",
        "f32", "f64", "String", "Vec", "Option", "Box", "Arc", "Rc", "HashMap", "BTreeMap",
    ];
    match ty {
        syn::Type::Path(path) => {
            path.qself.is_none()
                && path.path.segments.last().is_some_and(|s| NOT_RESULT.contains(&s.ident.to_string().as_str()))
        }
        syn::Type::Group(group) => certainly_not_result(&group.elem),
        syn::Type::Paren(paren) => certainly_not_result(&paren.elem),
        _ => true,
    }
}

/// The line number in a `file:line: message` string (for ordering).
fn line_of(message: &str) -> usize {
    message.split(':').nth(1).and_then(|n| n.trim().parse().ok()).unwrap_or(0)
}
