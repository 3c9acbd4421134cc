//! Procedural macros for [`recourse`](https://docs.rs/recourse).
//!
//! This crate is an implementation detail: depend on `recourse` and use the
//! re-exports there (`recourse::recourse`, `recourse::Classifier`,
//! `recourse::key!`). Generated code names only `::recourse::__private` and
//! `::core`, or the path given with `crate = "..."`.
#![forbid(unsafe_code)]

mod catalog;
mod catalog_macro;
mod classifier;
mod error;
mod key;
mod key_macro;
mod recourse_attr;
mod runtime_path;

use proc_macro::TokenStream;

/// Runs an `async fn` under the policy named by its key, checked at
/// compile time against the crate's `recourse.toml`.
///
/// ```
/// use recourse::{Classifier, recourse};
///
/// #[derive(Debug, thiserror::Error, Classifier)]
/// enum ApiError {
///     #[error("connection reset")]
///     #[classify(retryable)]
///     Reset,
///     #[error("not found")]
///     #[classify(non_retryable)]
///     NotFound,
///     #[error(transparent)]
///     Recourse(#[from] recourse::Error),
/// }
///
/// struct Client;
///
/// impl Client {
///     // `recourse.toml` declares `[policies."user-service.GetUser"]`.
///     #[recourse(policy = "user-service.GetUser")]
///     async fn get_user(&self, id: u64) -> Result<String, ApiError> {
///         if id == 0 { Err(ApiError::NotFound) } else { Ok(format!("user {id}")) }
///     }
/// }
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// assert_eq!(Client.get_user(7).await.unwrap(), "user 7");
/// # }
/// ```
///
/// # Arguments
///
/// * `policy = "service.Operation"` (required): the policy key. It must be
///   well formed (letters, digits, `_`, `-`, dots between non-empty parts)
///   and declared in the catalog, or the build fails on the literal with a
///   "did you mean" suggestion.
/// * `classifier = "name"`: a registered classifier for this function's
///   errors, overriding the policy's; built-ins (`always`, `never`,
///   `auto`) or names declared in the catalog's `[classifiers] names`.
/// * `executor = <expr>`: an expression giving `&recourse::Executor`
///   (it may use the function's parameters); default: `recourse::global()`.
/// * `crate = "path"`: where the `recourse` crate is, for re-exports.
///
/// # The function
///
/// `async fn`, free or a `&self` / `&mut self` method (inherent or trait
/// impl), generic, with `impl Trait` arguments or return, returning
/// `Result<T, E>` where `E: recourse::Classify + From<recourse::Error>`.
/// The signature is kept exactly; the future is not boxed and is `Send`
/// whenever the plain body would be. The body runs once per attempt:
/// references are shared between attempts, by-value arguments are cloned
/// for each attempt (so they must be `Clone`). Functions taking `&mut self`
/// or `&mut T` retry one attempt after another and are never hedged; a
/// catalog that enables hedging for their key is a compile error.
///
/// # The catalog
///
/// `recourse.toml` next to the crate's `Cargo.toml` (or the file named by
/// `[package.metadata.recourse] catalog = "..."`), read once per
/// compilation; the crate is rebuilt when it changes. Every value is
/// checked against the same limits as run-time normalization, and the
/// compiled policy is embedded in the function: the executor uses it
/// whenever its provider does not configure the key.
///
/// ```toml
/// [policies."user-service.GetUser"]
/// max_attempts = 4            # 1..=10
/// initial_backoff = "20ms"    # at least 1ms
/// max_backoff = "1s"          # at most 30s
/// backoff_multiplier = 2.0    # 1..=10
/// jitter = "full"             # none | full | equal
/// timeout_per_attempt = "500ms"
/// overall_timeout = "2s"
/// classifier = "auto"
/// budget = { name = "user-service", cost = 1 }
///
/// [policies."user-service.GetUser".hedge]   # present = enabled
/// max_hedges = 2              # 1..=3
/// delay = "50ms"              # at least 10ms
///
/// [policies."user-service.GetUser".circuit] # present = enabled
/// threshold = 5
/// cooldown = "10s"            # at least 100ms
///
/// [budgets.user-service]
/// kind = "token_bucket"       # or percentage, retry_throttling, retry_quota,
/// capacity = 100              # adaptive_throttling, concurrency,
/// refill_per_sec = 50.0       # redis_token_bucket, unlimited, custom
///
/// [budgets.fleet]             # one bucket for every process (feature `redis`)
/// kind = "redis_token_bucket"
/// url_env = "REDIS_URL"       # the variable holding the URL, never the URL
/// capacity = 200
/// refill_per_sec = 50
///
/// [classifiers]
/// names = ["billing"]
/// ```
///
/// # What `#[recourse]` expands to
///
/// For
///
/// ```ignore
/// #[recourse(policy = "billing.Charge")]
/// async fn charge(&self, id: &str, mut body: String) -> Result<Receipt, BillingError> { BODY }
/// ```
///
/// the expansion is (paths shortened; every generated path is absolute,
/// `::recourse::__private::...` or `::core::...`):
///
/// ```ignore
/// async fn charge(&self, id: &str, body: String) -> Result<Receipt, BillingError> {
///     // Per call site: the key, the compiled catalog policy, and a cache of
///     // the resolved policy and classifier (no lookup in the steady state;
///     // refreshed when the provider or classifier registry changes).
///     static __RECOURSE_SITE: CallSite = CallSite::new(
///         PolicyKey::from_static("billing", "Charge"),
///         Some(CatalogEntry { spec: PolicySpec { max_attempts: Some(4), /* ... */ }, budgets: &[] }),
///         None, // the `classifier` argument
///     );
///     // Makes `recourse.toml` a build input: cargo rebuilds when it changes.
///     const _: &[u8] = include_bytes!("/path/to/recourse.toml");
///     // Spanned on the return type: errors about `E` land there, once.
///     check_result::<Result<Receipt, BillingError>>();
///     // How the call sees `E`, picked without asking anything of it, so
///     // a missing bound is not reported again by the call.
///     let ops = (&OpsProbe::<Result<Receipt, BillingError>>::NEW).ops();
///     __RECOURSE_SITE.call(global(), ops, move || {
///         let mut body = attempt_arg(&body); // a fresh clone per attempt
///         async move {
///             // Inference anchor: `?` and `return` check against the
///             // declared return type, and type errors point at BODY.
///             if let Some(ret) = None::<Result<Receipt, BillingError>> {
///                 return ret;
///             }
///             { BODY } // quoted once, with its own spans
///         }
///     })
///     .await
/// }
/// ```
///
/// With `&mut self` or a `&mut T` parameter the body instead runs in a loop
/// that hands each attempt's body to the call site's sequential driver
/// (`let mut call = SITE.sequential(exec); loop { if let Some(done) =
/// call.attempt(async { BODY }).await { return done; } }`), so each attempt
/// reborrows the mutable reference and the future stays `Send`.
#[proc_macro_attribute]
pub fn recourse(args: TokenStream, item: TokenStream) -> TokenStream {
    recourse_attr::expand(args.into(), item.into()).into()
}

/// A policy key checked at compile time against the crate's
/// `recourse.toml`, for the function form.
///
/// The key carries its compiled catalog policy and a resolution cache, like
/// a `#[recourse]` function.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let key = recourse::key!("user-service.GetUser");
/// let user: Result<&str, std::io::Error> = recourse::global().call(key, || async { Ok("ada") }).await;
/// assert_eq!(user.unwrap(), "ada");
/// # }
/// ```
///
/// A misspelt key fails to compile:
///
/// ```compile_fail
/// let key = recourse::key!("user-service.GetUsr"); // did you mean "user-service.GetUser"?
/// ```
#[proc_macro]
pub fn key(input: TokenStream) -> TokenStream {
    key_macro::expand(input.into()).into()
}

/// The invoking crate's policy catalog (`recourse.toml`), checked whole at
/// compile time and embedded as a `&'static recourse::Catalog`.
///
/// Hand it to the executor at start-up: its policies become the
/// executor's base layer, and `try_build()` names every classifier, budget
/// (`kind = "custom"`) and hedge trigger the catalog declares that the
/// builder did not register.
///
/// ```ignore
/// let executor = recourse::Executor::builder()
///     .catalog(recourse::catalog!())
///     .classifier("billing", billing_classifier)
///     .try_build()?;
/// recourse::install(executor);
/// ```
#[proc_macro]
pub fn catalog(input: TokenStream) -> TokenStream {
    catalog_macro::expand(input.into()).into()
}

/// `(classifiers, budgets, triggers)`: the built-in names the catalog check
/// accepts, for the test that holds them equal to what an executor
/// registers. Not public API.
#[doc(hidden)]
#[proc_macro]
pub fn __builtin_names(_: TokenStream) -> TokenStream {
    let [classifiers, budgets, triggers] =
        [catalog::BUILTIN_CLASSIFIERS, catalog::BUILTIN_BUDGETS, catalog::BUILTIN_TRIGGERS];
    quote::quote!((&[#(#classifiers),*], &[#(#budgets),*], &[#(#triggers),*])).into()
}

/// Derives `recourse::Classify` for an error enum (or struct), so the
/// executor knows which of the type's errors are worth another attempt.
///
/// ```
/// use recourse::Classifier;
/// use std::time::Duration;
///
/// #[derive(Debug, thiserror::Error, Classifier)]
/// enum ApiError {
///     #[error("connection reset")]
///     #[classify(retryable)]
///     Reset,
///     #[error("throttled")]
///     #[classify(retryable, reason = "throttled", backoff = retry_after)]
///     Throttled { retry_after: Duration },
///     #[error("not found")]
///     #[classify(non_retryable)]
///     NotFound,
///     #[error(transparent)]
///     #[classify(transparent)]
///     Io(#[from] std::io::Error),
///     #[error(transparent)]
///     Recourse(#[from] recourse::Error), // budget denied, circuit open, timeout, ...
/// }
/// ```
///
/// The fragments below are compiled and run in full by the `ui-tests`
/// crate (`tests/ui/derive/pass/`).
///
/// # Variant attributes
///
/// Every variant needs one outcome, unless the enum has a `default` or the
/// variant holds a `recourse::Error`. Keys may be combined in one
/// `#[classify(...)]` or spread over several.
///
/// * `#[classify(retryable)]`, `#[classify(non_retryable)]`,
///   `#[classify(abort)]`: the outcome kind (`OutcomeKind::Retryable`,
///   `NonRetryable`, `Abort`).
/// * `reason = "code"`: the outcome's reason, a low-cardinality telemetry
///   code of lowercase ASCII letters, digits and `_`. The default is the
///   variant name in snake case (`TooManyRequests` → `too_many_requests`,
///   `HTTPError` → `http_error`).
/// * `backoff = field`: sleep this long before the next attempt instead of
///   the policy's computed backoff (a server's Retry-After). The field is a
///   `Duration` or an `Option<Duration>` (`None` and zero keep the computed
///   backoff); name it, or give a tuple variant's index:
///
///   ```ignore
///   #[classify(retryable, backoff = retry_after)]
///   Throttled { retry_after: Duration },
///   #[classify(retryable, backoff = 1)]
///   Busy(u16, Option<Duration>),
///   ```
/// * `#[classify(transparent)]`, or its alias `#[classify(delegate)]`: the
///   variant has exactly one field, and classifies as that field's own
///   `Classify::classify` (its `None`, "no opinion", included). `reason` and
///   `backoff` do not apply. In a generic enum the field type gets a
///   `Classify` bound:
///
///   ```ignore
///   #[derive(Debug, Classifier)]
///   enum Wrapped<E> {
///       #[classify(delegate)]
///       Inner(E), // the impl gets `where E: Classify`
///       #[classify(abort, reason = "shutting_down")]
///       ShuttingDown,
///   }
///   ```
/// * `#[classify(defer)]`: no outcome of its own (`Classify::classify`
///   returns `None`). The executor then looks inside the error (a type
///   registered with `ExecutorBuilder::classify_wrapped` in its `source()`
///   chain) and otherwise asks its default classifier, which walks the
///   chain for I/O errors. `reason` and `backoff` do not apply. It is how a
///   `std::error::Error` type with nothing to say about retries takes part:
///   its message still shows on timelines and `ErrorView::find` still sees
///   it.
///
///   ```ignore
///   #[derive(Debug, thiserror::Error, Classifier)]
///   #[error("config service: {0}")]
///   #[classify(defer)]
///   struct ConfigError(#[source] std::io::Error); // classified by the io error inside
///   ```
/// * No attribute, and exactly one field of type `recourse::Error` (written
///   `recourse::Error`, `::recourse::Error`, or `<crate path>::Error` with
///   `crate = "..."`): an abort with that error's own reason
///   (`budget_denied`, `circuit_open`, `context_deadline_exceeded`, ...),
///   even when the enum has a `default`. Annotate the variant to override.
///
/// # Container attributes
///
/// * `#[classify(default = non_retryable)]` (or `retryable`, `abort`,
///   `defer`), on
///   an enum: the outcome of every variant without one of its own. A
///   variant with only `reason = "..."` and/or `backoff = ...` takes this
///   outcome. Without a `default`, an unannotated variant is an error: being
///   explicit about what is retried is the conservative choice.
///
///   ```ignore
///   #[derive(Debug, Classifier)]
///   #[classify(default = non_retryable)]
///   enum DbError {
///       #[classify(retryable)]
///       Deadlock,
///       Constraint, // non_retryable, reason `constraint`
///       #[classify(reason = "row_locked")]
///       Locked, // non_retryable, reason `row_locked`
///   }
///   ```
/// * `#[classify(crate = "path")]`: the path generated code uses for the
///   `recourse` crate, when it is renamed or re-exported (default
///   `::recourse`):
///
///   ```ignore
///   use recourse as rc;
///
///   #[derive(Debug, rc::Classifier)]
///   #[classify(crate = "rc", default = abort)]
///   enum Error { Fatal, Inner(rc::Error) }
///   ```
/// * On a struct, the outcome and its keys go on the struct itself (`default`
///   does not apply); the struct's name gives the default reason:
///
///   ```ignore
///   #[derive(Debug, Classifier)]
///   #[classify(retryable, reason = "busy", backoff = wait)]
///   struct Busy { wait: Duration }
///
///   #[derive(Debug, Classifier)]
///   #[classify(transparent)]
///   struct Io(std::io::Error);
///   ```
///
/// # What it generates
///
/// `Classify::classify` is one `match` that returns
/// `Some(Outcome::with_kind_and_reason(kind, "reason"))` (plus the backoff
/// field) per variant, so every classification is static and allocation
/// free. `Classify::as_error` returns `Some(self)` when the type implements
/// `std::error::Error` (e.g. through `thiserror`), so classifiers can walk
/// its `source()` chain, and `None` otherwise. For that check, the type
/// parameters of a generic type are bounded by `'static` (as the executor
/// requires of error types anyway); a type with lifetime parameters keeps
/// `as_error` at `None`. `Classify::transparent` returns a transparent
/// variant's field, so `ErrorView::find` reaches it although thiserror's
/// `#[error(transparent)]` leaves it out of the `source()` chain.
///
/// Mistakes are reported together, each on the offending token: unknown,
/// duplicate, conflicting or misplaced keys, an invalid reason, a `backoff`
/// field that does not exist (naming the fields that do) or is not a
/// duration, a `transparent` variant without exactly one field, an
/// unannotated variant, a union. An empty `impl Classify` is still emitted
/// then, so code using the type reports nothing further.
#[proc_macro_derive(Classifier, attributes(classify))]
pub fn derive_classifier(input: TokenStream) -> TokenStream {
    let input = syn::parse_macro_input!(input as syn::DeriveInput);
    classifier::derive(&input).into()
}
