//! The body rewrite. The signature stays as written (tracing's approach, not
//! async-trait's): generics, where clauses, `impl Trait` and docs survive,
//! and the future is not boxed.
//!
//! Input:
//!
//! ```ignore
//! #[recourse(policy = "billing.Charge")]
//! async fn charge(&self, id: &str, mut body: String) -> Result<Receipt, BillingError> { BODY }
//! ```
//!
//! Output (concurrent form; the sequential form for `&mut` functions hands
//! each attempt's body to `CallSite::sequential`'s driver in a loop):
//!
//! ```ignore
//! async fn charge(&self, id: &str, body: String) -> Result<Receipt, BillingError> {
//!     static __RECOURSE_SITE: CallSite = CallSite::new(KEY, Some(CATALOG_SPEC), None);
//!     const _: &[u8] = include_bytes!("/abs/recourse.toml"); // rebuild when the catalog changes
//!     check_result::<Result<Receipt, BillingError>>();        // spanned on the return type;
//!                                                           // the only check of the error type
//!     let ops = (&OpsProbe::<Result<Receipt, BillingError>>::NEW).ops(); // asks nothing of it
//!     __RECOURSE_SITE.call(global(), ops, move || {
//!         let mut body = attempt_arg(&body);                   // a fresh clone per attempt
//!         async move {
//!             if let Some(__ret) = None::<Result<Receipt, BillingError>> { return __ret; } // inference anchor
//!             { BODY }                                          // quoted once, original spans
//!         }
//!     }).await
//! }
//! ```

use proc_macro2::{Span, TokenStream};
use quote::{ToTokens, format_ident, quote};
use syn::spanned::Spanned;
use syn::visit_mut::VisitMut;

use super::args::Args;
use super::validate::{Checked, Mode};
use crate::catalog::{BudgetDecl, BudgetRefSpec, Catalog, PolicySpec};
use crate::key::split;

pub(crate) fn rewrite(mut func: syn::ItemFn, args: &Args, checked: &Checked) -> TokenStream {
    let private = args.runtime.private();
    let key = args.policy.value();
    let ret_span = match &func.sig.output {
        syn::ReturnType::Type(_, ty) => ty.span(),
        syn::ReturnType::Default => Span::call_site(),
    };
    let site =
        site_static(&private, &key, Some((&checked.spec, &*checked.catalog)), args.classifier.as_ref(), ret_span);
    let tracking = tracking(&checked.catalog.path);

    let ret_ty = match &func.sig.output {
        syn::ReturnType::Type(_, ty) => (**ty).clone(),
        syn::ReturnType::Default => unreachable!("checked in validate"),
    };
    let mut anchor_ty = ret_ty.clone();
    ImplTraitEraser { with_unit: false }.visit_type_mut(&mut anchor_ty);
    // Generated tokens get the return type's span on purpose: when the
    // error type lacks `Classify` or `From<recourse::Error>`, every error
    // (the check's and the executor call's) points at the return type.
    // The check only looks at the error type, so `impl Trait` (which a
    // standalone call could not infer) becomes `()`.
    let mut check_ty = ret_ty.clone();
    ImplTraitEraser { with_unit: true }.visit_type_mut(&mut check_ty);
    let ops = format_ident!("__recourse_ops", span = Span::mixed_site());
    let check = respan(quote!(#private::check_result::<#check_ty>();), ret_span);
    let probe = respan(
        quote!({
            // One of the two goes unused: the one the probe did not pick.
            #[allow(unused_imports)]
            use #private::{ViaChecked as _, ViaUnchecked as _};
            (&#private::OpsProbe::<#check_ty>::NEW).ops()
        }),
        ret_span,
    );
    let check = quote!(#check let #ops = #probe;);

    let rebind = rebind_params(&mut func.sig, &private);
    let executor =
        args.executor.as_ref().map_or_else(|| respan(quote!(#private::global()), ret_span), ToTokens::to_token_stream);

    // Inner attributes (`#![allow(...)]`) stay with the user's statements.
    let (inner_attrs, outer_attrs): (Vec<_>, Vec<_>) =
        func.attrs.into_iter().partition(|a| matches!(a.style, syn::AttrStyle::Inner(_)));
    let stmts = &func.block.stmts;
    let user_block = quote!({ #(#inner_attrs)* #(#stmts)* });
    let ret = format_ident!("__recourse_ret", span = Span::mixed_site());
    let attempt_body = quote! {
        #[allow(unreachable_code, clippy::diverging_sub_expression, clippy::needless_return)]
        if let ::core::option::Option::Some(#ret) = ::core::option::Option::None::<#anchor_ty> {
            return #ret;
        }
        #user_block
    };

    let site_ident = format_ident!("__RECOURSE_SITE", span = ret_span);
    let call_method = syn::Ident::new("call", ret_span);
    let body = match checked.mode {
        Mode::Concurrent => {
            let args = quote! {
                #executor, #ops, move || {
                    #(#rebind)*
                    async move { #attempt_body }
                }
            };
            let mut args = proc_macro2::Group::new(proc_macro2::Delimiter::Parenthesis, args);
            args.set_span(ret_span);
            let await_ = respan(quote!(.await), ret_span);
            quote! { #site_ident.#call_method #args #await_ }
        }
        Mode::Sequential => {
            let call = format_ident!("__recourse_call", span = Span::mixed_site());
            let done = format_ident!("__recourse_done", span = Span::mixed_site());
            let sequential_method = syn::Ident::new("sequential", ret_span);
            let attempt_method = syn::Ident::new("attempt", ret_span);
            quote! {
                let mut #call = #site_ident.#sequential_method(#executor, #ops);
                loop {
                    #(#rebind)*
                    if let ::core::option::Option::Some(#done) = #call.#attempt_method(async { #attempt_body }).await {
                        return #done;
                    }
                }
            }
        }
    };

    let vis = &func.vis;
    let sig = &func.sig;
    quote! {
        #(#outer_attrs)*
        #vis #sig {
            #site
            #tracking
            #check
            #body
        }
    }
}

/// Gives every token `span` (used only to place errors on user code).
fn respan(tokens: TokenStream, span: Span) -> TokenStream {
    tokens
        .into_iter()
        .map(|mut tree| {
            if let proc_macro2::TokenTree::Group(group) = &tree {
                let mut new = proc_macro2::Group::new(group.delimiter(), respan(group.stream(), span));
                new.set_span(span);
                tree = proc_macro2::TokenTree::Group(new);
            } else {
                tree.set_span(span);
            }
            tree
        })
        .collect()
}

/// `static __RECOURSE_SITE: CallSite = ...;` for a checked key.
pub(crate) fn site_static(
    private: &TokenStream,
    key: &str,
    spec: Option<(&PolicySpec, &Catalog)>,
    classifier: Option<&syn::LitStr>,
    span: Span,
) -> TokenStream {
    let (namespace, name) = split(key);
    let site = format_ident!("__RECOURSE_SITE", span = span);
    let spec = spec.map_or_else(
        || quote!(#private::Option::None),
        |(spec, catalog)| {
            let spec = catalog_spec(private, spec, catalog);
            quote!(#private::Option::Some(#spec))
        },
    );
    let classifier = classifier.map_or_else(
        || quote!(#private::Option::None),
        |lit| {
            let name = lit.value();
            let name = name.trim();
            quote!(#private::Option::Some(#name))
        },
    );
    quote! {
        static #site: #private::CallSite = #private::CallSite::new(
            #private::PolicyKey::from_static(#namespace, #name),
            #spec,
            #classifier,
        );
    }
}

/// Makes the catalog a dependency of this crate: rustc records files read
/// by `include_bytes!` in its dep-info, so cargo rebuilds when the catalog
/// changes (proc-macro file tracking is not stable yet).
pub(crate) fn tracking(path: &std::path::Path) -> TokenStream {
    let path = path.display().to_string();
    quote! { const _: &[u8] = ::core::include_bytes!(#path); }
}

fn some<T: ToTokens>(private: &TokenStream, value: Option<T>) -> TokenStream {
    match value {
        Some(v) => quote!(#private::Option::Some(#v)),
        None => quote!(#private::Option::None),
    }
}

fn duration(private: &TokenStream, duration: Option<std::time::Duration>) -> TokenStream {
    some(
        private,
        duration.map(|d| {
            let nanos = recourse_policy::duration::nanos(d);
            quote!(#private::Duration::from_nanos(#nanos))
        }),
    )
}

fn budget(private: &TokenStream, budget: Option<&BudgetRefSpec>) -> TokenStream {
    some(
        private,
        budget.map(|b| {
            let (name, cost) = (&b.name, b.cost);
            quote!(#private::BudgetRefSpec { name: #name, cost: #cost })
        }),
    )
}

/// The catalog entry `spec` as constant data: every field of the shared
/// `PolicySpec` written out (a field added to it fails to compile here
/// until it is emitted), with the budgets it names that the catalog
/// declares.
pub(crate) fn catalog_spec(private: &TokenStream, spec: &PolicySpec, catalog: &Catalog) -> TokenStream {
    let PolicySpec {
        id,
        max_attempts,
        initial_backoff,
        max_backoff,
        backoff_multiplier,
        jitter,
        timeout_per_attempt,
        overall_timeout,
        classifier,
        budget: retry_budget,
        hedge,
        circuit,
    } = spec;
    let id = some(private, id.as_deref());
    let max_attempts = some(private, *max_attempts);
    let initial = duration(private, *initial_backoff);
    let max = duration(private, *max_backoff);
    let multiplier = some(private, backoff_multiplier.map(proc_macro2::Literal::f64_suffixed));
    let jitter = some(
        private,
        jitter.map(|j| {
            let variant = syn::Ident::new(&format!("{j:?}"), Span::call_site());
            quote!(#private::Jitter::#variant)
        }),
    );
    let per_attempt = duration(private, *timeout_per_attempt);
    let overall = duration(private, *overall_timeout);
    let classifier = some(private, classifier.as_deref());
    let retry_budget = budget(private, retry_budget.as_ref());
    let hedge = some(private, hedge.as_ref().map(|h| hedge_spec(private, h)));
    let circuit = some(private, circuit.as_ref().map(|c| circuit_spec(private, c)));
    let mut names: Vec<&str> = spec.budget_names().map(String::as_str).collect();
    names.dedup();
    let decls = names.into_iter().filter_map(|name| {
        let decl = catalog.budgets.get(name)?;
        // Registered in code: the executor's registry answers for it.
        if matches!(decl, BudgetDecl::Custom) {
            return None;
        }
        let decl = budget_decl(private, decl);
        Some(quote!((#name, #decl)))
    });
    quote! {
        #private::CatalogEntry {
            budgets: &[#(#decls),*],
            spec: #private::PolicySpec {
                id: #id,
                max_attempts: #max_attempts,
                initial_backoff: #initial,
                max_backoff: #max,
                backoff_multiplier: #multiplier,
                jitter: #jitter,
                timeout_per_attempt: #per_attempt,
                overall_timeout: #overall,
                classifier: #classifier,
                budget: #retry_budget,
                hedge: #hedge,
                circuit: #circuit,
            },
        }
    }
}

/// A `[budgets.<name>]` declaration as constant data, every field written
/// out (a field added to a kind fails to compile here until it is
/// emitted).
pub(crate) fn budget_decl(private: &TokenStream, decl: &BudgetDecl) -> TokenStream {
    let float = |v: &f64| proc_macro2::Literal::f64_suffixed(*v);
    let duration = |d: &std::time::Duration| {
        let nanos = recourse_policy::duration::nanos(*d);
        quote!(#private::Duration::from_nanos(#nanos))
    };
    match decl {
        BudgetDecl::Unlimited => quote!(#private::BudgetDecl::Unlimited),
        BudgetDecl::Custom => quote!(#private::BudgetDecl::Custom),
        BudgetDecl::TokenBucket { capacity, refill_per_sec } => {
            let refill = float(refill_per_sec);
            quote!(#private::BudgetDecl::TokenBucket { capacity: #capacity, refill_per_sec: #refill })
        }
        BudgetDecl::Percentage { ratio, min_per_sec, ttl } => {
            let (ratio, ttl) = (float(ratio), duration(ttl));
            quote!(#private::BudgetDecl::Percentage { ratio: #ratio, min_per_sec: #min_per_sec, ttl: #ttl })
        }
        BudgetDecl::RetryThrottling { max_tokens, token_ratio } => {
            let token_ratio = float(token_ratio);
            quote!(#private::BudgetDecl::RetryThrottling { max_tokens: #max_tokens, token_ratio: #token_ratio })
        }
        BudgetDecl::RetryQuota { capacity, retry_cost, timeout_cost, success_increment } => quote!(
            #private::BudgetDecl::RetryQuota {
                capacity: #capacity, retry_cost: #retry_cost, timeout_cost: #timeout_cost,
                success_increment: #success_increment,
            }
        ),
        BudgetDecl::AdaptiveThrottling { k, window } => {
            let (k, window) = (float(k), duration(window));
            quote!(#private::BudgetDecl::AdaptiveThrottling { k: #k, window: #window })
        }
        BudgetDecl::Concurrency { ratio, min_concurrency } => {
            let ratio = float(ratio);
            quote!(#private::BudgetDecl::Concurrency { ratio: #ratio, min_concurrency: #min_concurrency })
        }
        BudgetDecl::RedisTokenBucket {
            url_env,
            key,
            capacity,
            refill_per_sec,
            lease,
            lease_ttl,
            timeout,
            on_unavailable,
            fallback_capacity,
            fallback_refill_per_sec,
        } => {
            let (refill, lease_ttl, timeout) = (float(refill_per_sec), duration(lease_ttl), duration(timeout));
            let on_unavailable = syn::Ident::new(&format!("{on_unavailable:?}"), Span::call_site());
            let fallback_refill = float(fallback_refill_per_sec);
            quote!(#private::BudgetDecl::RedisTokenBucket {
                url_env: #url_env, key: #key, capacity: #capacity, refill_per_sec: #refill,
                lease: #lease, lease_ttl: #lease_ttl, timeout: #timeout,
                on_unavailable: #private::RedisUnavailable::#on_unavailable,
                fallback_capacity: #fallback_capacity, fallback_refill_per_sec: #fallback_refill,
            })
        }
    }
}

/// A `.hedge` table as constant data, every field written out.
fn hedge_spec(private: &TokenStream, h: &recourse_policy::spec::HedgeSpec) -> TokenStream {
    let recourse_policy::spec::HedgeSpec {
        enabled,
        max_hedges,
        delay,
        trigger,
        budget: hedge_budget,
        cancel_on_first_terminal,
    } = h;
    let max_hedges = some(private, *max_hedges);
    let delay = duration(private, *delay);
    let trigger = some(private, trigger.as_deref());
    let hedge_budget = budget(private, hedge_budget.as_ref());
    let cancel = some(private, *cancel_on_first_terminal);
    quote!(#private::HedgeSpec {
        enabled: #enabled, max_hedges: #max_hedges, delay: #delay, trigger: #trigger,
        budget: #hedge_budget, cancel_on_first_terminal: #cancel,
    })
}

/// A `.circuit` table as constant data, every field written out.
fn circuit_spec(private: &TokenStream, c: &recourse_policy::spec::CircuitSpec) -> TokenStream {
    let recourse_policy::spec::CircuitSpec { enabled, threshold, cooldown, failure_ratio, window, min_throughput } = c;
    let threshold = some(private, *threshold);
    let cooldown = duration(private, *cooldown);
    let ratio = some(private, failure_ratio.map(proc_macro2::Literal::f64_suffixed));
    let window = duration(private, *window);
    let min_throughput = some(private, *min_throughput);
    quote!(#private::CircuitSpec {
        enabled: #enabled, threshold: #threshold, cooldown: #cooldown,
        failure_ratio: #ratio, window: #window, min_throughput: #min_throughput,
    })
}

/// Per-attempt bindings for the parameters, and the parameter patterns
/// rewritten so the outer bindings can be reused: `mut` is dropped from the
/// outer binding (the per-attempt one keeps it), and non-identifier
/// patterns bind a hidden `__recourse_argN` that each attempt destructures.
fn rebind_params(sig: &mut syn::Signature, private: &TokenStream) -> Vec<TokenStream> {
    let mut rebind = Vec::new();
    for (index, input) in sig.inputs.iter_mut().enumerate() {
        let syn::FnArg::Typed(arg) = input else { continue };
        let cfgs: Vec<_> = arg.attrs.iter().filter(|a| a.path().is_ident("cfg")).cloned().collect();
        let is_ref = matches!(&*arg.ty, syn::Type::Reference(_));
        let (source, pattern) = match &mut *arg.pat {
            syn::Pat::Ident(pat) if pat.by_ref.is_none() && pat.subpat.is_none() => {
                let pattern = pat.to_token_stream();
                pat.mutability = None;
                (pat.ident.clone(), pattern)
            }
            other => {
                let pattern = other.to_token_stream();
                let ident = format_ident!("__recourse_arg{}", index, span = Span::mixed_site());
                *other = syn::Pat::Ident(syn::PatIdent {
                    attrs: Vec::new(),
                    by_ref: None,
                    mutability: None,
                    ident: ident.clone(),
                    subpat: None,
                });
                (ident, pattern)
            }
        };
        let ty = &arg.ty;
        if is_ref {
            // References are `Copy`; rebinding is only needed when the
            // pattern does more than name the reference.
            if source != pattern.to_string() {
                rebind.push(quote!(#(#cfgs)* let #pattern = #source;));
            }
        } else {
            // The whole clone expression is spanned on the parameter's type,
            // so a missing `Clone` is reported on the argument, not on the
            // attribute or inside generated code.
            // The source binding keeps its own span: it was declared by this
            // macro, and a foreign span would hide it by hygiene.
            let function = respan(quote!(#private::attempt_arg), ty.span());
            let borrow = respan(quote!(&), ty.span());
            let mut call_args = proc_macro2::Group::new(proc_macro2::Delimiter::Parenthesis, quote!(#borrow #source));
            call_args.set_span(ty.span());
            let clone = quote!(#function #call_args);
            rebind.push(quote!(#(#cfgs)* let #pattern = #clone;));
        }
    }
    rebind
}

/// Replaces `impl Trait` with `_` so the return type can be written in the
/// inference anchor (tracing #1227, async-trait #281), or with `()` for the
/// return-type check.
struct ImplTraitEraser {
    /// `()` instead of `_`.
    with_unit: bool,
}

impl VisitMut for ImplTraitEraser {
    fn visit_type_mut(&mut self, ty: &mut syn::Type) {
        if let syn::Type::ImplTrait(impl_trait) = ty {
            let span = impl_trait.span();
            *ty = if self.with_unit {
                syn::Type::Tuple(syn::TypeTuple {
                    paren_token: syn::token::Paren(span),
                    elems: syn::punctuated::Punctuated::new(),
                })
            } else {
                syn::Type::Infer(syn::TypeInfer { underscore_token: syn::Token![_](span) })
            };
        } else {
            syn::visit_mut::visit_type_mut(self, ty);
        }
    }
}
