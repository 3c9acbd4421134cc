use recourse::recourse;
use std::fmt::Debug;

#[recourse(policy = "users.Get")]
async fn find<T, K: Clone + Debug>(items: &[T], key: K) -> Result<Option<&T>, std::io::Error>
where
    T: PartialEq<K>,
{
    Ok(items.iter().find(|item| **item == key))
}

fn main() {
    let items = [1u32, 2, 3];
    let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
    let found = runtime.block_on(find(&items, 2u32)).unwrap();
    assert_eq!(found, Some(&2));
}
