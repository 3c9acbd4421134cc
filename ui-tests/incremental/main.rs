// Compiled by `tests/incremental.rs` with incremental compilation on, as
// `cargo build` does for users. Each mistake below must give one error.
use recourse::{Executor, recourse};

#[derive(Debug)]
struct NotClassify;

impl From<recourse::Error> for NotClassify {
    fn from(_: recourse::Error) -> Self {
        NotClassify
    }
}

#[recourse(policy = "users.Get")]
async fn not_classify() -> Result<u32, NotClassify> {
    Ok(1)
}

#[derive(Debug)]
struct NoFrom;

impl recourse::Classify for NoFrom {}

#[recourse(policy = "users.Get", executor = executor)]
async fn no_from(executor: &Executor, id: &u32) -> Result<u32, NoFrom> {
    Ok(*id)
}

struct Store;

impl Store {
    #[recourse(policy = "users.Get")]
    async fn no_from_mut(&mut self) -> Result<u32, NoFrom> {
        Ok(1)
    }
}

fn main() {
    drop((not_classify(), Store.no_from_mut()));
}
