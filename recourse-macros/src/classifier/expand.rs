//! Code generation for a valid input.
//!
//! Input:
//!
//! ```text
//! #[derive(Classifier)]
//! #[classify(default = non_retryable)]
//! enum ApiError {
//!     #[classify(retryable, reason = "throttled", backoff = retry_after)]
//!     Throttled { retry_after: Duration },
//!     #[classify(transparent)]
//!     Io(std::io::Error),
//!     Recourse(recourse::Error),
//!     NotFound,
//! }
//! ```
//!
//! Output (`__private` is `::recourse::__private`; a generic type also gets
//! `T: 'static` and the field bounds described at `with_bounds`):
//!
//! ```text
//! #[automatically_derived]
//! impl ::recourse::Classify for ApiError {
//!     fn classify(&self) -> ::core::option::Option<::recourse::__private::Outcome> {
//!         match self {
//!             Self::Throttled { retry_after: __recourse_backoff, .. } => ::core::option::Option::Some(
//!                 __private::with_backoff(__private::Outcome::with_kind_and_reason(Retryable, "throttled"), &*__recourse_backoff),
//!             ),
//!             Self::Io { 0: __recourse_field, .. } => ::recourse::Classify::classify(&*__recourse_field),
//!             Self::Recourse { 0: __recourse_field, .. } => ::core::option::Option::Some(
//!                 __private::recourse_error_outcome(&*__recourse_field),
//!             ),
//!             Self::NotFound => ::core::option::Option::Some(
//!                 __private::Outcome::with_kind_and_reason(NonRetryable, "not_found"),
//!             ),
//!         }
//!     }
//!     fn as_error(&self) -> ::core::option::Option<&(dyn ::core::error::Error + 'static)> {
//!         use ::recourse::__private::{ViaNothing as _, ViaStdError as _};
//!         (&::recourse::__private::AsErrorProbe(self)).as_error()
//!     }
//!     fn transparent(&self) -> ::core::option::Option<&dyn ::recourse::__private::ErrorView> {
//!         use ::recourse::__private::{ViaClassify as _, ViaNoView as _};
//!         match self {
//!             Self::Io { 0: __recourse_field, .. } => (&::recourse::__private::ViewProbe(&*__recourse_field)).view(),
//!             _ => ::core::option::Option::None,
//!         }
//!     }
//! }
//! ```

use proc_macro2::{Punct, Spacing, Span, TokenStream, TokenTree};
use quote::{ToTokens, format_ident, quote};

use crate::runtime_path::RuntimePath;

use super::ast::{Field, Input};
use super::valid::{Action, Arm};

pub(crate) fn expand(input: &Input<'_>, root: &RuntimePath, arms: &[Arm<'_>]) -> TokenStream {
    let private = root.private();
    let ty = &input.original.ident;
    // The autoref probe picks `Some(self)` when the type implements
    // `std::error::Error + 'static`. The `'static` half cannot be decided
    // while probing (regions are erased there), so a type whose lifetime
    // parameters make it non-`'static` keeps the default `None`, and type
    // parameters are bounded by `'static` (as the executor needs anyway)
    // so that picking the error impl always borrow-checks.
    let probe = input.original.generics.lifetimes().next().is_none();
    let generics = with_bounds(&input.original.generics, root, arms, probe);
    let (impl_generics, ty_generics, where_clause) = generics.split_for_impl();

    let body = if arms.is_empty() {
        // An enum without variants: there is no value to classify.
        quote!(match *self {})
    } else {
        let arms = arms.iter().map(|arm| arm_tokens(arm, root, &private));
        quote!(match self { #(#arms)* })
    };

    let as_error = probe.then(|| {
        quote! {
            fn as_error(&self) -> ::core::option::Option<&(dyn ::core::error::Error + 'static)> {
                use #private::{ViaNothing as _, ViaStdError as _};
                (&#private::AsErrorProbe(self)).as_error()
            }
        }
    });

    // Only when the type is `'static` (as `as_error` needs), since the
    // field is handed out as a `dyn` view.
    let transparent = probe.then(|| transparent(arms, &private)).flatten();

    quote! {
        #[automatically_derived]
        impl #impl_generics #root::Classify for #ty #ty_generics #where_clause {
            fn classify(&self) -> ::core::option::Option<#private::Outcome> {
                #body
            }

            #as_error

            #transparent
        }
    }
}

/// `Classify::transparent`: the field of the variant being forwarded to,
/// so `ErrorView::find` sees it although thiserror's `#[error(transparent)]`
/// leaves it out of the `source()` chain. `None` without such variants.
fn transparent(arms: &[Arm<'_>], private: &TokenStream) -> Option<TokenStream> {
    let forwarding: Vec<TokenStream> = arms
        .iter()
        .filter_map(|arm| {
            let Action::Transparent(field) = &arm.action else { return None };
            let path = arm.variant.map_or_else(|| quote!(Self), |variant| quote!(Self::#variant));
            let (pattern, argument) = bind(&path, field, "__recourse_field");
            Some(quote!(#pattern => (&#private::ViewProbe(#argument)).view(),))
        })
        .collect();
    if forwarding.is_empty() {
        return None;
    }
    let rest = (forwarding.len() < arms.len()).then(|| quote!(_ => ::core::option::Option::None,));
    Some(quote! {
        fn transparent(&self) -> ::core::option::Option<&dyn #private::ErrorView> {
            #[allow(unused_imports)]
            use #private::{ViaClassify as _, ViaNoView as _};
            match self {
                #(#forwarding)*
                #rest
            }
        }
    })
}

fn arm_tokens(arm: &Arm<'_>, root: &RuntimePath, private: &TokenStream) -> TokenStream {
    let path = arm.variant.map_or_else(|| quote!(Self), |variant| quote!(Self::#variant));
    let some = quote!(::core::option::Option::Some);
    match &arm.action {
        Action::Outcome { kind, reason, backoff } => {
            let kind = format_ident!("{}", kind.variant());
            let outcome = quote!(#private::Outcome::with_kind_and_reason(#private::OutcomeKind::#kind, #reason));
            match backoff {
                None if arm.unit => quote!(#path => #some(#outcome),),
                None => quote!(#path { .. } => #some(#outcome),),
                Some(field) => {
                    let (pattern, argument) = bind(&path, field, "__recourse_backoff");
                    // A field that is neither `Duration` nor
                    // `Option<Duration>` fails `BackoffField` on its type.
                    let value = quote!(#private::with_backoff(#outcome, #argument));
                    quote!(#pattern => #some(#value),)
                }
            }
        }
        Action::Transparent(field) => {
            let (pattern, argument) = bind(&path, field, "__recourse_field");
            quote!(#pattern => #root::Classify::classify(#argument),)
        }
        Action::RecourseError(field) => {
            let (pattern, argument) = bind(&path, field, "__recourse_field");
            quote!(#pattern => #some(#private::recourse_error_outcome(#argument)),)
        }
        Action::Defer if arm.unit => quote!(#path => ::core::option::Option::None,),
        Action::Defer => quote!(#path { .. } => ::core::option::Option::None,),
    }
}

/// The pattern `Self::V { member: __recourse_x, .. }` and the argument
/// `&*__recourse_x` that passes the field on.
///
/// The argument is where rustc reports an unmet bound on the field's type
/// (`BackoffField`, `Classify`), so it is made to cover that type: `&`
/// takes the span of the type's first token and the binding that of its
/// last, and rustc spans the expression from one to the other (syn's
/// `Error::new_spanned` uses the same trick). Both keep mixed-site
/// hygiene, so lints still see generated code, and the binding stays apart
/// from the user's local names; items (a `const` of the same name) still
/// resolve at the call site, which the reserved `__recourse_` prefix
/// guards against.
fn bind(path: &TokenStream, field: &Field<'_>, name: &str) -> (TokenStream, TokenStream) {
    let mut tokens = field.ty.to_token_stream().into_iter();
    let first = tokens.next().map_or_else(Span::call_site, |token| token.span());
    let last = tokens.last().map_or(first, |token| token.span());
    let binding = syn::Ident::new(name, Span::mixed_site().located_at(last));
    let [borrow, deref] = ['&', '*'].map(|op| {
        let mut punct = Punct::new(op, Spacing::Alone);
        punct.set_span(Span::mixed_site().located_at(first));
        punct
    });
    let member = &field.member;
    (quote!(#path { #member: #binding, .. }), quote!(#borrow #deref #binding))
}

/// The input's generics plus the bounds the body needs: `Classify` for a
/// transparent field and `BackoffField` for a backoff field, when that
/// field's type mentions a type parameter (concrete types are checked at
/// the call, with the error on the field), and `'static` on every type
/// parameter when `as_error` probes.
fn with_bounds(generics: &syn::Generics, root: &RuntimePath, arms: &[Arm<'_>], probe: bool) -> syn::Generics {
    let params: Vec<syn::Ident> = generics.type_params().map(|param| param.ident.clone()).collect();
    if params.is_empty() {
        return generics.clone();
    }
    let private = root.private();
    let mut generics = generics.clone();
    if probe {
        let predicates = &mut generics.make_where_clause().predicates;
        predicates.extend(params.iter().map(|param| -> syn::WherePredicate { syn::parse_quote!(#param: 'static) }));
    }
    let params: Vec<String> = params.iter().map(ToString::to_string).collect();
    let mut seen: Vec<String> = Vec::new();
    for arm in arms {
        let (field, bound) = match &arm.action {
            Action::Transparent(field) => (*field, quote!(#root::Classify)),
            Action::Outcome { backoff: Some(field), .. } => (*field, quote!(#private::BackoffField)),
            Action::Outcome { backoff: None, .. } | Action::RecourseError(_) | Action::Defer => continue,
        };
        let ty = field.ty;
        let predicate = quote!(#ty: #bound);
        let key = predicate.to_string();
        if mentions_any(ty.to_token_stream(), &params) && !seen.contains(&key) {
            seen.push(key);
            generics.make_where_clause().predicates.push(syn::parse_quote!(#predicate));
        }
    }
    generics
}

fn mentions_any(tokens: TokenStream, idents: &[String]) -> bool {
    tokens.into_iter().any(|token| match token {
        TokenTree::Ident(ident) => idents.iter().any(|param| ident == param),
        TokenTree::Group(group) => mentions_any(group.stream(), idents),
        TokenTree::Punct(_) | TokenTree::Literal(_) => false,
    })
}
