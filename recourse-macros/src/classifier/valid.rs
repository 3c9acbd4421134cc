//! Semantic checks, and the decision for each variant: which outcome it
//! produces, with which reason and backoff field, or which field it
//! forwards to. Every problem is reported (spanned) before giving up, so
//! one build shows all of them.

use std::fmt::Write as _;

use proc_macro2::Span;
use syn::ext::IdentExt as _;

use crate::error::Errors;

use super::ast::{Data, Field, Input};
use super::attr::{Attrs, Behaviour, Kind, check_reason};

/// What `classify` returns for one variant (or for the struct).
pub(crate) struct Arm<'a> {
    /// `None` for a struct.
    pub(crate) variant: Option<&'a syn::Ident>,
    /// Matched as `Self::V` rather than `Self::V { .. }`.
    pub(crate) unit: bool,
    pub(crate) action: Action<'a>,
}

pub(crate) enum Action<'a> {
    /// A fixed outcome, optionally with a backoff taken from a field.
    Outcome { kind: Kind, reason: syn::LitStr, backoff: Option<&'a Field<'a>> },
    /// The field's own `Classify::classify`.
    Transparent(&'a Field<'a>),
    /// The field is a `recourse::Error`: abort with its reason.
    RecourseError(&'a Field<'a>),
    /// No outcome of its own: `None`.
    Defer,
}

/// One thing that classifies: an enum variant or the struct itself.
struct Case<'a> {
    ident: &'a syn::Ident,
    /// `variant `X`` or `struct `X``, for messages.
    described: String,
    attrs: &'a Attrs<'a>,
    fields: &'a [Field<'a>],
    default: Option<Behaviour>,
    is_struct: bool,
    /// Its attributes already produced an error, so "names no outcome"
    /// would only repeat it.
    malformed: bool,
}

pub(crate) fn resolve<'a>(input: &'a Input<'a>, errors: &mut Errors) -> Vec<Arm<'a>> {
    let container = &input.attrs;
    let crate_path = container.crate_path.as_ref().map(|path| &path.value.path);
    match &input.data {
        Data::Union(data) => {
            errors.spanned(data.union_token, "`#[derive(Classifier)]` does not support unions");
            Vec::new()
        }
        Data::Enum(variants) => {
            check_enum_container(container, errors);
            // An outcome written on the enum itself is reported once there;
            // reading it as the default keeps the variants from repeating it.
            let misplaced = container.behaviour.as_ref().map(|b| b.value).filter(|b| *b != Behaviour::Transparent);
            let default = container.default.as_ref().map(|default| default.value).or(misplaced);
            variants
                .iter()
                .filter_map(|variant| {
                    let attrs = &variant.attrs;
                    let on_enum = [
                        ("default", attrs.default.as_ref().map(|k| k.span)),
                        ("crate", attrs.crate_path.as_ref().map(|k| k.span)),
                    ];
                    let mut misplaced = false;
                    for (key, span) in on_enum {
                        if let Some(span) = span {
                            misplaced = true;
                            errors.push(syn::Error::new(
                                span,
                                format_args!("`{key}` belongs on the enum, not on a variant"),
                            ));
                        }
                    }
                    let case = Case {
                        ident: variant.ident,
                        described: format!("variant `{}`", variant.ident),
                        attrs: &variant.attrs,
                        fields: &variant.fields,
                        default,
                        is_struct: false,
                        malformed: attrs.malformed || misplaced,
                    };
                    let action = resolve_case(&case, crate_path, errors)?;
                    Some(Arm { variant: Some(variant.ident), unit: variant.unit, action })
                })
                .collect()
        }
        Data::Struct(fields) => {
            if let Some(default) = &container.default {
                errors.push(syn::Error::new(
                    default.span,
                    "`default` is for enum variants; on a struct, name the outcome: `#[classify(non_retryable)]` \
                     or `#[classify(defer)]`",
                ));
            }
            let ident = &input.original.ident;
            let case = Case {
                ident,
                described: format!("struct `{ident}`"),
                attrs: container,
                fields,
                default: None,
                is_struct: true,
                malformed: container.malformed,
            };
            resolve_case(&case, crate_path, errors)
                .map(|action| Arm { variant: None, unit: is_unit_struct(input.original), action })
                .into_iter()
                .collect()
        }
    }
}

/// On an enum, only `default` and `crate` make sense.
fn check_enum_container(attrs: &Attrs<'_>, errors: &mut Errors) {
    if let Some(behaviour) = &attrs.behaviour {
        let message = match behaviour.value {
            Behaviour::Outcome(_) | Behaviour::Defer => format!(
                "`{0}` on the enum applies to no variant; put it on the variants or write \
                 `#[classify(default = {0})]`",
                behaviour.value.keyword()
            ),
            Behaviour::Transparent => format!("`{}` belongs on a variant, not on the enum", behaviour.name),
        };
        errors.push(syn::Error::new(behaviour.span, message));
    }
    for (key, span) in
        [("reason", attrs.reason.as_ref().map(|k| k.span)), ("backoff", attrs.backoff.as_ref().map(|k| k.span))]
    {
        if let Some(span) = span {
            errors.push(syn::Error::new(span, format_args!("`{key}` belongs on a variant, not on the enum")));
        }
    }
}

fn resolve_case<'a>(case: &Case<'a>, crate_path: Option<&syn::Path>, errors: &mut Errors) -> Option<Action<'a>> {
    let attrs = case.attrs;
    match attrs.behaviour.as_ref().map(|b| (b.value, b.name, b.span)) {
        Some((Behaviour::Transparent, name, span)) => {
            for (key, set) in
                [("reason", attrs.reason.as_ref().map(|k| k.span)), ("backoff", attrs.backoff.as_ref().map(|k| k.span))]
            {
                if let Some(key_span) = set {
                    errors.push(syn::Error::new(
                        key_span,
                        format_args!(
                            "`{key}` cannot be combined with `{name}`: the field's own classification decides"
                        ),
                    ));
                }
            }
            match case.fields {
                [field] => Some(Action::Transparent(field)),
                fields => {
                    let count = match fields.len() {
                        0 => "none".to_owned(),
                        n => n.to_string(),
                    };
                    errors.push(syn::Error::new(
                        span,
                        format_args!("`{name}` requires exactly one field; {} has {count}", case.described),
                    ));
                    None
                }
            }
        }
        Some((Behaviour::Outcome(kind), _, _)) => outcome(case, kind, errors),
        Some((Behaviour::Defer, name, _)) => Some(defer(case, name, errors)),
        None => {
            if attrs.reason.is_none()
                && attrs.backoff.is_none()
                && let [field] = case.fields
                && is_recourse_error(field.ty, crate_path)
            {
                return Some(Action::RecourseError(field));
            }
            match case.default {
                Some(Behaviour::Outcome(kind)) => return outcome(case, kind, errors),
                Some(Behaviour::Defer) => return Some(defer(case, "default = defer", errors)),
                Some(Behaviour::Transparent) | None => {}
            }
            if case.malformed {
                // The attribute's own error says what is wrong with it.
            } else if case.is_struct {
                errors.spanned(
                    case.ident,
                    format_args!(
                        "{} has no outcome; add `#[classify(retryable)]`, `#[classify(non_retryable)]`, \
                         `#[classify(abort)]`, `#[classify(transparent)]` or `#[classify(defer)]`",
                        case.described
                    ),
                );
            } else if let Some(original) = attrs.original {
                errors.spanned(
                    original,
                    format_args!(
                        "`#[classify(...)]` on {} names no outcome; add `retryable`, `non_retryable`, `abort`, \
                         `transparent` or `defer`",
                        case.described
                    ),
                );
            } else {
                errors.spanned(
                    case.ident,
                    format_args!(
                        "{} has no `#[classify(...)]`; annotate it or add `#[classify(default = non_retryable)]` \
                         on the enum",
                        case.described
                    ),
                );
            }
            None
        }
    }
}

/// `defer` names no outcome, so a reason or backoff would never be used.
fn defer<'a>(case: &Case<'a>, name: &str, errors: &mut Errors) -> Action<'a> {
    for (key, set) in [
        ("reason", case.attrs.reason.as_ref().map(|k| k.span)),
        ("backoff", case.attrs.backoff.as_ref().map(|k| k.span)),
    ] {
        if let Some(span) = set {
            errors.push(syn::Error::new(
                span,
                format_args!("`{key}` cannot be combined with `{name}`: the executor's classifier decides"),
            ));
        }
    }
    Action::Defer
}

fn outcome<'a>(case: &Case<'a>, kind: Kind, errors: &mut Errors) -> Option<Action<'a>> {
    let reason = case.attrs.reason.as_ref().map(|reason| reason.value.clone()).or_else(|| {
        let derived = snake_case(case.ident);
        if check_reason(&derived).is_ok() {
            return Some(syn::LitStr::new(&derived, case.ident.span()));
        }
        errors.spanned(
            case.ident,
            format_args!("cannot derive a reason code from `{}`; add `reason = \"snake_case_code\"`", case.ident),
        );
        None
    });
    let backoff = match &case.attrs.backoff {
        None => None,
        Some(backoff) => {
            let field = case.fields.iter().find(|field| field.member == backoff.value);
            if field.is_none() {
                errors.push(syn::Error::new(member_span(&backoff.value), missing_field(case, &backoff.value)));
                return None;
            }
            field
        }
    };
    Some(Action::Outcome { kind, reason: reason?, backoff })
}

fn missing_field(case: &Case<'_>, member: &syn::Member) -> String {
    let mut message = format!("no field `{}` on {}", member_name(member), case.described);
    if case.fields.is_empty() {
        let _ = write!(message, "; it has no fields");
    } else {
        let names: Vec<String> = case.fields.iter().map(|field| format!("`{}`", member_name(&field.member))).collect();
        let _ = write!(message, "; available fields: {}", names.join(", "));
    }
    message
}

fn member_name(member: &syn::Member) -> String {
    match member {
        syn::Member::Named(ident) => ident.unraw().to_string(),
        syn::Member::Unnamed(index) => index.index.to_string(),
    }
}

fn member_span(member: &syn::Member) -> Span {
    match member {
        syn::Member::Named(ident) => ident.span(),
        syn::Member::Unnamed(index) => index.span,
    }
}

fn is_unit_struct(input: &syn::DeriveInput) -> bool {
    matches!(&input.data, syn::Data::Struct(data) if matches!(data.fields, syn::Fields::Unit))
}

/// `recourse::Error`, `::recourse::Error`, or `<crate path>::Error` when
/// `crate = "..."` is given: the variants that classify themselves.
fn is_recourse_error(ty: &syn::Type, crate_path: Option<&syn::Path>) -> bool {
    let ty = match ty {
        syn::Type::Group(group) => return is_recourse_error(&group.elem, crate_path),
        syn::Type::Paren(paren) => return is_recourse_error(&paren.elem, crate_path),
        syn::Type::Path(path) if path.qself.is_none() => &path.path,
        _ => return false,
    };
    let idents = |path: &syn::Path| -> Option<Vec<String>> {
        path.segments
            .iter()
            .map(|segment| segment.arguments.is_none().then(|| segment.ident.unraw().to_string()))
            .collect()
    };
    let Some(segments) = idents(ty) else { return false };
    let recourse = vec!["recourse".to_owned(), "Error".to_owned()];
    let renamed = crate_path.and_then(idents).map(|mut path| {
        path.push("Error".to_owned());
        path
    });
    segments == recourse || renamed.is_some_and(|renamed| segments == renamed)
}

/// `TooManyRequests` → `too_many_requests`, `HTTPError` → `http_error`.
pub(crate) fn snake_case(ident: &syn::Ident) -> String {
    let chars: Vec<char> = ident.unraw().to_string().chars().collect();
    let mut out = String::with_capacity(chars.len() + 4);
    for (i, &c) in chars.iter().enumerate() {
        if c.is_uppercase() {
            let prev = i.checked_sub(1).map(|j| chars[j]);
            let next = chars.get(i + 1).copied();
            let boundary = prev.is_some_and(|p| {
                p.is_lowercase() || p.is_ascii_digit() || (p.is_uppercase() && next.is_some_and(char::is_lowercase))
            });
            if boundary {
                out.push('_');
            }
            out.extend(c.to_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::snake_case;

    #[test]
    fn snake_case_of_variant_names() {
        let cases = [
            ("TooManyRequests", "too_many_requests"),
            ("Reset", "reset"),
            ("HTTPError", "http_error"),
            ("IoError", "io_error"),
            ("Http5xx", "http5xx"),
            ("V2Error", "v2_error"),
            ("Already_Snake", "already_snake"),
            ("r#Type", "type"),
        ];
        for (input, expected) in cases {
            let ident: syn::Ident = syn::parse_str(input).unwrap();
            assert_eq!(snake_case(&ident), expected, "{input}");
        }
    }
}
