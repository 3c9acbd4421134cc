//! Parsing `#[classify(...)]` into spanned, set-once options.
//!
//! One parser serves the enum, its variants and a struct; which keys are
//! allowed where is checked in `valid.rs`, so every misplaced key gets a
//! message that says where it belongs. Parsing never stops at the first bad
//! key: each error is pushed to [`Errors`] and the next key is read.

use proc_macro2::Span;
use quote::ToTokens;
use syn::meta::ParseNestedMeta;
use syn::spanned::Spanned as _;

use crate::error::Errors;
use crate::runtime_path::RuntimePath;

/// The helper attribute's name.
pub(crate) const CLASSIFY: &str = "classify";

/// An outcome a variant can name.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Retryable,
    NonRetryable,
    Abort,
}

impl Kind {
    fn from_ident(ident: &syn::Ident) -> Option<Self> {
        match ident.to_string().as_str() {
            "retryable" => Some(Self::Retryable),
            "non_retryable" => Some(Self::NonRetryable),
            "abort" => Some(Self::Abort),
            _ => None,
        }
    }

    /// The keyword, as written in `#[classify(...)]`.
    pub(crate) const fn keyword(self) -> &'static str {
        match self {
            Self::Retryable => "retryable",
            Self::NonRetryable => "non_retryable",
            Self::Abort => "abort",
        }
    }

    /// The `recourse::OutcomeKind` variant.
    pub(crate) const fn variant(self) -> &'static str {
        match self {
            Self::Retryable => "Retryable",
            Self::NonRetryable => "NonRetryable",
            Self::Abort => "Abort",
        }
    }
}

/// What a variant does: name an outcome, forward to its field, or leave
/// the decision to the executor.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Behaviour {
    Outcome(Kind),
    /// `transparent`, or its alias `delegate`.
    Transparent,
    /// `defer`: no outcome of its own (`None`), so the executor looks inside
    /// and then asks its default classifier.
    Defer,
}

impl Behaviour {
    /// The keyword, as written in `#[classify(...)]` (`transparent` for its
    /// alias too).
    pub(crate) const fn keyword(self) -> &'static str {
        match self {
            Self::Outcome(kind) => kind.keyword(),
            Self::Transparent => "transparent",
            Self::Defer => "defer",
        }
    }
}

/// A value together with the key that set it; errors about the key point
/// at `span`, and messages quote `name` as the user wrote it.
pub(crate) struct Keyed<T> {
    pub(crate) name: &'static str,
    pub(crate) span: Span,
    pub(crate) value: T,
}

/// Everything the `#[classify(...)]` attributes on one item say.
#[derive(Default)]
pub(crate) struct Attrs<'a> {
    /// The first `#[classify]` attribute, if any.
    pub(crate) original: Option<&'a syn::Attribute>,
    pub(crate) behaviour: Option<Keyed<Behaviour>>,
    pub(crate) reason: Option<Keyed<syn::LitStr>>,
    pub(crate) backoff: Option<Keyed<syn::Member>>,
    /// `default = <outcome>` or `default = defer`; never `Transparent`.
    pub(crate) default: Option<Keyed<Behaviour>>,
    pub(crate) crate_path: Option<Keyed<CratePath>>,
    /// Some `#[classify]` here was malformed (and already reported), so
    /// "names no outcome" would only repeat that error.
    pub(crate) malformed: bool,
}

/// `crate = "..."`: the path as written (to recognise `<path>::Error`
/// fields) and as generated code names it.
pub(crate) struct CratePath {
    pub(crate) path: syn::Path,
    pub(crate) runtime: RuntimePath,
}

/// Reads every `#[classify(...)]` in `attrs`, reporting bad keys to `errors`.
pub(crate) fn get<'a>(attrs: &'a [syn::Attribute], errors: &mut Errors) -> Attrs<'a> {
    let mut out = Attrs::default();
    for attr in attrs.iter().filter(|attr| attr.path().is_ident(CLASSIFY)) {
        out.original.get_or_insert(attr);
        let mut local = Errors::default();
        if let Err(error) = attr.parse_nested_meta(|meta| out.parse_key(&meta, &mut local)) {
            local.push(error);
        }
        if let Err(error) = local.finish() {
            out.malformed = true;
            errors.push(error);
        }
    }
    out
}

impl Attrs<'_> {
    fn parse_key(&mut self, meta: &ParseNestedMeta<'_>, errors: &mut Errors) -> syn::Result<()> {
        let span = meta.path.span();
        let Some(name) = known_key(&meta.path) else {
            let path = meta.path.to_token_stream().to_string().replace(' ', "");
            let message = match crate::key::suggest(&path, KEYS) {
                Some(key) => format!("unknown `classify` argument `{path}`; did you mean `{key}`?"),
                None => format!("unknown `classify` argument `{path}`"),
            };
            errors.spanned(&meta.path, message);
            return skip_value(meta);
        };
        match name {
            // #[classify(retryable)], #[classify(non_retryable)], #[classify(abort)]
            "retryable" => self.set_behaviour(Keyed { name, span, value: Behaviour::Outcome(Kind::Retryable) }, errors),
            "non_retryable" => {
                self.set_behaviour(Keyed { name, span, value: Behaviour::Outcome(Kind::NonRetryable) }, errors);
            }
            "abort" => self.set_behaviour(Keyed { name, span, value: Behaviour::Outcome(Kind::Abort) }, errors),
            // #[classify(defer)]
            "defer" => self.set_behaviour(Keyed { name, span, value: Behaviour::Defer }, errors),
            // #[classify(transparent)], #[classify(delegate)]
            "transparent" | "delegate" => {
                self.set_behaviour(Keyed { name, span, value: Behaviour::Transparent }, errors);
            }
            // #[classify(reason = "snake_case")]
            "reason" => {
                let value = meta.value()?.parse::<syn::Expr>()?;
                match reason_literal(&value) {
                    Ok(lit) => set_once(&mut self.reason, Keyed { name, span, value: lit }, errors),
                    Err(error) => errors.push(error),
                }
            }
            // #[classify(backoff = field)], #[classify(backoff = 0)]
            "backoff" => {
                let value = meta.value()?.parse::<syn::Expr>()?;
                match member(&value) {
                    Ok(member) => set_once(&mut self.backoff, Keyed { name, span, value: member }, errors),
                    Err(error) => errors.push(error),
                }
            }
            // #[classify(default = non_retryable)]
            "default" => {
                let value = meta.value()?.parse::<syn::Expr>()?;
                match default_kind(&value) {
                    Ok(kind) => set_once(&mut self.default, Keyed { name, span, value: kind }, errors),
                    Err(error) => errors.push(error),
                }
            }
            // #[classify(crate = "path::to::recourse")]
            "crate" => {
                let value = meta.value()?.parse::<syn::Expr>()?;
                match crate_path(&value) {
                    Ok(path) => set_once(&mut self.crate_path, Keyed { name, span, value: path }, errors),
                    Err(error) => errors.push(error),
                }
            }
            _ => unreachable!("`known_key` returned an unhandled key"),
        }
        Ok(())
    }

    fn set_behaviour(&mut self, new: Keyed<Behaviour>, errors: &mut Errors) {
        let Some(old) = &self.behaviour else {
            self.behaviour = Some(new);
            return;
        };
        let message = if old.name == new.name {
            format!("duplicate `{}` argument", new.name)
        } else if old.value == Behaviour::Transparent && new.value == Behaviour::Transparent {
            "duplicate `transparent` argument: `delegate` is an alias of `transparent`".to_owned()
        } else {
            format!("conflicting outcomes `{}` and `{}`; keep one", old.name, new.name)
        };
        errors.push(syn::Error::new(new.span, message));
    }
}

/// Serde's `Attr::set`: the second occurrence of a key is the error.
fn set_once<T>(slot: &mut Option<Keyed<T>>, new: Keyed<T>, errors: &mut Errors) {
    if slot.is_some() {
        errors.push(syn::Error::new(new.span, format_args!("duplicate `{}` argument", new.name)));
    } else {
        *slot = Some(new);
    }
}

const KEYS: [&str; 10] = [
    "retryable",
    "non_retryable",
    "abort",
    "defer",
    "transparent",
    "delegate",
    "reason",
    "backoff",
    "default",
    "crate",
];

fn known_key(path: &syn::Path) -> Option<&'static str> {
    let ident = path.get_ident()?.to_string();
    KEYS.into_iter().find(|key| *key == ident)
}

/// Consumes an unknown key's value (`= expr` or `(...)`), so the keys after
/// it are still read and checked.
fn skip_value(meta: &ParseNestedMeta<'_>) -> syn::Result<()> {
    if meta.input.peek(syn::Token![=]) {
        meta.value()?.parse::<syn::Expr>()?;
    } else if meta.input.peek(syn::token::Paren) {
        meta.input.parse::<proc_macro2::Group>()?;
    }
    Ok(())
}

fn reason_literal(value: &syn::Expr) -> syn::Result<syn::LitStr> {
    let syn::Expr::Lit(syn::ExprLit { lit: syn::Lit::Str(lit), .. }) = value else {
        return Err(syn::Error::new_spanned(value, "expected a string literal: `reason = \"snake_case_code\"`"));
    };
    check_reason(&lit.value()).map_err(|message| syn::Error::new(lit.span(), message))?;
    Ok(lit.clone())
}

/// The rule for reason codes (low-cardinality telemetry values).
pub(crate) fn check_reason(reason: &str) -> Result<(), String> {
    if reason.is_empty() {
        return Err("`reason` cannot be empty".to_owned());
    }
    if reason.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_') {
        Ok(())
    } else {
        Err(format!("invalid reason `{reason}`: use lowercase ascii letters, digits and `_`"))
    }
}

fn member(value: &syn::Expr) -> syn::Result<syn::Member> {
    const EXPECTED: &str = "expected a field name or tuple index: `backoff = retry_after` or `backoff = 0`";
    match value {
        syn::Expr::Path(path) if path.qself.is_none() && path.attrs.is_empty() => match path.path.get_ident() {
            Some(ident) => Ok(syn::Member::Named(ident.clone())),
            None => Err(syn::Error::new_spanned(value, EXPECTED)),
        },
        syn::Expr::Lit(syn::ExprLit { lit: syn::Lit::Int(lit), .. }) if lit.suffix().is_empty() => {
            let index = lit.base10_parse::<u32>()?;
            Ok(syn::Member::Unnamed(syn::Index { index, span: lit.span() }))
        }
        _ => Err(syn::Error::new_spanned(value, EXPECTED)),
    }
}

fn default_kind(value: &syn::Expr) -> syn::Result<Behaviour> {
    let behaviour = match value {
        syn::Expr::Path(path) if path.qself.is_none() => path.path.get_ident().and_then(|ident| {
            if ident == "defer" { Some(Behaviour::Defer) } else { Kind::from_ident(ident).map(Behaviour::Outcome) }
        }),
        _ => None,
    };
    behaviour.ok_or_else(|| syn::Error::new_spanned(value, "expected `retryable`, `non_retryable`, `abort` or `defer`"))
}

fn crate_path(value: &syn::Expr) -> syn::Result<CratePath> {
    match value {
        syn::Expr::Lit(syn::ExprLit { lit: syn::Lit::Str(lit), .. }) => {
            Ok(CratePath { path: lit.parse()?, runtime: RuntimePath::from_lit(lit)? })
        }
        _ => Err(syn::Error::new_spanned(value, "expected a string literal: `crate = \"path::to::recourse\"`")),
    }
}
