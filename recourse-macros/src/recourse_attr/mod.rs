//! `#[recourse(policy = "...")]`: parse arguments → validate the function
//! and its catalog entry → rewrite the body. On error the user's function is
//! emitted unchanged next to the `compile_error!`, so nothing cascades.

mod args;
pub(crate) mod rewrite;
pub(crate) mod validate;

use proc_macro2::TokenStream;
use quote::ToTokens;

use crate::error::item_with_error;

pub(crate) fn expand(args: TokenStream, item: TokenStream) -> TokenStream {
    let func: syn::ItemFn = match syn::parse2(item.clone()) {
        Ok(func) => func,
        Err(error) => {
            let error = syn::Error::new(error.span(), "`#[recourse]` can only be applied to an `async fn`");
            return item_with_error(item, &error);
        }
    };
    let args = match args::parse(args) {
        Ok(args) => args,
        Err(error) => return item_with_error(func.into_token_stream(), &error),
    };
    match validate::check(&func, &args) {
        Ok(checked) => rewrite::rewrite(func, &args, &checked),
        Err(error) => item_with_error(func.into_token_stream(), &error),
    }
}
